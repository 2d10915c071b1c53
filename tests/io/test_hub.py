"""Offline fast: one short look at the hub, then the local cache only and the clear message at once.

The network is never used: the "hub" is a socket on 127.0.0.1 (listening, or closed), and every
connection attempt is counted.
"""
import socket
import threading

import pytest

import ebseg_lite
from ebseg_lite.io import hub


@pytest.fixture
def probes(monkeypatch):
    """Counts hub connection attempts; forgets remembered answers before and after."""
    import huggingface_hub.constants as hf_constants
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    calls = []
    real = socket.create_connection

    def counting(address, *args, **kwargs):
        calls.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(hub.socket, "create_connection", counting)
    hub.forget_probes()
    yield calls
    hub.forget_probes()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more: connections are refused
    return port


def test_hf_hub_offline_needs_no_probe(probes, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.offline_reason() == "HF_HUB_OFFLINE is set"
    assert probes == []


def test_unreachable_hub_is_probed_once(probes, monkeypatch):
    port = closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    first = hub.offline_reason()
    assert first.startswith(f"127.0.0.1:{port} is unreachable") and "refused" in first.lower()
    assert hub.offline_reason() == first  # remembered: no second attempt
    assert probes == [("127.0.0.1", port)]


def test_reachable_hub(probes, monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        port = server.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert hub.offline_reason() is None
        assert hub.hub_address() == ("127.0.0.1", port)
    finally:
        server.close()
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.org")
    assert hub.hub_address() == ("hub.example.org", 443)


def test_a_hanging_probe_is_cut_short(probes, monkeypatch):
    release = threading.Event()

    def hang(address, *args, **kwargs):
        release.wait(10)  # a name lookup or connect that does not return
        raise OSError("late")

    monkeypatch.setattr(hub.socket, "create_connection", hang)
    monkeypatch.setenv("HF_ENDPOINT", "https://slow.invalid")
    try:
        assert hub.offline_reason(timeout=0.2) == "slow.invalid:443 did not answer within 0.2 s"
    finally:
        release.set()


def test_cache_only_switches_huggingface_hub_offline_and_back(probes, monkeypatch):
    import huggingface_hub.constants as hf_constants
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(RuntimeError):
        with hub.cache_only_when_offline() as reason:
            assert reason is not None and hf_constants.is_offline_mode()
            raise RuntimeError("the loader failed")
    assert hf_constants.HF_HUB_OFFLINE is False


def test_released_checkpoint_fails_at_once_when_the_hub_is_unreachable(probes, monkeypatch, tmp_path):
    import huggingface_hub
    from ebseg_lite.io.official import download_released
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("EBSEG_CHECKPOINT_DIR", raising=False)
    asked = []
    real = huggingface_hub.hf_hub_download

    def recording(*args, **kwargs):
        asked.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", recording)
    for _ in range(2):
        with pytest.raises(ebseg_lite.WeightsUnavailable, match="is unreachable .*not in the Hugging Face cache"
                                                                ".*EBSEG_CHECKPOINT_DIR"):
            download_released("vit_b", cache_dir=str(tmp_path / "hub"))
    assert [a["local_files_only"] for a in asked] == [True, True]  # the cache only, never a request
    assert len(probes) == 1
