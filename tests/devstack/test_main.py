"""``make run`` serves every model of the registry unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.__main__ import worker_models
from workers.models.registry import BUNDLED_REGISTRY, read_registry_file
from workers.settings import WorkerSettings


def test_every_bundled_model_by_default_and_the_settings_accept_them(monkeypatch: pytest.MonkeyPatch) -> None:
    env = worker_models({})
    assert env == {"DENOISE_MODELS": ",".join(read_registry_file(BUNDLED_REGISTRY))}
    assert env["DENOISE_MODELS"].startswith("mnist-unet,mnist-gauss,")
    monkeypatch.setenv("DENOISE_MODELS", env["DENOISE_MODELS"])
    assert len(WorkerSettings().models) == len(read_registry_file(BUNDLED_REGISTRY))


def test_the_environment_wins_and_an_operator_file_adds_its_models(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert worker_models({"DENOISE_MODELS": "mnist-gauss"}) == {"DENOISE_MODELS": "mnist-gauss"}
    (tmp_path / "ops.toml").write_text(f'[models.mine]\npath = "{BUNDLED_REGISTRY.parent / "mnist-gauss"}"\n')
    monkeypatch.chdir(tmp_path)
    env = worker_models({"DENOISE_REGISTRY_FILE": "ops.toml"})
    assert env["DENOISE_REGISTRY_FILE"] == str(tmp_path / "ops.toml")  # the worker runs elsewhere
    assert env["DENOISE_MODELS"].split(",")[-1] == "mine"
