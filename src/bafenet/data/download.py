"""Download, verify and safely extract a public dataset release.

``bafenet data download densesirst`` fetches the GitHub archive of the DenseSIRST
repository (its devkit lives at ``<repo>-main/data/SIRSTdevkit``) and leaves the devkit at
``<root>/DenseSIRST/SIRSTdevkit``, where :func:`bafenet.paths.resolve_data_root` finds it.

* The archive is streamed into ``<root>/downloads/<name>-<url hash>-<file>.part`` with a
  progress bar. An interrupted download resumes with an HTTP ``Range`` request on the next run; a
  server that ignores ``Range`` (answers 200) makes it start again from byte 0.
* The size is checked against ``Content-Length``; the sha256 is always printed and,
  when one is known or given, compared (a mismatch deletes the download).
* Extraction (zip or tar) first places every member in a simulated tree and refuses the
  whole archive, naming the member, for an absolute path, a ``..`` component, a path that
  runs through a link or a file, a repeated member, a device file, or a link that does not
  end (following further links) at a regular file of the archive. Links are written as
  copies of that file, so the extracted tree holds no links and nothing is written through
  one. It extracts into a temporary folder next to the target and renames the devkit into
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
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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


class _Unsafe(Exception):
    """Why an archive member is refused (the caller names the archive and the member)."""


@dataclass(frozen=True)
class _Member:
    """One archive member, read from the archive's index (nothing extracted yet)."""

    name: str  # as stored
    kind: str  # "dir", "file", "symlink" (link relative to its folder) or "hardlink" (to the root)
    link: str | None  # the link target of a symlink or hardlink
    source: object  # the tarfile.TarInfo / zipfile.ZipInfo that holds a file's bytes


def _split_name(name: str) -> tuple[str, ...]:
    """The folder/file components of a stored path; raise :class:`_Unsafe` for one that could escape."""
    name = name.replace("\\", "/")
    if "\x00" in name:
        raise _Unsafe("NUL byte in its path")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise _Unsafe("absolute path")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise _Unsafe("'..' in its path")
    return parts


def _plan(members: list[_Member]) -> list[tuple[tuple[str, ...], _Member | None]]:
    """What to write, in archive order: ``(path parts, member whose bytes it gets or None for a folder)``.

    Every member is placed in a simulated tree before anything is written. Refused: escaping
    paths, a path that runs through a file or a link, a member given twice, a folder given as a
    file, and a link that does not end (following further links) at a regular file of the
    archive. A link is planned as a copy of that file, so the written tree holds no links.

    Raises:
        _Unsafe: with the refused member's name as ``args[1]``.
    """
    tree: dict[tuple[str, ...], _Member | None] = {(): None}  # None: a folder
    for member in members:
        try:
            parts = _split_name(member.name)
            for depth in range(1, len(parts)):
                above = tree.setdefault(parts[:depth], None)
                if above is not None:
                    raise _Unsafe(f"its path runs through the {above.kind} {above.name!r}")
            if parts in tree:
                if member.kind == "dir" and tree[parts] is None:
                    continue  # a folder listed again, or after its contents
                raise _Unsafe("another member has the same path")
            tree[parts] = None if member.kind == "dir" else member
        except _Unsafe as exc:
            raise _Unsafe(exc.args[0], member.name) from None
    plan = []
    for parts, member in tree.items():
        if parts and member is not None and member.kind in ("symlink", "hardlink"):
            try:
                plan.append((parts, _link_source(parts, tree)))
            except _Unsafe as exc:
                raise _Unsafe(exc.args[0], member.name) from None
        elif parts:
            plan.append((parts, member))
    return plan


