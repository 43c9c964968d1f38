"""Worker settings refuse combinations that would break leases or blocking reads, and models
that are not in the registry."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.conftest import ROOT
from workers.models.registry import BUNDLED_REGISTRY
from workers.settings import WorkerSettings


def test_a_lease_must_outlast_the_heartbeat_that_refreshes_it() -> None:
    with pytest.raises(ValidationError, match="shorter than lease_s"):
        WorkerSettings(lease_s=1.0, heartbeat_interval_s=2.0)


def test_a_blocking_read_must_end_before_the_socket_timeout() -> None:
    with pytest.raises(ValidationError, match="must be shorter than redis_timeout_s"):
        WorkerSettings(block_ms=5000, redis_timeout_s=2.0)
    assert WorkerSettings(block_ms=500, redis_timeout_s=1.0).block_ms == 500


def test_models_come_as_a_comma_separated_or_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().models == ["mnist-unet"]
    monkeypatch.setenv("DENOISE_MODELS", " mnist-unet , mnist-gauss ")
    assert WorkerSettings().models == ["mnist-unet", "mnist-gauss"]
    monkeypatch.setenv("DENOISE_MODELS", '["mnist-gauss"]')
    assert WorkerSettings().models == ["mnist-gauss"]
    for empty in ("", " , "):
        monkeypatch.setenv("DENOISE_MODELS", empty)
        with pytest.raises(ValidationError, match="at least 1 item"):
            WorkerSettings()
    monkeypatch.setenv("DENOISE_MODELS", "mnist-gauss,mnist-gauss")
    with pytest.raises(ValidationError, match="lists a model twice"):
        WorkerSettings()


def test_an_unknown_model_fails_at_start_listing_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DENOISE_MODELS", "mnist-unet,mnist-nope")
    with pytest.raises(ValidationError, match="unknown model 'mnist-nope'") as raised:
        WorkerSettings()
    assert "known: mnist-gauss, mnist-text, mnist-unet, " in str(raised.value)


def test_a_registry_file_adds_servable_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    extra = tmp_path / "models.toml"
    extra.write_text(f'[models.my-gauss]\npath = "{BUNDLED_REGISTRY.parent / "mnist-gauss"}"\n')
    monkeypatch.setenv("DENOISE_MODELS", "mnist-unet,my-gauss")
    with pytest.raises(ValidationError, match="unknown model 'my-gauss'"):
        WorkerSettings()
    monkeypatch.setenv("DENOISE_REGISTRY_FILE", str(extra))
    assert WorkerSettings().models == ["mnist-unet", "my-gauss"]
    monkeypatch.setenv("DENOISE_REGISTRY_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(ValidationError, match=r"absent\.toml"):
        WorkerSettings()


def test_the_worker_process_refuses_an_unknown_model_before_loading_anything() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DENOISE_")}
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-m", "workers"],
        env={**env, "DENOISE_MODELS": "mnist-unet,no-such-model", "DENOISE_METRICS_PORT": "0"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode != 0
    assert "unknown model 'no-such-model'" in process.stderr and "known: mnist-gauss" in process.stderr
    assert "loaded model" not in process.stderr
    print(f"\nunknown model refused in {time.monotonic() - started:.1f} s")
