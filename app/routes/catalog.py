"""GET /v1/models and /v1/samplers: what a request can ask for."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import QueueDep, SettingsDep
from protocol.samplers import SAMPLERS, SamplerInfo
from protocol.schema import ModelInfo

router = APIRouter(prefix="/v1", tags=["catalog"])


@router.get(
    "/models", response_model=list[ModelInfo], responses={503: {"description": "Redis is unreachable"}}
)
async def list_models(queue: QueueDep, settings: SettingsDep) -> list[ModelInfo]:
    """Models a live worker serves: conditioning, classes, training noise schedule, defaults."""
    models = (await queue.catalog()).offered(settings.require_live_worker)
    return [models[name] for name in sorted(models)]


@router.get("/samplers", response_model=list[SamplerInfo])
async def list_samplers() -> list[SamplerInfo]:
    """Samplers, the diffusers class behind each, and which knobs and schedules each honours."""
    return list(SAMPLERS.values())
