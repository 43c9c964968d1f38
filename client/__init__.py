"""A Python client for the denoising service, and the ``denoise`` command (``client.cli``).

It speaks the API's HTTP contract through the shared ``protocol`` types and never imports the
server (``app``), the workers or torch::

    from client import DenoiseClient, png_bytes

    with DenoiseClient("http://127.0.0.1:8000") as api:
        job = api.generate(class_label=7, sampler="dpmpp_2m", steps=20, seed=1)
        open("seven.png", "wb").write(png_bytes(job.images[0]))

- ``sync_client.DenoiseClient`` / ``async_client.AsyncDenoiseClient``: the same methods,
  blocking or awaitable; ``core``: what the two share without I/O (knobs, retries, following a
  job's events); ``sse``: the Server-Sent Events decoder;
- ``errors``: the ``DenoiseError`` hierarchy, built from the API's answers in one place;
- ``images``: PNG bytes, PIL images and files from a job; ``grid``, ``compare``, ``progress``:
  what the command draws;
- ``webhooks``: ``verify``, a receiver's check of a webhook delivery's signature (stdlib only).
"""

from client.async_client import AsyncDenoiseClient, AsyncEventStream
from client.core import Knobs, RetryPolicy
from client.errors import (
    ClientError,
    Conflict,
    DenoiseError,
    FieldError,
    InvalidRequest,
    JobFailed,
    NotFound,
    ProtocolError,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    ValidationError,
    WaitTimeout,
)
from client.images import job_pil_images, job_png_bytes, output_paths, png_bytes, save_images, to_pil
from client.sync_client import DenoiseClient, EventStream
from client.webhooks import WebhookVerificationError, verify

__all__ = [
    "AsyncDenoiseClient",
    "AsyncEventStream",
    "ClientError",
    "Conflict",
    "DenoiseClient",
    "DenoiseError",
    "EventStream",
    "FieldError",
    "InvalidRequest",
    "JobFailed",
    "Knobs",
    "NotFound",
    "ProtocolError",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "Unauthorized",
    "ValidationError",
    "WaitTimeout",
    "WebhookVerificationError",
    "job_pil_images",
    "job_png_bytes",
    "output_paths",
    "png_bytes",
    "save_images",
    "to_pil",
    "verify",
]
