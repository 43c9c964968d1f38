"""The worker's heartbeat: a daemon thread that publishes its state and in-flight image count
every ``heartbeat_interval_s`` (``/readyz`` reads it), keeps the leases of its in-flight stream
entries (the main loop may be in a long forward) and registers its model again. It beats while
draining too, as the grace period lets jobs finish."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import redis

from protocol.schema import ModelInfo, WorkerHeartbeat
from workers.in_flight import InFlightJob
from workers.job_store import WorkerJobStore
from workers.lifecycle import Lifecycle
from workers.settings import WorkerSettings

log = logging.getLogger("workers.worker")


class Heartbeat:
    """Args:
    jobs: the jobs in flight, as a list the thread may iterate (a copy).
    """

    def __init__(
        self,
        store: WorkerJobStore,
        settings: WorkerSettings,
        model: ModelInfo,
        lifecycle: Lifecycle,
        jobs: Callable[[], list[InFlightJob]],
    ) -> None:
        self.store = store
        self.settings = settings
        self.model = model
        self.lifecycle = lifecycle
        self.jobs = jobs
        self._stopped = threading.Event()

    def beat(self) -> None:
        beat = WorkerHeartbeat(
            worker=self.settings.worker_name,
            model=self.model.name,
            state=self.lifecycle.state,
            in_flight=sum(len(job.states) for job in self.jobs()),
            at=time.time(),
        )
        self.store.heartbeat(beat, self.settings.heartbeat_ttl_s)

    def start(self) -> None:
        """Beats once now, then every interval on a daemon thread until ``stop``."""
        self.beat()
        threading.Thread(target=self._loop, name="heartbeat", daemon=True).start()

    def stop(self) -> None:
        """Stops the thread and deletes the heartbeat."""
        self._stopped.set()
        with contextlib.suppress(redis.RedisError):  # it expires by itself otherwise
            self.store.clear_heartbeat()

    def _loop(self) -> None:
        while not self._stopped.wait(self.settings.heartbeat_interval_s):
            try:
                self.beat()
                self.store.refresh_leases([job.entry_id for job in self.jobs()])
                self.store.register_model(self.model)
            except redis.RedisError as error:
                log.warning("heartbeat failed: %s", error)
