"""Loads a registry entry's folder for serving, whatever its family.

- A **diffusers pipeline folder** (``model_index.json``; ``workers.models.pipeline_folder``): a
  pixel ``UNet2DModel``, a Stable-Diffusion-layout text-to-image model, or a DiT.
- A **project folder** (``denoise_model.json`` + ``scheduler/``): the digit UNets written by
  ``workers.training`` (``unet/``) and the closed-form Gaussian mixture written by
  ``workers.training.fit_gaussian``; the metadata file's ``architecture`` says which.

Request defaults come from the family (Stable Diffusion's guidance 7.5, DiT's 4.0), then the
folder's own metadata, then the registry entry, each overriding the one before. A folder's
``optimized_schedules.json`` (``workers.models.optimized_schedules``) is loaded with it and
advertised in ``ModelInfo.optimized_schedules``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DModel

from protocol.schema import ABSOLUTE_MAX_SIZE, ModelInfo
from workers.models.gaussian_mixture import GaussianMixtureDenoiser, load_gaussian_mixture
from workers.models.latent_class_model import LatentClassTransformerModel
from workers.models.latent_text_model import LatentTextModel
from workers.models.loaded_model import LoadedModel
from workers.models.metadata import Architecture, ModelMetadata
from workers.models.optimized_schedules import read_optimized_schedules, steps_by_sampler
from workers.models.pipeline_folder import PipelineFolder, is_pipeline_folder, read_pipeline_folder
from workers.models.pixel_model import PixelModel
from workers.models.prompt_encoder import PromptEncoder
from workers.models.registry import RegistryEntry
from workers.models.vae_codec import VaeCodec
from workers.sampling.schedules import is_stable_diffusion_schedule

log = logging.getLogger("workers.models")

SERVED_PREDICTIONS = ("epsilon", "v_prediction", "sample")
_FAMILY_GUIDANCE = {"latent_text_unet": 7.5, "latent_class_transformer": 4.0}


def read_model_info(
    name: str, path: Path, description: str = ""
) -> tuple[ModelInfo, dict[str, Any], int | None]:
    """A project folder's ModelInfo, training scheduler config and null class, without weights."""
    metadata = ModelMetadata.read(path)
    scheduler_config = dict(DDPMScheduler.load_config(path / "scheduler"))
    info = ModelInfo(
        name=name,
        family="gaussian_mixture" if metadata.network == "gaussian_mixture" else "pixel_unet",
        conditioning=metadata.conditioning,
        num_classes=metadata.num_classes,
        class_names=metadata.class_names,
        image_size=metadata.image_size,
        channels=metadata.channels,
        supports_guidance=metadata.null_class is not None,
        **metadata.request_defaults(),
        **_schedule_fields(scheduler_config),
        description=description,
    )
    return info, scheduler_config, metadata.null_class


def read_architecture(path: Path) -> Architecture:
    """The network a project folder holds (``unet2d`` when ``denoise_model.json`` names none)."""
    return ModelMetadata.read(path).network


def _schedule_fields(scheduler_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "training_noise_schedule": str(scheduler_config.get("beta_schedule", "unknown")),
        "num_train_timesteps": int(scheduler_config["num_train_timesteps"]),
        "prediction_type": str(scheduler_config.get("prediction_type", "epsilon")),
        "ays_schedule": is_stable_diffusion_schedule(scheduler_config),
    }


def _prepare(network: Any, device: torch.device, channels_last: bool, compile_net: bool) -> Any:
    network = network.to(device=device).eval().requires_grad_(False)
    if channels_last and device.type == "cuda":
        network = network.to(memory_format=torch.channels_last)
    if compile_net:
        network = torch.compile(network, dynamic=True)
    return network


def _square_sample_size(config: Any, what: str) -> int:
    size = config.sample_size
    if isinstance(size, list | tuple):
        if len(set(size)) != 1:
            raise ValueError(f"{what}: non-square sample_size {size} is not served")
        size = size[0]
    return int(size)


def _load_project_folder(
    entry: RegistryEntry, folder: Path, device: torch.device, dtype: torch.dtype, options: dict[str, bool]
) -> LoadedModel:
    info, scheduler_config, null_class = read_model_info(entry.name, folder, entry.description)
    network: torch.nn.Module
    if read_architecture(folder) == "gaussian_mixture":
        # the closed form runs in float64 whatever ``dtype`` (inputs and outputs are cast), and
        # has no convolutions to re-layout or compile
        mixture = load_gaussian_mixture(folder)
        network = GaussianMixtureDenoiser(mixture, info.prediction_type).to(device).eval()
    else:
        unet = UNet2DModel.from_pretrained(
            folder / "unet", use_safetensors=True, low_cpu_mem_usage=False, torch_dtype=dtype
        )
        network = _prepare(unet, device, options["channels_last"], options["compile"])
    return PixelModel(info, scheduler_config, network, null_class, device, dtype)


