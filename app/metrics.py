"""The API's Prometheus metrics (prefix ``denoise_``), one registry per app instance."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REQUEST_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "denoise_api_requests_total",
            "HTTP requests by route, method and status code",
            ["route", "method", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "denoise_api_request_duration_seconds",
            "HTTP request duration by route",
            ["route", "method"],
            registry=r,
            buckets=REQUEST_SECONDS_BUCKETS,
        )
        self.jobs_submitted = Counter(
            "denoise_api_jobs_submitted_total", "Jobs enqueued, by model", ["model"], registry=r
        )
        self.queue_depth = Gauge(
            "denoise_api_queue_depth",
            "Jobs waiting or unacknowledged in a model's stream",
            ["model"],
            registry=r,
        )
        self.queued_jobs = Gauge(
            "denoise_api_queued_jobs",
            "Jobs of a model not yet started (the number max_queued_jobs caps)",
            ["model"],
            registry=r,
        )
        self.rejected = Counter(
            "denoise_api_rejected_total",
            "Requests refused before enqueueing, by reason: queue_full, rate_limited, unauthorized, "
            "body_too_large, no_worker (no live worker serves the model)",
            ["reason"],
            registry=r,
        )


def install_metrics_middleware(app: FastAPI, metrics: ApiMetrics) -> None:
    @app.middleware("http")
    async def _observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.requests.labels(path, request.method, str(response.status_code)).inc()
        metrics.duration.labels(path, request.method).observe(time.perf_counter() - started)
        return response
