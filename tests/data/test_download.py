"""Dataset download: a local HTTP server on 127.0.0.1 serves archives built by the tests."""

from __future__ import annotations

import hashlib
import io
import re
import stat
import tarfile
import threading
import warnings
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

    def do_GET(self) -> None:
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
        def do_GET(self) -> None:
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
    assert not (into / "top/data/SIRSTdevkit/link.png").is_symlink()  # written as a copy


# An entry is (kind, name) for a folder, (kind, name, bytes) for a file, (kind, name, target) for a link.
Entry = tuple[str, ...] | tuple[str, str, bytes]


def _write_tar(path: Path, entries: list[Entry]) -> Path:
    with tarfile.open(path, "w") as tf:
        for kind, name, *rest in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(rest[0])
                tf.addfile(info, io.BytesIO(rest[0]))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}[
                kind
            ]
            info.linkname = rest[0] if rest else ""
            tf.addfile(info)
    return path


def _write_zip(path: Path, entries: list[Entry]) -> Path:
    with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a repeated name is what some tests want
        for kind, name, *rest in entries:
            if kind == "dir":
                zf.writestr(name.rstrip("/") + "/", b"")
            elif kind == "file":
                zf.writestr(name, rest[0])
            else:  # a symbolic link, as Unix zip tools store it: mode S_IFLNK, data = the target
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, rest[0])
    return path


CHAINED_LINKS = [("symlink", "a", "."), ("symlink", "a/b", ".."), ("file", "b/file", b"pwned")]


@pytest.mark.parametrize("has_data_filter", [True, False])
def test_chained_links_cannot_escape(tmp_path: Path, monkeypatch, has_data_filter: bool) -> None:
    """Each link looks harmless by name; together ``b/file`` would land beside ``out``."""
    if not has_data_filter:  # Python 3.10.0-3.10.11 and 3.11.0-3.11.3 have no tar "data" filter
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = _write_tar(tmp_path / "chain.tar", CHAINED_LINKS)
    into = tmp_path / "out"
    into.mkdir()
    with pytest.raises(BafenetError, match=r"unsafe member 'a/b' \(its path runs through the symlink 'a'\)"):
        safe_extract(archive, into)
    assert not list(into.iterdir())  # nothing at all extracted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.tar", "out"]  # nothing beside it


@pytest.mark.parametrize("fmt", ["tar", "zip"])
@pytest.mark.parametrize(
    ("entries", "refused", "reason"),
    [
        # a file under a link: a zip tool would write the link as a file, then fail on NotADirectoryError
        (
            [("file", "top/a.png", b"abc"), ("symlink", "top/d", "a.png"), ("file", "top/d/x", b"x")],
            "top/d/x",
            "its path runs through the symlink 'top/d'",
        ),
        (
            [("dir", "top"), ("symlink", "top/d", "."), ("file", "top/d/x", b"x")],
            "top/d/x",
            "its path runs through the symlink 'top/d'",
        ),
        ([("file", "top/f", b"abc"), ("file", "top/f/x", b"x")], "top/f/x", "its path runs through the file"),
        # never write through a link: a later member may not replace one
        (
            [("file", "top/a.png", b"abc"), ("symlink", "top/l", "a.png"), ("file", "top/l", b"new")],
            "top/l",
            "another member has the same path",
        ),
        ([("symlink", "top/x", "y"), ("symlink", "top/y", "x")], "top/x", "link loop"),
        ([("dir", "top/sub"), ("symlink", "top/d", "sub")], "top/d", "link to a folder"),
        ([("symlink", "top/d", ".")], "top/d", "link to a folder"),
        (
            [("symlink", "top/d", "missing.png")],
            "top/d",
            "link to 'missing.png', which is not a file of the archive",
        ),
        (
            [("file", "top/f", b"abc"), ("symlink", "top/d", "f/../f")],
            "top/d",
            "link to 'f/../f', which is not a file of the archive",
        ),
        ([("symlink", "top/d", "../../x")], "top/d", "link pointing outside the archive"),
        ([("symlink", "top/d", "/etc/passwd")], "top/d", "link to an absolute path"),
    ],
)
def test_links_that_do_not_end_at_an_archive_file_are_refused(
    tmp_path: Path, fmt: str, entries: list[Entry], refused: str, reason: str
) -> None:
    archive = (_write_tar if fmt == "tar" else _write_zip)(tmp_path / f"a.{fmt}", entries)
    into = tmp_path / "out"
    into.mkdir()
    with pytest.raises(BafenetError, match=re.escape(f"unsafe member {refused!r} ({reason}")) as info:
        safe_extract(archive, into)
    assert str(info.value).endswith("; nothing extracted")
    assert not list(into.iterdir())


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_links_inside_are_written_as_copies(tmp_path: Path, fmt: str) -> None:
    entries: list[Entry] = [
        ("symlink", "top/early.png", "sub/a.png"),  # names a file that comes later
        ("file", "top/sub/a.png", b"abc"),
        ("symlink", "top/sub/again.png", "../early.png"),  # a link to a link
    ]
    if fmt == "tar":
        entries.append(("hardlink", "top/hard.png", "top/sub/a.png"))
    archive = (_write_tar if fmt == "tar" else _write_zip)(tmp_path / f"a.{fmt}", entries)
    into = tmp_path / "out"
    into.mkdir()
    safe_extract(archive, into)
    written = sorted(p.relative_to(into).as_posix() for p in into.rglob("*") if p.is_file())
    assert written == sorted(name for _, name, *_ in entries)
    assert all((into / name).read_bytes() == b"abc" for name in written)
    assert not [p for p in into.rglob("*") if p.is_symlink()]


