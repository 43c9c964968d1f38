"""img2img and denoising in the contract: what an init image must be for a model, and how
``strength`` resolves (pure; the API reads the image's header with Pillow, the worker decodes it).

A request with ``init_image`` starts the reverse process from that image instead of pure noise:

- a number in (0, 1] runs the last ``int(steps × strength)`` of the schedule's ``steps`` (the
  diffusers convention: SDEdit, Meng et al. 2022), after noising the image (its VAE latent for
  latent models) to the first of them with fresh noise from the seed's generator;
- ``"auto"`` denoises: the worker measures the image's noise σ̂ and starts at the timestep whose
  diffusion noise matches it, from the image itself (no fresh noise), on ``steps`` timesteps spaced
  by ``schedule`` over [0, t*]. It is defined in pixel space, so only pixel models take it, and
  only on schedules that can start at any timestep and samplers that take a timestep list
  (docs/denoise.md says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from protocol.field_errors import RequestFieldError
from protocol.schema import ModelInfo, ResolvedConfig, SamplerName, ScheduleName

INIT_IMAGE_FORMATS = ("PNG", "JPEG")
DEFAULT_STRENGTH = 0.8  # diffusers' StableDiffusionImg2ImgPipeline default
PIXEL_FAMILIES = ("pixel_unet", "gaussian_mixture")
# Schedules whose spacing rule, applied to the horizon [0, t*], visits t* first (``uniform``:
# trailing strides from t*; ``linspace``: t* to 0; ``cosine``: t_N = t*; ``karras``: σ_max = σ_t*).
# ``leading`` and ``quadratic`` stop short of the horizon's end, and the model's tables
# (``optimized``, ``ays``) were made for the whole range.
AUTO_SCHEDULES: tuple[ScheduleName, ...] = ("uniform", "linspace", "cosine", "karras")
# euler_a spaces its steps itself and takes no timestep list
AUTO_SAMPLERS: tuple[SamplerName, ...] = ("ddpm", "ddim", "dpmpp_2m", "unipc", "euler")
MODE_FOR_CHANNELS = {1: "L", 3: "RGB"}
# what a denoising request gets when it names no sampler or steps: one DDIM step from t* lands on
# the model's x̂₀ = E[x₀ | x_t*], the MMSE estimate, which had the best PSNR of every setting
# measured (docs/denoise.md); its schedule is the sampler's default, never the model's tables
AUTO_DEFAULT_SAMPLER: SamplerName = "ddim"
AUTO_DEFAULT_STEPS = 1


@dataclass(frozen=True)
class InitImageHeader:
    """What the API read of an init image (Pillow, decoded once whole to prove it decodes)."""

    format: str  # PNG or JPEG
    width: int
    height: int
    mode: str  # Pillow's mode: L (grey), RGB, RGBA, P, I;16, ...
    sha256: str
    nbytes: int


class InitImageError(RequestFieldError):
    """The init image cannot be used: a 422 naming ``init_image``, or a 413 when it is too large."""

    def __init__(self, message: str, status_code: Literal[413, 422] = 422) -> None:
        super().__init__("init_image", message)
        self.status_code = status_code


def check_init_image(header: InitImageHeader, model: ModelInfo, width: int, height: int) -> None:
    """Raises InitImageError unless the image has the request's size and the model's channels."""
    if header.format not in INIT_IMAGE_FORMATS:
        raise InitImageError(
            f"init_image must be {' or '.join(INIT_IMAGE_FORMATS)}; got {header.format or 'another format'}"
        )
    if (header.width, header.height) != (width, height):
        raise InitImageError(
            f"init_image is {header.width}×{header.height}; model {model.name!r} at this request's size "
            f"needs {width}×{height}"
        )
    wanted = MODE_FOR_CHANNELS.get(model.channels)
    if header.mode != wanted:
        raise InitImageError(
            f"init_image has mode {header.mode!r}; model {model.name!r} takes {model.channels}-channel "
            f"images: mode {wanted!r} ({'8-bit grey' if model.channels == 1 else '8-bit RGB'}, no alpha)"
        )


def resolve_strength(
    config: ResolvedConfig, model: ModelInfo, header: InitImageHeader | None, strength: object
) -> ResolvedConfig:
    """The config with its img2img fields, or raises RequestFieldError (strength, steps, schedule,
    sampler) / InitImageError (init_image) for a combination that cannot run."""
    if header is None:
        if strength is not None:
            raise RequestFieldError("strength", "strength needs an init_image to start from")
        return config
    check_init_image(header, model, config.width, config.height)
    resolved = DEFAULT_STRENGTH if strength is None else strength
    if resolved == "auto":
        if model.family not in PIXEL_FAMILIES:
            raise RequestFieldError(
                "strength",
                f'strength "auto" measures noise in pixel space and starts there: model {model.name!r} '
                f"denoises {model.family} latents; send a numeric strength in (0, 1]",
            )
        if config.schedule not in AUTO_SCHEDULES:
            raise RequestFieldError(
                "schedule",
                f'strength "auto" starts at a timestep measured from the image; schedule '
                f"{config.schedule!r} cannot start there; schedules that can: {', '.join(AUTO_SCHEDULES)}",
            )
        if config.sampler not in AUTO_SAMPLERS:
            raise RequestFieldError(
                "sampler",
                f'strength "auto" needs a sampler that visits a list of timesteps; {config.sampler!r} '
                f"spaces its own; samplers that can: {', '.join(AUTO_SAMPLERS)}",
            )
    elif isinstance(resolved, float | int) and int(config.steps * resolved) < 1:
        raise RequestFieldError(
            "strength",
            f"strength {resolved:g} of {config.steps} steps runs int(steps × strength) = 0 steps; "
            f"send strength at least {1 / config.steps:g} or more steps",
        )
    return config.model_copy(update={"init_image_sha256": header.sha256, "strength": resolved})
