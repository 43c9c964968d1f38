"""resolve_request: defaults, and every knob the chosen sampler would ignore is refused."""

from __future__ import annotations

import pytest

from protocol.resolution import Limits, RequestFieldError, resolve_request
from protocol.samplers import SAMPLERS
from protocol.schema import MODEL_SCHEDULES, GenerationRequest, ModelInfo

DIGITS = ModelInfo(
    name="digits",
    conditioning="class_label",
    num_classes=10,
    image_size=28,
    channels=1,
    default_guidance_scale=2.0,
    training_noise_schedule="squaredcos_cap_v2",
    num_train_timesteps=1000,
    prediction_type="epsilon",
)
UNCONDITIONAL = DIGITS.model_copy(update={"name": "plain", "conditioning": "none", "num_classes": None})
MODELS = {"digits": DIGITS, "plain": UNCONDITIONAL}
LIMITS = Limits(max_steps=200, max_images=8, max_guidance_scale=10.0)


def resolve(**fields: object):  # type: ignore[no-untyped-def]
    return resolve_request(GenerationRequest(**fields), MODELS, "digits", LIMITS)  # type: ignore[arg-type]


def refused(**fields: object) -> RequestFieldError:
    with pytest.raises(RequestFieldError) as info:
        resolve(**fields)
    return info.value


def test_defaults_are_filled_and_returned() -> None:
    config = resolve(class_label=7, seed=1)
    assert (config.model, config.sampler, config.schedule, config.steps) == ("digits", "ddim", "uniform", 50)
    assert config.deterministic is True and config.eta == 0.0
    assert config.guidance_scale == 2.0  # the model's default
    assert config.variance_bound is None and config.variance_scale is None


def test_seed_is_assigned_when_absent() -> None:
    seeds = {resolve(class_label=1).seed for _ in range(5)}
    assert len(seeds) == 5 and all(0 <= s < 2**53 for s in seeds)


def test_ddim_with_eta_is_stochastic_and_takes_variance_knobs() -> None:
    config = resolve(class_label=3, eta=0.5, variance_bound=0.1, variance_scale=0.8)
    assert config.deterministic is False
    assert (config.eta, config.variance_bound, config.variance_scale) == (0.5, 0.1, 0.8)


def test_ddim_deterministic_false_defaults_to_eta_one() -> None:
    assert resolve(deterministic=False).eta == 1.0


def test_ddpm_defaults_to_fixed_small() -> None:
    config = resolve(sampler="ddpm", class_label=1)
    assert config.variance_type == "fixed_small" and config.deterministic is False
    assert config.variance_scale == 1.0


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"sampler": "euler", "eta": 0.3}, "eta", "samplers that honour it: ddim"),
        ({"sampler": "dpmpp_2m", "variance_bound": 0.1}, "variance_bound", "ddpm, ddim"),
        ({"sampler": "ddim", "variance_type": "fixed_large"}, "variance_type", "ddpm"),
        ({"sampler": "euler", "clip_sample": True}, "clip_sample", "ddpm, ddim"),
        ({"sampler": "ddpm", "deterministic": True}, "deterministic", "always injects noise"),
        ({"sampler": "unipc", "deterministic": False}, "deterministic", "deterministic only"),
        ({"deterministic": True, "eta": 0.5}, "eta", "must be 0"),
        ({"deterministic": False, "eta": 0.0}, "eta", "above 0"),
        ({"variance_bound": 0.1}, "variance_bound", "no effect when no noise"),
        ({"sampler": "euler_a", "schedule": "karras"}, "schedule", "uniform, leading, linspace"),
        ({"sampler": "ddpm", "variance_form": "posterior"}, "variance_form", "send one of them"),
        ({"sampler": "ddim", "eta": 1.0, "variance_form": "marginal"}, "variance_form", "honour it: ddpm"),
        ({"schedule": "ays"}, "schedule", "trained on 'squaredcos_cap_v2'"),
        ({"schedule": "optimized"}, "schedule", "no optimized schedule for sampler 'ddim'"),
        ({"class_label": 10}, "class_label", "between 0 and 9"),
        ({"model": "plain", "class_label": 1}, "class_label", "takes no class label"),
        ({"prompt": "a seven"}, "prompt", "takes no prompt"),
        ({"model": "nope"}, "model", "available: digits, plain"),
        ({"steps": 201}, "steps", "between 1 and 200"),
        ({"num_images": 9}, "num_images", "between 1 and 8"),
        ({"class_label": 1, "guidance_scale": 11}, "guidance_scale", "between 0 and 10"),
        ({"guidance_scale": 3.0}, "guidance_scale", "needs a condition"),
        ({"class_label": 1, "guidance_scale": 1.0, "guidance_rescale": 0.5}, "guidance_rescale", "no effect"),
        ({"clip_sample": True, "dynamic_thresholding": True}, "dynamic_thresholding", "choose one"),
        ({"dynamic_thresholding_ratio": 0.9}, "dynamic_thresholding_ratio", "needs dynamic_thresholding"),
        ({"seed": 2**63 - 1, "num_images": 2}, "seed", "seed + i"),
    ],
)
def test_refusals_name_the_field_and_the_allowed_values(
    fields: dict[str, object], field: str, says: str
) -> None:
    error = refused(**fields)
    assert error.field == field
    assert says in error.message


