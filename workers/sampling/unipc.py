"""UniPC (Zhao et al. 2023) on any list of visited timesteps.

diffusers' ``UniPCMultistepScheduler.set_timesteps`` computes its own even spacings (or Karras,
exponential, beta or flow sigmas) but, unlike ``DPMSolverMultistepScheduler`` and
``EulerDiscreteScheduler``, takes no ``timesteps=`` list. This subclass adds it, so UniPC follows
the hand-made schedules (quadratic, cosine, Karras), the Align Your Steps tables and a model's
optimised schedules. The σ of each visited timestep is the training one,
σ_t = √((1 − ᾱ_t) / ᾱ_t), followed by the final σ of ``final_sigmas_type`` ("zero": x_0), exactly
as the parent's default branch does for its own spacings. The steps are the parent's.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import UniPCMultistepScheduler


class TimestepListUniPCScheduler(UniPCMultistepScheduler):
    """``UniPCMultistepScheduler`` whose ``set_timesteps`` also takes the visited ``timesteps``."""

    def set_timesteps(  # type: ignore[override]
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: list[float] | None = None,
        mu: float | None = None,
        timesteps: list[int] | None = None,
    ) -> None:
        """Visits exactly ``timesteps`` (descending training timesteps) when given."""
        if timesteps is None:
            super().set_timesteps(num_inference_steps, device, sigmas, mu)  # type: ignore[arg-type]
            return
        if num_inference_steps is not None or sigmas is not None:
            raise ValueError("pass timesteps alone, without num_inference_steps or sigmas")
        config = self.config
        if config.use_karras_sigmas or config.use_exponential_sigmas or config.use_beta_sigmas:
            raise ValueError("a timestep list cannot be combined with Karras, exponential or beta sigmas")
        if config.use_flow_sigmas or config.use_dynamic_shifting:
            raise ValueError("a timestep list is served for variance-preserving schedules only")
        visited = np.asarray(timesteps, dtype=np.int64)
        if visited.ndim != 1 or len(visited) == 0 or np.any(np.diff(visited) >= 0):
            raise ValueError(f"timesteps must be distinct and descending; got {list(timesteps)}")
        train_sigmas = (((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5).double().numpy()
        if config.final_sigmas_type == "sigma_min":
            sigma_last = float(train_sigmas[0])
        elif config.final_sigmas_type == "zero":
            sigma_last = 0.0
        else:
            raise ValueError(
                f"final_sigmas_type must be 'zero' or 'sigma_min'; got {config.final_sigmas_type!r}"
            )
        sigmas_visited = np.interp(visited, np.arange(len(train_sigmas)), train_sigmas)
        self.sigmas = torch.from_numpy(np.concatenate([sigmas_visited, [sigma_last]]).astype(np.float32))
        self.timesteps = torch.from_numpy(visited).to(device=device, dtype=torch.int64)
        self.num_inference_steps = len(visited)
        self.model_outputs = [None] * config.solver_order
        self.lower_order_nums = 0
        self.last_sample = None
        if self.solver_p:
            self.solver_p.set_timesteps(self.num_inference_steps, device=device)
        self._step_index = None
        self._begin_index = None
