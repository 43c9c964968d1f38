"""A model's optimized schedules: the file is checked when read, advertised in ModelInfo, and the
engine visits exactly the stored timesteps; on the exact model they beat every hand-made schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.resolution import Limits, RequestFieldError, resolve_request
from protocol.schema import GenerationRequest
from workers.evaluation.exact_error import exact_error
from workers.evaluation.noise_models import exact_mixture
from workers.evaluation.optimize_schedules import resolved
from workers.models.loading import LoadedModel
from workers.models.optimized_schedules import (
    OPTIMIZED_SCHEDULES_FILE,
    read_optimized_schedules,
    steps_by_sampler,
    write_optimized_schedules,
)
from workers.models.registry import lookup
from workers.sampling.engine import generate
from workers.sampling.state import visited_timesteps

REQUIRED_STEPS = {5, 8, 10, 15, 20}


def write(folder: Path, schedules: dict) -> Path:  # type: ignore[type-arg]
    return write_optimized_schedules(folder, {"model": "m", "schedules": schedules})


def test_a_table_round_trips_and_is_advertised_by_steps(tmp_path: Path) -> None:
    write(
        tmp_path, {"unipc": {"3": {"timesteps": [999, 500, 0], "error": 1.0}, "2": {"timesteps": [900, 10]}}}
    )
    table = read_optimized_schedules(tmp_path, 1000)
    assert table == {"unipc": {2: [900, 10], 3: [999, 500, 0]}}
    assert steps_by_sampler(table) == {"unipc": [2, 3]}
    assert read_optimized_schedules(tmp_path / "absent", 1000) == {}


@pytest.mark.parametrize(
    ("schedules", "says"),
    [
        ({"unipc": {"3": {"timesteps": [999, 500]}}}, "3 distinct descending"),
        ({"unipc": {"2": {"timesteps": [10, 500]}}}, "distinct descending"),
        ({"unipc": {"2": {"timesteps": [1000, 5]}}}, "[0, 1000)"),
        ({"euler_a": {"2": {"timesteps": [999, 5]}}}, "takes no optimized schedule"),
        ({"heun": {"2": {"timesteps": [999, 5]}}}, "takes no optimized schedule"),
    ],
)
def test_a_bad_table_is_refused_naming_the_file(tmp_path: Path, schedules: dict, says: str) -> None:  # type: ignore[type-arg]
    path = write(tmp_path, schedules)
    with pytest.raises(ValueError, match=str(path)) as error:
        read_optimized_schedules(tmp_path, 1000)
    assert says in str(error.value)
    (tmp_path / OPTIMIZED_SCHEDULES_FILE).write_text(json.dumps({"format": 9, "schedules": {}}))
    with pytest.raises(ValueError, match="format"):
        read_optimized_schedules(tmp_path, 1000)


@pytest.mark.parametrize("name", ["mnist-gauss", "mnist-unet"])
def test_the_bundled_models_serve_their_tables(name: str, request: pytest.FixtureRequest) -> None:
    model: LoadedModel = request.getfixturevalue("gauss_model" if name == "mnist-gauss" else "bundled_model")
    table = read_optimized_schedules(lookup(name).folder(), model.info.num_train_timesteps)
    assert model.optimized_schedules == table
    assert model.info.optimized_schedules == steps_by_sampler(table)
    for sampler in ("ddim", "dpmpp_2m", "unipc"):
        assert set(table[sampler]) >= REQUIRED_STEPS, sampler
    infos = {name: model.info}
    for sampler, by_steps in table.items():
        steps = min(by_steps)
        config = resolve_request(
            GenerationRequest(class_label=3, seed=1, sampler=sampler, steps=steps, schedule="optimized"),
            infos,
            name,
            Limits.absolute(),
        )
        state = generate(model, config)[0]
        assert visited_timesteps(state.scheduler) == [float(t) for t in by_steps[steps]], sampler
    with pytest.raises(RequestFieldError, match="at steps") as refused:
        resolve_request(
            GenerationRequest(sampler="unipc", steps=7, schedule="optimized"), infos, name, Limits.absolute()
        )
    assert refused.value.field == "steps"


def test_on_the_exact_model_the_optimized_schedule_beats_every_hand_made_one(
    gauss_model: LoadedModel,
) -> None:
    """Recomputed, not read from the record: the closed-form FD* on classes the search averaged."""
    mixture = exact_mixture(gauss_model)
    for sampler, steps in (("unipc", 5), ("dpmpp_2m", 10), ("ddim", 8)):
        errors = {}
        for schedule in ("uniform", "linspace", "karras", "cosine", "optimized"):
            config = resolved(
                gauss_model, sampler=sampler, steps=steps, schedule=schedule, guidance_scale=1.0
            )
            optimized = gauss_model.optimized_schedules
            errors[schedule] = exact_error(
                mixture, gauss_model.scheduler_config, config, (0, 4, 8), optimized
            ).fd
        best_hand_made = min(v for k, v in errors.items() if k != "optimized")
        assert errors["optimized"] < best_hand_made, (sampler, steps, errors)
