"""The worker's Prometheus metrics (served on its own port, prefix ``denoise_``).

Everything that happens to one model's stream, engine or jobs carries a ``model`` label
(``ModelMetrics`` binds it); the busy and in-flight gauges are the worker's as a whole.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

# histogram bucket bounds, in seconds: a job (queue wait, reverse process, end to end) takes 5 ms
# to minutes; one step, forward or encoding takes 1 ms to about a second
JOB_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STEP_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
MODEL = ["model"]


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.queue_wait = Histogram(
            "denoise_worker_queue_wait_seconds",
            "Enqueue to start of sampling",
            MODEL,
            registry=r,
            buckets=JOB_SECONDS_BUCKETS,
        )
        self.inference = Histogram(
            "denoise_worker_inference_seconds",
            "Reverse process of a job (all steps)",
            MODEL,
            registry=r,
            buckets=JOB_SECONDS_BUCKETS,
        )
        self.step = Histogram(
            "denoise_worker_step_seconds",
            "One batched denoising step (forward + scheduler steps)",
            MODEL,
            registry=r,
            buckets=STEP_SECONDS_BUCKETS,
        )
        self.encode = Histogram(
            "denoise_worker_encode_seconds",
            "Decoding and PNG encoding of a job",
            MODEL,
            registry=r,
            buckets=STEP_SECONDS_BUCKETS,
        )
        self.total = Histogram(
            "denoise_worker_job_total_seconds",
            "Enqueue to stored result",
            MODEL,
            registry=r,
            buckets=JOB_SECONDS_BUCKETS,
        )
        self.forward = Histogram(
            "denoise_worker_forward_seconds",
            "One batched UNet forward",
            MODEL,
            registry=r,
            buckets=STEP_SECONDS_BUCKETS,
        )
        self.batch_rows = Histogram(
            "denoise_worker_batch_rows",
            "Rows per model forward",
            MODEL,
            registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.noise_estimate = Histogram(
            "denoise_worker_image_noise_estimate",
            "Wavelet-MAD noise estimate of each generated image, in gray levels",
            MODEL,
            registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
        )
        self.jobs_finished = Counter(
            "denoise_worker_jobs_finished_total",
            "Jobs finished, by model and status",
            ["model", "status"],
            registry=r,
        )
        self.reclaimed = Counter(
            "denoise_worker_jobs_reclaimed_total",
            "Jobs taken over from a worker whose lease ran out (it died)",
            MODEL,
            registry=r,
        )
        self.dead_lettered = Counter(
            "denoise_worker_dead_lettered_total",
            "Stream entries moved to the dead-letter stream (malformed, corrupt, or poison jobs)",
            MODEL,
            registry=r,
        )
        self.results_discarded = Counter(
            "denoise_worker_results_discarded_total",
            "Results not stored because the job had already been finished (by another worker)",
            MODEL,
            registry=r,
        )
        self.images = Counter("denoise_worker_images_generated_total", "Images generated", MODEL, registry=r)
        self.model_load = Gauge(
            "denoise_worker_model_load_seconds",
            "Time to load the model (set once the worker serves it)",
            MODEL,
            registry=r,
        )
        self.heap_trim = Histogram(
            "denoise_worker_heap_trim_seconds",
            "One malloc_trim of the worker's heap (workers.heap_trim)",
            registry=r,
            buckets=STEP_SECONDS_BUCKETS,
        )
        self.heap_trim_released = Counter(
            "denoise_worker_heap_trim_released_bytes_total",
            "Resident memory handed back to the OS by heap trims",
            registry=r,
        )
        ProcessCollector(registry=r)  # process_resident_memory_bytes and the rest
        self.busy = Gauge("denoise_worker_busy", "1 while images are in flight", registry=r)
        self.in_flight = Gauge("denoise_worker_states_in_flight", "Images being sampled", registry=r)

    def for_model(self, model: str) -> ModelMetrics:
        return ModelMetrics(self, model)


class ModelMetrics:
    """The worker's metrics with ``model`` bound: what one served model's loop writes."""

    def __init__(self, metrics: WorkerMetrics, model: str) -> None:
        self.model = model
        self.queue_wait = metrics.queue_wait.labels(model=model)
        self.inference = metrics.inference.labels(model=model)
        self.step = metrics.step.labels(model=model)
        self.encode = metrics.encode.labels(model=model)
        self.total = metrics.total.labels(model=model)
        self.forward = metrics.forward.labels(model=model)
        self.batch_rows = metrics.batch_rows.labels(model=model)
        self.noise_estimate = metrics.noise_estimate.labels(model=model)
        self.reclaimed = metrics.reclaimed.labels(model=model)
        self.dead_lettered = metrics.dead_lettered.labels(model=model)
        self.results_discarded = metrics.results_discarded.labels(model=model)
        self.images = metrics.images.labels(model=model)
        self.model_load = metrics.model_load.labels(model=model)
        self._jobs_finished = metrics.jobs_finished

    def jobs_finished(self, status: str) -> Counter:
        return self._jobs_finished.labels(model=self.model, status=status)
