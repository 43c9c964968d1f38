"""From a request to the configuration that will actually run (pure; no I/O, no torch).

Fills every default, checks each knob against the model and the chosen sampler, and
refuses combinations in which a knob would be silently ignored.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import get_args

from protocol.field_errors import RequestFieldError
from protocol.init_images import AUTO_DEFAULT_SAMPLER, AUTO_DEFAULT_STEPS, InitImageHeader, resolve_strength
from protocol.samplers import SAMPLERS, KnobName
from protocol.schema import (
    ABSOLUTE_MAX_GUIDANCE,
    ABSOLUTE_MAX_IMAGES,
    ABSOLUTE_MAX_STEPS,
    MAX_SEED,
    GenerationRequest,
    ModelInfo,
    ResolvedConfig,
    SamplerName,
    ScheduleName,
)

DEFAULT_THRESHOLDING_RATIO = 0.995
__all__ = ["Limits", "RequestFieldError", "resolve_request", "resolve_size", "resolve_timeout"]


@dataclass(frozen=True)
class Limits:
    """Bounds an operator may lower below the contract's absolute ones (from settings)."""

    max_steps: int
    max_images: int
    max_guidance_scale: float

    @classmethod
    def absolute(cls) -> Limits:
        """The contract's own maxima: what a request can ask for when no operator lowered them."""
        return cls(
            max_steps=ABSOLUTE_MAX_STEPS,
            max_images=ABSOLUTE_MAX_IMAGES,
            max_guidance_scale=ABSOLUTE_MAX_GUIDANCE,
        )


def _samplers_honouring(knob: str) -> str:
    names = [s.name for s in SAMPLERS.values() if knob in s.knobs]
    return ", ".join(names) if names else "none"


def _check_range(field: str, value: float, low: float, high: float, why: str = "") -> None:
    if not low <= value <= high:
        raise RequestFieldError(field, f"{field} must be between {low:g} and {high:g}{why}; got {value:g}")


def _default_schedule(
    model: ModelInfo, sampler: SamplerName, steps: int, default_sampler: bool
) -> ScheduleName:
    """The model's default schedule comes with its default sampler (a request that names a sampler
    gets that sampler's default), where it exists for these steps; else the sampler's default."""
    preferred = model.default_schedule
    if default_sampler and preferred is not None and preferred in SAMPLERS[sampler].schedules:
        try:
            _check_model_schedule(model, sampler, preferred, steps)
        except RequestFieldError:
            pass
        else:
            return preferred
    return SAMPLERS[sampler].default_schedule


def _check_model_schedule(model: ModelInfo, sampler: SamplerName, schedule: ScheduleName, steps: int) -> None:
    """A schedule that belongs to the model (``optimized``, ``ays``) must exist for it."""
    if schedule == "ays" and not model.ays_schedule:
        raise RequestFieldError(
            "schedule",
            f"schedule 'ays' (Align Your Steps) is offered for models trained on Stable Diffusion's noise "
            f"schedule; model {model.name!r} was trained on {model.training_noise_schedule!r}",
        )
    if schedule == "optimized":
        available = sorted(model.optimized_schedules.get(sampler, []))
        if not available:
            offered = ", ".join(sorted(model.optimized_schedules)) or "none"
            raise RequestFieldError(
                "schedule",
                f"model {model.name!r} has no optimized schedule for sampler {sampler!r}; samplers with "
                f"one: {offered}",
            )
        if steps not in available:
            raise RequestFieldError(
                "steps",
                f"model {model.name!r} has optimized schedules for sampler {sampler!r} at steps "
                f"{', '.join(map(str, available))}; got steps {steps}",
            )


def resolve_size(request: GenerationRequest, model: ModelInfo) -> tuple[int, int]:
    """(width, height) in pixels: the model's native size unless the request asks for another
    that the model can draw (a multiple of its ``size_multiple`` within its bounds)."""
    width = request.width if request.width is not None else model.image_size
    height = request.height if request.height is not None else model.image_size
    for field, value in (("width", width), ("height", height)):
        if model.size_multiple is None:
            if value != model.image_size:
                raise RequestFieldError(
                    field,
                    f"model {model.name!r} draws {model.image_size}×{model.image_size} images only; "
                    f"got {field} {value}",
                )
            continue
        low = model.min_size or model.size_multiple
        high = model.max_size or model.image_size
        if value % model.size_multiple or not low <= value <= high:
            raise RequestFieldError(
                field,
                f"{field} must be a multiple of {model.size_multiple} between {low} and {high} for "
                f"model {model.name!r}; got {value}",
            )
    return width, height


