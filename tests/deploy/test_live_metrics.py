"""The dashboard and alert rules query series that the live API and worker actually expose.

test_static_manifests.py checks the names against the metric classes; this scrapes the running
processes (the session fixtures) after one generation, so it also catches a metric that is
defined but never registered or served, and label names or values that the code never writes.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import get_args

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from protocol.schema import JobStatus
from tests.deploy.test_static_manifests import METRIC_NAME

ROOT = Path(__file__).resolve().parents[2]
# The alert rules' unit tests (*_test.yml) hold made-up series, with the labels Prometheus adds.
QUERY_FILES = sorted(
    [
        *(ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"),
        *(p for p in (ROOT / "deploy" / "prometheus").glob("*.yml") if not p.stem.endswith("_test")),
    ]
)
# The series a family is sampled as, by its type (a counter `x` is sampled as `x_total`).
SERIES_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
}
# `metric{label="value", ...}` in a query; JSON escapes the quotes, so unescape the text first.
SELECTOR = re.compile(r"\b(denoise_[a-z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def _families(text: str) -> list[Metric]:
    return list(text_string_to_metric_families(text))


def _series(families: list[Metric]) -> dict[str, list[dict[str, str]]]:
    """Every series name the families expose -> the label sets of its samples (maybe none yet)."""
    series: dict[str, list[dict[str, str]]] = {}
    for family in families:
        for suffix in SERIES_SUFFIXES.get(family.type, ("",)):
            series.setdefault(family.name + suffix, [])
        for sample in family.samples:
            series.setdefault(sample.name, []).append(dict(sample.labels))
    return series


@pytest.fixture(scope="module")
def live_series(api_url: str, worker_process: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    """The API's and the worker's series after one finished generation."""
    worker_metrics_url = worker_process["metrics_url"]
    with httpx.Client(base_url=api_url, timeout=120) as client:
        response = client.post("/v1/generations", json={"class_label": 1, "steps": 2})
        assert response.status_code == 200, response.text
        api = _families(client.get("/metrics").text)
    # The worker counts a job after storing its result: wait for that count to show.
    deadline = time.monotonic() + 10
    while True:
        worker = _families(httpx.get(worker_metrics_url, timeout=10).text)
        finished = _series(worker).get("denoise_worker_jobs_finished_total")
        if finished or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return _series(api + worker)


def test_dashboards_and_alerts_query_series_the_live_processes_expose(
    live_series: dict[str, list[dict[str, str]]],
) -> None:
    series = live_series
    assert "denoise_api_requests_total" in series and "denoise_worker_images_generated_total" in series
    statuses = set(get_args(JobStatus))
    for path in QUERY_FILES:
        text = path.read_text().replace('\\"', '"')
        where = path.relative_to(ROOT)
        unknown = sorted(set(METRIC_NAME.findall(text)) - set(series))
        assert not unknown, f"{where} queries series that no live process exposes: {unknown}"
        for name, matchers in SELECTOR.findall(text):
            samples = series[name]
            assert samples, f"{where}: {name} has no samples after a generation"
            for label, operator, value in MATCHER.findall(matchers):
                assert any(label in sample for sample in samples), f"{where}: {name} has no label {label!r}"
                if operator != "=" or any(sample.get(label) == value for sample in samples):
                    continue
                # Not seen after one successful generation; a job status still has to exist.
                assert label == "status" and value in statuses, (
                    f"{where}: {name}{{{label}={value!r}}} never set"
                )


def test_generation_latency_series_carries_the_queried_route(
    live_series: dict[str, list[dict[str, str]]],
) -> None:
    """The latency panel and alert filter on the route template: it must be what the API writes."""
    samples = live_series["denoise_api_request_duration_seconds_bucket"]
    assert any(s.get("route") == "/v1/generations" and s.get("method") == "POST" for s in samples), samples
