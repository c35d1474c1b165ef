"""Video files with PyAV (FFmpeg): grey frames in, annotated RGB frames out.

Reading: :class:`VideoReader` decodes the first video stream frame by frame into (H, W) uint8
grey levels (the luma of colour video), each with its index in the file and its time in seconds.
Every problem (not a video, no video stream, a frame that does not decode, no frame at all,
frames above the image readers' pixel limit) is a :class:`DataError` naming the file.

Writing: :class:`VideoWriter` encodes RGB frames to H.264 (``libx264``, in the PyAV wheels) or,
where that encoder is missing, MPEG-4 part 2, at the input's frame rate. The file appears under
its name only when complete (temporary file, then rename).

PyAV is imported on first use (:func:`pyav`): where it does not import, everything but video
still works, and a video gets one clear error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING

import numpy as np

from bafenet.data.imageio import MAX_PIXELS, megapixels
from bafenet.errors import BafenetError, DataError
from bafenet.fileio import atomic_path

if TYPE_CHECKING:
    import av


def pyav() -> ModuleType:
    """The ``av`` module (PyAV), or one clear error where it does not import."""
    try:
        import av
    except ImportError as exc:
        raise BafenetError(f"video needs PyAV, which does not import here ({exc}): pip install av") from None
    return av


def encoder() -> tuple[str, dict[str, str]]:
    """The encoder of :class:`VideoWriter` and its options: H.264 (``libx264``) with x264's
    ``veryfast`` preset (half the encoding time of its default, no larger files for overlays),
    else MPEG-4 part 2."""
    if "libx264" in pyav().codecs_available:
        return "libx264", {"preset": "veryfast"}
    return "mpeg4", {}


@dataclass
class VideoFrame:
    """One decoded frame: ``image`` (H, W) uint8 grey, ``index`` from 0, ``time`` in seconds."""

    image: np.ndarray
    index: int
    time: float


class VideoReader:
    """Frames of the first video stream of ``path``; use as a context manager, iterate once.

    ``fps`` (average frame rate), ``width``, ``height`` and ``num_frames`` (as the file states
    it, 0 when unknown) are known after opening.

    Raises:
        DataError: naming ``path``: not a readable video, no video stream, or too many pixels.
    """

    def __init__(self, path: str | Path, max_pixels: int = MAX_PIXELS) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(self.path, "file not found")
        av = pyav()
        try:
            self._container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise DataError(self.path, f"cannot read video ({_reason(exc)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise DataError(self.path, "holds no video stream")
        self._stream = self._container.streams.video[0]
        self.width = self._stream.codec_context.width
        self.height = self._stream.codec_context.height
        if self.width * self.height > max_pixels:
            self._container.close()
            raise DataError(
                self.path,
                f"video of {self.width}x{self.height} px ({megapixels(self.width * self.height)}) per frame "
                f"exceeds the limit of {megapixels(max_pixels)}",
            )
        self.rate = self._stream.average_rate or self._stream.guessed_rate or Fraction(25)
        self.num_frames = self._stream.frames

    @property
    def fps(self) -> float:
        return float(self.rate)

    def __iter__(self) -> Iterator[VideoFrame]:
        av = pyav()
        index = -1
        try:
            for index, frame in enumerate(self._container.decode(self._stream)):
                time = float(frame.time) if frame.time is not None else index / self.fps
                yield VideoFrame(frame.to_ndarray(format="gray"), index, time)
        except av.error.FFmpegError as exc:
            done = f"; frames 0-{index} were read" if index >= 0 else ""
            raise DataError(self.path, f"cannot decode frame {index + 1} ({_reason(exc)}){done}") from None
        if index < 0:
            raise DataError(self.path, "holds no frame that can be decoded")

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class VideoWriter:
    """Encode (H, W, 3) uint8 RGB frames of one size into ``path`` at ``rate`` frames per second.

    Use as a context manager: the file is renamed into place when the block ends without an
    exception, and removed otherwise; without any frame there is no file. Odd widths and
    heights are padded by one black pixel (the encoders need even sizes).
    """

    def __init__(self, path: str | Path, rate: Fraction | float) -> None:
        self.path = Path(path)
        self.rate = Fraction(rate).limit_denominator(100_000)
        self.num_frames = 0
        self._stack = contextlib.ExitStack()
        self._stream: av.VideoStream | None = None
        self._size: tuple[int, int] | None = None
        self._av: ModuleType | None = None  # PyAV, imported when the first frame opens the file

    def __enter__(self) -> VideoWriter:
        return self

    def write(self, rgb: np.ndarray) -> None:
        """Append one frame; every frame must have the size of the first."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if self._size is None:  # the first frame opens the file
            tmp = self._stack.enter_context(atomic_path(self.path))
            self._av = pyav()
            self._container = self._stack.enter_context(self._av.open(str(tmp), mode="w"))
            self._size = rgb.shape[:2]
            codec, options = encoder()
            self._stream = self._container.add_stream(codec, rate=self.rate, options=options)
            self._stream.height = rgb.shape[0] + rgb.shape[0] % 2
            self._stream.width = rgb.shape[1] + rgb.shape[1] % 2
            self._stream.pix_fmt = "yuv420p"
        elif rgb.shape[:2] != self._size:
            raise ValueError(f"frame of shape {rgb.shape[:2]} in a video of frames {self._size}")
        padded = np.pad(rgb, ((0, rgb.shape[0] % 2), (0, rgb.shape[1] % 2), (0, 0)))
        frame = self._av.VideoFrame.from_ndarray(padded, format="rgb24")
        self._container.mux(self._stream.encode(frame))
        self.num_frames += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None and self._stream is not None:
            self._container.mux(self._stream.encode(None))  # flush the encoder's delayed frames
        self._stack.__exit__(exc_type, exc, tb)


def _reason(exc: BaseException) -> str:
    """FFmpeg's own words for ``exc`` (without the file name it repeats)."""
    return getattr(exc, "strerror", None) or str(exc)
