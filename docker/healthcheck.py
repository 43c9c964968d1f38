"""Container health check for the API and worker images (standard library only).

    python /opt/denoise/healthcheck.py api     # GET /healthz on DENOISE_PORT answers 200
    python /opt/denoise/healthcheck.py worker  # the worker's /metrics shows a loaded model

Exit status 0 means healthy, 1 unhealthy: what Docker's HEALTHCHECK, compose's healthcheck and a
Kubernetes exec probe expect. One script serves all three, so the check is spelled once.

The worker has no HTTP health endpoint. Its Prometheus server starts before the models load, so
"the port answers" only proves the process is alive; ``denoise_worker_model_load_seconds{model=...}``
is set for each model it serves once all of them are loaded, the worker has reached Redis
(consumer groups, model registrations) and its loop is about to run, which is what "ready to take
jobs" means.

This script reads the environment directly instead of importing the service's settings: it has
to be quick and must not depend on pydantic (or, in the worker image, on importing torch).
"""

from __future__ import annotations

import os
import sys
import urllib.request

TIMEOUT_S = 3.0
LOADED_GAUGE = "denoise_worker_model_load_seconds"


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        return response.status, response.read().decode("utf-8", "replace")


def check_api() -> str | None:
    """None when healthy, else the reason."""
    port = os.environ.get("DENOISE_PORT", "8000")
    status, _ = _get(f"http://127.0.0.1:{port}/healthz")
    return None if status == 200 else f"/healthz answered {status}"


def check_worker() -> str | None:
    """None when healthy, else the reason."""
    port = os.environ.get("DENOISE_METRICS_PORT", "9100")
    if port == "0":
        # Metrics switched off: there is nothing to look at, and failing forever would only
        # get a working container restarted. Say so in the health log instead.
        print("DENOISE_METRICS_PORT=0: worker health cannot be observed; reporting healthy")
        return None
    _, body = _get(f"http://127.0.0.1:{port}/metrics")
    loaded = []
    for line in body.splitlines():
        series, _, value = line.partition(" ")
        # one sample per served model: denoise_worker_model_load_seconds{model="..."} 1.23
        if series.partition("{")[0] == LOADED_GAUGE:
            loaded.append(float(value) > 0)
    if not loaded:
        return f"no model loaded yet ({LOADED_GAUGE} has no sample on /metrics)"
    return None if all(loaded) else "a model is not loaded yet"


def main(argv: list[str]) -> int:
    checks = {"api": check_api, "worker": check_worker}
    if len(argv) != 2 or argv[1] not in checks:
        print(f"usage: {argv[0]} {{{'|'.join(checks)}}}", file=sys.stderr)
        return 2
    try:
        problem = checks[argv[1]]()
    except (OSError, ValueError) as error:  # refused, timed out, HTTP error, unparsable value
        problem = f"{type(error).__name__}: {error}"
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
