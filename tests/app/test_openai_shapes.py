"""From OpenAI's image request to the contract's, and OpenAI's error shape (pure; no service)."""

from __future__ import annotations

import json

import pytest
from fastapi.exceptions import RequestValidationError

from app.errors import OpenAIError, openai_validation_error
from app.openai_shapes import (
    TRANSLATED,
    ImageGenerationRequest,
    OpenAIImageFields,
    class_label_of,
    generation_request,
    size_of,
)
from protocol.resolution import RequestFieldError
from protocol.schema import GenerationRequest, ModelInfo

DIGITS = ModelInfo(
    name="digits",
    conditioning="class_label",
    num_classes=10,
    class_names=[str(digit) for digit in range(10)],
    image_size=28,
    channels=1,
    training_noise_schedule="squaredcos_cap_v2",
    num_train_timesteps=1000,
    prediction_type="epsilon",
)
PETS = DIGITS.model_copy(update={"name": "pets", "num_classes": 2, "class_names": ["Cat", "Dog"]})
NO_NULL_CLASS = DIGITS.model_copy(update={"name": "no-null", "supports_guidance": False})
TEXT = DIGITS.model_copy(
    update={
        "name": "text",
        "conditioning": "prompt",
        "num_classes": None,
        "class_names": None,
        "image_size": 512,
        "size_multiple": 64,
        "min_size": 256,
        "max_size": 768,
    }
)
UNCONDITIONAL = DIGITS.model_copy(update={"name": "plain", "conditioning": "none", "class_names": None})


def body(**fields: object) -> OpenAIImageFields:
    return ImageGenerationRequest.model_validate({"prompt": "7", **fields})


def test_every_knob_of_the_contract_is_a_field_of_the_openai_request() -> None:
    openai_fields = set(OpenAIImageFields.model_fields)
    knobs = set(GenerationRequest.model_fields) - TRANSLATED
    assert set(ImageGenerationRequest.model_fields) == openai_fields | knobs
    assert {"steps", "sampler", "seed", "guidance_scale", "eta", "negative_prompt", "timeout_s"} <= knobs
    steps = ImageGenerationRequest.model_json_schema()["properties"]["steps"]["anyOf"][0]
    assert (steps["minimum"], steps["maximum"]) == (1, 1000)  # the contract's bounds, carried over


@pytest.mark.parametrize(
    ("prompt", "label"), [("7", 7), (" 7 ", 7), ("seven", 7), ("SEVEN", 7), ("zero", 0), ("", None)]
)
def test_a_digit_is_named_by_its_class_name_or_its_english_word(prompt: str, label: int | None) -> None:
    assert class_label_of(prompt, DIGITS) == label


def test_class_names_match_in_any_case_and_number_words_only_name_digits() -> None:
    assert class_label_of("dog", PETS) == 1
    with pytest.raises(RequestFieldError) as raised:
        class_label_of("one", PETS)
    assert raised.value.field == "prompt" and "'Cat', 'Dog'" in raised.value.message


def test_an_unknown_class_lists_the_allowed_names() -> None:
    with pytest.raises(RequestFieldError) as raised:
        class_label_of("a seven", DIGITS)
    assert raised.value.field == "prompt"
    assert "0 (zero), 1 (one)" in raised.value.message and "empty prompt" in raised.value.message
    with pytest.raises(RequestFieldError) as raised:
        class_label_of("", NO_NULL_CLASS)  # no unconditional branch: a class is needed
    assert "empty prompt" not in raised.value.message


def test_sizes_are_checked_against_the_model() -> None:
    assert size_of(None, DIGITS) == size_of("auto", DIGITS) == (None, None)
    assert size_of("28x28", DIGITS) == (28, 28)
    assert size_of("768x256", TEXT) == (768, 256)
    for size, model, allowed in [
        ("64x64", DIGITS, "28x28 only"),
        ("512x500", TEXT, "multiples of 64 from 256 to 768"),
        ("1024x1024", TEXT, "multiples of 64"),
        ("99999x8", TEXT, "multiples of 64"),
    ]:
        with pytest.raises(RequestFieldError) as raised:
            size_of(size, model)
        assert raised.value.field == "size" and allowed in raised.value.message, raised.value.message


def test_the_translated_request() -> None:
    request = generation_request(body(n=3, size="28x28", steps=5, seed=1, sampler="ddpm"), DIGITS, 16)
    assert request.model_dump(exclude_defaults=True) == {
        "model": "digits",
        "class_label": 7,
        "num_images": 3,
        "width": 28,
        "height": 28,
        "steps": 5,
        "seed": 1,
        "sampler": "ddpm",
    }
    text = generation_request(body(prompt="a red fox", negative_prompt="blur", guidance_scale=5), TEXT, 16)
    assert (text.prompt, text.negative_prompt, text.class_label) == ("a red fox", "blur", None)
    assert generation_request(body(prompt=""), UNCONDITIONAL, 16).class_label is None


@pytest.mark.parametrize(
    ("fields", "model", "param"),
    [
        ({"response_format": "url"}, DIGITS, "response_format"),
        ({"n": 5}, DIGITS, "n"),  # over the deployment's limit of 4
        ({"prompt": "7"}, UNCONDITIONAL, "prompt"),
    ],
)
def test_what_cannot_be_translated_names_the_openai_parameter(
    fields: dict[str, object], model: ModelInfo, param: str
) -> None:
    with pytest.raises(RequestFieldError) as raised:
        generation_request(body(**fields), model, 4)
    assert raised.value.field == param


def test_schema_errors_become_one_openai_error_naming_the_parameter() -> None:
    response = openai_validation_error(
        RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("body", "num_images"),
                    "msg": "Extra inputs are not permitted",
                },
                {
                    "type": "less_than_equal",
                    "loc": ("body", "n"),
                    "msg": "Input should be less than or equal to 16",
                },
            ]
        )
    )
    assert response.status_code == 400
    error = OpenAIError.model_validate(json.loads(bytes(response.body))).error
    assert (error.param, error.code, error.type) == (
        "num_images",
        "unknown_parameter",
        "invalid_request_error",
    )
    assert (
        error.message == "Unknown parameter: 'num_images'. Send 'n' instead. (1 more error in this request)"
    )
