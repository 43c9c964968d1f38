"""Stage 2: the text-conditioned latent diffusion model, UNet ε_θ and text encoder τ_θ trained jointly.

Latent diffusion (Rombach et al. 2022, eq. 3) minimises

    L_LDM = E_{z_0 = s·E(x), y, ε ~ N(0, I), t} ‖ ε − ε_θ(z_t, t, τ_θ(y)) ‖²,
    z_t = √ᾱ_t z_0 + √(1 − ᾱ_t) ε                                    (DDPM forward process)

Notation map: ``alphas_cumprod[t]`` -> ᾱ_t, ``latents`` -> z_0, ``encoder_hidden_states`` -> τ_θ(y).
SD 1.5 freezes a pretrained CLIP text encoder; there is none to be had here, so τ_θ is trained from
scratch through the same loss. With ``v_prediction`` the target is v = √ᾱ_t ε − √(1 − ᾱ_t) z_0
(Salimans & Ho 2022) instead of ε.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import CLIPTokenizer

from workers.training.ema import EMA
from workers.training.text_to_image.captions import random_caption
from workers.training.text_to_image.checkpoints import learning_rate_at, load_if_present, save_atomically
from workers.training.text_to_image.components import (
    MAX_TOKENS,
    NUM_TRAIN_TIMESTEPS,
    PredictionType,
    build_text_encoder,
    build_unet,
    noise_scheduler,
)

log = logging.getLogger("workers.training.text_to_image")


@dataclass(frozen=True)
class DiffusionConfig:
    steps: int = 10000
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    caption_dropout: float = 0.15
    filler_probability: float = 0.4
    prediction_type: PredictionType = "epsilon"
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 250


@dataclass
class DiffusionState:
    step: int = 0
    wall_seconds: float = 0.0
    loss_ema: float = float("nan")
    loss_history: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Models:
    """The trained pair and their EMA shadows (the shadows are what is shipped)."""

    unet: Any
    text_encoder: Any
    unet_ema: EMA
    text_encoder_ema: EMA


def build_models(tokenizer: CLIPTokenizer, ema_decay: float) -> Models:
    unet = build_unet()
    text_encoder = build_text_encoder(
        len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    )
    return Models(unet, text_encoder, EMA(unet, ema_decay), EMA(text_encoder, ema_decay))


def tokenize(tokenizer: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    """Token ids exactly as ``StableDiffusionPipeline.encode_prompt`` makes them: padded with
    ``<|endoftext|>`` to the full length, no attention mask."""
    return tokenizer(
        captions, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
    ).input_ids


def diffusion_checkpoint(run_dir: Path) -> Path:
    return run_dir / "diffusion_checkpoint.pt"


def train_diffusion(
    cfg: DiffusionConfig, run_dir: Path, latents: dict[str, Any], tokenizer: CLIPTokenizer
) -> tuple[Models, DiffusionState]:
    """Trains (or resumes) until ``cfg.steps``. ``latents`` is the VAE stage's output: posterior
    mean and std of every digit, labels and the scaling factor s."""
    torch.manual_seed(cfg.seed)
    models = build_models(tokenizer, cfg.ema_decay)
    parameters = [*models.unet.parameters(), *models.text_encoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=cfg.learning_rate, weight_decay=0.0)
    scheduler = noise_scheduler(cfg.prediction_type)
    rng = torch.Generator().manual_seed(cfg.seed)
    caption_rng = random.Random(cfg.seed)
    state = DiffusionState()
    saved = load_if_present(diffusion_checkpoint(run_dir))
    if saved is not None:
        models.unet.load_state_dict(saved["unet"])
        models.text_encoder.load_state_dict(saved["text_encoder"])
        models.unet_ema.load_state_dict(saved["unet_ema"])
        models.text_encoder_ema.load_state_dict(saved["text_encoder_ema"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.set_state(saved["torch_rng"])
        caption_rng.setstate(saved["caption_rng"])
        state = DiffusionState(**saved["state"])
        log.info("diffusion: resumed at step %d (%.0f s so far)", state.step, state.wall_seconds)

    mean, std, labels = latents["mean"], latents["std"], latents["labels"]
    s = float(latents["scaling_factor"])
    models.unet.train()
    models.text_encoder.train()
    started = time.perf_counter() - state.wall_seconds
    while state.step < cfg.steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(state.step, cfg.learning_rate, cfg.steps, cfg.warmup_steps)
        # 1. a batch: z_0 = s · (μ + σ ξ) drawn from the stored posterior, and a fresh caption each
        index = torch.randint(0, len(mean), (cfg.batch_size,), generator=rng)
        z_0 = s * (mean[index] + std[index] * torch.randn(mean[index].shape, generator=rng))
        captions = [
            random_caption(int(label), caption_rng, cfg.caption_dropout, cfg.filler_probability)
            for label in labels[index]
        ]
        # 2. forward process: z_t = √ᾱ_t z_0 + √(1 − ᾱ_t) ε
        noise = torch.randn(z_0.shape, generator=rng)
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (cfg.batch_size,), generator=rng)
        z_t = scheduler.add_noise(z_0, noise, t)
        target = noise if cfg.prediction_type == "epsilon" else scheduler.get_velocity(z_0, noise, t)
        # 3. τ_θ(y), then the UNet's prediction through cross-attention
        encoder_hidden_states = models.text_encoder(tokenize(tokenizer, captions))[0]
        predicted = models.unet(z_t, t, encoder_hidden_states=encoder_hidden_states).sample
        loss = F.mse_loss(predicted, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        models.unet_ema.update(models.unet)
        models.text_encoder_ema.update(models.text_encoder)

        value = loss.item()
        state.loss_ema = value if state.step == 0 else 0.98 * state.loss_ema + 0.02 * value
        state.step += 1
        state.wall_seconds = time.perf_counter() - started
        if state.step % 50 == 0 or state.step == cfg.steps:
            state.loss_history.append((state.step, round(state.loss_ema, 5)))
            rate = state.wall_seconds / state.step
            log.info(
                "diffusion step %d/%d loss %.4f lr %.2e %.2f s/step eta %.0f min",
                state.step,
                cfg.steps,
                state.loss_ema,
                learning_rate_at(state.step, cfg.learning_rate, cfg.steps, cfg.warmup_steps),
                rate,
                rate * (cfg.steps - state.step) / 60,
            )
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
            save_atomically(
                {
                    "config": asdict(cfg),
                    "state": asdict(state),
                    "unet": models.unet.state_dict(),
                    "text_encoder": models.text_encoder.state_dict(),
                    "unet_ema": models.unet_ema.state_dict(),
                    "text_encoder_ema": models.text_encoder_ema.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "torch_rng": rng.get_state(),
                    "caption_rng": caption_rng.getstate(),
                },
                diffusion_checkpoint(run_dir),
            )
    return models, state


def load_trained(run_dir: Path, tokenizer: CLIPTokenizer) -> tuple[Models, DiffusionState, DiffusionConfig]:
    """The latest checkpoint of ``run_dir`` (to export while, or after, training runs)."""
    saved = load_if_present(diffusion_checkpoint(run_dir))
    if saved is None:
        raise FileNotFoundError(f"no diffusion checkpoint in {run_dir}")
    cfg = DiffusionConfig(**saved["config"])
    models = build_models(tokenizer, cfg.ema_decay)
    models.unet_ema.load_state_dict(saved["unet_ema"])
    models.text_encoder_ema.load_state_dict(saved["text_encoder_ema"])
    state = DiffusionState(**saved["state"])
    state.loss_history = [(int(a), float(b)) for a, b in state.loss_history]
    return models, state, cfg
