"""The API counts prompt tokens exactly as the worker's tokenizer does, from the tokenizer a
worker publishes in Redis, and refuses an over-long prompt naming the field."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
import torch

from devstack.redis_server import RedisServer
from protocol.keys import tokenizer_key
from protocol.resolution import RequestFieldError
from tests.conftest import resolved_config
from tests.fixtures.pipelines import build_stable_diffusion
from workers.models.prompt_encoder import PromptEncoder
from workers.models.registry import RegistryEntry


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> PromptEncoder:
    from workers.models.loading import load_model

    folder = build_stable_diffusion(tmp_path_factory.mktemp("sd") / "sd")
    model = load_model(RegistryEntry(name="tiny-sd", path=Path(folder)), torch.device("cpu"), torch.float32)
    return model.prompts  # type: ignore[attr-defined,no-any-return]


def check(server: RedisServer, encoder: PromptEncoder, **fields: object) -> None:
    from app.prompt_tokens import PromptTokens

    sync = redis.Redis.from_url(server.url, decode_responses=True)
    sync.set(tokenizer_key("tiny-sd"), encoder.tokenizer_json() or "")
    info_limit = encoder.max_prompt_tokens

    async def run() -> None:
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        try:
            from protocol.schema import ModelInfo

            info = ModelInfo(
                name="tiny-sd",
                conditioning="prompt",
                image_size=16,
                channels=3,
                max_prompt_tokens=info_limit,
                training_noise_schedule="scaled_linear",
                num_train_timesteps=1000,
                prediction_type="epsilon",
            )
            config = resolved_config(model="tiny-sd", class_label=None, guidance_scale=7.5, **fields)
            await PromptTokens(client).check(config, info)
        finally:
            await client.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("prompt", ["a cat", "zebra", "the digit 7, twice!", "x" * 14])
def test_counts_match_the_worker_tokenizer(encoder: PromptEncoder, prompt: str) -> None:
    from tokenizers import Tokenizer

    api_side = Tokenizer.from_str(encoder.tokenizer_json() or "")
    api_side.no_padding()
    api_side.no_truncation()
    assert len(api_side.encode(prompt, add_special_tokens=False).ids) == encoder.token_count(prompt)


def test_a_prompt_at_the_limit_passes_and_one_over_is_refused(
    redis_server: RedisServer, encoder: PromptEncoder
) -> None:
    limit = encoder.max_prompt_tokens  # the character tokenizer: one token per character here
    check(redis_server, encoder, prompt="a" * limit)
    with pytest.raises(RequestFieldError) as refused:
        check(redis_server, encoder, prompt="a" * (limit + 1))
    assert refused.value.field == "prompt" and f"at most {limit}" in refused.value.message
    with pytest.raises(RequestFieldError) as negative:
        check(redis_server, encoder, prompt="a cat", negative_prompt="b" * (limit + 1))
    assert negative.value.field == "negative_prompt"
