"""The API's Prometheus metrics (prefix ``denoise_``), one registry per app instance."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import get_args

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.webhook_sender import AttemptResult

REQUEST_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
WEBHOOK_OUTCOMES = ("delivered", "dead_lettered", "superseded")
# from an event to its delivery: one attempt (sub-second) up to the retries of a long outage
WEBHOOK_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14_400)


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
            "body_too_large, body_timeout, no_worker (no live worker serves the model)",
            ["reason"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "denoise_webhook_deliveries_total",
            "Webhook deliveries finished by this replica, by outcome: delivered (a 2xx), "
            "dead_lettered (attempts used up, 410 Gone, a refused address or a malformed request), "
            "superseded (a progress replaced by a newer one before its first attempt)",
            ["outcome"],
            registry=r,
        )
        self.webhook_attempts = Counter(
            "denoise_webhook_attempts_total",
            "Webhook delivery attempts by result: delivered, http_error, timeout, connection_error, "
            "unresolved (DNS), refused (a private or otherwise forbidden address)",
            ["result"],
            registry=r,
        )
        # every outcome and result exported from the start (at 0), so rates and alerts see them
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_deliveries.labels(outcome)
        for result in get_args(AttemptResult):
            self.webhook_attempts.labels(result)
        self.webhook_attempt_seconds = Histogram(
            "denoise_webhook_attempt_duration_seconds",
            "One webhook delivery attempt: resolving, connecting and the receiver's answer",
            registry=r,
            buckets=REQUEST_SECONDS_BUCKETS,
        )
        self.webhook_latency = Histogram(
            "denoise_webhook_delivery_latency_seconds",
            "From a job event to its webhook's successful delivery, retries included",
            registry=r,
            buckets=WEBHOOK_LATENCY_BUCKETS,
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
