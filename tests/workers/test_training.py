"""The training command end to end on a tiny budget: train, checkpoint, resume, export, load, sample."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import resolved_config
from workers.models.loading import load_model
from workers.models.registry import RegistryEntry
from workers.sampling.engine import generate
from workers.training.export import export_model
from workers.training.train import TrainConfig, train


def test_train_resume_export_and_serve(tmp_path: Path) -> None:
    cfg = TrainConfig(
        run_dir=str(tmp_path / "run"), steps=2, batch_size=4, checkpoint_every=1, warmup_steps=1
    )
    _ema, state = train(cfg)
    assert state.step == 2 and (tmp_path / "run" / "checkpoint.pt").exists()

    resumed_cfg = TrainConfig(**{**cfg.__dict__, "steps": 3})
    ema, state = train(resumed_cfg)
    assert state.step == 3  # resumed from the checkpoint rather than starting over

    out = tmp_path / "model"
    export_model(ema, resumed_cfg, state, out, default_guidance_scale=1.5)
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").exists()
    model = load_model(RegistryEntry("tiny", out, ""), torch.device("cpu"), torch.float32)
    assert model.info.default_guidance_scale == 1.5 and model.info.prediction_type == "v_prediction"
    config = resolved_config(model="tiny", class_label=3, guidance_scale=1.5)
    assert torch.isfinite(generate(model, config)[0].latent).all()


def test_training_command_has_help() -> None:
    out = subprocess.run([sys.executable, "-m", "workers.training", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--label-dropout" in out.stdout and "--loss" in out.stdout
