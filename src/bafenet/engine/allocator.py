"""The C allocator setting that keeps a long-running detector's memory flat.

Predicting frames of many sizes allocates and frees buffers of many sizes (a 2560 x 2048
feature map is tens of MiB). glibc serves a freed buffer's size from its heap once it has
returned one such mapping (its mmap threshold rises with every large free, up to 32 MiB), and
the heap fragments: resident memory climbed from 1.5 to 2.0 GiB over 1,000 API calls with no
Python object kept (``benchmarks/results/soak_predict.md``). A fixed threshold stops the rise:
buffers of at least :data:`MMAP_THRESHOLD_BYTES` get their own mappings, which are returned to
the system when freed, and smaller ones stay on the heap, where they are reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD_BYTES = 4 << 20
"""Buffers from 4 MiB up get their own mappings (measured against 128 KiB and 16 MiB: README,
"Deployment speed and memory")."""

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
ENV_VARIABLE = "MALLOC_MMAP_THRESHOLD_"
_applied = False


def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` for this process (once); True when it is set.

    Nothing is changed (False) off Linux, with another C library, or when the user set
    ``MALLOC_MMAP_THRESHOLD_`` in the environment (their choice wins).
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or ENV_VARIABLE in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = mallopt(_M_MMAP_THRESHOLD, nbytes) == 1
    return _applied


def allocator_setting() -> str:
    """How this process's large buffers are allocated, in words (for benchmark records)."""
    if ENV_VARIABLE in os.environ:
        return f"{ENV_VARIABLE}={os.environ[ENV_VARIABLE]} (environment)"
    if _applied:
        return f"glibc mmap threshold fixed at {MMAP_THRESHOLD_BYTES >> 20} MiB (bafenet.engine.allocator)"
    return "the C library's default"
