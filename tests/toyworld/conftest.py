"""Fixtures of the toy-world tests."""
import pytest


class CallReached(Exception):
    """Raised by a stand-in: the command got as far as the call it replaces (and trained nothing)."""


@pytest.fixture
def stand_in(monkeypatch):
    """``seen = stand_in(module, "name")`` replaces ``module.name`` by a function that records its keyword
    arguments in ``seen`` and raises ``stand_in.reached`` (:class:`CallReached`)."""
    def patch(module, name: str) -> dict:
        seen = {}

        def fake(*args, **kw):
            seen.update(kw)
            raise CallReached

        monkeypatch.setattr(module, name, fake)
        return seen
    patch.reached = CallReached
    return patch
