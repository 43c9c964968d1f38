"""The edits form's text fields, typed strictly: what parses, what is refused and how it is named."""

from __future__ import annotations

import pytest

from app.image_edit_form import EDIT_FORM_SCHEMA, FORM_FIELDS, FormRefused, edit_request, renamed, typed
from protocol.init_images import InitImageError


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("n", "2", 2),
        ("seed", "+7", 7),
        ("guidance_scale", "2.5", 2.5),
        ("guidance_scale", "3", 3.0),
        ("eta", ".5", 0.5),
        ("strength", "auto", "auto"),
        ("strength", "1e-1", 0.1),
        ("clip_sample", "true", True),
        ("deterministic", "false", False),
        ("sampler", "ddim", "ddim"),
        ("prompt", "1e309", "1e309"),  # text stays text
        ("stepz", "2", "2"),  # an unknown name is left to the request model, which names it
    ],
)
def test_values_that_parse(name: str, text: str, value: object) -> None:
    assert typed(name, text) == value and type(typed(name, text)) is type(value)


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("n", "abc", "an integer (decimal digits) in [1, 16]"),
        ("n", "1e309", "[1, 16]"),
        ("n", "true", "[1, 16]"),
        ("n", "2.0", "[1, 16]"),
        ("n", " 2", "[1, 16]"),
        ("steps", "", "[1, 1000]"),
        ("guidance_scale", "NaN", "a finite decimal number in [0, 30]"),
        ("guidance_scale", "1e309", "[0, 30]"),
        ("guidance_scale", "inf", "[0, 30]"),
        ("strength", "Auto", '(0, 1] or "auto"'),
        ("timeout_s", "0x10", "(0, 86400]"),
        ("clip_sample", "1", "true or false"),
        ("clip_sample", "True", "true or false"),
    ],
)
def test_values_refused_name_the_field_and_what_it_takes(name: str, text: str, says: str) -> None:
    with pytest.raises(FormRefused) as refused:
        typed(name, text)
    assert refused.value.field == name and says in refused.value.message


def test_bounds_and_unknown_fields_are_the_request_models() -> None:
    with pytest.raises(FormRefused) as refused:
        edit_request(b"\x89PNG", {"prompt": "7", "n": 17})
    assert refused.value.field == "n" and "16" in refused.value.message
    with pytest.raises(FormRefused) as unknown:
        edit_request(b"\x89PNG", {"prompt": "7", "quality": "hd"})
    assert (unknown.value.field, unknown.value.code) == ("quality", "unknown_parameter")
    with pytest.raises(FormRefused) as missing:
        edit_request(b"\x89PNG", {})
    assert (missing.value.field, missing.value.code) == ("prompt", "missing_required_parameter")
    assert edit_request(b"\x89PNG", {"prompt": ""}).model_dump()["init_image"] == "iVBORw=="


def test_init_image_errors_are_named_image_with_their_status() -> None:
    error = renamed(InitImageError("init_image is 9 bytes; at most 1 (max_init_image_bytes)", 413))
    assert error.field == "image" and error.status_code == 413
    assert error.message == "image is 9 bytes; at most 1 (max_init_image_bytes)"


def test_the_schema_is_the_form_the_route_reads() -> None:
    properties = EDIT_FORM_SCHEMA["properties"]
    assert set(properties) == {"image", *FORM_FIELDS} and EDIT_FORM_SCHEMA["required"] == ["image", "prompt"]
    assert "init_image" not in properties and "mask" not in properties
    assert properties["image"]["format"] == "binary"
    assert all("null" not in str(field) for field in properties.values())  # sent, or not at all
