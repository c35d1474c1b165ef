"""Fixtures of the hostile-input corpus: a valid devkit and checkpoint (written once), an archive server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from hostile_inputs import Hostile, tiny_model_overrides

from bafenet.config import config_to_dict, load_config
from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.engine.checkpoint import save_checkpoint
from bafenet.engine.setup import build_model_from_config


class _ArchiveHandler(BaseHTTPRequestHandler):
    """Serves ``server.files[path]`` with a Content-Length."""

    def do_GET(self) -> None:
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:  # keep stderr clean
        pass


@pytest.fixture(scope="session")
def archive_server() -> Iterator[ThreadingHTTPServer]:
    """A local HTTP server (127.0.0.1, ephemeral port) serving the archives the cases build."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ArchiveHandler)
    httpd.files = {}
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------------- valid inputs
@pytest.fixture(scope="session")
def valid_devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic 96 x 80 images: train = synth_0000..2, val = synth_0003 (never modified)."""
    return write_synthetic_devkit(
        tmp_path_factory.mktemp("hostile") / "devkit", n=4, seed=11, sizes=((96, 80),)
    )


@pytest.fixture(scope="session")
def valid_checkpoint(valid_devkit: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny untrained bafenet_hr checkpoint (as a dict) whose config points at ``valid_devkit``."""
    cfg = load_config(None, tiny_model_overrides(valid_devkit))
    torch.manual_seed(0)
    model = build_model_from_config(cfg)
    path = save_checkpoint(
        tmp_path_factory.mktemp("weights") / "last.pt", model, cfg.model.name, config_to_dict(cfg)
    )
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="session")
def empty_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``$XDG_CACHE_HOME`` without a dataset (libraries may keep their own caches there)."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture
def hostile(
    tmp_path: Path,
    empty_cache_home: Path,
    valid_devkit: Path,
    valid_checkpoint: dict,
    archive_server: ThreadingHTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Hostile:
    """The builders of one case; the current folder is the case's tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BAFENET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(empty_cache_home))  # never the user's dataset
    return Hostile(tmp_path, valid_devkit, valid_checkpoint, archive_server)
