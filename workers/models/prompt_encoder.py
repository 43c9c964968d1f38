"""Prompt → text embeddings for text-to-image models: the pipeline's own tokenizer and text
encoder, as Stable Diffusion's pipeline calls them (padded to the tokenizer's maximum length, the
encoder's last hidden state), with a small LRU cache so a prompt that comes back is not encoded
again. Each sampling state holds the embeddings of its own prompt (and of its negative prompt for
guidance), so rows with different prompts share one UNet forward.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch


class PromptTooLong(ValueError):
    pass


class PromptEncoder:
    def __init__(
        self, tokenizer: Any, text_encoder: Any, device: torch.device, cache_size: int = 1024
    ) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.to(device).eval().requires_grad_(False)
        self.device = device
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def max_length(self) -> int:
        """Tokens per prompt including the start and end tokens."""
        return int(self.tokenizer.model_max_length)

    @property
    def max_prompt_tokens(self) -> int:
        return self.max_length - 2

    def token_count(self, prompt: str) -> int:
        """Tokens of ``prompt`` itself (without the start and end tokens)."""
        return len(self.tokenizer(prompt, add_special_tokens=False).input_ids)

    def tokenizer_json(self) -> str | None:
        """The tokenizer in the ``tokenizers`` JSON format, for the API to count tokens exactly."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        return backend.to_str() if backend is not None else None

    @torch.inference_mode()
    def embed(self, prompt: str) -> torch.Tensor:
        """[1, max_length, hidden] embeddings of ``prompt`` ("" is the unconditional prompt).

        Raises:
            PromptTooLong: longer than the tokenizer's limit (never silently truncated).
        """
        cached = self._cache.get(prompt)
        if cached is not None:
            self._cache.move_to_end(prompt)
            self.hits += 1
            return cached
        self.misses += 1
        if self.token_count(prompt) > self.max_prompt_tokens:
            raise PromptTooLong(f"the prompt has more than {self.max_prompt_tokens} tokens")
        ids = self.tokenizer(
            prompt, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)
        embeddings = self.text_encoder(ids)[0].float()
        self._cache[prompt] = embeddings
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return embeddings
