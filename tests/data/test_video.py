"""Video files through PyAV: frames, indices and times in; annotated frames out, atomically."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bafenet.data.video import VideoReader, VideoWriter
from bafenet.errors import BafenetError, DataError


def _frames(n: int, height: int, width: int) -> list[np.ndarray]:
    """RGB frames with a bright 4x4 square moving right by 3 px per frame."""
    frames = []
    for i in range(n):
        rgb = np.full((height, width, 3), 30, np.uint8)
        rgb[10:14, 4 + 3 * i : 8 + 3 * i] = 250
        frames.append(rgb)
    return frames


def test_written_frames_read_back_with_index_time_and_size(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, 10) as writer:
        for rgb in _frames(6, 40, 64):
            writer.write(rgb)
    assert writer.num_frames == 6 and [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]
    with VideoReader(path) as video:
        assert (video.width, video.height, video.fps, video.num_frames) == (64, 40, 10.0, 6)
        frames = list(video)
    assert [f.index for f in frames] == list(range(6))
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in range(6)])
    for i, frame in enumerate(frames):
        assert frame.image.shape == (40, 64) and frame.image.dtype == np.uint8
        square = frame.image[10:14, 4 + 3 * i : 8 + 3 * i]
        assert square.min() > 200 and np.median(frame.image) < 50  # lossy, but the target is there


def test_odd_sizes_are_padded_to_even(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, 5) as writer:
        for rgb in _frames(2, 41, 63):
            writer.write(rgb)
    with VideoReader(path) as video:
        assert (video.height, video.width) == (42, 64)


def test_an_interrupted_or_empty_video_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "crash.mp4", 5) as writer:
        writer.write(_frames(1, 32, 32)[0])
        raise RuntimeError("crash while writing")
    with VideoWriter(tmp_path / "empty.mp4", 5):
        pass
    with pytest.raises(ValueError, match="frame of shape"), VideoWriter(tmp_path / "sizes.mp4", 5) as writer:
        writer.write(np.zeros((32, 32, 3), np.uint8))
        writer.write(np.zeros((32, 34, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_unreadable_videos_are_one_data_error_naming_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 50)
    with pytest.raises(DataError, match=r"garbage\.mp4: cannot read video \("):
        VideoReader(garbage)
    with pytest.raises(DataError, match=r"missing\.avi: file not found"):
        VideoReader(tmp_path / "missing.avi")
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, 5) as writer:
        writer.write(_frames(1, 40, 64)[0])
    with pytest.raises(DataError, match=r"clip\.mp4: video of 64x40 px \(2560 px\) per frame exceeds"):
        VideoReader(path, max_pixels=1000)


def test_without_pyav_a_video_is_one_clear_error_and_the_rest_works(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 64)
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(BafenetError, match=r"video needs PyAV, which does not import here .*pip install av"):
        VideoReader(video)
    out = tmp_path / "out.mp4"
    with pytest.raises(BafenetError, match="video needs PyAV"), VideoWriter(out, 25) as writer:
        writer.write(np.zeros((8, 8, 3), np.uint8))
    assert not out.exists()
