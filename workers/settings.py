"""Worker settings, read once from the environment (prefix ``DENOISE_``); bad values fail at start."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from protocol.job_scripts import JOB_TTL_DESCRIPTION
from workers.models.registry import load_registry


def _default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DENOISE_", extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL; may carry user:password")
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["mnist-unet"],
        description="registry names of the models this worker serves (comma-separated or a JSON array); "
        "each has its own stream and engine, and gets the whole max_batch",
        min_length=1,
    )
    registry_file: Path | None = Field(
        None, description="operator TOML adding models to the bundled registry (its entries win on a clash)"
    )
    worker_name: str = Field(default_factory=_default_worker_name)
    metrics_port: int = Field(9100, ge=0, le=65535, description="worker /metrics port (0: none)")
    max_batch: int = Field(
        32,
        ge=1,
        le=1024,
        description="rows per forward (guided images use 2), for each model: forwards of different "
        "models run one after another, so memory peaks at one forward of this many rows",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32",
        description="the network's weights and inputs (latents and the step stay float32); float16 on "
        "CUDA only, bfloat16 on the CPU too (faster where the CPU has bf16 instructions; changes images: "
        "docs/architecture.md has the measured gain and the pixel differences)",
    )
    channels_last: bool = Field(
        False, description="channels-last memory format (CUDA only: measured no faster on the CPU)"
    )
    compile: bool = Field(
        False,
        description="torch.compile the UNet (inductor; dynamic shapes: batch sizes vary); compiled during "
        "the warm-up, before the worker reports ready",
    )
    torch_threads: int = Field(0, ge=0, description="intra-op threads on CPU (0: torch default)")
    step_mode: Literal["vectorised", "per_image"] = Field(
        "vectorised",
        description="how the images of a tick take their step: a few batched tensor updates "
        "(bit-identical to per_image), or each image's own scheduler.step (the reference)",
    )
    job_ttl_s: int = Field(86_400, ge=60, description=JOB_TTL_DESCRIPTION)
    heartbeat_interval_s: float = Field(2.0, gt=0)
    heartbeat_ttl_s: float = Field(10.0, gt=0)
    block_ms: int = Field(1000, ge=10, description="how long an idle worker blocks on the stream")
    redis_timeout_s: float = Field(
        5.0, gt=0, description="socket timeout for Redis calls (must exceed block_ms)"
    )
    shutdown_grace_s: float = Field(
        120.0, ge=0, description="after SIGTERM, how long in-flight jobs may run before the worker exits"
    )
    lease_s: float = Field(
        30.0,
        gt=0,
        description="a job whose worker has not refreshed its claim for this long is taken over by another",
    )
    reclaim_interval_s: float = Field(5.0, gt=0, description="how often a worker looks for abandoned jobs")
    max_deliveries: int = Field(
        3, ge=1, le=100, description="a job started this many times without finishing is dead-lettered"
    )
    progress_interval_s: float = Field(0.25, ge=0, description="minimum time between progress writes")
    preview_interval_s: float = Field(
        1.0, ge=0, description="minimum time between x̂₀ previews in a job's running events (0: none)"
    )
    heap_trim_interval_s: float = Field(
        10.0,
        ge=0,
        description="how often freed heap is handed back to the OS (glibc malloc_trim; 0: never): "
        "activations of many batch sizes fragment the heap and keep resident memory growing",
    )

    @field_validator("models", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]

    @model_validator(mode="after")
    def _models_are_registered(self) -> WorkerSettings:
        """Fails at start-up on a name outside the registry, listing the known ones."""
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models lists a model twice: {', '.join(self.models)}")
        try:
            known = load_registry(self.registry_file)
        except (OSError, ValueError) as error:  # unreadable file, bad TOML, RegistryError
            raise ValueError(f"registry_file {self.registry_file}: {error}") from error
        unknown = [name for name in self.models if name not in known]
        if unknown:
            raise ValueError(
                f"unknown model {', '.join(map(repr, unknown))}: not in the registry"
                f"{'' if self.registry_file is None else f' (bundled + {self.registry_file})'}; "
                f"known: {', '.join(sorted(known))}"
            )
        return self

    @model_validator(mode="after")
    def _blocking_read_fits_the_socket_timeout(self) -> WorkerSettings:
        if self.block_ms / 1000 >= self.redis_timeout_s:
            raise ValueError(
                f"block_ms ({self.block_ms}) must be shorter than redis_timeout_s ({self.redis_timeout_s} s)"
            )
        if self.heartbeat_interval_s >= self.lease_s:
            raise ValueError(
                "heartbeat_interval_s must be shorter than lease_s (the lease is refreshed then)"
            )
        return self
