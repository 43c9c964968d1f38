"""Loads a model directory for serving: a UNet written by ``workers.training`` (diffusers layout)
or the closed-form Gaussian mixture written by ``workers.training.fit_gaussian``.

Both directories hold ``denoise_model.json`` and ``scheduler/``; its ``architecture`` key says
which network follows (``unet2d``, the default when absent, or ``gaussian_mixture``). Either is
served as ``LoadedModel.network``, a ``torch.nn.Module`` called like ``UNet2DModel``:
``network(x_t, t, class_labels=...).sample``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DModel

from protocol.schema import ModelInfo
from workers.models.gaussian_mixture import GaussianMixture, GaussianMixtureDenoiser, load_gaussian_mixture
from workers.models.metadata import Architecture, ModelMetadata
from workers.models.registry import RegistryEntry

log = logging.getLogger("workers.models")


@dataclass
class LoadedModel:
    info: ModelInfo
    network: torch.nn.Module  # UNet2DModel, or GaussianMixtureDenoiser (``network.mixture``)
    scheduler_config: dict[str, Any]
    null_class: int | None
    device: torch.device
    dtype: torch.dtype
    load_seconds: float

    @property
    def mixture(self) -> GaussianMixture:
        """The closed-form model behind ``network`` (``architecture: gaussian_mixture``), typed."""
        if not isinstance(self.network, GaussianMixtureDenoiser):
            raise TypeError(
                f"model {self.info.name!r} is a {type(self.network).__name__}, not a Gaussian mixture"
            )
        return self.network.mixture


def read_model_info(
    name: str, path: Path, description: str = ""
) -> tuple[ModelInfo, dict[str, Any], int | None]:
    """ModelInfo, the training scheduler config and the null class, without loading weights."""
    metadata = ModelMetadata.read(path)
    scheduler_config = dict(DDPMScheduler.load_config(path / "scheduler"))
    info = ModelInfo(
        name=name,
        conditioning=metadata.conditioning,
        num_classes=metadata.num_classes,
        class_names=metadata.class_names,
        image_size=metadata.image_size,
        channels=metadata.channels,
        **metadata.request_defaults(),
        training_noise_schedule=str(scheduler_config.get("beta_schedule", "unknown")),
        num_train_timesteps=int(scheduler_config["num_train_timesteps"]),
        prediction_type=str(scheduler_config.get("prediction_type", "epsilon")),
        description=description,
    )
    return info, scheduler_config, metadata.null_class


def read_architecture(path: Path) -> Architecture:
    """The network a model directory holds (``unet2d`` when ``denoise_model.json`` names none)."""
    return ModelMetadata.read(path).network


def _load_unet(
    path: Path, device: torch.device, dtype: torch.dtype, channels_last: bool, compile_unet: bool
) -> torch.nn.Module:
    unet = UNet2DModel.from_pretrained(
        path / "unet", use_safetensors=True, low_cpu_mem_usage=False, torch_dtype=dtype
    )
    unet = unet.to(device=device).eval().requires_grad_(False)
    if channels_last and device.type == "cuda":
        unet = unet.to(memory_format=torch.channels_last)
    if compile_unet:
        unet = torch.compile(unet, dynamic=True)
    return unet  # type: ignore[no-any-return]


@torch.inference_mode()
def _warm_up(
    network: torch.nn.Module,
    info: ModelInfo,
    null_class: int | None,
    device: torch.device,
    dtype: torch.dtype,
) -> None:
    """Forwards of 1 and 2 rows before the worker reports ready (compilation, kernel selection,
    allocator pools), so the first request does not pay for them."""
    for rows in (1, 2):
        sample = torch.zeros(
            rows, info.channels, info.image_size, info.image_size, device=device, dtype=dtype
        )
        timesteps = torch.full((rows,), info.num_train_timesteps - 1, device=device, dtype=torch.float32)
        labels = None if null_class is None else torch.full((rows,), null_class, device=device)
        network(sample, timesteps, class_labels=labels)


def resolve_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """The device (``auto``: CUDA when present) and dtype to run on; half precision only on CUDA."""
    resolved = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    torch_dtype = getattr(torch, dtype)
    if resolved.type == "cpu" and torch_dtype != torch.float32:
        log.info("dtype %s requested on CPU: using float32", dtype)
        torch_dtype = torch.float32
    return resolved, torch_dtype


def load_model(
    entry: RegistryEntry,
    device: torch.device,
    dtype: torch.dtype,
    channels_last: bool = False,
    compile_unet: bool = False,
) -> LoadedModel:
    """Loads weights and metadata. ``channels_last`` (CUDA only: it slows CPU convs) and
    ``compile_unet`` apply to UNets only."""
    started = time.perf_counter()
    folder = entry.folder()
    info, scheduler_config, null_class = read_model_info(entry.name, folder, entry.description)
    if info.prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"model {entry.name!r}: prediction_type {info.prediction_type!r} is not served")
    network: torch.nn.Module
    if read_architecture(folder) == "gaussian_mixture":
        # the closed form runs in float64 whatever ``dtype`` (inputs and outputs are cast), and
        # has no convolutions to re-layout or compile
        mixture = load_gaussian_mixture(folder)
        network = GaussianMixtureDenoiser(mixture, info.prediction_type).to(device).eval()
    else:
        network = _load_unet(folder, device, dtype, channels_last, compile_unet)
    _warm_up(network, info, null_class, device, dtype)
    return LoadedModel(
        info=info,
        network=network,
        scheduler_config=scheduler_config,
        null_class=null_class,
        device=device,
        dtype=dtype,
        load_seconds=time.perf_counter() - started,
    )