def test_tar_hardlink_to_a_missing_file_is_refused(tmp_path: Path) -> None:
    archive = _write_tar(tmp_path / "a.tar", [("file", "top/a.png", b"abc"), ("hardlink", "top/h", "a.png")])
    into = tmp_path / "out"
    into.mkdir()
    with pytest.raises(
        BafenetError, match=r"'top/h' \(link to 'a.png', which is not a file of the archive\)"
    ):
        safe_extract(archive, into)  # a hard link names its target from the archive root
    assert not list(into.iterdir())


def test_existing_link_in_the_target_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    into = tmp_path / "out"
    into.mkdir()
    (into / "top").symlink_to(outside)
    archive = _write_tar(tmp_path / "a.tar", [("file", "top/x", b"x")])
    with pytest.raises(BafenetError, match="exists and is not a folder"):
        safe_extract(archive, into)
    assert not list(outside.iterdir())


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


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_cli_refuses_an_archive_with_links_in_one_line(
    server: ThreadingHTTPServer, tmp_path: Path, capsys, fmt: str
) -> None:
    """The whole download: one error line, no traceback, nothing left under the root or beside it."""
    entries: list[Entry] = [("file", "top/data/SIRSTdevkit/PNGImages/a.png", b"abc"), *CHAINED_LINKS]
    if fmt == "zip":  # a file under a link: zipfile alone would end in NotADirectoryError
        entries = [entries[0], ("symlink", "top/d", "data"), ("file", "top/d/x", b"x")]
    archive = (_write_tar if fmt == "tar" else _write_zip)(tmp_path / f"evil.{fmt}", entries)
    server.files[f"/evil.{fmt}"] = archive.read_bytes()
    root = tmp_path / "root"
    url = _url(server, f"/evil.{fmt}")
    assert main(["data", "download", "densesirst", "--root", str(root), "--url", url]) == 1
    err = capsys.readouterr().err  # also holds the download's progress bar
    errors = [line for line in err.splitlines() if "error" in line]
    refused = "a/b" if fmt == "tar" else "top/d/x"
    assert len(errors) == 1 and "Traceback" not in err
    assert f"unsafe member {refused!r}" in errors[0] and errors[0].endswith("nothing extracted")
    assert not [p for p in root.rglob("*") if not p.is_dir()]  # archive deleted, nothing extracted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil." + fmt, "root"]
