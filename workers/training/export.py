"""Writes a trained model in the layout the worker loads (diffusers ``save_pretrained``).

<out>/unet/                 config.json + diffusion_pytorch_model.safetensors (EMA weights)
<out>/scheduler/            scheduler_config.json: the training noise schedule
<out>/denoise_model.json    what the service needs to know: conditioning, classes, defaults
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from workers.models.architecture import build_digit_unet
from workers.training.data import (
    DATA_DESCRIPTION,
    HOLDOUT_PER_CLASS,
    HOLDOUT_RULE,
    IMAGE_SIZE,
    NUM_CLASSES,
    digit_model_metadata,
)
from workers.training.ema import EMA
from workers.training.train import TrainConfig, TrainState, noise_scheduler_for


def export_model(
    ema: EMA, cfg: TrainConfig, state: TrainState, out_dir: Path, default_guidance_scale: float
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    ema.shadow.save_pretrained(out_dir / "unet", safe_serialization=True)
    noise_scheduler_for(cfg).save_pretrained(out_dir / "scheduler")
    parameters = sum(p.numel() for p in ema.shadow.parameters())
    data: dict[str, object] = {"data": DATA_DESCRIPTION}
    if cfg.holdout:
        held_out = HOLDOUT_PER_CLASS * NUM_CLASSES
        data = {"data": f"{DATA_DESCRIPTION}, less {held_out} held out", "held_out": HOLDOUT_RULE}
    metadata = digit_model_metadata(
        default_guidance_scale,
        training={
            **data,
            "parameters": parameters,
            "steps": state.step,
            "wall_seconds": round(state.wall_seconds, 1),
            "final_loss_ema": round(state.loss_ema, 5),
            "loss_history": state.loss_history,
            "config": asdict(cfg),
        },
    )
    metadata.write(out_dir)


def export_checkpoint(run_dir: Path, out_dir: Path, default_guidance_scale: float) -> None:
    """Exports the EMA weights of the latest checkpoint in ``run_dir`` (training may go on)."""
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=False, map_location="cpu")
    cfg = TrainConfig(**ckpt["config"])
    state = TrainState.from_checkpoint(ckpt["state"])
    ema = EMA(build_digit_unet(NUM_CLASSES, IMAGE_SIZE), cfg.ema_decay)
    ema.load_state_dict(ckpt["ema"])
    export_model(ema, cfg, state, out_dir, default_guidance_scale)
