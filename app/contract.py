"""The contract between the API and the workers: pure pydantic, no torch.

Everything that crosses Redis is defined here and travels as JSON: the request a client
sends, the resolved configuration the worker actually used, the job record, the result,
the model descriptions that workers publish, and every Redis key name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# --------------------------------------------------------------------------- Redis keys
# Every key the service uses, spelled once.
KEY_PREFIX = "denoise"
CONSUMER_GROUP = "workers"
MODELS_KEY = f"{KEY_PREFIX}:models"  # hash: model name -> ModelInfo JSON
EVENTS_CHANNEL = f"{KEY_PREFIX}:events"  # pub/sub: job ids whose record changed state


def jobs_stream_key(model: str) -> str:
    """Stream of job ids waiting for a worker that serves ``model``."""
    return f"{KEY_PREFIX}:jobs:{model}"


def job_key(job_id: str) -> str:
    """Hash holding the job record (see ``JobRecord``)."""
    return f"{KEY_PREFIX}:job:{job_id}"


def worker_heartbeat_key(worker: str) -> str:
    """String with a TTL, refreshed by a live worker; its value is a WorkerHeartbeat JSON."""
    return f"{KEY_PREFIX}:worker:{worker}"


WORKER_HEARTBEAT_PATTERN = f"{KEY_PREFIX}:worker:*"


def queued_jobs_key(model: str) -> str:
    """Sorted set of the job hashes of ``model`` still queued (score: submission time).

    Its size is the exact count that back-pressure caps: the submit script adds a job, and every
    script that moves a job out of ``queued`` (start, cancel, finish) removes it. Each job hash
    names its set in the ``QUEUED_SET_FIELD`` field, so the scripts need no key name of their own.
    """
    return f"{KEY_PREFIX}:queued:{model}"


QUEUED_SET_FIELD = "queued_set"  # job hash field (JSON string): the job's queued_jobs_key


def idempotency_key(principal: str, key: str) -> str:
    """String with a TTL: the job an ``Idempotency-Key`` created, scoped to the caller."""
    return f"{KEY_PREFIX}:idempotency:{principal}:{key}"


def rate_limit_key(principal: str) -> str:
    """Hash holding one caller's token bucket (tokens, last refill time)."""
    return f"{KEY_PREFIX}:ratelimit:{principal}"


def dead_letter_stream_key(model: str) -> str:
    """Stream of entries of ``model``'s job stream that no worker could run (poison, corrupt)."""
    return f"{KEY_PREFIX}:dead:{model}"


JOB_ID_PATTERN = r"^[0-9a-f]{32}$"

