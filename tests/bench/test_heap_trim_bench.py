"""bench.heap_trim runs its variants in child processes and reports a row per pass."""

from __future__ import annotations

import platform

import pytest

from bench.heap_trim import heap_mb, run_variant

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallinfo2 is glibc's")


def test_heap_figures_are_glibc_s() -> None:
    in_use, free = heap_mb()
    assert in_use > 1 and free >= 0


def test_a_variant_reports_each_pass() -> None:
    rows = run_variant("trim-2s", passes=2, max_rows=2)
    assert [row["pass"] for row in rows] == [0, 1]
    for row in rows:
        assert row["rss_mb"] > 100 and row["heap_in_use_mb"] > 10 and row["seconds"] > 0
