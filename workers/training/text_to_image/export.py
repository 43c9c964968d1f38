"""Writes the trained components as a diffusers ``StableDiffusionPipeline`` folder.

<out>/model_index.json   which class loads each folder (no safety checker, no feature extractor)
<out>/vae/               AutoencoderKL, its scaling_factor = 1/std of the training latents
<out>/text_encoder/      CLIPTextModel (EMA weights)
<out>/tokenizer/         CLIPTokenizer: vocab.json + merges.txt generated for the captions
<out>/unet/              UNet2DConditionModel (EMA weights)
<out>/scheduler/         DDIMScheduler over SD 1.5's noise schedule
<out>/training.json      the run's record: configs, steps, wall time, loss history, parameter counts
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from diffusers import AutoencoderKL, StableDiffusionPipeline
from transformers import CLIPTokenizer

from workers.training.data import DATA_DESCRIPTION
from workers.training.text_to_image.components import parameter_count, sampling_scheduler
from workers.training.text_to_image.train import DiffusionConfig, DiffusionState, Models

TRAINING_RECORD = "training.json"


def export_pipeline(
    run_dir: Path,
    out_dir: Path,
    models: Models,
    state: DiffusionState,
    cfg: DiffusionConfig,
    tokenizer: CLIPTokenizer,
    vae_record: dict[str, Any],
) -> StableDiffusionPipeline:
    """Saves every component with ``save_pretrained`` through the pipeline itself, so that
    ``StableDiffusionPipeline.from_pretrained(out_dir, safety_checker=None)`` loads it back."""
    vae = AutoencoderKL.from_pretrained(run_dir / "vae")
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=models.text_encoder_ema.shadow,
        tokenizer=tokenizer,
        unet=models.unet_ema.shadow,
        scheduler=sampling_scheduler(cfg.prediction_type),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    # transformers 5 saves a tokenizer as tokenizer.json only; ship the BPE files it was built from
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(run_dir / "tokenizer" / name, out_dir / "tokenizer" / name)
    record = {
        "data": DATA_DESCRIPTION + ", padded to 32×32 with background",
        "parameters": {
            "vae": parameter_count(vae),
            "text_encoder": parameter_count(models.text_encoder_ema.shadow),
            "unet": parameter_count(models.unet_ema.shadow),
        },
        "vae": vae_record,
        "diffusion": {
            "config": asdict(cfg),
            "steps": state.step,
            "wall_seconds": round(state.wall_seconds, 1),
            "final_loss_ema": round(state.loss_ema, 5),
            "loss_history": state.loss_history,
        },
    }
    (out_dir / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return pipeline
