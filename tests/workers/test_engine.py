"""The engine's in-flight set and row budget, on the real bundled model: admission counts rows
(a guided image 2, an unguided one 1), a tick takes the oldest images that fit, and returns
what it did as a ``TickStats`` value."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.conftest import resolved_config
from workers.sampling.engine import BatchFailed, SamplingEngine, TickStats, generate
from workers.sampling.state import new_states, rows_of


@pytest.fixture(scope="module")
def job(bundled_model):  # type: ignore[no-untyped-def]
    """Unstarted states of one job: ``job("a", images=3, guidance=2.0, steps=2)``."""

    def make(job_id: str, images: int = 1, guidance: float = 1.0, steps: int = 2):  # type: ignore[no-untyped-def]
        config = resolved_config(num_images=images, guidance_scale=guidance, steps=steps, seed=len(job_id))
        return new_states(job_id, config, bundled_model)

    return make


def test_a_guided_image_costs_two_rows_and_an_unguided_one_one(bundled_model, job) -> None:  # type: ignore[no-untyped-def]
    engine = SamplingEngine(bundled_model, max_rows=5)
    assert engine.rows_free == 5
    engine.admit(job("guided", guidance=2.0))
    assert (engine.rows_in_flight, engine.rows_free) == (2, 3)
    engine.admit(job("plain", images=2))
    assert (engine.rows_in_flight, engine.rows_free) == (4, 1)
    engine.admit(job("over", guidance=3.0))  # a job is admitted whole, even past the budget
    assert (engine.rows_in_flight, engine.rows_free) == (6, 0)


def test_a_cap_of_five_rows_ticks_exactly_what_fits_oldest_first(bundled_model, job) -> None:  # type: ignore[no-untyped-def]
    engine = SamplingEngine(bundled_model, max_rows=5)
    first, second, third = job("first", images=3, guidance=2.0), job("second"), job("third")
    for states in (first, second, third):
        engine.admit(states)
    # first's two guided images (4 rows); its third does not fit, so it waits, and the next
    # job's unguided image fills the fifth row; the third job waits too
    assert engine.batch() == [first[0], first[1], second[0]]
    stats = engine.tick()
    assert stats is not None and (stats.rows, stats.states) == (5, 3)
    assert [s.step_index for s in (*first, *second, *third)] == [1, 1, 0, 1, 0]


def test_the_first_image_goes_even_wider_than_the_cap(bundled_model, job) -> None:  # type: ignore[no-untyped-def]
    engine = SamplingEngine(bundled_model, max_rows=1)
    guided = job("guided", images=2, guidance=2.0)
    engine.admit(guided)
    stats = engine.tick()
    assert stats is not None and (stats.rows, stats.states) == (2, 1)
    assert [s.step_index for s in guided] == [1, 0]


def test_tick_returns_its_statistics_as_a_frozen_value(bundled_model, job) -> None:  # type: ignore[no-untyped-def]
    engine = SamplingEngine(bundled_model, max_rows=32)
    assert engine.tick() is None  # nothing in flight
    engine.admit(job("a", images=2, guidance=2.0))
    engine.admit(job("b"))
    stats = engine.tick()
    assert isinstance(stats, TickStats)
    assert (stats.rows, stats.states) == (5, 3)
    assert 0 < stats.forward_seconds <= stats.step_seconds
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.rows = 0  # type: ignore[misc]


def test_finished_hands_back_whole_jobs_and_drop_forgets_one(bundled_model, job) -> None:  # type: ignore[no-untyped-def]
    engine = SamplingEngine(bundled_model, max_rows=32)
    short, long, gone = job("short", images=2, steps=1), job("long", steps=3), job("gone", steps=3)
    for states in (short, long, gone):
        engine.admit(states)
    assert engine.finished() == []
    engine.tick()
    assert engine.finished() == [short]  # handed back once, then forgotten
    assert engine.finished() == []
    assert engine.drop("gone") == gone and engine.drop("gone") == []
    assert engine.rows_in_flight == 1
    while engine.tick() is not None:
        pass
    assert engine.finished() == [long] and engine.rows_in_flight == 0


def test_admit_takes_one_job_at_a_time(bundled_model, job) -> None:  # type: ignore[no-untyped-def]
    engine = SamplingEngine(bundled_model, max_rows=8)
    with pytest.raises(ValueError, match="one job"):
        engine.admit(job("a") + job("b"))
    with pytest.raises(ValueError, match="one job"):
        engine.admit([])
    engine.admit(job("a"))
    with pytest.raises(ValueError, match="already in flight"):
        engine.admit(job("a"))
    with pytest.raises(ValueError, match="at least 1"):
        SamplingEngine(bundled_model, max_rows=0)


def test_a_failed_step_names_the_jobs_in_its_batch(bundled_model, job) -> None:  # type: ignore[no-untyped-def]
    engine = SamplingEngine(bundled_model, max_rows=2)
    broken, fine, waiting = job("broken"), job("fine"), job("waiting")
    broken[0].latent = torch.zeros(1, 3, 5, 5)  # not the model's shape: the step raises
    for states in (broken, fine, waiting):
        engine.admit(states)
    with pytest.raises(BatchFailed) as failed:
        engine.tick()
    assert failed.value.job_ids == ["broken", "fine"]  # "waiting" was not in the 2-row batch
    assert isinstance(failed.value.error, RuntimeError)


def test_run_to_completion_under_a_small_cap_finishes_every_image(bundled_model, job) -> None:  # type: ignore[no-untyped-def]
    states = job("a", images=2, guidance=2.0, steps=3) + job("b", steps=2)
    engine = SamplingEngine(bundled_model, max_rows=2)
    assert engine.run_to_completion(states) == states
    assert all(s.done and s.step_index == s.num_steps for s in states)
    assert engine.rows_in_flight == 0 and engine.finished() == []


def test_generate_runs_the_whole_request_in_each_forward(bundled_model) -> None:  # type: ignore[no-untyped-def]
    config = resolved_config(num_images=3, guidance_scale=2.0, steps=2)
    states = generate(bundled_model, config)
    assert rows_of(states) == 0 and [s.step_index for s in states] == [2, 2, 2]
    # each step advanced all three images together: one shared step time per step
    assert states[0].step_seconds == states[1].step_seconds == states[2].step_seconds
