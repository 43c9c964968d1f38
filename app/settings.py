"""API settings, read once from the environment (prefix ``DENOISE_``); bad values fail at start."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.webhook_signing import secret_key
from protocol.job_scripts import JOB_TTL_DESCRIPTION
from protocol.resolution import Limits
from protocol.schema import (
    ABSOLUTE_MAX_GUIDANCE,
    ABSOLUTE_MAX_IMAGES,
    ABSOLUTE_MAX_STEPS,
    ABSOLUTE_MAX_TIMEOUT_S,
)

OPERATIONS_PATHS = ["/healthz", "/readyz", "/metrics"]
IMAGE_BODY_ROOM_BYTES = 64 * 1024  # room in an image route's body for the fields beside the image


def _list_from_env(value: object) -> object:
    """A list setting from the environment: a JSON array, or comma-separated values."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [item.strip() for item in text.split(",") if item.strip()]


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
    job_ttl_s: int = Field(86_400, ge=60, description=JOB_TTL_DESCRIPTION)
    heartbeat_stale_s: float = Field(
        15.0,
        gt=0,
        description="a worker counts (readiness, the model list) while its beat is newer than this",
    )
    models_cache_s: float = Field(
        2.0, ge=0, description="how long the models and worker heartbeats read from Redis are reused"
    )
    require_live_worker: bool = Field(
        True,
        description="a request for a registered model that no live worker serves is a 503, and "
        "GET /v1/models lists served models only; false where workers scale from zero (KEDA): "
        "every registered model is offered and its queued jobs wake a worker",
    )
    no_worker_retry_after_s: int = Field(
        5, ge=1, description="Retry-After of a 503 for a model that no live worker serves"
    )
    redis_timeout_s: float = Field(
        0.5,
        gt=0,
        le=10,
        description="connect and read timeout of each Redis call; a route that needs an unreachable "
        "Redis answers 503 within about this long",
    )

    # -- overload and bad input
    max_queued_jobs: int = Field(
        1000, ge=1, description="queued (not yet started) jobs per model; over it a POST is a 429"
    )
    queue_full_retry_after_s: int = Field(2, ge=1, description="Retry-After of a 429 for a full queue")
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="larger request bodies are a 413 before they are parsed"
    )
    max_image_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="the body limit of the routes that take an init_image (POST /v1/generations, "
        "/v1/images/generations, /v1/images/edits); larger bodies are a 413 before they are parsed. At "
        "least the base64 of max_init_image_bytes plus 64 KiB for the other fields (checked at start-up)",
    )
    max_init_image_bytes: int = Field(
        2 * 1024 * 1024,
        ge=1024,
        description="an init_image (PNG or JPEG bytes, after base64), or the image file of "
        "/v1/images/edits, larger than this is a 413 naming it",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="a request body must arrive whole within this long of the first read, else 408 and "
        "the connection is closed; also bounds the reading of a refused (413) body's rest",
    )
    refused_body_drain_bytes: int = Field(
        16 * 1024 * 1024,
        ge=0,
        description="the rest of a refused (413) body is read and dropped up to this many bytes, so a "
        "client that writes its whole body before reading gets the 413 instead of a reset",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a request's headers must arrive whole within this long, else the "
        "connection is closed (slowloris)",
    )
    keep_alive_s: int = Field(5, ge=1, description="an idle keep-alive connection is closed after this (s)")
    max_connections: int = Field(
        1000,
        ge=1,
        description="open connections (and requests in progress) beyond which a request is answered 503",
    )
    idempotency_ttl_s: int = Field(
        86_400, ge=1, description="how long an Idempotency-Key returns the job it created"
    )

    # -- access control
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="accepted API keys (a JSON array or comma-separated); empty: the API is open",
    )
    rate_limit_per_s: float = Field(
        0.0, ge=0, description="requests per second per API key (per client address when open); 0: off"
    )
    rate_limit_burst: int = Field(20, ge=1, description="token-bucket size: requests allowed at once")
    open_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(OPERATIONS_PATHS),
        description="paths served without an API key or rate limit (/docs and /openapi.json always are)",
    )

    # -- webhooks (README "Webhooks")
    webhook_secret: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Standard Webhooks signing secrets, whsec_ + the base64 of 24-64 random bytes, "
        "comma-separated: each delivery carries one signature per secret (list the old one after "
        "the new while receivers switch). Empty: webhooks are off and a request with one is a 422",
    )
    webhook_allow_private: bool = Field(
        False,
        description="webhooks may target loopback, private, link-local and other non-public "
        "addresses (a receiver inside the cluster; tests). Off: such targets are a 422",
    )
    webhook_max_attempts: int = Field(
        12, ge=1, le=100, description="attempts of one delivery before it is dead-lettered"
    )
    webhook_backoff_s: float = Field(1.0, gt=0, description="delay before the first retry; it doubles")
    webhook_backoff_max_s: float = Field(3600.0, gt=0, description="the longest delay between attempts")
    webhook_timeout_s: float = Field(
        15.0, gt=0, le=120, description="an attempt fails unless the receiver answers within this long"
    )
    webhook_progress_interval_s: float = Field(
        5.0, ge=0, description="a job's webhook gets at most one progress event per this long"
    )
    webhook_concurrency: int = Field(32, ge=1, le=1000, description="delivery attempts at once per replica")
    webhook_lease_s: float = Field(
        60.0,
        gt=0,
        description="a delivery held this long by a replica that stopped is taken over by another; "
        "more than twice webhook_timeout_s",
    )

    # -- shutdown
    graceful_shutdown_s: int = Field(
        30, ge=0, description="on SIGTERM, in-flight requests get this long to finish"
    )

    @field_validator("api_keys", "open_paths", "webhook_secret", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _list_from_env(value)

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for key in keys:
            secret = key.get_secret_value()
            # keys travel in HTTP headers: visible ASCII only, and no comma (the list separator)
            if not secret or not all(0x21 <= ord(c) <= 0x7E and c != "," for c in secret):
                raise ValueError("an API key must be visible ASCII characters without commas")
        return keys

    @field_validator("open_paths")
    @classmethod
    def _check_paths(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not path.startswith("/"):
                raise ValueError(f"open path {path!r} must start with '/'")
        return paths

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secrets(cls, secrets: list[SecretStr]) -> list[SecretStr]:
        for secret in secrets:
            secret_key(secret.get_secret_value())  # raises ValueError naming what is wrong
        return secrets

    @model_validator(mode="after")
    def _check_webhook_lease(self) -> ApiSettings:
        if self.webhook_lease_s <= 2 * self.webhook_timeout_s:
            raise ValueError(
                f"webhook_lease_s ({self.webhook_lease_s:g}) must be more than twice webhook_timeout_s "
                f"({self.webhook_timeout_s:g}): a live replica's attempt must not be taken over"
            )
        return self

    @model_validator(mode="after")
    def _check_image_limits(self) -> ApiSettings:
        # an image within max_init_image_bytes must fit in a body: base64 (4 characters per 3 bytes)
        # in JSON, raw bytes in a form; else its own 413 could never be reached
        needed = 4 * -(-self.max_init_image_bytes // 3) + IMAGE_BODY_ROOM_BYTES
        if self.max_image_body_bytes < needed:
            raise ValueError(
                f"max_image_body_bytes ({self.max_image_body_bytes}) must be at least {needed}: the base64 "
                f"of max_init_image_bytes ({self.max_init_image_bytes}) and {IMAGE_BODY_ROOM_BYTES} bytes "
                "for the request's other fields"
            )
        return self

    def webhook_keys(self) -> list[bytes]:
        """The HMAC keys of ``webhook_secret`` (empty: webhooks are off)."""
        return [secret_key(secret.get_secret_value()) for secret in self.webhook_secret]

    def limits(self) -> Limits:
        return Limits(
            max_steps=self.max_steps, max_images=self.max_images, max_guidance_scale=self.max_guidance_scale
        )
