"""Loads a model directory written by ``workers.training`` (diffusers layout) for serving."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DModel

from app.contract import ModelInfo
from workers.models.registry import RegistryEntry

MODEL_METADATA_FILE = "denoise_model.json"


@dataclass
class LoadedModel:
    info: ModelInfo
    unet: UNet2DModel
    scheduler_config: dict[str, Any]
    null_class: int | None
    device: torch.device
    dtype: torch.dtype
    load_seconds: float


def read_model_info(
    name: str, path: Path, description: str = ""
) -> tuple[ModelInfo, dict[str, Any], int | None]:
    """ModelInfo, the training scheduler config and the null class, without loading weights."""
    metadata = json.loads((path / MODEL_METADATA_FILE).read_text())
    scheduler_config = dict(DDPMScheduler.load_config(path / "scheduler"))
    info = ModelInfo(
        name=name,
        conditioning=metadata["conditioning"],
        num_classes=metadata.get("num_classes"),
        class_names=metadata.get("class_names"),
        image_size=int(metadata["image_size"]),
        channels=int(metadata["channels"]),
        default_guidance_scale=float(metadata.get("default_guidance_scale", 1.0)),
        default_steps=int(metadata.get("default_steps", 50)),
        default_sampler=metadata.get("default_sampler", "ddim"),
        training_noise_schedule=str(scheduler_config.get("beta_schedule", "unknown")),
        num_train_timesteps=int(scheduler_config["num_train_timesteps"]),
        prediction_type=str(scheduler_config.get("prediction_type", "epsilon")),
        description=description,
    )
    return info, scheduler_config, metadata.get("null_class")


@torch.inference_mode()
def _warm_up(
    unet: torch.nn.Module, info: ModelInfo, null_class: int | None, device: torch.device, dtype: torch.dtype
) -> None:
    """Forwards of 1 and 2 rows before the worker reports ready (compilation, kernel selection,
    allocator pools), so the first request does not pay for them."""
    for rows in (1, 2):
        sample = torch.zeros(
            rows, info.channels, info.image_size, info.image_size, device=device, dtype=dtype
        )
        timesteps = torch.full((rows,), info.num_train_timesteps - 1, device=device, dtype=torch.float32)
        labels = None if null_class is None else torch.full((rows,), null_class, device=device)
        unet(sample, timesteps, class_labels=labels)


def load_model(
    entry: RegistryEntry,
    device: torch.device,
    dtype: torch.dtype,
    channels_last: bool = False,
    compile_unet: bool = False,
) -> LoadedModel:
    """Loads weights and metadata; ``channels_last`` applies on CUDA only (it slows CPU convs)."""
    started = time.perf_counter()
    info, scheduler_config, null_class = read_model_info(entry.name, entry.path, entry.description)
    if info.prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"model {entry.name!r}: prediction_type {info.prediction_type!r} is not served")
    unet = UNet2DModel.from_pretrained(
        entry.path / "unet", use_safetensors=True, low_cpu_mem_usage=False, torch_dtype=dtype
    )
    unet = unet.to(device=device).eval().requires_grad_(False)
    if channels_last and device.type == "cuda":
        unet = unet.to(memory_format=torch.channels_last)
    if compile_unet:
        unet = torch.compile(unet, dynamic=True)
    _warm_up(unet, info, null_class, device, dtype)
    return LoadedModel(
        info=info,
        unet=unet,
        scheduler_config=scheduler_config,
        null_class=null_class,
        device=device,
        dtype=dtype,
        load_seconds=time.perf_counter() - started,
    )
