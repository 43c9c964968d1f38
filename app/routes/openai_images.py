"""POST /v1/images/generations and /v1/images/edits: OpenAI's image API over the same path as
POST /v1/generations.

OpenAI's SDKs work against them as they are (``OpenAI(base_url=.../v1)``; ``images.generate``,
``images.edit``). An edit is img2img: the uploaded image is the request's ``init_image``
(``app.image_edit_form`` reads the multipart form).
OpenAI's API has no asynchronous answer, so the request always waits: a job still running after
the sync timeout is a 504 naming the job's URL, where the native route answers 202. Errors come
in OpenAI's shape (``app.errors``), with the parameter named.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from app.deps import CallerDep, GenerationsDep
from app.errors import OPENAI_PREFIX, JobUnfinished, ModelNotFound, OpenAIError
from app.image_edit_form import EDIT_FORM_SCHEMA, edit_request, image_and_fields, read_form, renamed
from app.openai_shapes import ImageGenerationRequest, ImagesResponse, generation_request, images_response
from app.openapi_examples import IMAGE_EXAMPLES
from app.submission import Generations, IdempotencyKeyHeader
from protocol.field_errors import RequestFieldError
from protocol.schema import SUCCEEDED, JobRecord

router = APIRouter(prefix=OPENAI_PREFIX, tags=["openai-compatible"])


def _error(description: str) -> dict[str, Any]:
    return {"model": OpenAIError, "description": description}


def _unfinished(record: JobRecord, request: Request) -> JobUnfinished:
    """The error for a job that has no images to answer with; the job stays readable at its URL."""
    path = f"/v1/jobs/{record.id}"
    url = str(request.url_for("get_job", job_id=record.id))
    error = record.error
    if record.status == "cancelled":
        return JobUnfinished(500, "job_cancelled", f"job {record.id} was cancelled; see {url}", path)
    if record.status == "failed" and error is not None and error.type == "DeadlineExceeded":
        return JobUnfinished(504, "deadline_exceeded", f"job {record.id}: {error.message}; see {url}", path)
    if record.status == "failed":
        reason = f"{error.type}: {error.message}" if error else "no reason recorded"
        return JobUnfinished(500, "job_failed", f"job {record.id} failed ({reason}); see {url}", path)
    return JobUnfinished(
        504,
        "timeout",
        f"job {record.id} is still {record.status} after the sync wait; it goes on: GET {url} for its "
        "images (a new request would start another job)",
        path,
    )


RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("A parameter is invalid, unknown or not available for the model (`param` names it)"),
    404: _error("The model is not served (`code`: model_not_found)"),
    413: _error("The request body is larger than this deployment's limit"),
    429: _error(
        "The model's queue is at its cap (or the caller's rate limit is reached); nothing was "
        "enqueued: retry after the Retry-After header's seconds"
    ),
    500: _error("The job failed or was cancelled; the message names its URL"),
    503: _error("Redis is unreachable or no worker has registered a model yet"),
    504: _error(
        "The job did not finish within the sync timeout (or its own timeout_s); it goes on, at the "
        "URL in the message and the Location header"
    ),
}


@router.post("/generations", response_model=ImagesResponse, responses=RESPONSES)
async def create_image(
    body: Annotated[ImageGenerationRequest, Body(openapi_examples=IMAGE_EXAMPLES)],
    request: Request,
    generations: GenerationsDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """OpenAI-compatible image generation: the images of POST /v1/generations, in OpenAI's shapes."""
    return await _images(body, request, generations, caller, idempotency_key)


@router.post(
    "/edits",
    response_model=ImagesResponse,
    responses={
        **RESPONSES,
        400: _error(
            "A form field is invalid, unknown, repeated or not available for the model, the image is "
            "not a PNG or JPEG of the model's size and channels, or `mask` was sent (not supported); "
            "`param` names the field"
        ),
        413: _error("The body is over max_image_body_bytes, or the image over max_init_image_bytes"),
        415: _error("The body is not multipart/form-data"),
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": EDIT_FORM_SCHEMA}}}
    },
)
async def edit_image(
    request: Request,
    generations: GenerationsDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """OpenAI-compatible image edit (multipart): img2img from the uploaded image, in OpenAI's shapes."""
    form = await read_form(request)
    try:
        image, fields = await image_and_fields(form.multi_items(), generations.settings.max_init_image_bytes)
    finally:
        await form.close()
    body = edit_request(image, fields)
    try:
        return await _images(body, request, generations, caller, idempotency_key)
    except RequestFieldError as error:
        raise renamed(error) from error


async def _images(
    body: ImageGenerationRequest,
    request: Request,
    generations: Generations,
    caller: str,
    idempotency_key: str | None,
) -> JSONResponse:
    """The OpenAI answer to an OpenAI request: translated, submitted, waited for."""
    models = await generations.models(body.model)
    name = body.model or generations.settings.default_model
    model = models.get(name)
    if model is None:
        available = ", ".join(sorted(models))
        raise ModelNotFound(f"model {name!r} is not served; available: {available}", param="model")
    translated = generation_request(body, model, generations.settings.max_images)
    submitted = await generations.submit(translated, caller, idempotency_key)
    final = await generations.wait(submitted.record)
    if final.status != SUCCEEDED:
        raise _unfinished(final, request)
    headers = {"Location": f"/v1/jobs/{final.id}"}
    return JSONResponse(images_response(final).model_dump(mode="json"), headers=headers)
