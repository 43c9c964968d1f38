"""The soak (``bench.soak``) in a CI-sized run: one minute, one fault of each kind, nothing lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.soak import main


@pytest.mark.reliability
def test_a_one_minute_soak_with_a_worker_kill_and_a_redis_restart_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    assert main(["--minutes", "1", "--clients", "3", "--fault-interval-s", "25", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert len(report["faults"]) == 2
    assert report["lost"] == 0 and report["idempotent_retries_split"] == 0
    assert report["succeeded"] > 0
    assert report["redis_keys"]["per_job_keys_without_ttl"] == 0
    assert report["redis_keys"]["by_kind"]["job"]["keys"] > 0