def _load_pipeline_folder(
    entry: RegistryEntry,
    pipeline: PipelineFolder,
    device: torch.device,
    dtype: torch.dtype,
    options: dict[str, bool],
) -> LoadedModel:
    scheduler_config = pipeline.scheduler_config()
    common: dict[str, Any] = {
        "name": entry.name,
        "family": pipeline.family,
        "description": entry.description,
        **_schedule_fields(scheduler_config),
    }
    if pipeline.family in _FAMILY_GUIDANCE:
        common["default_guidance_scale"] = _FAMILY_GUIDANCE[pipeline.family]
    if pipeline.family == "pixel_unet":
        unet = _prepare(pipeline.load("unet", dtype), device, options["channels_last"], options["compile"])
        num_classes = unet.config.num_class_embeds
        info = ModelInfo(
            **common,
            conditioning="class_label" if num_classes else "none",
            num_classes=num_classes,
            image_size=_square_sample_size(unet.config, entry.name),
            channels=int(unet.config.in_channels),
            supports_guidance=False,  # a folder names no null class
        )
        return PixelModel(info, scheduler_config, unet, None, device, dtype)
    codec = VaeCodec(pipeline.load("vae", dtype).to(device).eval().requires_grad_(False))
    if pipeline.family == "latent_text_unet":
        unet = _prepare(pipeline.load("unet", dtype), device, options["channels_last"], options["compile"])
        prompts = PromptEncoder(
            pipeline.load("tokenizer", dtype), pipeline.load("text_encoder", dtype), device
        )
        native = _square_sample_size(unet.config, entry.name) * codec.downsampling
        multiple = codec.downsampling * 2 ** (len(unet.config.down_block_types) - 1)
        info = ModelInfo(
            **common,
            conditioning="prompt",
            image_size=native,
            channels=codec.image_channels,
            size_multiple=multiple,
            min_size=multiple,
            max_size=min(2 * native, ABSOLUTE_MAX_SIZE),
            max_prompt_tokens=prompts.max_prompt_tokens,
        )
        return LatentTextModel(info, scheduler_config, unet, codec, prompts, device, dtype)
    transformer = _prepare(pipeline.load("transformer", dtype), device, False, options["compile"])
    null_class = int(transformer.config.num_embeds_ada_norm)
    info = ModelInfo(
        **common,
        conditioning="class_label",
        num_classes=null_class,
        image_size=_square_sample_size(transformer.config, entry.name) * codec.downsampling,
        channels=codec.image_channels,
    )
    return LatentClassTransformerModel(info, scheduler_config, transformer, codec, null_class, device, dtype)


def resolve_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """The device (``auto``: CUDA when present) and dtype to run on. float16 only on CUDA;
    bfloat16 on the CPU too, when asked (opt-in: it changes images; ``bench.forward_options``
    measures it)."""
    resolved = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    torch_dtype = getattr(torch, dtype)
    if resolved.type == "cpu" and torch_dtype == torch.float16:
        log.info("dtype %s requested on CPU: using float32", dtype)
        torch_dtype = torch.float32
    return resolved, torch_dtype


def load_model(
    entry: RegistryEntry,
    device: torch.device,
    dtype: torch.dtype,
    channels_last: bool = False,
    compile_unet: bool = False,
    max_rows: int = 2,
) -> LoadedModel:
    """Loads weights and metadata, then warms the model up. ``channels_last`` (CUDA only: it slows
    CPU convs) and ``compile_unet`` apply to the denoising network only. A compiled network is
    warmed up at every power of two up to ``max_rows`` and at ``max_rows``: inductor's dynamic
    graphs specialise batch 1 and recompile past size thresholds (16 for a small conv net here),
    and every compile must happen before the worker reports ready.

    Raises:
        ValueError: a folder this service cannot serve (the message says why).
    """
    started = time.perf_counter()
    folder = entry.folder()
    options = {"channels_last": channels_last, "compile": compile_unet}
    if is_pipeline_folder(folder):
        model = _load_pipeline_folder(
            entry, read_pipeline_folder(folder, entry.variant), device, dtype, options
        )
    else:
        model = _load_project_folder(entry, folder, device, dtype, options)
    model.optimized_schedules = read_optimized_schedules(folder, model.info.num_train_timesteps)
    advertised = {
        "optimized_schedules": steps_by_sampler(model.optimized_schedules),
        **entry.request_defaults(),
    }
    model.info = ModelInfo.model_validate({**model.info.model_dump(), **advertised})
    if model.info.prediction_type not in SERVED_PREDICTIONS:
        raise ValueError(
            f"model {entry.name!r}: prediction_type {model.info.prediction_type!r} is not served "
            f"(served: {', '.join(SERVED_PREDICTIONS)})"
        )
    model.warm_up(warm_up_batch_sizes(max_rows) if compile_unet else (1, 2))
    model.load_seconds = time.perf_counter() - started
    return model


def warm_up_batch_sizes(max_rows: int) -> list[int]:
    """1, 2, 4, … below ``max_rows``, then ``max_rows``: the batch sizes a compiled network is
    warmed up at."""
    sizes = [1]
    while sizes[-1] * 2 < max_rows:
        sizes.append(sizes[-1] * 2)
    return sorted({*sizes, max(1, max_rows)})
