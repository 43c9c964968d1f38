"""The worker's lifecycle as a guarded state machine.

    starting -> ready <-> busy -> draining -> stopped
                  \\________________/

``starting`` while the worker registers; ``ready`` when idle; ``busy`` while images are in
flight; ``draining`` once a stop is requested (SIGTERM) or a burst run has emptied the queue:
no new jobs, the ones in flight finish within the grace period or are left to a peer;
``stopped`` at exit. The state is published in the heartbeat, and ``/readyz`` counts a worker
only while it is ready or busy (``protocol.schema.SERVING_STATES``).
"""

from __future__ import annotations

import threading
import time

from protocol.schema import WorkerState

TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.STARTING: frozenset({WorkerState.READY}),
    WorkerState.READY: frozenset({WorkerState.BUSY, WorkerState.DRAINING}),
    WorkerState.BUSY: frozenset({WorkerState.READY, WorkerState.DRAINING}),
    WorkerState.DRAINING: frozenset({WorkerState.STOPPED}),
    WorkerState.STOPPED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A transition the lifecycle does not allow (a bug in the worker's loop)."""


class Lifecycle:
    """The current ``WorkerState``, moved by the worker's main loop along allowed edges only.

    Args:
        grace_s: how long after a stop request in-flight jobs may still run.
    """

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._state = WorkerState.STARTING
        self._stop_requested = threading.Event()  # set from a signal handler or another thread
        self._grace_ends = float("inf")

    @property
    def state(self) -> WorkerState:
        return self._state

    def to(self, target: WorkerState) -> None:
        """Moves to ``target``; staying in the current state is allowed and does nothing.

        Raises:
            IllegalTransition: ``target`` is not reachable from the current state in one step.
        """
        if target is self._state:
            return
        allowed = TRANSITIONS[self._state]
        if target not in allowed:
            choices = ", ".join(sorted(allowed)) or "none"
            raise IllegalTransition(f"worker state {self._state} cannot become {target} (allowed: {choices})")
        self._state = target

    def settle(self, busy: bool) -> None:
        """``busy`` or ``ready`` by whether images are in flight; while draining it stays draining."""
        if self._state is not WorkerState.DRAINING:
            self.to(WorkerState.BUSY if busy else WorkerState.READY)

    def request_stop(self) -> None:
        """Asks the loop to drain (safe from a signal handler); ``draining`` acts on it."""
        self._stop_requested.set()

    def draining(self) -> bool:
        """Whether the worker drains; the first call after a stop request moves to ``draining``
        and starts the grace period."""
        if self._stop_requested.is_set() and self._state in (WorkerState.READY, WorkerState.BUSY):
            self.to(WorkerState.DRAINING)
            self._grace_ends = time.monotonic() + self.grace_s
        return self._state is WorkerState.DRAINING

    def grace_over(self) -> bool:
        return time.monotonic() > self._grace_ends

    def stop(self) -> None:
        """Ends the lifecycle: ``stopped``, through ``draining`` (a burst run gets there unasked)."""
        self._stop_requested.set()
        self.to(WorkerState.DRAINING)
        self.to(WorkerState.STOPPED)
