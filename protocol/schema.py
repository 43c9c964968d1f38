"""What crosses HTTP and Redis, as JSON: pure pydantic, no torch.

The request a client sends, the resolved configuration the worker actually used, the job
record, the result, the model descriptions and the heartbeats that workers publish. Redis
names live in ``protocol.keys``, the samplers' descriptions in ``protocol.samplers``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AnyUrl, BaseModel, ConfigDict, Field, UrlConstraints

from protocol.keys import JOB_ID_PATTERN

# ------------------------------------------------------------------- closed choices
SamplerName = Literal["ddpm", "ddim", "dpmpp_2m", "unipc", "euler", "euler_a"]
ScheduleName = Literal["uniform", "leading", "linspace", "quadratic", "cosine", "karras", "optimized", "ays"]
# schedules a model offers only where it says so (ModelInfo.optimized_schedules, .ays_schedule)
MODEL_SCHEDULES: tuple[ScheduleName, ...] = ("optimized", "ays")
VarianceType = Literal["fixed_small", "fixed_large"]
VarianceForm = Literal["marginal", "posterior"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
QUEUED: JobStatus = "queued"
RUNNING: JobStatus = "running"
SUCCEEDED: JobStatus = "succeeded"
FAILED: JobStatus = "failed"
CANCELLED: JobStatus = "cancelled"
TERMINAL_STATUSES: frozenset[JobStatus] = frozenset({SUCCEEDED, FAILED, CANCELLED})
Conditioning = Literal["none", "class_label", "prompt"]
ModelFamily = Literal["pixel_unet", "gaussian_mixture", "latent_text_unet", "latent_class_transformer"]
WebhookEventName = Literal["start", "progress", "completed"]
DEFAULT_WEBHOOK_EVENTS: tuple[WebhookEventName, ...] = ("completed",)

MAX_SEED = 2**63 - 1
ABSOLUTE_MAX_STEPS = 1000
ABSOLUTE_MAX_IMAGES = 16
ABSOLUTE_MAX_GUIDANCE = 30.0
ABSOLUTE_MAX_TIMEOUT_S = 86_400.0
ABSOLUTE_MAX_SIZE = 2048  # pixels per side
MAX_PROMPT_CHARS = 2000
MAX_WEBHOOK_URL_CHARS = 2000
# base64 characters of an init_image the contract admits at all; a deployment's limit
# (``max_init_image_bytes``) is lower, and an image over it is a 413 naming init_image
ABSOLUTE_MAX_INIT_IMAGE_CHARS = 64 * 1024 * 1024
Strength = Annotated[float, Field(gt=0.0, le=1.0)] | Literal["auto"]
WebhookUrl = Annotated[
    AnyUrl,
    UrlConstraints(max_length=MAX_WEBHOOK_URL_CHARS, allowed_schemes=["http", "https"], host_required=True),
]


class ModelInfo(BaseModel):
    """A model as a worker serves it (published in ``MODELS_KEY``; ``GET /v1/models``)."""

    name: str
    family: ModelFamily = Field(
        "pixel_unet",
        description="pixel_unet and gaussian_mixture denoise pixels; the latent families denoise VAE "
        "latents and decode them at the end",
    )
    conditioning: Conditioning
    num_classes: int | None = None
    class_names: list[str] | None = None
    image_size: int = Field(description="the native width and height, in pixels")
    channels: int = Field(description="image channels (1: grey, 3: RGB)")
    size_multiple: int | None = Field(
        None,
        description="width and height may be any multiple of this within [min_size, max_size]; "
        "None: only image_size × image_size",
    )
    min_size: int | None = None
    max_size: int | None = None
    max_prompt_tokens: int | None = Field(None, description="prompt models: the tokenizer's limit")
    supports_guidance: bool = Field(
        True, description="has an unconditional branch (a null class or the empty prompt) for guidance"
    )
    default_guidance_scale: float = 1.0
    default_steps: int = 50
    default_sampler: SamplerName = "ddim"
    default_schedule: ScheduleName | None = Field(
        None,
        description="the schedule of a request that names neither a schedule nor a sampler (it comes with "
        "default_sampler), where it exists for the request's steps (an optimized schedule exists at its "
        "listed steps only); every other request gets its sampler's default schedule",
    )
    optimized_schedules: dict[SamplerName, list[int]] = Field(
        default_factory=dict,
        description="schedule 'optimized': the steps (NFE) at which each sampler has timesteps optimised "
        "for this model (its model card says how they were found)",
    )
    ays_schedule: bool = Field(
        False,
        description="trained on Stable Diffusion's noise schedule (scaled_linear betas 0.00085-0.012, 1000 "
        "steps): schedule 'ays' (Align Your Steps) is offered",
    )
    training_noise_schedule: str = Field(description="beta schedule the model was trained with")
    num_train_timesteps: int
    prediction_type: str
    description: str = ""


# ---------------------------------------------------------------------------- request
class GenerationRequest(BaseModel):
    """A sampling request. Every field is optional; absent ones take the model's defaults."""

    # strict: a boolean is never a number and a numeric string is not a number (``true`` is not
    # class 1, ``"50"`` is not 50 steps); non-finite numbers are refused by name, never compared
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={"examples": [{"class_label": 7, "steps": 50, "sampler": "ddim", "seed": 1}]},
    )

    model: str | None = Field(None, max_length=64, description="registry name; default model if absent")
    class_label: int | None = Field(None, ge=0, description="class to draw (class-conditional models)")
    prompt: str | None = Field(
        None,
        max_length=MAX_PROMPT_CHARS,
        description="text prompt (prompt models); checked against the model's tokenizer limit",
    )
    negative_prompt: str | None = Field(
        None,
        max_length=MAX_PROMPT_CHARS,
        description="prompt models with guidance: the unconditional branch's prompt (default: empty)",
    )
    width: int | None = Field(
        None, ge=8, le=ABSOLUTE_MAX_SIZE, description="pixels; a multiple of the model's size_multiple"
    )
    height: int | None = Field(
        None, ge=8, le=ABSOLUTE_MAX_SIZE, description="pixels; a multiple of the model's size_multiple"
    )
    num_images: int = Field(1, ge=1, le=ABSOLUTE_MAX_IMAGES, description="image i uses seed + i")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="assigned and returned when absent")
    steps: int | None = Field(None, ge=1, le=ABSOLUTE_MAX_STEPS, description="model evaluations")
    sampler: SamplerName | None = Field(None, description="see GET /v1/samplers")
    schedule: ScheduleName | None = Field(None, description="which timesteps are visited")
    deterministic: bool | None = Field(None, description="true: no noise after the initial latent")
    eta: float | None = Field(None, ge=0.0, le=1.0, description="DDIM η: 0 = DDIM, 1 = DDPM-like")
    variance_bound: float | None = Field(
        None, ge=0.0, le=10.0, description="upper bound on σ_t, the std of the injected noise"
    )
    variance_scale: float | None = Field(
        None, ge=0.0, le=1.0, description="multiplies σ_t (annealing / temperature)"
    )
    variance_type: VarianceType | None = Field(None, description="DDPM: fixed_small or fixed_large")
    variance_form: VarianceForm | None = Field(
        None,
        description="DDPM: how a binding variance_bound or variance_scale acts; marginal (default): the "
        "step stays in the DDIM family and keeps the marginals; posterior: the literal posterior mean plus "
        "the clamped noise, which loses variance (for study)",
    )
    clip_sample: bool | None = Field(None, description="clip the predicted x0 to [-1, 1]")
    dynamic_thresholding: bool | None = Field(None, description="Imagen's percentile thresholding")
    dynamic_thresholding_ratio: float | None = Field(
        None, ge=0.5, le=1.0, description="percentile for dynamic thresholding (default 0.995)"
    )
    guidance_scale: float | None = Field(
        None, ge=0.0, le=ABSOLUTE_MAX_GUIDANCE, description="w in ε_u + w (ε_c − ε_u); 1 is off"
    )
    guidance_rescale: float | None = Field(None, ge=0.0, le=1.0, description="φ of Lin et al. 2024")
    init_image: str | None = Field(
        None,
        max_length=ABSOLUTE_MAX_INIT_IMAGE_CHARS,
        description="img2img / denoising: a PNG or JPEG as base64, the width, height and channels of "
        "the model (grey for 1 channel, RGB for 3); it is noised to the timestep that strength selects "
        "and denoised with every other knob as usual",
    )
    strength: Strength | None = Field(
        None,
        description="with init_image: how far back the image is noised, in (0, 1] (1: from pure noise; the "
        'reverse process runs int(steps × strength) of the schedule\'s steps; default 0.8), or "auto": '
        "denoise the image: its noise level σ̂ is measured and the reverse process starts from the image "
        "itself at the timestep whose noise level matches (pixel models; docs/denoise.md)",
    )
    timeout_s: float | None = Field(
        None,
        gt=0.0,
        le=ABSOLUTE_MAX_TIMEOUT_S,
        description="the job fails with DeadlineExceeded unless finished this many seconds after "
        "submission (default and cap: the deployment's settings)",
    )
    webhook: WebhookUrl | None = Field(
        None,
        description="an http(s) URL that receives the job's events as signed POSTs (Standard Webhooks); "
        "its host must resolve to public addresses unless the deployment allows private ones",
    )
    webhook_events: list[WebhookEventName] | None = Field(
        None,
        min_length=1,
        max_length=3,
        description="which events the webhook receives: start, progress (at most one per the "
        'deployment\'s interval), completed (succeeded, failed or cancelled); default ["completed"]',
    )


