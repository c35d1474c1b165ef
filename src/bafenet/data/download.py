"""Download, verify and safely extract a public dataset release.

``bafenet data download densesirst`` fetches the GitHub archive of the DenseSIRST
repository (its devkit lives at ``<repo>-main/data/SIRSTdevkit``) and leaves the devkit at
``<root>/DenseSIRST/SIRSTdevkit``, where :func:`bafenet.paths.resolve_data_root` finds it.

* The archive is streamed into ``<root>/downloads/<name>-<url hash>-<file>.part`` with a
  progress bar. An interrupted download resumes with an HTTP ``Range`` request on the next run; a
  server that ignores ``Range`` (answers 200) makes it start again from byte 0.
* The size is checked against ``Content-Length``; the sha256 is always printed and,
  when one is known or given, compared (a mismatch deletes the download).
* Extraction (zip or tar) refuses any member that would land outside the target
  folder: absolute paths, ``..`` components, links pointing outside, device files.
  It extracts into a temporary folder next to the target and renames the devkit into
  place, so the target is either complete or absent. The archive is deleted afterwards
  (also when it turns out unusable).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from bafenet.errors import BafenetError
from bafenet.paths import cache_dir

CHUNK = 1 << 20  # bytes per read
TIMEOUT_S = 60.0  # per socket operation


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset's public release lives."""

    url: str
    sha256: str | None  # None: the archive is not byte-stable (a branch archive); printed, not checked
    folder: str  # the dataset folder under the root, e.g. "DenseSIRST"
    devkit: str  # the devkit folder name inside it and inside the archive


DATASETS: dict[str, DatasetSource] = {
    "densesirst": DatasetSource(
        url="https://github.com/GrokCV/DenseSIRST/archive/refs/heads/main.zip",
        sha256=None,
        folder="DenseSIRST",
        devkit="SIRSTdevkit",
    ),
}


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _open_url(url: str, start: int) -> http.client.HTTPResponse:
    headers = {"User-Agent": "bafenet"}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start > 0:  # the partial file is not a prefix we can resume
            raise
        raise BafenetError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BafenetError(f"{url}: cannot download ({reason}); check the network or pass --url") from exc


