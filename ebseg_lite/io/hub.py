"""Is the Hugging Face hub reachable? One short look per process, so that offline runs fail at once.

Offline, ``huggingface_hub`` retries its first request five times with a growing pause (about 30 s)
before giving up, and open_clip's pretrained downloads go through it. Here a single TCP connection to
the hub's host decides instead (``PROBE_SECONDS`` at most, name lookup included, made once per process
and host); when it fails, or ``HF_HUB_OFFLINE`` is set, the loaders look only in the local caches and
raise their message straight away. With the hub reachable nothing changes, except that our own
downloads wait at most ``ETAG_SECONDS`` for the hub's first answer.
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import Dict, Iterator, Optional, Tuple
from urllib.parse import urlparse

PROBE_SECONDS = 2.0
ETAG_SECONDS = 5.0
_TRUE = {"1", "on", "yes", "true"}
_probes: Dict[Tuple[str, int], Optional[str]] = {}


def hub_address() -> Tuple[str, int]:
    """(host, port) of the hub endpoint (``HF_ENDPOINT``, default https://huggingface.co)."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)


def _probe(host: str, port: int, timeout: float) -> Optional[str]:
    """One connection attempt in a daemon thread, so that a hanging name lookup cannot hold us longer."""
    result: Dict[str, object] = {}

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result["ok"] = True
        except OSError as e:
            result["error"] = e

    worker = threading.Thread(target=connect, name="ebseg-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    if result.get("ok"):
        return None
    if "error" in result:
        return f"{host}:{port} is unreachable ({result['error']})"
    return f"{host}:{port} did not answer within {timeout:g} s"


def offline_reason(timeout: float = PROBE_SECONDS) -> Optional[str]:
    """Why the hub cannot be used now (``HF_HUB_OFFLINE`` set, or its host unreachable), None if it can.

    The network is probed at most once per process and host; later calls reuse the answer.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return "HF_HUB_OFFLINE is set"
    try:
        from huggingface_hub import constants
        if constants.HF_HUB_OFFLINE:
            return "HF_HUB_OFFLINE is set"
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        pass
    key = hub_address()
    if key not in _probes:
        _probes[key] = _probe(*key, timeout)
    return _probes[key]


def forget_probes() -> None:
    """Drop the remembered probe answers (the next :func:`offline_reason` looks again)."""
    _probes.clear()


@contextlib.contextmanager
def cache_only_when_offline() -> Iterator[Optional[str]]:
    """While inside, ``huggingface_hub`` (and open_clip through it) answers from its local cache only,
    at once, when :func:`offline_reason` says the hub cannot be used; yields that reason (or None).

    This switches ``huggingface_hub.constants.HF_HUB_OFFLINE`` for the duration (read by the library at
    every request), so it is meant for loading weights, not for threads that use the hub meanwhile.
    """
    reason = offline_reason()
    from huggingface_hub import constants
    if reason is None or constants.HF_HUB_OFFLINE:
        yield reason
        return
    constants.HF_HUB_OFFLINE = True
    try:
        yield reason
    finally:
        constants.HF_HUB_OFFLINE = False
