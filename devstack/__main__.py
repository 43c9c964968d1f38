"""python -m devstack: redis-server + one worker + the API on port 8000, until Ctrl-C.

The worker serves every model of the registry (the bundled one, plus an operator's
``DENOISE_REGISTRY_FILE`` if set) unless ``DENOISE_MODELS`` names them.

Redis keeps its data (append-only file) under ``.devstack/redis`` so queued jobs survive a
restart of the stack. A worker that dies is restarted, as compose and Kubernetes restart
policies would do. Ctrl-C (or SIGTERM) stops the API, lets the worker finish its in-flight
jobs, then stops Redis.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import redis

from devstack.redis_server import RedisServer, free_port
from workers.models.registry import load_registry

log = logging.getLogger("devstack")
ROOT = Path(__file__).resolve().parent.parent


def _port_free(port: int) -> bool:
    try:
        redis.Redis(port=port, socket_connect_timeout=0.2).ping()
        return False
    except redis.ConnectionError:
        return True


def worker_models(environ: Mapping[str, str]) -> dict[str, str]:
    """The worker's ``DENOISE_MODELS`` and ``DENOISE_REGISTRY_FILE``: as ``environ`` sets them,
    else every model of the registry (an operator file's path made absolute, as the worker runs
    in the repository root)."""
    env: dict[str, str] = {}
    registry_file = None
    if environ.get("DENOISE_REGISTRY_FILE"):
        registry_file = Path(environ["DENOISE_REGISTRY_FILE"]).resolve()
        env["DENOISE_REGISTRY_FILE"] = str(registry_file)
    env["DENOISE_MODELS"] = environ.get("DENOISE_MODELS") or ",".join(load_registry(registry_file))
    return env


def _spawn(module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # a session of its own: Ctrl-C reaches only this launcher, which then stops the children in
    # order (API, then the worker once its in-flight jobs are done, then Redis)
    return subprocess.Popen([sys.executable, "-m", module], env=env, cwd=ROOT, start_new_session=True)


def _stop(process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    data_dir = ROOT / ".devstack" / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    redis_port = int(os.environ.get("DENOISE_LOCAL_REDIS_PORT", "6379"))
    if not _port_free(redis_port):
        redis_port = free_port()
    server = RedisServer(port=redis_port, appendonly=True, data_dir=data_dir).start()
    env = dict(os.environ, DENOISE_REDIS_URL=server.url, PYTHONUNBUFFERED="1", **worker_models(os.environ))
    log.info("redis-server on %s (data in %s)", server.url, data_dir)
    log.info("the worker serves %s", env["DENOISE_MODELS"])

    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    worker = _spawn("workers", env)
    api = _spawn("app", env)
    log.info(
        "API on http://127.0.0.1:%s (docs at /docs); Ctrl-C stops everything", env.get("DENOISE_PORT", "8000")
    )
    restarts = 0
    try:
        while not stopping:
            time.sleep(0.5)
            if worker.poll() is not None and not stopping:
                restarts += 1
                backoff = min(30.0, 0.5 * 2 ** min(restarts, 6))
                log.warning(
                    "worker exited with %s; restart %d in %.1f s", worker.returncode, restarts, backoff
                )
                time.sleep(backoff)
                worker = _spawn("workers", env)
            if api.poll() is not None:
                log.error("API exited with %s; stopping the stack", api.returncode)
                return 1
    finally:
        _stop(api, timeout_s=15)
        _stop(worker, timeout_s=120)
        server.stop()
        log.info("stack stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
