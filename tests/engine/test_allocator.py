"""The fixed mmap threshold: large buffers keep their own mappings after a larger one is freed.

Each case runs in a fresh interpreter: the setting is process-wide and cannot be undone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux only")

# Frees a 20 MiB buffer (glibc then raises its dynamic threshold to 20 MiB), allocates 8 MiB
# and prints the setting's result and whether the 8 MiB buffer got its own mapping.
PROBE = textwrap.dedent(
    """
    import ctypes, ctypes.util
    from bafenet.engine.allocator import fix_mmap_threshold

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    applied = fix_mmap_threshold()
    libc.free(libc.malloc(20 << 20))
    before = libc.mallinfo2().hblks
    buffer = libc.malloc(8 << 20)
    print(applied, libc.mallinfo2().hblks - before)
    libc.free(buffer)
    """
)


def _probe(env: dict[str, str]) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


def _has_mallinfo2() -> bool:
    import ctypes
    import ctypes.util

    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
def test_fixed_threshold_keeps_large_buffers_mapped():
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    applied, new_mappings = _probe(env)
    assert applied == "True"
    assert new_mappings == 1  # without the fix glibc would serve it from the heap (next test)


@pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
def test_users_setting_wins_and_default_behaviour_is_the_problem():
    # The user's own (large) threshold is kept: not applied, and the 8 MiB buffer, below the
    # user's 64 MiB threshold, comes from the heap.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 << 20)}
    applied, new_mappings = _probe(env)
    assert (applied, new_mappings) == ("False", 0)


def test_detector_applies_it():
    weights = Path(__file__).parents[2] / "weights" / "fcos_hr_densesirst.pt"
    script = textwrap.dedent(
        f"""
        import bafenet, bafenet.engine.allocator as allocator
        assert not allocator._applied
        bafenet.Detector.load({str(weights)!r}, device="cpu")
        print(allocator._applied)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


# Fills 96 MiB of 64 KiB heap blocks, frees all but the last (the heap's top stays in use, so
# free() alone cannot shrink it), and prints the resident MiB before and after the trim.
TRIM_PROBE = textwrap.dedent(
    """
    import ctypes, ctypes.util
    from bafenet.engine.allocator import fix_mmap_threshold, release_free_memory

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    fix_mmap_threshold()
    blocks = [libc.malloc(64 << 10) for _ in range(1536)]
    for block in blocks:
        ctypes.memset(block, 1, 64 << 10)  # make the pages resident
    for block in blocks[:-1]:
        libc.free(block)
    before = rss_mib()
    released = release_free_memory()
    print(released, before - rss_mib())
    """
)


def test_release_free_memory_returns_freed_heap_pages():
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, check=True)
    released, dropped_mib = out.stdout.split()
    assert released == "True" and float(dropped_mib) > 64  # most of the 96 MiB freed inside the heap


def test_heap_trim_trims_when_resident_memory_rose_by_the_margin(monkeypatch: pytest.MonkeyPatch):
    from bafenet.engine import allocator

    resident = [100]
    calls = []

    def release() -> bool:
        calls.append(resident[0])
        resident[0] = 101  # the trim returns the freed pages
        return True

    monkeypatch.setattr(allocator, "resident_bytes", lambda: resident[0])
    monkeypatch.setattr(allocator, "release_free_memory", release)
    monkeypatch.setattr(allocator, "can_trim", lambda: True)
    trim = allocator.HeapTrim(margin=10)
    trim.check()  # the first call sets the baseline
    assert (calls, trim.baseline) == ([], 100)
    resident[0] = 109
    trim.check()
    assert calls == []  # below the margin
    resident[0] = 110
    trim.check()
    assert calls == [110] and trim.baseline == 101 and trim.trims == 1
    resident[0] = 105
    trim.check()
    assert calls == [110]
