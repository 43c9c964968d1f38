"""Exponential moving average of model weights (the weights that are shipped)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """Keeps ``shadow = decay * shadow + (1 - decay) * weights`` after each optimiser step.

    The decay warms up as ``min(max_decay, (1 + n) / (10 + n))`` so that the average is not
    dominated by the random initial weights during the first few hundred steps.
    """

    def __init__(self, model: nn.Module, max_decay: float = 0.999) -> None:
        # Any: the shadow keeps the concrete model type (e.g. UNet2DModel.save_pretrained)
        self.shadow: Any = copy.deepcopy(model).eval().requires_grad_(False)
        self.max_decay = max_decay
        self.num_updates = 0

    def decay(self) -> float:
        return min(self.max_decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.decay()
        shadow = list(self.shadow.parameters())
        weights = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(shadow, weights, 1.0 - d)  # one fused launch group, not one per tensor
        self.num_updates += 1

    def state_dict(self) -> dict[str, object]:
        return {"shadow": self.shadow.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.shadow.load_state_dict(state["shadow"])  # type: ignore[arg-type]
        self.num_updates = int(state["num_updates"])  # type: ignore[call-overload]