class WebhookSettings(BaseModel):
    """Where and what a job's webhook receives: kept on its record, never in its config (a webhook
    changes no image)."""

    url: str
    events: list[WebhookEventName] = Field(min_length=1)
    progress_interval_s: float = Field(ge=0, description="at most one progress delivery per this long")


class ResolvedConfig(BaseModel):
    """Every knob as actually used; enough to reproduce each image exactly."""

    model_config = ConfigDict(extra="forbid")

    model: str
    class_label: int | None
    prompt: str | None
    negative_prompt: str | None = None
    num_images: int
    seed: int
    steps: int
    sampler: SamplerName
    schedule: ScheduleName
    deterministic: bool
    eta: float | None
    variance_bound: float | None
    variance_scale: float | None
    variance_type: VarianceType | None
    variance_form: VarianceForm | None = None
    clip_sample: bool
    dynamic_thresholding: bool
    dynamic_thresholding_ratio: float | None
    guidance_scale: float
    guidance_rescale: float
    width: int
    height: int
    timesteps: list[float] = Field(default_factory=list, description="filled in by the worker")
    init_image_sha256: str | None = Field(
        None, description="img2img: SHA-256 of the init_image's bytes (the image itself is not echoed)"
    )
    strength: Strength | None = Field(None, description="img2img: the strength asked for")
    start_timestep: int | None = Field(
        None, description="img2img: the training timestep the reverse process started from (by the worker)"
    )
    init_noise_estimate: float | None = Field(
        None,
        description='strength "auto": σ̂, the init image\'s estimated noise std in gray levels (0-255) '
        "that chose start_timestep (by the worker; docs/denoise.md)",
    )


