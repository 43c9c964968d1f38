"""Dependencies as Annotated aliases, so handlers stay short."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.access import caller
from app.job_events import JobEvents
from app.job_queue import JobQueue
from app.metrics import ApiMetrics
from app.prompt_tokens import PromptTokens
from app.settings import ApiSettings
from app.submission import Generations


def _settings(request: Request) -> ApiSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _queue(request: Request) -> JobQueue:
    return request.app.state.queue  # type: ignore[no-any-return]


def _events(request: Request) -> JobEvents:
    return request.app.state.events  # type: ignore[no-any-return]


def _metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


def _prompt_tokens(request: Request) -> PromptTokens:
    return request.app.state.prompt_tokens  # type: ignore[no-any-return]


def _generations(request: Request) -> Generations:
    return request.app.state.generations  # type: ignore[no-any-return]


SettingsDep = Annotated[ApiSettings, Depends(_settings)]
QueueDep = Annotated[JobQueue, Depends(_queue)]
EventsDep = Annotated[JobEvents, Depends(_events)]
MetricsDep = Annotated[ApiMetrics, Depends(_metrics)]
CallerDep = Annotated[str, Depends(caller)]
PromptTokensDep = Annotated[PromptTokens, Depends(_prompt_tokens)]
GenerationsDep = Annotated[Generations, Depends(_generations)]
