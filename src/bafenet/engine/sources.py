"""The inputs of ``bafenet predict``: SOURCE arguments expanded into image and video files.

A SOURCE is one of:

* an image or video file (any name; a video is recognised by its suffix, :data:`VIDEO_SUFFIXES`);
* a folder: its image and video files, sorted, with ``recursive=True`` those of its sub-folders too;
* a glob pattern, quoted so that the shell leaves it alone (``"frames/*.png"``,
  ``"flights/**/*.mp4"``: ``**`` crosses folders), keeping image and video files;
* a ``.txt`` list: one file, folder or pattern per line, relative to the list's folder; blank
  lines and lines starting with ``#`` are ignored.

Every input gets an output name: its path relative to the folder (or pattern base) it was found
in, without suffix, with ``/`` between folders; a file named directly keeps its stem. A name already
taken by another input gets ``-2``, ``-3``, ..., so two ``frame.png`` from two folders never write
the same output. A file reached twice is kept once. A source that names nothing is a
:class:`Problem` (one line), not an error: the other sources are still used.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

from bafenet.data.densesirst import IMAGE_SUFFIXES

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"}
)
LIST_SUFFIX = ".txt"
_GLOB_MAGIC = re.compile(r"[*?[]")


@dataclass(frozen=True)
class Input:
    """One image or video file to predict on.

    ``path`` as the user wrote it (joined to a list's folder or a folder source);
    ``name``: the unique output name (``"a/frame"``, no suffix).
    """

    path: Path
    name: str

    @property
    def is_video(self) -> bool:
        return is_video(self.path)


@dataclass(frozen=True)
class Problem:
    """A source or input that could not be used: ``path`` and the problem, in one line."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def is_video(path: Path) -> bool:
    """Whether ``path`` names a video file (by its suffix)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def _is_media(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)


def expand_sources(sources: list[str | Path], recursive: bool = False) -> tuple[list[Input], list[Problem]]:
    """Image and video inputs named by ``sources`` (in order), and the sources that name none."""
    found: list[tuple[Path, str]] = []  # (path, output name before de-duplication)
    problems: list[Problem] = []
    for source in sources:
        _expand(str(source), Path("."), recursive, found, problems, in_list=False)
    return _unique_names(found), problems


def _expand(
    source: str,
    base: Path,
    recursive: bool,
    found: list[tuple[Path, str]],
    problems: list[Problem],
    in_list: bool,
) -> None:
    """Append the inputs that ``source`` (relative to ``base``) names to ``found``, else a problem."""
    path = base / source
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        files = sorted(p for p in path.glob(pattern) if _is_media(p))
        found.extend((p, _stem_path(p.relative_to(path))) for p in files)
        if not files:
            problems.append(Problem(path, "no image or video files in this folder"))
    elif path.is_file() and path.suffix.lower() == LIST_SUFFIX and not in_list:
        _expand_list(path, recursive, found, problems)
    elif path.is_file():
        found.append((path, path.stem))
    elif _GLOB_MAGIC.search(source):
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        files = [p for p in matches if _is_media(p)]
        root = _pattern_root(path)
        found.extend((p, _stem_path(p.relative_to(root))) for p in files)
        if not files:
            problems.append(Problem(path, "no image or video files match this pattern"))
    else:
        problems.append(Problem(path, "no such file or folder"))


def _expand_list(path: Path, recursive: bool, found: list[tuple[Path, str]], problems: list[Problem]) -> None:
    """The entries of a ``.txt`` list, one per line, relative to the list's folder."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(path, f"cannot read this list ({getattr(exc, 'strerror', None) or exc})"))
        return
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        problems.append(Problem(path, "the list names no file"))
    for entry in entries:
        _expand(entry, path.parent, recursive, found, problems, in_list=True)


def _pattern_root(pattern: Path) -> Path:
    """The leading folders of a glob pattern before its first wildcard part."""
    parts = []
    for part in pattern.parts:
        if _GLOB_MAGIC.search(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _stem_path(relative: Path) -> str:
    """``a/b/frame.png`` -> ``"a/b/frame"``."""
    return relative.with_suffix("").as_posix()


def _unique_names(found: list[tuple[Path, str]]) -> list[Input]:
    """One input per file (the first time it is reached), each with a name no other input has."""
    inputs: list[Input] = []
    seen_files: set[Path] = set()
    taken: set[str] = set()
    for path, name in found:
        key = path.resolve()
        if key in seen_files:
            continue
        seen_files.add(key)
        unique, n = name, 2
        while unique.casefold() in taken:
            unique, n = f"{name}-{n}", n + 1
        taken.add(unique.casefold())
        inputs.append(Input(path, unique))
    return inputs