def download_file(url: str, dest: Path, sha256: str | None = None) -> str:
    """Download ``url`` to ``dest`` (resuming ``dest.part``) and return the file's sha256.

    Raises:
        BafenetError: on a network/HTTP error, a size mismatch (the partial file is kept
            for a later resume) or a sha256 mismatch (the partial file is deleted).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _open_url(url, start)
    except urllib.error.HTTPError:  # 416: restart from scratch
        part.unlink(missing_ok=True)
        start = 0
        response = _open_url(url, 0)
    with response:
        length = response.headers.get("Content-Length")
        if start > 0 and response.status == 206:
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != start:
                part.unlink(missing_ok=True)  # the next run starts from byte 0
                raise BafenetError(f"{url}: wrong Content-Range in the answer to a resume; run again")
            total = int(match.group(2)) if match.group(2) != "*" else None
            mode = "ab"
        else:  # the server ignored Range (or nothing to resume): start again
            start = 0
            total = int(length) if length is not None else None
            mode = "wb"
        with (
            part.open(mode) as f,
            tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=dest.name) as bar,
        ):
            try:
                while block := response.read(CHUNK):
                    f.write(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as exc:
                raise BafenetError(
                    f"{url}: download interrupted ({exc}); run the command again to resume"
                ) from exc
    size = part.stat().st_size
    if total is not None and size != total:
        raise BafenetError(
            f"{url}: incomplete download ({size} of {total} bytes); run the command again to resume"
        )
    digest = _sha256_of(part)
    print(f"sha256 {digest}  {dest.name}")
    if sha256 is not None and digest.lower() != sha256.strip().lower():
        part.unlink(missing_ok=True)
        raise BafenetError(f"{url}: sha256 mismatch: expected {sha256.strip().lower()}, got {digest}")
    os.replace(part, dest)
    return digest


def _unsafe_reason(name: str, link: str | None = None, hardlink: bool = False) -> str | None:
    """Why archive member ``name`` (optionally a link to ``link``) would escape, or None."""
    name = name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in name.split("/"):
        return "'..' in its path"
    if link is not None:
        link = link.replace("\\", "/")
        if link.startswith("/") or re.match(r"^[A-Za-z]:", link):
            return f"link to an absolute path {link!r}"
        # a symlink is relative to its own folder, a hard link to the archive root
        resolved = posixpath.normpath(link if hardlink else posixpath.join(posixpath.dirname(name), link))
        if resolved == ".." or resolved.startswith("../"):
            return f"link pointing outside the archive ({link!r})"
    return None


def _extract_zip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            mode = info.external_attr >> 16
            link = zf.read(info).decode("utf-8", "replace") if stat.S_ISLNK(mode) else None
            reason = _unsafe_reason(info.filename, link)
            if reason:
                raise BafenetError(
                    f"{archive}: unsafe member {info.filename!r} ({reason}); nothing extracted"
                )
        zf.extractall(into)


def _extract_tar(archive: Path, into: Path) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for member in members:
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                reason = "not a regular file, folder or link"
            else:
                link = member.linkname if (member.issym() or member.islnk()) else None
                reason = _unsafe_reason(member.name, link, hardlink=member.islnk())
            if reason:
                raise BafenetError(f"{archive}: unsafe member {member.name!r} ({reason}); nothing extracted")
        try:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: a second line of defence
                tf.extractall(into, members=members, filter="data")
            else:
                tf.extractall(into, members=members)
        except tarfile.TarError as exc:
            raise BafenetError(f"{archive}: cannot extract ({exc})") from exc


def safe_extract(archive: Path, into: Path) -> None:
    """Extract a zip or tar ``archive`` into the existing folder ``into``, refusing escapes.

    Every member is checked before anything is written.

    Raises:
        BafenetError: naming the archive and the first unsafe member, or for an unknown format.
    """
    archive = Path(archive)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, into)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, into)
        else:
            raise BafenetError(f"{archive}: not a zip or tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise BafenetError(f"{archive}: damaged archive ({exc})") from exc


def _find_devkit(folder: Path, devkit_name: str) -> Path | None:
    """The shallowest folder holding ``PNGImages/`` below ``folder``, preferring ``devkit_name``."""
    found = sorted(
        (p.parent for p in folder.rglob("PNGImages") if p.is_dir()),
        key=lambda p: (p.name != devkit_name, len(p.parts), str(p)),
    )
    return found[0] if found else None


def _archive_name(name: str, url: str) -> str:
    """``<name>-<url hash>-<file name>``: a partial download only resumes from the same URL."""
    base = posixpath.basename(urllib.parse.urlparse(url).path) or "archive"
    return f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:8]}-{base}"


def download_dataset(
    name: str, root: str | Path | None, url: str | None = None, sha256: str | None = None
) -> Path:
    """Download, verify and extract dataset ``name``; return its devkit folder.

    Args:
        name: a key of :data:`DATASETS` (``"densesirst"``).
        root: where to put it (default :func:`bafenet.paths.cache_dir`); the devkit ends
            up at ``<root>/DenseSIRST/SIRSTdevkit``.
        url: another archive URL (a mirror); default the public release.
        sha256: the expected sha256 of the archive (default: the known one, if any).

    Returns:
        The devkit folder. If it is already there, nothing is downloaded.

    Raises:
        BafenetError: on a network, size, checksum or archive problem.
    """
    key = name.lower()
    if key not in DATASETS:
        raise BafenetError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    source = DATASETS[key]
    root = Path(root).expanduser() if root is not None else cache_dir()
    target = root / source.folder / source.devkit
    if (target / "PNGImages").is_dir():
        print(f"{target} already holds the dataset; nothing to download")
        return target
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BafenetError(f"{target}: exists but holds no PNGImages/; remove it and run again")
    url = url or source.url
    expected = sha256 or (source.sha256 if url == source.url else None)

    archive = root / "downloads" / _archive_name(key, url)
    if archive.exists() and expected is not None and _sha256_of(archive) != expected.strip().lower():
        archive.unlink()  # a stale archive from another source
    if not archive.exists():
        download_file(url, archive, expected)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        safe_extract(archive, tmp)
        devkit = _find_devkit(tmp, source.devkit)
        if devkit is None:
            raise BafenetError(f"{archive}: holds no dataset (no PNGImages/ folder)")
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.replace(devkit, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        archive.unlink(missing_ok=True)  # extracted, or unusable
    return target
