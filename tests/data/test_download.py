"""Dataset download: a local HTTP server on 127.0.0.1 serves archives built by the tests."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bafenet.cli import main
from bafenet.data.download import download_dataset, download_file, safe_extract
from bafenet.errors import BafenetError
from bafenet.paths import resolve_data_root

MAX_REQUESTS = 20


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files[path]``; honours ``Range`` when ``server.support_range``."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        if len(server.requests) > MAX_REQUESTS:
            self.send_error(429)
            return
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and server.support_range:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            body = data[start:]
        else:
            self.send_response(200)
            body = data
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    """An HTTP server on 127.0.0.1 (ephemeral port) in a thread, shut down after the test."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files = {}
    httpd.requests = []
    httpd.support_range = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _url(httpd: ThreadingHTTPServer, path: str) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}{path}"


def _release_zip(extra: dict[str, bytes] | None = None) -> bytes:
    """A zip shaped like the GitHub archive: DenseSIRST-main/data/SIRSTdevkit/..."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("DenseSIRST-main/README.md", "readme")
        zf.writestr("DenseSIRST-main/data/SIRSTdevkit/PNGImages/a.png", b"\x89PNG fake")
        zf.writestr("DenseSIRST-main/data/SIRSTdevkit/Splits/trainval.txt", "a")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        # some padding so that a resume really skips bytes
        zf.writestr("DenseSIRST-main/padding.bin", bytes(range(256)) * 64)
    return buffer.getvalue()


def test_download_and_extract(server: ThreadingHTTPServer, tmp_path: Path, capsys) -> None:
    data = _release_zip()
    server.files["/main.zip"] = data
    digest = hashlib.sha256(data).hexdigest()
    devkit = download_dataset("densesirst", tmp_path, url=_url(server, "/main.zip"), sha256=digest)
    assert devkit == tmp_path / "DenseSIRST" / "SIRSTdevkit"
    assert (devkit / "PNGImages" / "a.png").read_bytes() == b"\x89PNG fake"
    assert (devkit / "Splits" / "trainval.txt").read_text() == "a"
    assert digest in capsys.readouterr().out
    # no archive, partial file or temporary folder left behind
    assert not list((tmp_path / "downloads").iterdir())
    assert sorted(p.name for p in (tmp_path / "DenseSIRST").iterdir()) == ["SIRSTdevkit"]
    assert resolve_data_root(tmp_path) == devkit
    # a second call finds it and downloads nothing
    n_requests = len(server.requests)
    assert download_dataset("densesirst", tmp_path, url=_url(server, "/main.zip")) == devkit
    assert len(server.requests) == n_requests


@pytest.mark.parametrize("support_range", [True, False])
def test_resume_partial_download(server: ThreadingHTTPServer, tmp_path: Path, support_range: bool) -> None:
    data = bytes(range(256)) * 1000
    server.files["/file.bin"] = data
    server.support_range = support_range
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(data[:100_000])
    digest = download_file(_url(server, "/file.bin"), dest, sha256=hashlib.sha256(data).hexdigest())
    assert dest.read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()
    assert not (tmp_path / "file.bin.part").exists()
    assert server.requests == [("/file.bin", "bytes=100000-")]


def test_sha256_mismatch_leaves_nothing(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    server.files["/main.zip"] = _release_zip()
    with pytest.raises(BafenetError, match="sha256 mismatch"):
        download_dataset("densesirst", tmp_path, url=_url(server, "/main.zip"), sha256="0" * 64)
    assert not (tmp_path / "DenseSIRST" / "SIRSTdevkit").exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_truncated_download_is_kept_for_resume(tmp_path: Path) -> None:
    """A server that closes early: a clear error, and the partial file stays for a resume."""

    class Truncating(_Handler):
        def do_GET(self) -> None:  # noqa: N802
            self.server.requests.append((self.path, self.headers.get("Range")))
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Truncating)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with pytest.raises(BafenetError, match="run the command again to resume"):
            download_file(_url(httpd, "/f"), tmp_path / "f")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    assert (tmp_path / "f.part").read_bytes() == b"x" * 1000
    assert not (tmp_path / "f").exists()


def test_http_error_is_clear(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    with pytest.raises(BafenetError, match="HTTP 404"):
        download_dataset("densesirst", tmp_path, url=_url(server, "/missing.zip"))


def test_zip_slip_rejected(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    server.files["/evil.zip"] = _release_zip({"DenseSIRST-main/../../evil.txt": b"pwned"})
    root = tmp_path / "root"
    with pytest.raises(BafenetError, match=re.escape("'DenseSIRST-main/../../evil.txt'")):
        download_dataset("densesirst", root, url=_url(server, "/evil.zip"))
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (root / "DenseSIRST" / "SIRSTdevkit").exists()
    assert [p.name for p in (root / "DenseSIRST").iterdir()] == []  # temp folder removed


def _tar_with(member: tarfile.TarInfo, path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("top/data/SIRSTdevkit/PNGImages/a.png")
        ok.size = 3
        tf.addfile(ok, io.BytesIO(b"abc"))
        tf.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


@pytest.mark.parametrize(
    ("kind", "name", "link"),
    [
        ("file", "/etc/evil", ""),
        ("file", "top/../../evil", ""),
        ("symlink", "top/link", "../../outside"),
        ("symlink", "top/abs", "/etc/passwd"),
        ("hardlink", "top/hard", "../outside"),
    ],
)
def test_unsafe_tar_members_rejected(tmp_path: Path, kind: str, name: str, link: str) -> None:
    member = tarfile.TarInfo(name)
    if kind == "file":
        member.size = 1
    else:
        member.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
        member.linkname = link
    archive = _tar_with(member, tmp_path / "a.tar.gz")
    into = tmp_path / "out"
    into.mkdir()
    with pytest.raises(BafenetError, match=re.escape(repr(name))):
        safe_extract(archive, into)
    assert not list(into.iterdir())  # checked before anything was written


def test_safe_tar_extracts(tmp_path: Path) -> None:
    member = tarfile.TarInfo("top/data/SIRSTdevkit/link.png")
    member.type = tarfile.SYMTYPE
    member.linkname = "PNGImages/a.png"
    archive = _tar_with(member, tmp_path / "a.tar.gz")
    into = tmp_path / "out"
    into.mkdir()
    safe_extract(archive, into)
    assert (into / "top/data/SIRSTdevkit/link.png").read_bytes() == b"abc"


def test_unknown_dataset_and_not_an_archive(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    with pytest.raises(BafenetError, match="unknown dataset"):
        download_dataset("nope", tmp_path)
    server.files["/x.zip"] = b"not an archive at all"
    with pytest.raises(BafenetError, match="not a zip or tar archive"):
        download_dataset("densesirst", tmp_path, url=_url(server, "/x.zip"))


def test_tar_release_and_cli(server: ThreadingHTTPServer, tmp_path: Path, capsys) -> None:
    """A .tar.gz mirror with another top folder is normalised too; the CLI reports clearly."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        info = tarfile.TarInfo("mirror-v1/data/SIRSTdevkit/PNGImages/b.png")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"ok"))
    server.files["/mirror.tar.gz"] = buffer.getvalue()
    url = _url(server, "/mirror.tar.gz")
    assert main(["data", "download", "densesirst", "--root", str(tmp_path / "a"), "--url", url]) == 0
    assert "dataset ready at" in capsys.readouterr().out
    assert (tmp_path / "a/DenseSIRST/SIRSTdevkit/PNGImages/b.png").read_bytes() == b"ok"
    root_b = str(tmp_path / "b")
    bad_sha = "ab" * 32
    assert main(["data", "download", "densesirst", "--root", root_b, "--url", url, "--sha256", bad_sha]) == 1
    assert "sha256 mismatch" in capsys.readouterr().err
