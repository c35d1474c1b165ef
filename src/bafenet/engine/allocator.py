"""The C allocator setting that keeps a long-running detector's memory flat.

Predicting frames of many sizes allocates and frees buffers of many sizes (a 2560 x 2048
feature map is tens of MiB). glibc serves a freed buffer's size from its heap once it has
returned one such mapping (its mmap threshold rises with every large free, up to 32 MiB), and
the heap fragments: resident memory climbed from 1.5 to 2.0 GiB over 1,000 API calls with no
Python object kept (``benchmarks/results/soak_predict.md``). A fixed threshold stops the rise:
buffers of at least :data:`MMAP_THRESHOLD_BYTES` get their own mappings, which are returned to
the system when freed, and smaller ones stay on the heap, where they are reused.

That cut the growth to a quarter; the rest is the heap's own fragmentation (pages freed inside
it stay resident). :class:`HeapTrim` hands those back with glibc's ``malloc_trim(0)`` whenever
the resident memory has risen :data:`TRIM_MARGIN_BYTES` above its level after the previous
trim. Measured over 1,000 API calls in one session (``benchmarks/results/soak_predict.md``):
with the margin, +1 MiB from after the warm-up to the end at 2.94 calls/s; a trim after every
frame, +9 MiB at 2.77 calls/s (each frame's buffers are faulted in again); a trim every 32
frames, 3.00 calls/s but memory swinging by about 230 MiB between trims.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

MMAP_THRESHOLD_BYTES = 4 << 20
"""Buffers from 4 MiB up get their own mappings (measured against 128 KiB and 16 MiB: README,
"Deployment speed and memory")."""

TRIM_MARGIN_BYTES = 32 << 20
"""Resident memory allowed above its level after the last trim before the next (:class:`HeapTrim`)."""

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
ENV_VARIABLE = "MALLOC_MMAP_THRESHOLD_"
_applied = False


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc on Linux (it has ``mallopt`` and ``malloc_trim``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` for this process (once); True when it is set.

    Nothing is changed (False) off Linux, with another C library, or when the user set
    ``MALLOC_MMAP_THRESHOLD_`` in the environment (their choice wins).
    """
    global _applied
    if _applied:
        return True
    libc = _glibc()
    if libc is None or ENV_VARIABLE in os.environ:
        return False
    _applied = libc.mallopt(_M_MMAP_THRESHOLD, nbytes) == 1
    return _applied


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the system (glibc ``malloc_trim(0)``); True when
    memory was released, False when there was none or the C library is not glibc."""
    libc = _glibc()
    return libc is not None and libc.malloc_trim(0) == 1


def resident_bytes() -> int | None:
    """This process's resident memory (``/proc/self/statm``), or None where there is none."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class HeapTrim:
    """Calls :func:`release_free_memory` when the resident memory has risen ``margin`` bytes
    above its level after the previous trim (checked by :meth:`check` after each prediction)."""

    def __init__(self, margin: int = TRIM_MARGIN_BYTES) -> None:
        self.margin = margin
        self.baseline: int | None = None  # resident bytes after the last trim
        self.trims = 0

    def check(self) -> None:
        """Trim when the resident memory is ``margin`` above the baseline (the first call sets it)."""
        resident = resident_bytes()
        if resident is None or not can_trim():
            return
        if self.baseline is not None and resident - self.baseline < self.margin:
            return
        if self.baseline is not None:
            release_free_memory()
            self.trims += 1
            resident = resident_bytes() or resident
        self.baseline = resident


def can_trim() -> bool:
    """Whether :func:`release_free_memory` can work here (glibc on Linux)."""
    return _glibc() is not None


def allocator_setting() -> str:
    """How this process's large buffers are allocated, in words (for benchmark records), with
    the :class:`HeapTrim` a :class:`bafenet.api.Detector` applies."""
    if ENV_VARIABLE in os.environ:
        setting = f"{ENV_VARIABLE}={os.environ[ENV_VARIABLE]} (environment)"
    elif _applied:
        setting = f"glibc mmap threshold fixed at {MMAP_THRESHOLD_BYTES >> 20} MiB (bafenet.engine.allocator)"
    else:
        setting = "the C library's default"
    margin = TRIM_MARGIN_BYTES >> 20
    trim = f"; free heap pages returned when resident memory rose {margin} MiB since the last trim"
    return setting + (trim if can_trim() else "")
