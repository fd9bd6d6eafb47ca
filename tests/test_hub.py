"""Name resolution: local paths, the HF cache layout, and clear errors when offline."""

from __future__ import annotations

import shutil
import socket

import pytest

from gpt2_multi import GPT2Config, hub
from gpt2_multi.checkpoint import load_checkpoint

from fixture_cases import checkpoint_dir


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return tmp_path / "hf"


def _fake_snapshot(cache, repo_id, commit="0123abcd"):
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(checkpoint_dir("lm", "safetensors"), snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_cache_dir_follows_hf_variables(monkeypatch, tmp_path):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub.cache_dir() == tmp_path / "cache"


def test_local_directory_and_file(tmp_path):
    directory = checkpoint_dir("lm", "safetensors")
    assert hub.resolve(directory) == directory
    assert hub.resolve(directory / "model.safetensors") == directory


def test_hub_name_found_in_cache_under_current_and_legacy_ids(hf_home):
    snapshot = _fake_snapshot(hf_home / "hub", "openai-community/gpt2")
    assert hub.resolve("gpt2") == snapshot
    assert hub.resolve("openai-community/gpt2") == snapshot
    ckpt = load_checkpoint("gpt2")
    assert ckpt.source == snapshot and ckpt.config.n_embd == 32  # the cached (tiny) files, not the built-in size
    legacy = _fake_snapshot(hf_home / "hub", "someone/tiny-gpt2", commit="feed")
    assert hub.resolve("someone/tiny-gpt2") == legacy


def test_offline_error_says_where_it_looked(hf_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubError) as info:
        load_checkpoint("someone/not-cached")
    message = str(info.value)
    assert "'someone/not-cached'" in message
    assert str(hf_home / "hub" / "models--someone--not-cached") in message
    assert "HF_HUB_OFFLINE is set, so nothing was downloaded" in message


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_failure_is_a_clear_error(hf_home, monkeypatch):
    # A local endpoint with nothing listening: the download fails at once, and no traffic leaves the machine.
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(hub.HubError, match=r"not in the HF cache .*and the download failed: could not download config.json of someone/tiny"):
        load_checkpoint("someone/tiny")
    with pytest.raises(OSError, match="could not download"):
        GPT2Config.from_pretrained("someone/tiny")


def test_config_prefers_the_cache_then_the_built_in_size(hf_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert GPT2Config.from_pretrained("gpt2").n_embd == 768  # nothing cached: the built-in size
    assert GPT2Config.from_pretrained("gpt2", n_layer=2).n_layer == 2
    _fake_snapshot(hf_home / "hub", "openai-community/gpt2")
    assert GPT2Config.from_pretrained("gpt2").n_embd == 32  # the cached (tiny) config.json wins
    assert GPT2Config.from_pretrained("openai-community/gpt2", n_layer=1).n_layer == 1
    with pytest.raises(hub.HubError, match="HF_HUB_OFFLINE is set"):
        GPT2Config.from_pretrained("someone/not-cached")


def test_download_into_cache_layout(hf_home, monkeypatch):
    """A real HTTP download from a local server lands in HF's cache layout and loads."""
    import http.server
    import threading

    source = checkpoint_dir("lm", "safetensors")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            parts = self.path.strip("/").split("/")  # org/name/resolve/main/file
            path = source / parts[-1]
            if parts[2:4] != ["resolve", "main"] or not path.is_file():
                self.send_response(404)
                self.end_headers()
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("X-Repo-Commit", "c0ffee")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        ckpt = load_checkpoint("someone/tiny")
    finally:
        server.shutdown()
    snapshot = hf_home / "hub" / "models--someone--tiny" / "snapshots" / "c0ffee"
    assert ckpt.source == snapshot
    assert (snapshot / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    assert (hf_home / "hub" / "models--someone--tiny" / "refs" / "main").read_text() == "c0ffee"
    assert hub.resolve("someone/tiny") == snapshot  # now served from the cache


def test_nonexistent_local_path(tmp_path):
    with pytest.raises(hub.HubError, match="no such file or directory"):
        hub.resolve(tmp_path / "missing")
    with pytest.raises(hub.HubError, match="no such file or directory"):
        hub.resolve("./relative/missing")