def test_every_sampler_accepts_its_own_schedules_and_knobs() -> None:
    for sampler in SAMPLERS.values():
        for schedule in sampler.schedules:
            if schedule in MODEL_SCHEDULES:
                continue  # a model's own (below)
            config = resolve(sampler=sampler.name, schedule=schedule, class_label=0)
            assert config.schedule == schedule
            assert config.deterministic is (sampler.noise != "stochastic")


# ------------------------------------------------------- schedules that belong to a model
OPTIMIZED = DIGITS.model_copy(
    update={"name": "tuned", "optimized_schedules": {"unipc": [5, 8, 10], "ddim": [10]}}
)
STABLE = DIGITS.model_copy(
    update={"name": "sd", "ays_schedule": True, "training_noise_schedule": "scaled_linear"}
)


def resolve_on(model: ModelInfo, **fields: object):  # type: ignore[no-untyped-def]
    return resolve_request(GenerationRequest(**fields), {model.name: model}, model.name, LIMITS)  # type: ignore[arg-type]


def test_an_optimized_schedule_is_served_at_its_steps_and_a_422_names_the_others() -> None:
    config = resolve_on(OPTIMIZED, sampler="unipc", steps=8, schedule="optimized")
    assert (config.sampler, config.steps, config.schedule) == ("unipc", 8, "optimized")
    with pytest.raises(RequestFieldError) as info:
        resolve_on(OPTIMIZED, sampler="unipc", steps=12, schedule="optimized")
    assert info.value.field == "steps"
    assert "at steps 5, 8, 10; got steps 12" in info.value.message
    with pytest.raises(RequestFieldError) as info:
        resolve_on(OPTIMIZED, sampler="dpmpp_2m", steps=10, schedule="optimized")
    assert info.value.field == "schedule" and "samplers with one: ddim, unipc" in info.value.message


def test_the_default_schedule_comes_with_the_default_sampler_where_it_exists() -> None:
    tuned = OPTIMIZED.model_copy(
        update={"default_sampler": "unipc", "default_steps": 8, "default_schedule": "optimized"}
    )
    assert resolve_on(tuned).schedule == "optimized"
    assert resolve_on(tuned, steps=10).schedule == "optimized"
    assert resolve_on(tuned, steps=50).schedule == "uniform"  # no table at 50 steps
    assert resolve_on(tuned, steps=8, schedule="karras").schedule == "karras"  # asked for
    # a request that names a sampler gets that sampler's default, even the default sampler's
    assert resolve_on(tuned, sampler="unipc", steps=8).schedule == "uniform"
    assert resolve_on(tuned, sampler="ddim", steps=10).schedule == "uniform"
    assert resolve_on(tuned, sampler="euler_a").schedule == "uniform"


def test_ays_is_offered_for_stable_diffusions_noise_schedule_only() -> None:
    assert resolve_on(STABLE, sampler="dpmpp_2m", steps=13, schedule="ays").schedule == "ays"
    with pytest.raises(RequestFieldError) as info:
        resolve_on(STABLE, sampler="euler_a", schedule="ays")
    assert info.value.field == "schedule"


def test_ddpm_resolves_the_marginal_form_and_takes_the_posterior_one_with_a_bound() -> None:
    assert resolve(sampler="ddpm").variance_form == "marginal"
    config = resolve(sampler="ddpm", variance_bound=0.1, variance_form="posterior")
    assert (config.variance_bound, config.variance_form) == (0.1, "posterior")
    assert resolve(sampler="ddpm", variance_scale=0.5, variance_form="posterior").variance_form == "posterior"
    assert resolve(sampler="ddim", eta=1.0).variance_form is None
