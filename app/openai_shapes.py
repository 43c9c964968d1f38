"""OpenAI's image-generation shapes, and the translation to and from the service's contract (pure).

A request of OpenAI's ``POST /v1/images/generations`` becomes a ``GenerationRequest``:

| OpenAI        | the contract                                                                  |
| ------------- | ----------------------------------------------------------------------------- |
| ``prompt``    | prompt models: ``prompt``; class models: ``class_label``, the class it names    |
|               | (a ``class_names`` entry in any case, or a digit's English word); empty:      |
|               | an unconditional sample. Unconditional models: must be empty                  |
| ``n``         | ``num_images``                                                                |
| ``size``      | ``"WxH"``: ``width``, ``height``; ``"auto"`` or absent: the model's own size   |
| ``model``     | ``model`` (a registry name; the deployment's default when absent)             |
| ``response_format`` | ``b64_json`` only: the service keeps no image store to serve URLs from  |

Every other field of ``GenerationRequest`` (steps, sampler, seed, guidance_scale, eta, ...) is
accepted as is, with its own bounds: the request model is built from the contract's fields, so
a knob added to the contract is accepted here too.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from protocol.resolution import RequestFieldError, resolve_size
from protocol.schema import (
    ABSOLUTE_MAX_IMAGES,
    ABSOLUTE_MAX_SIZE,
    MAX_PROMPT_CHARS,
    GenerationRequest,
    JobRecord,
    ModelInfo,
    ResolvedConfig,
    Timings,
)

# the contract's fields that OpenAI's fields stand for, by the OpenAI field to send instead
INSTEAD = {"num_images": "n", "width": "size", "height": "size", "class_label": "prompt"}
TRANSLATED = frozenset({"model", "prompt", *INSTEAD})
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SIZE_PATTERN = r"^(auto|[1-9][0-9]{0,4}x[1-9][0-9]{0,4})$"


class OpenAIImageFields(BaseModel):
    """OpenAI's fields; the service's knobs follow them in ``ImageGenerationRequest``."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # as GenerationRequest: booleans and numeric strings are not numbers
        allow_inf_nan=False,
        json_schema_extra={"examples": [{"prompt": "7", "n": 2, "size": "28x28", "steps": 20, "seed": 1}]},
    )

    prompt: str = Field(
        max_length=MAX_PROMPT_CHARS,
        description="prompt models: the text prompt. Class-conditional models: the class to draw, "
        "one of the model's class_names (GET /v1/models) in any case, or for digit classes the "
        "digit's English word ('seven'); an empty prompt draws an unconditional sample",
    )
    model: str | None = Field(None, max_length=64, description="registry name; default model if absent")
    n: int | None = Field(1, ge=1, le=ABSOLUTE_MAX_IMAGES, description="images; image i uses seed + i")
    size: str | None = Field(
        None,
        pattern=SIZE_PATTERN,
        description="'WxH' in pixels, as the model allows (its image_size, or multiples of its "
        "size_multiple within [min_size, max_size]); 'auto' or absent: the model's native size",
    )
    response_format: Literal["b64_json", "url"] | None = Field(
        None, description="b64_json only (the default): this service keeps no image store to serve URLs"
    )
    output_format: Literal["png"] | None = Field(None, description="png only (the default)")
    user: str | None = Field(
        None, max_length=256, description="an end-user id, as OpenAI takes it; accepted and not used"
    )


_KNOBS: dict[str, Any] = {
    name: (info.annotation, copy.deepcopy(info))
    for name, info in GenerationRequest.model_fields.items()
    if name not in TRANSLATED
}
if TYPE_CHECKING:
    ImageGenerationRequest = OpenAIImageFields
else:
    ImageGenerationRequest = create_model(
        "ImageGenerationRequest",
        __base__=OpenAIImageFields,
        __doc__="OpenAI's image-generation request, plus every knob of POST /v1/generations.",
        **_KNOBS,
    )


# ----------------------------------------------------------------------------- response
class OpenAIImage(BaseModel):
    b64_json: str = Field(description="the PNG, base64-encoded")
    revised_prompt: str | None = Field(None, description="always null: prompts are used as sent")


class DenoiseDetails(BaseModel):
    """Not OpenAI's: the job behind the images, with what it takes to reproduce them."""

    id: str
    config: ResolvedConfig
    timings: Timings
    worker: str
    noise_estimates: list[float] = Field(description="per image: the noise left, in gray levels (0-255)")


class ImagesResponse(BaseModel):
    created: int = Field(description="epoch seconds at which the images were finished")
    data: list[OpenAIImage]
    output_format: Literal["png"] = "png"
    size: str = Field(description="'WxH' of every image")
    denoise: DenoiseDetails