def resolve_timeout(requested: float | None, default_s: float, max_s: float) -> float:
    """Seconds from submission to the job's deadline: the request's, else the deployment default."""
    if requested is None:
        return min(default_s, max_s)
    _check_range("timeout_s", requested, 0.001, max_s, " (this deployment's limit)")
    return requested


def resolve_request(
    request: GenerationRequest,
    models: dict[str, ModelInfo],
    default_model: str,
    limits: Limits,
    init_image: InitImageHeader | None = None,
) -> ResolvedConfig:
    """Returns the resolved configuration (without timesteps), or raises RequestFieldError.

    ``init_image`` is the header the API read of the request's ``init_image`` (None without one).
    """
    name = request.model or default_model
    model = models.get(name)
    if model is None:
        available = ", ".join(sorted(models)) or "none registered yet"
        raise RequestFieldError("model", f"unknown model {name!r}; available: {available}")

    # 1. conditioning and size
    for text_field in ("prompt", "negative_prompt"):
        if getattr(request, text_field) is not None and model.conditioning != "prompt":
            raise RequestFieldError(
                text_field, f"model {name!r} takes no {text_field} (conditioning: {model.conditioning})"
            )
    if request.class_label is not None:
        if model.conditioning != "class_label" or model.num_classes is None:
            raise RequestFieldError(
                "class_label", f"model {name!r} takes no class label (conditioning: {model.conditioning})"
            )
        _check_range("class_label", request.class_label, 0, model.num_classes - 1)
    if model.conditioning == "class_label" and not model.supports_guidance and request.class_label is None:
        raise RequestFieldError(
            "class_label",
            f"model {name!r} has no unconditional class: send a class_label 0-{model.num_classes - 1}"
            if model.num_classes
            else f"model {name!r} needs a class_label",
        )
    conditioned = request.class_label is not None or request.prompt is not None
    width, height = resolve_size(request, model)

    # 2. budget and seeds
    _check_range("num_images", request.num_images, 1, limits.max_images, " (this deployment's limit)")
    # a denoising request (strength "auto") that names no sampler or steps gets the measured best
    # (docs/denoise.md), not the model's text-to-image defaults
    denoising = request.strength == "auto"
    default_steps = AUTO_DEFAULT_STEPS if denoising else model.default_steps
    steps = request.steps if request.steps is not None else default_steps
    _check_range("steps", steps, 1, limits.max_steps, " (this deployment's limit)")
    last_seed_offset = request.num_images - 1
    if request.seed is None:
        seed = secrets.randbelow(2**53)  # fits a JSON number exactly in every client
    else:
        seed = request.seed
        _check_range("seed", seed, 0, MAX_SEED - last_seed_offset, " (image i uses seed + i)")

    # 3. sampler and schedule
    sampler = SAMPLERS[request.sampler or (AUTO_DEFAULT_SAMPLER if denoising else model.default_sampler)]
    if model.prediction_type not in sampler.prediction_types:
        serving = [s.name for s in SAMPLERS.values() if model.prediction_type in s.prediction_types]
        raise RequestFieldError(
            "sampler",
            f"sampler {sampler.name!r} cannot use a model that predicts {model.prediction_type}; "
            f"samplers that can: {', '.join(serving)}",
        )
    model_default = request.sampler is None and not denoising
    schedule = request.schedule or _default_schedule(model, sampler.name, steps, model_default)
    if schedule not in sampler.schedules:
        raise RequestFieldError(
            "schedule",
            f"sampler {sampler.name!r} supports schedules {', '.join(sampler.schedules)}; got {schedule!r}",
        )
    _check_model_schedule(model, sampler.name, schedule, steps)
    for knob in get_args(KnobName):
        if getattr(request, knob) is not None and knob not in sampler.knobs:
            raise RequestFieldError(
                knob,
                f"{knob} is not honoured by sampler {sampler.name!r}; samplers that honour it: "
                f"{_samplers_honouring(knob)}",
            )

    # 4. noise: deterministic, eta, variance control
    eta = request.eta
    if sampler.noise == "stochastic":
        if request.deterministic:
            raise RequestFieldError(
                "deterministic",
                f"sampler {sampler.name!r} always injects noise; deterministic samplers: "
                + ", ".join(s.name for s in SAMPLERS.values() if s.noise != "stochastic"),
            )
        deterministic = False
    elif sampler.noise == "deterministic":
        if request.deterministic is False:
            raise RequestFieldError(
                "deterministic",
                f"sampler {sampler.name!r} is deterministic only; stochastic samplers: "
                + ", ".join(s.name for s in SAMPLERS.values() if s.noise != "deterministic"),
            )
        deterministic = True
    else:  # "either": DDIM's eta decides
        if request.deterministic and eta:
            raise RequestFieldError("eta", f"eta must be 0 when deterministic is true; got {eta:g}")
        if request.deterministic is False and eta == 0:
            raise RequestFieldError("eta", "eta must be above 0 (up to 1) when deterministic is false")
        deterministic = not eta if request.deterministic is None else request.deterministic
        eta = 0.0 if deterministic else (eta if eta is not None else 1.0)
    if deterministic:
        for knob in ("variance_bound", "variance_scale"):
            if getattr(request, knob) is not None:
                raise RequestFieldError(
                    knob,
                    f"{knob} has no effect when no noise is injected (deterministic sampling); "
                    "use a stochastic setting (ddim with eta > 0, ddpm)",
                )
    honours_variance = "variance_scale" in sampler.knobs and not deterministic
    variance_form = None
    if "variance_form" in sampler.knobs:
        if (
            request.variance_form is not None
            and request.variance_bound is None
            and request.variance_scale is None
        ):
            raise RequestFieldError(
                "variance_form",
                "variance_form says how variance_bound or variance_scale act: send one of them",
            )
        variance_form = request.variance_form or "marginal"
    variance_type = (request.variance_type or "fixed_small") if "variance_type" in sampler.knobs else None

    # 5. x0 clipping / thresholding
    if request.clip_sample and request.dynamic_thresholding:
        raise RequestFieldError("dynamic_thresholding", "choose one of clip_sample and dynamic_thresholding")
    thresholding = bool(request.dynamic_thresholding)
    if request.dynamic_thresholding_ratio is not None and not thresholding:
        raise RequestFieldError(
            "dynamic_thresholding_ratio", "dynamic_thresholding_ratio needs dynamic_thresholding: true"
        )
    ratio = (request.dynamic_thresholding_ratio or DEFAULT_THRESHOLDING_RATIO) if thresholding else None

    # 6. classifier-free guidance
    if not conditioned:
        if request.guidance_scale is not None and request.guidance_scale != 1.0:
            raise RequestFieldError(
                "guidance_scale",
                "guidance needs a condition: send class_label (or prompt), or guidance_scale 1",
            )
        guidance_scale = 1.0
    else:
        guidance_scale = (
            request.guidance_scale if request.guidance_scale is not None else model.default_guidance_scale
        )
        _check_range(
            "guidance_scale", guidance_scale, 0.0, limits.max_guidance_scale, " (this deployment's limit)"
        )
    if conditioned and guidance_scale != 1.0 and not model.supports_guidance:
        raise RequestFieldError(
            "guidance_scale",
            f"model {name!r} has no unconditional branch for guidance; send guidance_scale 1",
        )
    if request.negative_prompt is not None and guidance_scale == 1.0:
        raise RequestFieldError(
            "negative_prompt", "negative_prompt acts through guidance: it needs guidance_scale other than 1"
        )
    guidance_rescale = request.guidance_rescale or 0.0
    if guidance_rescale > 0 and guidance_scale == 1.0:
        raise RequestFieldError("guidance_rescale", "guidance_rescale has no effect when guidance_scale is 1")

    config = ResolvedConfig(
        model=name,
        class_label=request.class_label,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        num_images=request.num_images,
        seed=seed,
        steps=steps,
        sampler=sampler.name,
        schedule=schedule,
        deterministic=deterministic,
        eta=eta,
        variance_bound=request.variance_bound if honours_variance else None,
        variance_scale=(request.variance_scale if request.variance_scale is not None else 1.0)
        if honours_variance
        else None,
        variance_type=variance_type,
        variance_form=variance_form,
        clip_sample=bool(request.clip_sample),
        dynamic_thresholding=thresholding,
        dynamic_thresholding_ratio=ratio,
        guidance_scale=guidance_scale,
        guidance_rescale=guidance_rescale,
        width=width,
        height=height,
    )
    if request.init_image is not None and init_image is None:
        raise ValueError("a request with init_image is resolved with the image's header")
    return resolve_strength(config, model, init_image, request.strength)
