"""The worker's lifecycle: starting -> ready <-> busy -> draining -> stopped, and nothing else."""

from __future__ import annotations

import pytest

from protocol.schema import SERVING_STATES, WorkerHeartbeat, WorkerState
from workers.lifecycle import TRANSITIONS, IllegalTransition, Lifecycle


def test_a_legal_sequence_passes() -> None:
    lifecycle = Lifecycle(grace_s=60)
    assert lifecycle.state is WorkerState.STARTING
    for state in ("ready", "busy", "ready", "busy", "draining", "stopped"):
        lifecycle.to(WorkerState(state))
        assert lifecycle.state == state


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ((), WorkerState.BUSY),  # busy before it is ready
        ((), WorkerState.DRAINING),
        ((WorkerState.READY,), WorkerState.STOPPED),  # stopped without draining
        ((WorkerState.READY,), WorkerState.STARTING),
        ((WorkerState.READY, WorkerState.DRAINING), WorkerState.READY),  # no way back from draining
        ((WorkerState.READY, WorkerState.DRAINING, WorkerState.STOPPED), WorkerState.READY),
    ],
)
def test_an_illegal_transition_is_refused(path: tuple[WorkerState, ...], illegal: WorkerState) -> None:
    lifecycle = Lifecycle(grace_s=60)
    for state in path:
        lifecycle.to(state)
    before = lifecycle.state
    with pytest.raises(IllegalTransition, match=f"cannot become {illegal}"):
        lifecycle.to(illegal)
    assert lifecycle.state is before


def test_every_state_has_its_transitions_and_only_ready_and_busy_serve() -> None:
    assert set(TRANSITIONS) == set(WorkerState)
    assert {state for state in WorkerState if state in SERVING_STATES} == {
        WorkerState.READY,
        WorkerState.BUSY,
    }


def test_a_stop_request_drains_then_stops() -> None:
    lifecycle = Lifecycle(grace_s=0)
    lifecycle.to(WorkerState.READY)
    lifecycle.settle(busy=True)
    assert lifecycle.state is WorkerState.BUSY and not lifecycle.draining()
    assert not lifecycle.grace_over()  # no grace period runs before a stop request
    lifecycle.request_stop()
    assert lifecycle.draining() and lifecycle.state is WorkerState.DRAINING
    lifecycle.settle(busy=False)  # ticks while draining leave it draining
    assert lifecycle.state is WorkerState.DRAINING and lifecycle.grace_over()
    lifecycle.stop()
    assert lifecycle.state is WorkerState.STOPPED


def test_a_burst_run_stops_through_draining_unasked() -> None:
    lifecycle = Lifecycle(grace_s=60)
    lifecycle.to(WorkerState.READY)
    lifecycle.stop()
    assert lifecycle.state is WorkerState.STOPPED


def test_the_heartbeat_carries_the_state_by_name() -> None:
    beat = WorkerHeartbeat(worker="w", models=["m"], state=WorkerState.DRAINING, in_flight=3, at=1.0)
    assert '"state":"draining"' in beat.model_dump_json()
    assert WorkerHeartbeat.model_validate_json(beat.model_dump_json()).state is WorkerState.DRAINING
