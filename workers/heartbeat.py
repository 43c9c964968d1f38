"""The worker's heartbeat: a daemon thread that publishes its state, the models it serves and its
in-flight image count every ``heartbeat_interval_s`` (``/readyz`` and the API's model list read
it), keeps the leases of its in-flight stream entries (the main loop may be in a long forward)
and registers its models again. It beats while draining too, as the grace period lets jobs
finish."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import redis

from protocol.schema import WorkerHeartbeat
from workers.lifecycle import Lifecycle
from workers.served_model import ServedModel
from workers.settings import WorkerSettings

log = logging.getLogger("workers.worker")


class Heartbeat:
    """Args:
    served: the worker's models; the thread reads their jobs through ``ServedModel.jobs_now``.
    """

    def __init__(self, settings: WorkerSettings, served: list[ServedModel], lifecycle: Lifecycle) -> None:
        self.settings = settings
        self.served = served
        self.lifecycle = lifecycle
        self.presence = served[0].store  # the heartbeat key is the worker's: any store writes it
        self._stopped = threading.Event()

    def beat(self) -> None:
        beat = WorkerHeartbeat(
            worker=self.settings.worker_name,
            models=[served.name for served in self.served],
            state=self.lifecycle.state,
            in_flight=sum(len(job.states) for served in self.served for job in served.jobs_now()),
            at=time.time(),
        )
        self.presence.heartbeat(beat, self.settings.heartbeat_ttl_s)

    def start(self) -> None:
        """Beats once now, then every interval on a daemon thread until ``stop``."""
        self.beat()
        threading.Thread(target=self._loop, name="heartbeat", daemon=True).start()

    def stop(self) -> None:
        """Stops the thread and deletes the heartbeat."""
        self._stopped.set()
        with contextlib.suppress(redis.RedisError):  # it expires by itself otherwise
            self.presence.clear_heartbeat()

    def _loop(self) -> None:
        while not self._stopped.wait(self.settings.heartbeat_interval_s):
            try:
                self.beat()
                for served in self.served:
                    served.store.refresh_leases([job.entry_id for job in served.jobs_now()])
                    served.store.register_model(served.model.info)
                    served.store.restore_tokenizer(served.model.info.name, served.model.tokenizer_json())
            except redis.RedisError as error:
                log.warning("heartbeat failed: %s", error)
