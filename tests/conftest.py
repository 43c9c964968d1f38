"""Session fixtures: a real redis-server, a real worker process and the real API process.

Nothing here is faked: the worker loads the bundled model and samples with it, and the tests
talk HTTP to uvicorn. Each fixture starts its process once per test session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from devstack.redis_server import RedisServer, free_port
from protocol.keys import worker_heartbeat_key
from protocol.schema import ResolvedConfig

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate, timeout_s: float, what: str, process: subprocess.Popen | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {process.returncode}")
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout_s} s")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url, decode_responses=True)


def service_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DENOISE_")}
    env.update(
        DENOISE_REDIS_URL=redis_url,
        DENOISE_TORCH_THREADS="1",
        PYTHONUNBUFFERED="1",
        HF_HUB_OFFLINE="1",
    )
    env.update(extra)
    return env


@contextmanager
def _running_worker(
    redis_server: RedisServer, redis_client: redis.Redis, log_path: Path, name: str, **env_extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker process (``python -m workers``) until the block exits; ready once registered."""
    env = service_env(
        redis_server.url, DENOISE_WORKER_NAME=name, DENOISE_PROGRESS_INTERVAL_S="0", **env_extra
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers"], env=env, cwd=ROOT, stdout=log, stderr=log
        )
        try:
            wait_until(lambda: redis_client.exists(worker_heartbeat_key(name)), 60, name, process)
            yield process
        finally:
            process.terminate()
            process.wait(timeout=60)


SESSION_MODELS = ["mnist-unet", "mnist-gauss", "mnist-text"]


@pytest.fixture(scope="session")
def worker_process(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path_factory
) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """The session's worker: one process serving both bundled test models, each on its stream."""
    metrics_port = free_port()
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {"DENOISE_METRICS_PORT": str(metrics_port), "DENOISE_MODELS": ",".join(SESSION_MODELS)}
    with _running_worker(redis_server, redis_client, log_path, "test-worker", **env):
        yield {
            "metrics_url": f"http://127.0.0.1:{metrics_port}/metrics",
            "log": str(log_path),
            "name": "test-worker",
        }


@pytest.fixture(scope="session")
def gauss_worker_process(worker_process: dict[str, str]) -> dict[str, str]:
    """A worker serving the closed-form ``mnist-gauss``: the session's worker serves it beside
    ``mnist-unet``."""
    return {**worker_process, "model": "mnist-gauss"}


@pytest.fixture(scope="session")
def api_url(redis_server: RedisServer, worker_process: dict[str, str], tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    port = free_port()
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    env = service_env(redis_server.url, DENOISE_PORT=str(port), DENOISE_SYNC_TIMEOUT_S="120")
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=ROOT, stdout=log, stderr=log)
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 30, "api", process)
        yield url
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=180) as http:
        yield http


def resolved_config(**overrides: object) -> ResolvedConfig:
    """A complete resolved configuration for tests that bypass the API (override any field)."""
    fields: dict[str, object] = dict(
        model="mnist-unet",
        class_label=1,
        prompt=None,
        num_images=1,
        seed=0,
        steps=2,
        sampler="ddim",
        schedule="uniform",
        deterministic=True,
        eta=0.0,
        variance_bound=None,
        variance_scale=None,
        variance_type=None,
        clip_sample=False,
        dynamic_thresholding=False,
        dynamic_thresholding_ratio=None,
        guidance_scale=1.0,
        guidance_rescale=0.0,
        width=28,
        height=28,
    )
    fields.update(overrides)
    return ResolvedConfig.model_validate(fields)


def _load_in_process(name: str):  # type: ignore[no-untyped-def]
    import torch

    from workers.models.loading import load_model
    from workers.models.registry import lookup

    torch.set_num_threads(1)
    return load_model(lookup(name), torch.device("cpu"), torch.float32)


@pytest.fixture(scope="session")
def bundled_model():  # type: ignore[no-untyped-def]
    """The bundled model loaded in-process through the real registry and loading code."""
    return _load_in_process("mnist-unet")


@pytest.fixture(scope="session")
def gauss_model():  # type: ignore[no-untyped-def]
    """The closed-form ``mnist-gauss`` loaded in-process, like ``bundled_model``."""
    return _load_in_process("mnist-gauss")


# ------------------------------------------------------------- more API processes
@dataclass
class ApiProcess:
    """An API process (``python -m app``) started with its own settings."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def running_api(
    redis_url: str, log_path: Path, ready_path: str = "/readyz", **env_extra: str
) -> Iterator[ApiProcess]:
    """A real API process until the block exits; ready once ``ready_path`` answers 200.

    ``env_extra`` are settings as environment variables (``DENOISE_MAX_QUEUED_JOBS="5"``).
    """
    port = free_port()
    env = service_env(redis_url, DENOISE_PORT=str(port), **env_extra)
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=ROOT, stdout=log, stderr=log)
        try:
            headers = (
                {"X-API-Key": env["DENOISE_API_KEYS"].split(",")[0]} if "DENOISE_API_KEYS" in env else {}
            )
            wait_until(
                lambda: httpx.get(f"{url}{ready_path}", headers=headers).status_code == 200,
                30,
                "api",
                process,
            )
            yield ApiProcess(url=url, process=process, log=log_path)
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture(scope="session")
def start_api(redis_server: RedisServer, tmp_path_factory) -> Iterator[Callable[..., ApiProcess]]:  # type: ignore[no-untyped-def]
    """Starts more API processes, each with its own settings, stopped at the end of the session.

    ``start_api(DENOISE_MAX_QUEUED_JOBS="5")`` serves the session's Redis (and so its worker: ask
    for ``worker_process`` too, readiness needs a worker heartbeat); ``redis_url=`` points one at
    a Redis of its own, and ``ready_path="/healthz"`` waits only for the process to answer.
    """
    with ExitStack() as stack:

        def start(redis_url: str | None = None, ready_path: str = "/readyz", **env_extra: str) -> ApiProcess:
            log_path = tmp_path_factory.mktemp("api-extra") / "api.log"
            return stack.enter_context(
                running_api(redis_url or redis_server.url, log_path, ready_path, **env_extra)
            )

        yield start


@contextmanager
def running_worker(
    server: RedisServer, log_path: Path, name: str, **env_extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker process on ``server`` (any Redis, e.g. one a test stops and restarts)."""
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        with _running_worker(server, client, log_path, name, **env_extra) as process:
            yield process
    finally:
        client.close()