def _link_source(parts: tuple[str, ...], tree: dict[tuple[str, ...], _Member | None]) -> _Member:
    """The regular file that the link at ``parts`` ends at, following further links."""
    seen = set()
    member = tree[parts]
    while member is not None and member.kind != "file":
        if parts in seen:
            raise _Unsafe("link loop")
        seen.add(parts)
        target = (member.link or "").replace("\\", "/")
        if target.startswith("/") or re.match(r"^[A-Za-z]:", target):
            raise _Unsafe(f"link to an absolute path {member.link!r}")
        walked = list(parts[:-1]) if member.kind == "symlink" else []
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if tree.get(tuple(walked), False) is not None:  # not a folder: a file, a link, or absent
                raise _Unsafe(f"link to {member.link!r}, which is not a file of the archive")
            if part != "..":
                walked.append(part)
            elif walked:
                walked.pop()
            else:
                raise _Unsafe(f"link pointing outside the archive ({member.link!r})")
        parts = tuple(walked)
        if parts not in tree:
            raise _Unsafe(f"link to {member.link!r}, which is not a file of the archive")
        member = tree[parts]
    if member is None:
        raise _Unsafe("link to a folder")
    return member


def _write_plan(
    archive: Path,
    plan: list[tuple[tuple[str, ...], _Member | None]],
    into: Path,
    open_member: Callable[[Any], IO[bytes]],
) -> None:
    """Create the planned folders and files under ``into``; never follows a link on the way."""
    root = os.path.realpath(into)
    try:
        for parts, member in plan:
            folder = root
            for part in parts if member is None else parts[:-1]:
                folder = os.path.join(folder, part)
                try:
                    os.mkdir(folder)
                except FileExistsError:
                    if os.path.islink(folder) or not os.path.isdir(folder):
                        raise BafenetError(f"{folder}: exists and is not a folder; not extracted") from None
            if member is None:
                continue
            dest = os.path.join(folder, parts[-1])
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            try:
                fd = os.open(dest, flags, 0o666)
            except FileExistsError:
                raise BafenetError(f"{dest}: exists already; not extracted") from None
            with os.fdopen(fd, "wb") as out, open_member(member.source) as data:
                shutil.copyfileobj(data, out, CHUNK)
    except (OSError, NotImplementedError) as exc:  # a full disk, an unsupported compression method
        raise BafenetError(f"{archive}: cannot extract ({exc})") from exc


MAX_LINK_BYTES = 4096  # the longest symbolic link target read from a zip


def _zip_members(zf: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in zf.infolist():
        if info.flag_bits & 0x1:
            raise _Unsafe("encrypted", info.filename)
        if info.is_dir():
            members.append(_Member(info.filename, "dir", None, info))
        elif stat.S_ISLNK(info.external_attr >> 16):
            with zf.open(info) as f:
                target = f.read(MAX_LINK_BYTES + 1)
            if len(target) > MAX_LINK_BYTES:
                raise _Unsafe("link target too long", info.filename)
            members.append(_Member(info.filename, "symlink", target.decode("utf-8", "replace"), info))
        else:
            members.append(_Member(info.filename, "file", None, info))
    return members


def _tar_members(tf: tarfile.TarFile) -> list[_Member]:
    members = []
    for info in tf.getmembers():
        if info.isdir():
            members.append(_Member(info.name, "dir", None, info))
        elif info.isreg():
            members.append(_Member(info.name, "file", None, info))
        elif info.issym() or info.islnk():
            kind = "symlink" if info.issym() else "hardlink"
            members.append(_Member(info.name, kind, info.linkname, info))
        else:
            raise _Unsafe("not a regular file, folder or link", info.name)
    return members


def safe_extract(archive: Path, into: Path) -> None:
    """Extract a zip or tar ``archive`` into the existing folder ``into``, refusing escapes.

    The whole archive is checked against a simulated tree before anything is written (see
    :func:`_plan`); links are written as copies of the regular file they point to, so the
    extracted tree holds no links. Files are created new with default permissions (the
    archive's modes, owners and times are not applied).

    Raises:
        BafenetError: naming the archive and the first refused member ("nothing extracted"),
            for an unknown format, or for a damaged member found while writing.
    """
    archive = Path(archive)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _write_plan(archive, _plan(_zip_members(zf)), into, zf.open)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                _write_plan(archive, _plan(_tar_members(tf)), into, tf.extractfile)
        else:
            raise BafenetError(f"{archive}: not a zip or tar archive")
    except _Unsafe as exc:
        reason, name = exc.args
        raise BafenetError(f"{archive}: unsafe member {name!r} ({reason}); nothing extracted") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
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
