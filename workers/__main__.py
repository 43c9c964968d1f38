"""python -m workers: run one worker process (one per GPU), serving every model of ``DENOISE_MODELS``,
until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

# Nothing is ever fetched from a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )

    from workers.settings import WorkerSettings

    settings = WorkerSettings()  # first: a bad setting (an unknown model) fails before torch loads

    import redis
    import torch
    from prometheus_client import start_http_server

    from workers.metrics import WorkerMetrics
    from workers.models.loading import load_model, resolve_device
    from workers.models.registry import lookup
    from workers.worker import Worker

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    metrics = WorkerMetrics()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=metrics.registry)
    device, dtype = resolve_device(settings.device, settings.dtype)
    models = []
    for name in settings.models:  # every name is in the registry: the settings checked it
        model = load_model(
            lookup(name, settings.registry_file),
            device,
            dtype,
            settings.channels_last,
            settings.compile,
            settings.max_batch,
        )
        models.append(model)
        logging.getLogger("workers").info(
            "loaded model %s on %s/%s in %.2f s", name, device, dtype, model.load_seconds
        )
    # a stream entry or record holding bytes that are not UTF-8 (not written by this service)
    # must reach the dead-letter path, not crash the decoder: such bytes become U+FFFD
    client = redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        encoding_errors="replace",
        health_check_interval=30,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
    )
    worker = Worker(settings, models, client, metrics)

    def stop(signum: int, _frame: object) -> None:
        logging.getLogger("workers").info("signal %d: finishing in-flight jobs, then exiting", signum)
        worker.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run(burst=args.burst)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
