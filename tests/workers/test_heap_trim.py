"""The worker's heap trim: interval, the real glibc call, and what it hands back to the OS."""

from __future__ import annotations

import ctypes
import platform

import pytest

from workers.heap_trim import HeapTrim, glibc_malloc_trim, resident_bytes


def test_it_trims_at_most_once_per_interval() -> None:
    calls: list[int] = []
    trim = HeapTrim(10.0, trim=lambda pad: calls.append(pad) or 1)
    start = trim._last
    assert trim.maybe_trim(start + 5) is None
    assert trim.maybe_trim(start + 10) is not None
    assert trim.maybe_trim(start + 19) is None
    assert trim.maybe_trim(start + 20.5) is not None
    assert calls == [0, 0]


def test_an_interval_of_zero_never_trims() -> None:
    calls: list[int] = []
    trim = HeapTrim(0.0, trim=lambda pad: calls.append(pad) or 1)
    assert not trim.enabled
    assert trim.maybe_trim(trim._last + 1e9) is None
    assert calls == []


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_trim_hands_freed_heap_pages_back() -> None:
    """Many mid-sized blocks (below the mmap threshold, so in the heap) are freed except one at
    the top, which pins the heap's end: the freed pages stay resident until malloc_trim(0)."""
    assert glibc_malloc_trim() is not None
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 * 1024) for _ in range(3000)]  # ~190 MB
    for block in blocks:
        ctypes.memset(block, 1, 64 * 1024)  # touch every page: resident
    pin = libc.malloc(64 * 1024)
    ctypes.memset(pin, 1, 64 * 1024)
    for block in blocks:
        libc.free(block)
    try:
        before = resident_bytes()
        assert before is not None
        result = HeapTrim(1.0).trim()
        assert result is not None
        assert result.released_bytes > 100 * 2**20, result
        assert resident_bytes() < before - 100 * 2**20  # type: ignore[operator]
    finally:
        libc.free(pin)