# ---------------------------------------------------------------------------- translation
def _class_names(model: ModelInfo) -> list[str]:
    return model.class_names or [str(label) for label in range(model.num_classes or 0)]


def _allowed_classes(model: ModelInfo) -> str:
    names = _class_names(model)
    if all(name.isdigit() and int(name) < len(NUMBER_WORDS) for name in names):
        return ", ".join(f"{name} ({NUMBER_WORDS[int(name)]})" for name in names)
    return ", ".join(repr(name) for name in names)


def class_label_of(prompt: str, model: ModelInfo) -> int | None:
    """The class a prompt names on a class-conditional model; None (unconditional) when it is empty.

    Raises:
        RequestFieldError: ``prompt`` names no class of the model (the message lists them).
    """
    text = prompt.strip().casefold()
    names = [name.casefold() for name in _class_names(model)]
    if not text and model.supports_guidance:
        return None
    if text in names:
        return names.index(text)
    if text in NUMBER_WORDS and str(NUMBER_WORDS.index(text)) in names:
        return names.index(str(NUMBER_WORDS.index(text)))
    unconditional = ", or an empty prompt for an unconditional sample" if model.supports_guidance else ""
    raise RequestFieldError(
        "prompt",
        f"model {model.name!r} is class-conditional: the prompt names the class to draw; got "
        f"{prompt!r}. Allowed (any case): {_allowed_classes(model)}{unconditional}",
    )


def allowed_sizes(model: ModelInfo) -> str:
    native = f"{model.image_size}x{model.image_size}"
    if model.size_multiple is None:
        return f"{native} only"
    low = model.min_size or model.size_multiple
    high = model.max_size or model.image_size
    return f"WxH with W and H multiples of {model.size_multiple} from {low} to {high} (native {native})"


def size_of(size: str | None, model: ModelInfo) -> tuple[int | None, int | None]:
    """(width, height) of a ``WxH`` size the model can draw; (None, None) for its own size.

    Raises:
        RequestFieldError: naming ``size``, with the sizes the model allows.
    """
    if size is None or size == "auto":
        return None, None
    width, height = (int(side) for side in size.split("x"))
    try:
        if not (8 <= width <= ABSOLUTE_MAX_SIZE and 8 <= height <= ABSOLUTE_MAX_SIZE):
            raise RequestFieldError("size", "out of the contract's bounds")
        resolve_size(GenerationRequest.model_construct(width=width, height=height), model)
    except RequestFieldError as error:
        raise RequestFieldError(
            "size", f"size {size!r} is not available for model {model.name!r}: {allowed_sizes(model)}"
        ) from error
    return width, height


def generation_request(body: OpenAIImageFields, model: ModelInfo, max_images: int) -> GenerationRequest:
    """The contract's request for an OpenAI request to ``model``.

    Raises:
        RequestFieldError: naming the OpenAI parameter (``prompt``, ``n``, ``size``, ``response_format``).
    """
    if body.response_format == "url":
        raise RequestFieldError(
            "response_format",
            "response_format 'url' is not supported: this service keeps no image store to serve URLs "
            "from; use 'b64_json' (the default) and decode the PNG",
        )
    n = body.n if body.n is not None else 1
    if n > max_images:
        raise RequestFieldError(
            "n", f"n must be between 1 and {max_images} (this deployment's limit); got {n}"
        )
    conditioning: dict[str, object] = {}
    if model.conditioning == "prompt":
        conditioning["prompt"] = body.prompt
    elif model.conditioning == "class_label":
        conditioning["class_label"] = class_label_of(body.prompt, model)
    elif body.prompt.strip():
        raise RequestFieldError(
            "prompt", f"model {model.name!r} is unconditional: send an empty prompt; got {body.prompt!r}"
        )
    width, height = size_of(body.size, model)
    knobs = body.model_dump(exclude=set(OpenAIImageFields.model_fields), exclude_unset=True)
    fields = {**knobs, **conditioning, "model": model.name, "num_images": n, "width": width, "height": height}
    try:
        return GenerationRequest.model_validate(fields)
    except ValidationError as error:  # a translated value out of the contract's bounds
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "prompt"
        raise RequestFieldError(INSTEAD.get(field, field), first["msg"]) from error


def images_response(record: JobRecord) -> ImagesResponse:
    """OpenAI's answer for a succeeded job."""
    result = record.result
    assert result is not None, "a succeeded job has a result"
    config = result.config
    return ImagesResponse(
        created=int(record.finished_at or record.created_at),
        data=[OpenAIImage(b64_json=image.png_base64) for image in result.images],
        size=f"{config.width}x{config.height}",
        denoise=DenoiseDetails(
            id=record.id,
            config=config,
            timings=result.timings,
            worker=result.worker,
            noise_estimates=[image.noise_estimate for image in result.images],
        ),
    )
