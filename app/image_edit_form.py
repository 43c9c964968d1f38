"""POST /v1/images/edits' multipart form, read strictly into the request POST /v1/images/generations
takes (OpenAI's ``images.edit`` sends ``multipart/form-data``).

A form value is text, so each field is parsed by the type the contract gives it, and nothing else:
an integer is decimal digits, a number is a finite decimal (``NaN``, ``1e309`` are refused), a
boolean is ``true`` or ``false`` (never ``1``), ``strength`` a number or ``auto``. A value that does
not parse is a 400 naming the field and what it takes. Each field is sent once; the image is one
file part, ``image`` (or OpenAI's array form ``image[]``, with one file). Its bytes become the
request's ``init_image`` and take its checks unchanged; errors about it name ``image``.

Limits: the body as a whole is bounded by ``max_image_body_bytes`` (``app.body_limit``) and the
image by ``max_init_image_bytes``; a text field by ``MAX_FIELD_BYTES`` and the parts by
``MAX_FORM_FIELDS`` and ``MAX_FORM_FILES``, each a 400 before the rest of the form is read.
"""

from __future__ import annotations

import base64
import math
import re
import typing
from collections import Counter
from typing import Any, Literal

import annotated_types
from fastapi import Request
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.errors import ApiError
from app.init_image import too_large
from app.openai_shapes import ImageGenerationRequest
from protocol.field_errors import RequestFieldError
from protocol.init_images import InitImageError

FORM_MEDIA_TYPE = "multipart/form-data"
IMAGE_FIELDS = ("image", "image[]")  # OpenAI's SDKs send one file as image, a list as image[]
# fields the contract takes that a form does not: the image travels as a file, and a form field
# holds one value (webhook_events is a list)
NOT_FORM_FIELDS = {
    "init_image": "send the image as the file part 'image'",
    "webhook_events": "a list: send it with POST /v1/images/generations (JSON)",
    "mask": "masked inpainting is not built; send the image alone, which is edited whole "
    "(img2img with strength)",
}
FORM_FIELDS = tuple(name for name in ImageGenerationRequest.model_fields if name not in NOT_FORM_FIELDS)
MAX_FORM_FIELDS = 64  # the form's own fields are 30; a form of more text parts is a 400, unread
MAX_FORM_FILES = 4  # a second image is refused by name; more files are refused unread
MAX_FIELD_BYTES = 64 * 1024  # the longest text the contract takes is 2000 characters (prompt, webhook)


def _form_schema() -> dict[str, Any]:
    """The form's JSON Schema for OpenAPI: the JSON request's, with the image as a file part."""
    schema = ImageGenerationRequest.model_json_schema()
    properties = {name: _sent(schema["properties"][name]) for name in FORM_FIELDS}
    image = {
        "type": "string",
        "format": "binary",
        "description": "the image to edit: a PNG or JPEG of "
        "the model's size and channels (as init_image); OpenAI's image[] with one file is taken too",
    }
    return {
        "type": "object",
        "title": "ImageEditForm",
        "description": "OpenAI's image-edit form, plus every knob of POST /v1/generations as a text field",
        "properties": {"image": image, **properties},
        "required": ["image", "prompt"],
    }


def _sent(field: dict[str, Any]) -> dict[str, Any]:
    """A field's schema without its ``null``: a form field is sent with a value or not at all."""
    branches = [branch for branch in field.get("anyOf", []) if branch != {"type": "null"}]
    rest = {key: value for key, value in field.items() if key not in ("anyOf", "default")}
    if len(branches) == 1:
        return {**rest, **branches[0]}
    return {**rest, "anyOf": branches} if branches else field


EDIT_FORM_SCHEMA = _form_schema()

_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")
_NUMBER = re.compile(r"[+-]?([0-9]{1,30}(\.[0-9]{0,30})?|\.[0-9]{1,30})([eE][+-]?[0-9]{1,4})?")


class UnsupportedMediaType(ApiError):
    status_code = 415
    code = "unsupported_media_type"


