"""Giving freed heap back to the operating system, so the worker's resident memory stays flat.

A CPU forward allocates its activations with ``malloc``, at sizes set by the batch's rows and the
model. glibc raises its mmap threshold after the first large free, so from then on these buffers
live in the heap arenas; with many models and every batch size from 1 to ``max_batch`` the freed
holes rarely fit the next request exactly, and glibc keeps the free pages resident: the heap's
in-use bytes stay flat while resident memory rises until every shape has been seen.
``malloc_trim(0)`` hands the free pages inside the heap back (``MADV_DONTNEED``). Measured with
``python -m bench.heap_trim`` (README, "The worker's resident memory"): a trim every 10 s stops
the rise at ~3% of the time, one after every forward holds the floor at a 33% cost, and a fixed
mmap threshold instead costs 65%.

``HeapTrim`` calls it at most every ``interval_s`` from the worker's loop. Off glibc (musl,
macOS) it does nothing and says so once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("workers.heap_trim")

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """The process's resident set size (``/proc/self/statm``), or None where there is no /proc."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None


def glibc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


@dataclass(frozen=True)
class TrimResult:
    seconds: float
    released_bytes: int  # resident memory before minus after (0 when /proc is missing)


class HeapTrim:
    """Calls ``malloc_trim(0)`` at most every ``interval_s`` seconds (0: never).

    Args:
        interval_s: the least time between two trims.
        trim: the C function (glibc's by default; a test may pass its own).
    """

    def __init__(self, interval_s: float, trim: Callable[[int], int] | None = None) -> None:
        self.interval_s = interval_s
        self._trim = trim if trim is not None else glibc_malloc_trim()
        self._last = time.monotonic()
        if interval_s > 0 and self._trim is None:
            log.info("malloc_trim is not available (not glibc): the heap is not trimmed")

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0 and self._trim is not None

    def maybe_trim(self, now: float | None = None) -> TrimResult | None:
        """Trims if ``interval_s`` has passed since the last trim; returns what it did, or None."""
        now = time.monotonic() if now is None else now
        if not self.enabled or now - self._last < self.interval_s:
            return None
        self._last = now
        return self.trim()

    def trim(self) -> TrimResult | None:
        """Trims now (None where there is no ``malloc_trim``)."""
        if self._trim is None:
            return None
        before = resident_bytes()
        started = time.perf_counter()
        self._trim(0)
        seconds = time.perf_counter() - started
        after = resident_bytes()
        released = before - after if before is not None and after is not None else 0
        return TrimResult(seconds=seconds, released_bytes=max(0, released))
