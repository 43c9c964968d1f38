"""API settings, read once from the environment (prefix ``DENOISE_``); bad values fail at start."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.contract import (
    ABSOLUTE_MAX_GUIDANCE,
    ABSOLUTE_MAX_IMAGES,
    ABSOLUTE_MAX_STEPS,
    ABSOLUTE_MAX_TIMEOUT_S,
)
from app.resolution import Limits


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DENOISE_", extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL; may carry user:password")
    host: str = Field("127.0.0.1", description="interface the API listens on")
    port: int = Field(8000, ge=1, le=65535)
    default_model: str = Field("mnist-unet", description="model used when a request names none")
    max_steps: int = Field(ABSOLUTE_MAX_STEPS, ge=1, le=ABSOLUTE_MAX_STEPS)
    max_images: int = Field(ABSOLUTE_MAX_IMAGES, ge=1, le=ABSOLUTE_MAX_IMAGES)
    max_guidance_scale: float = Field(20.0, ge=1.0, le=ABSOLUTE_MAX_GUIDANCE)
    sync_timeout_s: float = Field(60.0, gt=0, le=600, description="sync POST waits this long, then 202")
    job_timeout_s: float = Field(
        600.0, gt=0, le=ABSOLUTE_MAX_TIMEOUT_S, description="deadline of a job that sets no timeout_s"
    )
    max_job_timeout_s: float = Field(
        3600.0, gt=0, le=ABSOLUTE_MAX_TIMEOUT_S, description="the largest timeout_s a request may set"
    )
    job_ttl_s: int = Field(86_400, ge=60, description="how long an unfinished job record is kept")
    heartbeat_stale_s: float = Field(15.0, gt=0, description="readiness: a worker beat newer than this")
    models_cache_s: float = Field(2.0, ge=0, description="how long the model list read from Redis is reused")
    redis_timeout_s: float = Field(1.0, gt=0, description="socket timeout for Redis calls")

    def limits(self) -> Limits:
        return Limits(
            max_steps=self.max_steps, max_images=self.max_images, max_guidance_scale=self.max_guidance_scale
        )