class FormRefused(RequestFieldError):
    """A form that cannot be read as the route's request: a 400 naming ``field`` where there is one."""

    def __init__(self, field: str | None, message: str, code: str = "invalid_value") -> None:
        super().__init__(field or "", message)
        self.code = code


class _StrictParser(MultiPartParser):
    """Starlette's parser, which also tells a body cut short (no closing boundary), names the field
    whose value is over ``MAX_FIELD_BYTES``, and refuses a text value that is not in the form's
    charset (where Starlette would fall back to Latin-1: a silent guess)."""

    ended = False

    def on_end(self) -> None:
        self.ended = True

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                bytes(part.data).decode(self._charset)
            except UnicodeDecodeError as error:
                raise FormRefused(
                    part.field_name, f"form field {part.field_name!r} is not {self._charset} text"
                ) from error
        super().on_part_end()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        try:
            super().on_part_data(data, start, end)
        except MultiPartException as error:
            name = self._current_part.field_name or None
            raise FormRefused(name, f"form field {name!r} is longer than {MAX_FIELD_BYTES} bytes") from error


# ------------------------------------------------------------------- reading the form
def _is_form(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == FORM_MEDIA_TYPE


async def read_form(request: Request) -> FormData:
    """The form's parts, read within the limits (the caller closes it: its files are spooled).

    Raises:
        UnsupportedMediaType: the body is not ``multipart/form-data`` (JSON goes to the generations route).
        FormRefused: the form is malformed, cut short, or over a limit.
    """
    content_type = request.headers.get("content-type")
    if not _is_form(content_type):
        raise UnsupportedMediaType(
            f"POST /v1/images/edits takes {FORM_MEDIA_TYPE} (OpenAI's image edit: the image as a file "
            f"part); got {content_type or 'no content type'}. A JSON request with init_image goes to "
            "POST /v1/images/generations"
        )
    parser = _StrictParser(
        request.headers,
        request.stream(),
        max_files=MAX_FORM_FILES,
        max_fields=MAX_FORM_FIELDS,
        max_part_size=MAX_FIELD_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise FormRefused(
            None, f"the multipart body cannot be read: {error.message}", "invalid_multipart"
        ) from error
    if not parser.ended:
        await form.close()
        raise FormRefused(
            None, "the multipart body is cut short: it has no closing boundary", "invalid_multipart"
        )
    return form


def _refuse_duplicates(items: list[tuple[str, str | UploadFile]]) -> None:
    counts = Counter("image" if name in IMAGE_FIELDS else name for name, _ in items)
    if counts["image"] > 1:
        raise FormRefused(
            "image", f"one image per request: this route edits one image; got {counts['image']} image parts"
        )
    for name, count in counts.items():
        if count > 1:
            raise FormRefused(name, f"form field {name!r} is sent {count} times; send each field once")


async def image_and_fields(
    items: list[tuple[str, str | UploadFile]], max_image_bytes: int
) -> tuple[bytes, dict[str, object]]:
    """The image's bytes and the other fields, typed.

    Raises:
        FormRefused: a field is missing, repeated, of the wrong kind, or its text does not parse.
        InitImageError: the image is over ``max_image_bytes`` (413, naming ``image``).
    """
    _refuse_duplicates(items)
    image: bytes | None = None
    fields: dict[str, object] = {}
    for name, value in items:
        if name in NOT_FORM_FIELDS:
            raise FormRefused(name, f"{name} is not supported on this route: {NOT_FORM_FIELDS[name]}")
        if name in IMAGE_FIELDS:
            if not isinstance(value, UploadFile):
                raise FormRefused(
                    "image",
                    "image must be a file part (a Content-Disposition with a filename); got a text field",
                )
            image = await value.read(max_image_bytes + 1)
            if len(image) > max_image_bytes:
                raise renamed(InitImageError(too_large(value.size or len(image), max_image_bytes), 413))
        elif isinstance(value, UploadFile):
            raise FormRefused(name, f"{name} must be a text field; got a file part")
        else:
            fields[name] = typed(name, value)
    if image is None:
        raise FormRefused(
            "image", "Missing required parameter: 'image' (the file to edit).", "missing_required_parameter"
        )
    return image, fields


def edit_request(image: bytes, fields: dict[str, object]) -> ImageGenerationRequest:
    """The generations route's request: the form's fields, the image as ``init_image``.

    Raises:
        FormRefused: a field is out of its bounds, unknown, or a required one is missing.
    """
    try:
        return ImageGenerationRequest.model_validate(
            {**fields, "init_image": base64.b64encode(image).decode("ascii")}
        )
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else None
        if first["type"] == "missing":
            raise FormRefused(
                field, f"Missing required parameter: '{field}'.", "missing_required_parameter"
            ) from error
        if first["type"] == "extra_forbidden":
            raise FormRefused(field, f"Unknown parameter: '{field}'.", "unknown_parameter") from error
        if field == "init_image":
            raise renamed(RequestFieldError("init_image", first["msg"])) from error
        raise FormRefused(field, f"Invalid value for '{field}': {first['msg']}") from error


def renamed(error: RequestFieldError) -> RequestFieldError:
    """An error about ``init_image`` as this route names it: ``image`` (its status kept)."""
    if error.field != "init_image":
        return error
    refused = RequestFieldError("image", re.sub(r"\binit_image\b", "image", error.message))
    refused.status_code = error.status_code
    return refused


# ------------------------------------------------------------------- typing a value
def _kinds(annotation: object) -> set[object]:
    """The scalar types and literal values an annotation admits (``None`` left out)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return set(typing.get_args(annotation))
    if origin is typing.Annotated:
        return _kinds(typing.get_args(annotation)[0])
    if origin is not None:  # a union
        return set().union(*(_kinds(arg) for arg in typing.get_args(annotation)))
    return set() if annotation is type(None) else {annotation}


def _constraints(info: FieldInfo) -> list[Any]:
    found = list(info.metadata)
    for arg in typing.get_args(info.annotation):  # strength: Annotated[float, Field(gt=, le=)] | "auto"
        for extra in typing.get_args(arg)[1:] if typing.get_origin(arg) is typing.Annotated else ():
            found.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
    return found


def _interval(info: FieldInfo) -> str:
    low, high = "(-∞", "∞)"
    for bound in _constraints(info):
        if isinstance(bound, annotated_types.Ge):
            low = f"[{bound.ge:g}" if isinstance(bound.ge, float) else f"[{bound.ge}"
        elif isinstance(bound, annotated_types.Gt):
            low = f"({bound.gt:g}"
        elif isinstance(bound, annotated_types.Le):
            high = f"{bound.le:g}]" if isinstance(bound.le, float) else f"{bound.le}]"
        elif isinstance(bound, annotated_types.Lt):
            high = f"{bound.lt:g})"
    return f"{low}, {high}"


def typed(name: str, text: str) -> object:
    """A form field's value as the contract types it; text for text fields (and unknown names, which
    the request model then refuses by name).

    Raises:
        FormRefused: naming the field, with what it takes.
    """
    info = ImageGenerationRequest.model_fields.get(name)
    if info is None:
        return text
    kinds = _kinds(info.annotation)
    if bool in kinds:
        if text in ("true", "false"):
            return text == "true"
        raise FormRefused(name, f"Invalid value for '{name}': true or false; got {_shown(text)}")
    if "auto" in kinds and text == "auto":
        return text
    if int in kinds and _INTEGER.fullmatch(text):
        return int(text)
    if float in kinds and _NUMBER.fullmatch(text) and math.isfinite(float(text)):
        return float(text)
    if int in kinds or float in kinds:
        what = "an integer (decimal digits)" if int in kinds else "a finite decimal number"
        auto = ' or "auto"' if "auto" in kinds else ""
        raise FormRefused(
            name, f"Invalid value for '{name}': {what} in {_interval(info)}{auto}; got {_shown(text)}"
        )
    return text


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")
