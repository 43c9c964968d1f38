"""Worker settings refuse combinations that would break leases or blocking reads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workers.settings import WorkerSettings


def test_a_lease_must_outlast_the_heartbeat_that_refreshes_it() -> None:
    with pytest.raises(ValidationError, match="shorter than lease_s"):
        WorkerSettings(lease_s=1.0, heartbeat_interval_s=2.0)


def test_a_blocking_read_must_end_before_the_socket_timeout() -> None:
    with pytest.raises(ValidationError, match="must be shorter than redis_timeout_s"):
        WorkerSettings(block_ms=5000, redis_timeout_s=2.0)
    assert WorkerSettings(block_ms=500, redis_timeout_s=1.0).block_ms == 500
