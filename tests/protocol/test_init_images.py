"""img2img in the contract: strength resolves against the model, the sampler and the schedule, and
an init image is checked against the model's size and channels, each refusal naming its field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from protocol.init_images import DEFAULT_STRENGTH, InitImageError, InitImageHeader
from protocol.resolution import Limits, RequestFieldError, resolve_request
from protocol.schema import GenerationRequest, ModelInfo

DIGITS = ModelInfo(
    name="digits",
    conditioning="class_label",
    num_classes=10,
    image_size=28,
    channels=1,
    training_noise_schedule="squaredcos_cap_v2",
    num_train_timesteps=1000,
    prediction_type="v_prediction",
)
TEXT = DIGITS.model_copy(
    update={"name": "text", "family": "latent_text_unet", "conditioning": "prompt", "num_classes": None}
)
MODELS = {"digits": DIGITS, "text": TEXT}
GREY = InitImageHeader(format="PNG", width=28, height=28, mode="L", sha256="ab" * 32, nbytes=100)


def resolve(header: InitImageHeader | None = GREY, **fields: object):  # type: ignore[no-untyped-def]
    if header is not None:
        fields.setdefault("init_image", "aW1hZ2U=")
    request = GenerationRequest(**fields)  # type: ignore[arg-type]
    return resolve_request(request, MODELS, "digits", Limits.absolute(), header)


def refused(header: InitImageHeader | None = GREY, **fields: object) -> RequestFieldError:
    with pytest.raises(RequestFieldError) as info:
        resolve(header, **fields)
    return info.value


def test_an_init_image_defaults_to_diffusers_strength_and_records_its_hash() -> None:
    config = resolve(steps=10)
    assert config.strength == DEFAULT_STRENGTH and config.init_image_sha256 == GREY.sha256
    assert resolve(strength="auto").strength == "auto"
    assert resolve(None, steps=10).strength is None  # no image: text-to-image as before


def test_strength_is_strict_and_bounded() -> None:
    for bad in (0, 0.0, 1.01, -0.5, True, "0.5", "AUTO"):
        with pytest.raises(ValidationError) as info:
            GenerationRequest(init_image="x", strength=bad)  # type: ignore[arg-type]
        assert all(error["loc"][0] == "strength" for error in info.value.errors())
    assert GenerationRequest(strength=1).strength == 1


@pytest.mark.parametrize(
    ("fields", "header", "field", "words"),
    [
        ({"strength": 0.5}, None, "strength", "needs an init_image"),
        ({"strength": 0.05, "steps": 10}, GREY, "strength", "0 steps"),
        ({"strength": "auto", "model": "text", "prompt": "seven"}, GREY, "strength", "pixel space"),
        ({"strength": "auto", "schedule": "leading"}, GREY, "schedule", "cannot start there"),
        ({"strength": "auto", "schedule": "quadratic", "sampler": "ddim"}, GREY, "schedule", "uniform"),
        ({"strength": "auto", "sampler": "euler_a"}, GREY, "sampler", "timesteps"),
        ({}, InitImageHeader("PNG", 32, 28, "L", "0" * 64, 9), "init_image", "32×28"),
        ({}, InitImageHeader("PNG", 28, 28, "RGB", "0" * 64, 9), "init_image", "mode 'RGB'"),
        ({}, InitImageHeader("PNG", 28, 28, "LA", "0" * 64, 9), "init_image", "no alpha"),
        ({}, InitImageHeader("GIF", 28, 28, "L", "0" * 64, 9), "init_image", "PNG or JPEG"),
    ],
)
def test_refusals_name_the_field(
    fields: dict[str, object], header: InitImageHeader | None, field: str, words: str
) -> None:
    error = refused(header, **fields)
    assert error.field == field and words in error.message, error.message
    assert error.status_code == 422


def test_a_latent_model_takes_a_numeric_strength() -> None:
    config = resolve(model="text", prompt="seven", strength=0.6, steps=10)
    assert config.strength == 0.6


def test_an_init_image_error_is_a_field_error_with_its_status() -> None:
    error = InitImageError("too big", 413)
    assert isinstance(error, RequestFieldError) and error.field == "init_image" and error.status_code == 413


def test_a_denoising_request_without_sampler_or_steps_gets_the_measured_default() -> None:
    tabled = DIGITS.model_copy(
        update={
            "default_sampler": "unipc",
            "default_steps": 8,
            "default_schedule": "optimized",
            "optimized_schedules": {"unipc": [8]},
        }
    )
    request = GenerationRequest(init_image="x", strength="auto")
    config = resolve_request(request, {"digits": tabled}, "digits", Limits.absolute(), GREY)
    assert (config.sampler, config.steps, config.schedule) == ("ddim", 1, "uniform")
    named = GenerationRequest(init_image="x", strength="auto", sampler="unipc", steps=8)
    config = resolve_request(named, {"digits": tabled}, "digits", Limits.absolute(), GREY)
    assert (config.sampler, config.steps, config.schedule) == ("unipc", 8, "uniform")
