"""SOURCE arguments of ``bafenet predict``: files, folders, globs, ``.txt`` lists, videos, names."""

from __future__ import annotations

from pathlib import Path

import pytest

from bafenet.engine.sources import Input, Problem, expand_sources


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """a/{1.png, 2.jpg, notes.xml, clip.mp4, sub/3.png}, b/1.png."""
    _touch(
        tmp_path / "a" / "1.png",
        tmp_path / "a" / "2.jpg",
        tmp_path / "a" / "notes.xml",
        tmp_path / "a" / "clip.mp4",
        tmp_path / "a" / "sub" / "3.png",
        tmp_path / "b" / "1.png",
    )
    return tmp_path


def _names(inputs: list[Input]) -> list[str]:
    return [i.name for i in inputs]


def test_folder_keeps_images_and_videos_and_recursive_goes_down(tree: Path) -> None:
    inputs, problems = expand_sources([tree / "a"])
    assert problems == []
    assert _names(inputs) == ["1", "2", "clip"]
    assert [i.is_video for i in inputs] == [False, False, True]
    inputs, _ = expand_sources([tree / "a"], recursive=True)
    assert _names(inputs) == ["1", "2", "clip", "sub/3"]
    assert inputs[-1].path == tree / "a" / "sub" / "3.png"


def test_same_stem_from_two_folders_gets_distinct_names_and_a_file_is_kept_once(tree: Path) -> None:
    inputs, problems = expand_sources([tree / "a", tree / "b", tree / "a" / "1.png"])
    assert problems == []
    assert [(i.path, i.name) for i in inputs] == [
        (tree / "a" / "1.png", "1"),
        (tree / "a" / "2.jpg", "2"),
        (tree / "a" / "clip.mp4", "clip"),
        (tree / "b" / "1.png", "1-2"),
    ]


def test_globs_match_media_files_named_relative_to_the_pattern_root(tree: Path) -> None:
    inputs, problems = expand_sources([f"{tree}/*/*.png"])
    assert problems == [] and _names(inputs) == ["a/1", "b/1"]
    inputs, _ = expand_sources([f"{tree}/a/**/*"])
    assert _names(inputs) == ["1", "2", "clip", "sub/3"]  # notes.xml and the folder left out
    inputs, problems = expand_sources([f"{tree}/a/*.bmp"])
    assert inputs == []
    assert problems == [Problem(tree / "a" / "*.bmp", "no image or video files match this pattern")]


def test_txt_list_lines_are_relative_to_the_list(tree: Path) -> None:
    listing = tree / "lists" / "frames.txt"
    listing.parent.mkdir()
    listing.write_text("# my frames\n\n../a/1.png\n  ../b  \n../a/*.mp4\n../missing.png\n")
    inputs, problems = expand_sources([listing])
    assert [i.path for i in inputs] == [
        tree / "lists" / "../a/1.png",
        tree / "lists" / "../b/1.png",
        tree / "lists" / "../a/clip.mp4",
    ]
    assert _names(inputs) == ["1", "1-2", "clip"]
    assert problems == [Problem(tree / "lists" / "../missing.png", "no such file or folder")]


def test_each_missing_source_is_one_problem_and_the_rest_is_kept(tree: Path) -> None:
    empty = tree / "empty"
    empty.mkdir()
    (tree / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    (tree / "blank.txt").write_text("# nothing\n\n")
    inputs, problems = expand_sources(
        [tree / "nope.png", empty, tree / "a" / "2.jpg", tree / "bad.txt", tree / "blank.txt"]
    )
    assert [i.path for i in inputs] == [tree / "a" / "2.jpg"]
    assert [str(p) for p in problems[:2]] == [
        f"{tree / 'nope.png'}: no such file or folder",
        f"{empty}: no image or video files in this folder",
    ]
    assert str(problems[2]).startswith(f"{tree / 'bad.txt'}: cannot read this list")
    assert str(problems[3]) == f"{tree / 'blank.txt'}: the list names no file"
    assert len(problems) == 4


def test_a_file_named_directly_is_kept_whatever_its_suffix(tree: Path) -> None:
    inputs, problems = expand_sources([tree / "a" / "notes.xml"])
    assert problems == [] and inputs == [Input(tree / "a" / "notes.xml", "notes")]
