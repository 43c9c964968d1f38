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


def test_the_held_out_split_is_fixed_balanced_and_recorded(tmp_path: Path) -> None:
    import json

    import numpy as np

    from workers.training.data import HOLDOUT_PER_CLASS, holdout_indices, load_mnist_digits, split_digits

    images, labels = load_mnist_digits()
    held = holdout_indices(labels)
    assert np.array_equal(held, holdout_indices(labels))  # the seed fixes it
    assert np.bincount(labels[held]).tolist() == [HOLDOUT_PER_CLASS] * 10
    (train_images, train_labels), (held_images, _) = split_digits(images, labels)
    assert np.array_equal(held_images, images[held])  # the training set is exactly the rest
    assert len(train_labels) == 4500
    assert len(train_images) == 4500 and len(held_images) == 500
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), steps=1, batch_size=2, warmup_steps=1, holdout=True)
    ema, state = train(cfg)
    export_model(ema, cfg, state, tmp_path / "model", default_guidance_scale=2.0)
    training = json.loads((tmp_path / "model" / "denoise_model.json").read_text())["training"]
    assert "held out" in training["data"] and "default_rng(15)" in training["held_out"]
    assert training["config"]["holdout"] is True
