"""Prompt length against the model's own tokenizer, before anything is enqueued.

A prompt model's workers publish its tokenizer (``protocol.keys.tokenizer_key``) in the
``tokenizers`` JSON format; the API loads it once per model with the ``tokenizers`` library (no
torch) and counts the tokens of ``prompt`` and ``negative_prompt`` exactly as the worker's
tokenizer will. Without a published tokenizer the check is skipped and the worker refuses an
over-long prompt itself.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from tokenizers import Tokenizer

from protocol.keys import tokenizer_key
from protocol.resolution import RequestFieldError
from protocol.schema import ModelInfo, ResolvedConfig


class PromptTokens:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._tokenizers: dict[str, Tokenizer] = {}

    async def _tokenizer(self, model: str) -> Tokenizer | None:
        if model not in self._tokenizers:
            text = await self.client.get(tokenizer_key(model))
            if not text:
                return None
            tokenizer = Tokenizer.from_str(text if isinstance(text, str) else text.decode())
            # count the prompt itself: no padding to the model's length, no truncation
            tokenizer.no_padding()
            tokenizer.no_truncation()
            self._tokenizers[model] = tokenizer
        return self._tokenizers[model]

    async def check(self, config: ResolvedConfig, model: ModelInfo) -> None:
        """Raises RequestFieldError naming ``prompt`` or ``negative_prompt`` when one is longer than
        the model's tokenizer allows."""
        limit = model.max_prompt_tokens
        if limit is None:
            return
        for field in ("prompt", "negative_prompt"):
            text = getattr(config, field)
            if not text:
                continue
            tokenizer = await self._tokenizer(model.name)
            if tokenizer is None:
                return
            count = len(tokenizer.encode(text, add_special_tokens=False).ids)
            if count > limit:
                raise RequestFieldError(
                    field,
                    f"{field} has {count} tokens; model {model.name!r} takes at most {limit} "
                    "(nothing is truncated silently)",
                )