# ------------------------------------------------------------------- closed choices
SamplerName = Literal["ddpm", "ddim", "dpmpp_2m", "unipc", "euler", "euler_a"]
ScheduleName = Literal["uniform", "leading", "linspace", "quadratic", "cosine", "karras"]
VarianceType = Literal["fixed_small", "fixed_large"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Conditioning = Literal["none", "class_label", "prompt"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

MAX_SEED = 2**63 - 1
ABSOLUTE_MAX_STEPS = 1000
ABSOLUTE_MAX_IMAGES = 16
ABSOLUTE_MAX_GUIDANCE = 30.0
ABSOLUTE_MAX_TIMEOUT_S = 86_400.0

KnobName = Literal[
    "eta",
    "variance_bound",
    "variance_scale",
    "variance_type",
    "clip_sample",
    "dynamic_thresholding",
]


class SamplerInfo(BaseModel):
    """What one sampler is and which knobs it honours (served by ``GET /v1/samplers``)."""

    model_config = ConfigDict(frozen=True)

    name: SamplerName
    scheduler_class: str = Field(description="the diffusers scheduler class behind it")
    noise: Literal["deterministic", "stochastic", "either"] = Field(
        description="whether it injects noise after the initial latent"
    )
    knobs: tuple[KnobName, ...] = Field(description="optional knobs it honours")
    schedules: tuple[ScheduleName, ...]
    default_schedule: ScheduleName = "uniform"
    summary: str


SAMPLERS: dict[str, SamplerInfo] = {
    s.name: s
    for s in (
        SamplerInfo(
            name="ddpm",
            scheduler_class="DDPMScheduler",
            noise="stochastic",
            knobs=(
                "variance_type",
                "variance_bound",
                "variance_scale",
                "clip_sample",
                "dynamic_thresholding",
            ),
            schedules=("uniform", "leading", "linspace", "quadratic", "cosine", "karras"),
            summary="Ancestral sampling of Ho et al. (2020) on the visited timesteps; the "
            "injected variance is the posterior's (fixed_small) or β_t (fixed_large).",
        ),
        SamplerInfo(
            name="ddim",
            scheduler_class="DDIMScheduler",
            noise="either",
            knobs=("eta", "variance_bound", "variance_scale", "clip_sample", "dynamic_thresholding"),
            schedules=("uniform", "leading", "linspace", "quadratic", "cosine", "karras"),
            summary="Song et al. (2021), eq. 12: eta = 0 is the deterministic DDIM, eta = 1 "
            "injects the DDPM posterior variance.",
        ),
        SamplerInfo(
            name="dpmpp_2m",
            scheduler_class="DPMSolverMultistepScheduler",
            noise="deterministic",
            knobs=("dynamic_thresholding",),
            schedules=("uniform", "leading", "linspace", "quadratic", "cosine", "karras"),
            summary="DPM-Solver++(2M), Lu et al. (2022): second-order multistep ODE solver.",
        ),
        SamplerInfo(
            name="unipc",
            scheduler_class="UniPCMultistepScheduler",
            noise="deterministic",
            knobs=("dynamic_thresholding",),
            schedules=("uniform", "leading", "linspace"),
            summary="UniPC, Zhao et al. (2023): predictor-corrector multistep ODE solver.",
        ),
        SamplerInfo(
            name="euler",
            scheduler_class="EulerDiscreteScheduler",
            noise="deterministic",
            knobs=(),
            schedules=("uniform", "leading", "linspace", "quadratic", "cosine", "karras"),
            summary="Euler's method on the probability-flow ODE (Karras et al. 2022).",
        ),
        SamplerInfo(
            name="euler_a",
            scheduler_class="EulerAncestralDiscreteScheduler",
            noise="stochastic",
            knobs=(),
            schedules=("uniform", "leading", "linspace"),
            summary="Euler ancestral: an Euler step down to σ_down, then fresh noise σ_up.",
        ),
    )
}


class ModelInfo(BaseModel):
    """A model as a worker serves it (published in ``MODELS_KEY``; ``GET /v1/models``)."""

    name: str
    conditioning: Conditioning
    num_classes: int | None = None
    class_names: list[str] | None = None
    image_size: int
    channels: int
    default_guidance_scale: float = 1.0
    default_steps: int = 50
    default_sampler: SamplerName = "ddim"
    training_noise_schedule: str = Field(description="beta schedule the model was trained with")
    num_train_timesteps: int
    prediction_type: str
    description: str = ""


# ---------------------------------------------------------------------------- request
class GenerationRequest(BaseModel):
    """A sampling request. Every field is optional; absent ones take the model's defaults."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"class_label": 7, "steps": 50, "sampler": "ddim", "seed": 1}]},
    )

    model: str | None = Field(None, max_length=64, description="registry name; default model if absent")
    class_label: int | None = Field(None, ge=0, description="class to draw (class-conditional models)")
    prompt: str | None = Field(None, max_length=500, description="text prompt (prompt models)")
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
    clip_sample: bool | None = Field(None, description="clip the predicted x0 to [-1, 1]")
    dynamic_thresholding: bool | None = Field(None, description="Imagen's percentile thresholding")
    dynamic_thresholding_ratio: float | None = Field(
        None, ge=0.5, le=1.0, description="percentile for dynamic thresholding (default 0.995)"
    )
    guidance_scale: float | None = Field(
        None, ge=0.0, le=ABSOLUTE_MAX_GUIDANCE, description="w in ε_u + w (ε_c − ε_u); 1 is off"
    )
    guidance_rescale: float | None = Field(None, ge=0.0, le=1.0, description="φ of Lin et al. 2023")
    timeout_s: float | None = Field(
        None,
        gt=0.0,
        le=ABSOLUTE_MAX_TIMEOUT_S,
        description="the job fails with DeadlineExceeded unless finished this many seconds after "
        "submission (default and cap: the deployment's settings)",
    )


class ResolvedConfig(BaseModel):
    """Every knob as actually used; enough to reproduce each image exactly."""

    model_config = ConfigDict(extra="forbid")

    model: str
    class_label: int | None
    prompt: str | None
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
    clip_sample: bool
    dynamic_thresholding: bool
    dynamic_thresholding_ratio: float | None
    guidance_scale: float
    guidance_rescale: float
    image_size: int
    timesteps: list[float] = Field(default_factory=list, description="filled in by the worker")


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


def record_to_hash(record: JobRecord) -> dict[str, str]:
    """A job record as Redis hash fields: one JSON value per field."""
    return {name: json.dumps(value) for name, value in record.model_dump(mode="json").items()}


def hash_fields(**values: object) -> dict[str, str]:
    """Partial update of a job hash, encoded like ``record_to_hash``."""
    return {name: json.dumps(value) for name, value in values.items()}


def record_from_hash(fields: Mapping[str | bytes, str | bytes]) -> JobRecord:
    decoded = {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in fields.items()}
    return JobRecord.model_validate(decoded)


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


class WorkerHeartbeat(BaseModel):
    worker: str
    model: str
    state: Literal["starting", "ready", "busy", "stopping"]
    in_flight: int
    at: float


JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN)]