# ---------------------------------------------------------------------------- results
class Timings(BaseModel):
    queue_wait_ms: float
    inference_ms: float
    step_ms_mean: float
    encode_ms: float
    total_ms: float


class GeneratedImage(BaseModel):
    index: int
    seed: int
    class_label: int | None
    width: int
    height: int
    png_base64: str
    noise_estimate: float = Field(
        description="estimated std of the noise left in the image, in gray levels (0-255): Donoho's "
        "wavelet-MAD estimator, median(|HH1|)/0.6745 over the finest Haar diagonal details"
    )
    init_returned: bool | None = Field(
        None,
        description='strength "auto" only: true when the denoised image scored noisier than the init image '
        "by noise_estimate, and the init image was returned instead (a denoising request never "
        "returns a noisier image)",
    )


class JobResult(BaseModel):
    images: list[GeneratedImage]
    config: ResolvedConfig
    timings: Timings
    worker: str


class Progress(BaseModel):
    step: int = 0
    total: int = 0


class JobError(BaseModel):
    type: str
    message: str


class JobRecord(BaseModel):
    """The job hash, field by field (each field is a JSON value in the Redis hash)."""

    id: str
    status: JobStatus
    model: str
    config: ResolvedConfig
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    progress: Progress = Field(default_factory=Progress)
    result: JobResult | None = None
    error: JobError | None = None
    attempts: int = 0
    worker: str | None = None
    cancel_requested: bool = False
    deadline_at: float | None = Field(None, description="epoch seconds; past it the job is failed, not run")
    webhook: WebhookSettings | None = None


class JobView(BaseModel):
    """What ``GET /v1/jobs/{id}`` and a finished ``POST /v1/generations`` return."""

    id: str
    status: JobStatus
    model: str
    progress: Progress
    config: ResolvedConfig
    images: list[GeneratedImage] | None = None
    timings: Timings | None = None
    worker: str | None = None
    error: JobError | None = None
    created_at: float
    finished_at: float | None = None
    deadline_at: float | None = None

    @classmethod
    def of(cls, record: JobRecord) -> JobView:
        result = record.result
        return cls(
            id=record.id,
            status=record.status,
            model=record.model,
            progress=record.progress,
            config=result.config if result else record.config,
            images=result.images if result else None,
            timings=result.timings if result else None,
            worker=result.worker if result else record.worker,
            error=record.error,
            created_at=record.created_at,
            finished_at=record.finished_at,
            deadline_at=record.deadline_at,
        )


class WorkerState(StrEnum):
    """A worker's lifecycle: starting -> ready <-> busy -> draining -> stopped (the transitions
    are guarded in ``workers.lifecycle``). Published in its heartbeat; ``/readyz`` counts a
    worker only in ``SERVING_STATES``."""

    STARTING = "starting"  # loading the model, registering
    READY = "ready"  # idle, taking jobs
    BUSY = "busy"  # images in flight, taking jobs while there are free rows
    DRAINING = "draining"  # stop requested: takes no new jobs, finishes (or leaves) its own
    STOPPED = "stopped"


SERVING_STATES = frozenset({WorkerState.READY, WorkerState.BUSY})


class WorkerHeartbeat(BaseModel):
    """What a live worker publishes every ``heartbeat_interval_s`` (``worker_heartbeat_key``)."""

    worker: str
    models: list[str] = Field(description="registry names of the models the worker serves")
    state: WorkerState
    in_flight: int = Field(description="images in flight, over all its models")
    at: float = Field(description="epoch seconds of the beat, by the worker's clock")

    def serving(self, now: float, stale_s: float) -> bool:
        """Whether the worker takes jobs: its beat is newer than ``stale_s`` and it is ready or busy."""
        return now - self.at <= stale_s and self.state in SERVING_STATES


def serving_workers(beats: list[WorkerHeartbeat], now: float, stale_s: float) -> list[WorkerHeartbeat]:
    """The workers that take jobs (``WorkerHeartbeat.serving``), in the order given."""
    return [beat for beat in beats if beat.serving(now, stale_s)]


JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN)]
