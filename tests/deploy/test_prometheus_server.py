"""A real Prometheus scrapes the live API and worker; every dashboard and alert query has data.

test_live_metrics.py checks series names and labels in the text of /metrics; this runs the
queries themselves, through Prometheus' engine, after traffic that makes every series move: two
rounds of a generation, a job that fails (its deadline passes before it starts) and a request
refused for its size. Two rounds, because a series born with its first increment has no rate
until a later scrape sees it grow.

The binary is Debian's prometheus 2.42 (`make system-tools`) while compose pins 3.x: a query
that only 3.x understands would fail here although it works in the stack.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from devstack.redis_server import free_port
from tests.deploy import system_tools
from tests.deploy.monitoring import DASHBOARDS, alert_rules, dashboard_queries, local_config, parts_with_data

INTERVAL = "1s"  # scrape and rule evaluation; the compose stack uses 15 s
# What each round of traffic adds at least (a query, the increment): Prometheus has scraped the
# round once all of them show it.
ROUND_COUNTERS = {
    'sum(denoise_worker_jobs_finished_total{status="succeeded"})': 1,
    'sum(denoise_worker_jobs_finished_total{status="failed"})': 1,
    "sum(denoise_api_rejected_total)": 1,
    'sum(denoise_api_request_duration_seconds_count{route="/v1/generations", method="POST"})': 2,
}


def _target(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path or '/metrics'}"


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout_s} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def prometheus(api_url: str, worker_process: dict[str, str], tmp_path_factory) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """A prometheus process scraping the session's API and worker, with alerts.yml loaded."""
    binary = system_tools.require("prometheus")
    directory: Path = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    targets = {
        "api": _target(f"{api_url}/metrics"),
        "worker": _target(worker_process["metrics_url"]),
        "prometheus": f"127.0.0.1:{port}/metrics",
    }
    config = directory / "prometheus.yml"
    config.write_text(yaml.safe_dump(local_config(targets, interval=INTERVAL)))
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with open(directory / "prometheus.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

            def ready() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"prometheus exited: {(directory / 'prometheus.log').read_text()}")
                try:
                    return client.get("/-/ready").status_code == 200
                except httpx.TransportError:
                    return False

            _wait("prometheus ready", ready)
            yield client
    finally:
        process.terminate()
        process.wait(timeout=30)


def _query(prometheus: httpx.Client, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """The instant vector ``expr`` evaluates to; a PromQL error fails the test with its message."""
    params: dict[str, str | float] = {"query": expr}
    if at is not None:
        params["time"] = at
    body = prometheus.get("/api/v1/query", params=params).json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    assert body["data"]["resultType"] == "vector", f"{expr}: {body['data']['resultType']}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _total(prometheus: httpx.Client, expr: str) -> float:
    result = _query(prometheus, expr)
    return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture(scope="module")
def evaluated_at(prometheus: httpx.Client, api_url: str) -> float:
    """Drives two rounds of traffic; returns a time at which Prometheus has scraped both rounds."""
    _wait(
        "api and worker scraped",
        lambda: {s["metric"]["job"] for s in _query(prometheus, "up == 1")} >= {"api", "worker"},
    )
    before = {expr: _total(prometheus, expr) for expr in ROUND_COUNTERS}
    with httpx.Client(base_url=api_url, timeout=120) as client:
        for round_ in (1, 2):
            done = client.post("/v1/generations", json={"class_label": round_, "steps": 2})
            assert done.status_code == 200 and done.json()["status"] == "succeeded", done.text
            # A deadline that passes before the worker starts the job: the worker fails it.
            late = client.post("/v1/generations", json={"class_label": 1, "steps": 2, "timeout_s": 0.001})
            assert late.json()["status"] == "failed", late.text
            # past max_image_body_bytes (4 MiB), the limit of the routes that take an init image
            huge = client.post("/v1/generations", content=b" " * (8 << 20))
            assert huge.status_code == 413, huge.text

            def scraped(round_: int = round_) -> bool:
                return all(
                    _total(prometheus, expr) >= before[expr] + round_ * added
                    for expr, added in ROUND_COUNTERS.items()
                )

            _wait(f"round {round_} scraped", scraped)
    return time.time()


def _has_data(result: list[dict[str, Any]]) -> bool:
    """At least one series, and a number in one of them (a quantile of no observations is NaN)."""
    return any(not math.isnan(float(sample["value"][1])) for sample in result)


def _parts_without_data(prometheus: httpx.Client, at: float, queries: list[tuple[str, str]]) -> list[str]:
    problems = []
    for where, expr in queries:
        for part in parts_with_data(expr):
            result = _query(prometheus, part, at)
            if not _has_data(result):
                problems.append(f"{where}: {part!r} -> {result}")
    return problems


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_dashboard_query_has_data(prometheus: httpx.Client, evaluated_at: float, path: Path) -> None:
    """Each query as the panel runs it, and each without its ``or vector(0)`` fallback."""
    queries = dashboard_queries(path)
    assert queries, f"{path.name} has no queries"
    problems = [
        f"{title}: {expr!r} is empty" for title, expr in queries if not _query(prometheus, expr, evaluated_at)
    ]
    problems += _parts_without_data(prometheus, evaluated_at, queries)
    assert not problems, "\n".join(problems)


def test_every_alert_query_has_data(prometheus: httpx.Client, evaluated_at: float) -> None:
    """The alerts are quiet on a healthy service, so their own expressions may well be empty; the
    parts before the thresholds, and the healthy states inside absent(), must not be
    (see monitoring.parts_with_data)."""
    rules = alert_rules()
    for rule in rules:
        _query(prometheus, rule["expr"], evaluated_at)  # evaluates, empty or not
    problems = _parts_without_data(prometheus, evaluated_at, [(r["alert"], r["expr"]) for r in rules])
    assert not problems, "\n".join(problems)


def test_prometheus_loaded_and_evaluated_every_alert_rule(
    prometheus: httpx.Client, evaluated_at: float
) -> None:
    def evaluated() -> list[dict[str, Any]]:
        groups = prometheus.get("/api/v1/rules", params={"type": "alert"}).json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    _wait("rules evaluated", lambda: all(r["lastEvaluation"] > "0001-01-01T00:00:00Z" for r in evaluated()))
    loaded = evaluated()
    assert [rule["name"] for rule in loaded] == [rule["alert"] for rule in alert_rules()]
    broken = {rule["name"]: rule.get("lastError") for rule in loaded if rule["health"] != "ok"}
    assert not broken, broken
