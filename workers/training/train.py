"""The training loop: v-prediction (or ε-prediction) with label dropout for classifier-free guidance, EMA,
a warm-up + cosine learning-rate schedule, and resumable checkpoints.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler
from tqdm import tqdm

from workers.host_upload import upload
from workers.models.architecture import build_digit_unet
from workers.training.data import (
    IMAGE_SIZE,
    NULL_CLASS,
    NUM_CLASSES,
    load_mnist_digits,
    split_digits,
    to_model_space,
)
from workers.training.ema import EMA
from workers.training.losses import LossName, diffusion_loss

log = logging.getLogger("workers.training")

# Why v-prediction by default (Salimans & Ho 2022): with the cosine schedule ᾱ_{T-1} ≈ 2e-9,
# so an ε-model's x̂_0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t multiplies its error by ~2·10⁴ at the
# noisiest step and any sampler that starts there (the "uniform"/trailing spacing) diverges.
# v = √ᾱ_t ε − √(1−ᾱ_t) x_0 gives x̂_0 = √ᾱ_t x_t − √(1−ᾱ_t) v̂: well conditioned at every t.


@dataclass(frozen=True)
class TrainConfig:
    run_dir: str
    steps: int = 5000
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    label_dropout: float = 0.2
    ema_decay: float = 0.999
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    num_train_timesteps: int = 1000
    loss: LossName = "mse"
    fourier_alpha: float = 4.0
    fourier_power: float = 2.0
    seed: int = 0
    checkpoint_every: int = 250
    threads: int = 0
    device: str = "cpu"
    holdout: bool = False  # train without the held-out digits (workers.training.data.split_digits)


@dataclass
class TrainState:
    step: int = 0
    wall_seconds: float = 0.0
    loss_ema: float = float("nan")
    loss_history: list[tuple[int, float]] = field(default_factory=list)

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> TrainState:
        return cls(
            step=saved["step"],
            wall_seconds=saved["wall_seconds"],
            loss_ema=saved["loss_ema"],
            loss_history=[(int(step), float(loss)) for step, loss in saved["loss_history"]],
        )


def learning_rate_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * learning_rate``."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.learning_rate * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def noise_scheduler_for(cfg: TrainConfig) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        clip_sample=False,
    )


def _checkpoint_path(cfg: TrainConfig) -> Path:
    return Path(cfg.run_dir) / "checkpoint.pt"


def _save_checkpoint(cfg: TrainConfig, state: TrainState, model, ema, optimizer, rng) -> None:  # type: ignore[no-untyped-def]
    path = _checkpoint_path(cfg)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "config": asdict(cfg),
            "state": asdict(state),
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": rng.get_state(),
        },
        tmp,
    )
    os.replace(tmp, path)


def train(cfg: TrainConfig) -> tuple[EMA, TrainState]:
    """Runs (or resumes) training until ``cfg.steps``; returns the EMA model and the state."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    images, labels = load_mnist_digits()
    if cfg.holdout:
        (images, labels), (held_images, _) = split_digits(images, labels)
        log.info("held out %d digits; training on %d", len(held_images), len(images))
    data = to_model_space(images)
    targets = torch.from_numpy(labels)
    null_class = NULL_CLASS

    device = torch.device(cfg.device)
    model = build_digit_unet(NUM_CLASSES, IMAGE_SIZE).to(device)
    ema = EMA(model, cfg.ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    scheduler = noise_scheduler_for(cfg)
    rng = torch.Generator().manual_seed(cfg.seed)
    state = TrainState()

    if _checkpoint_path(cfg).exists():
        ckpt = torch.load(_checkpoint_path(cfg), weights_only=False, map_location=device)
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        rng.set_state(ckpt["torch_rng"].cpu())
        state = TrainState.from_checkpoint(ckpt["state"])
        log.info("resumed from step %d (%.0f s of training so far)", state.step, state.wall_seconds)

    model.train()
    loss_ema = None if math.isnan(state.loss_ema) else torch.tensor(state.loss_ema, device=device)
    started = time.perf_counter() - state.wall_seconds
    progress = tqdm(total=cfg.steps, initial=state.step, unit="step", disable=None)
    while state.step < cfg.steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(state.step, cfg)
        # every random draw comes from one CPU generator, so a seed gives the same batches,
        # labels, noise and timesteps on any device
        index = torch.randint(0, data.shape[0], (cfg.batch_size,), generator=rng)
        x0 = data[index]
        class_labels = targets[index].clone()
        dropped = torch.rand(cfg.batch_size, generator=rng) < cfg.label_dropout
        class_labels[dropped] = null_class
        noise = torch.randn(x0.shape, generator=rng)
        timesteps = torch.randint(0, cfg.num_train_timesteps, (cfg.batch_size,), generator=rng)
        x0, noise, timesteps, class_labels = (upload(t, device) for t in (x0, noise, timesteps, class_labels))
        x_t = scheduler.add_noise(x0, noise, timesteps)

        target = noise if cfg.prediction_type == "epsilon" else scheduler.get_velocity(x0, noise, timesteps)
        predicted = model(x_t, timesteps, class_labels=class_labels).sample
        loss = diffusion_loss(predicted, target, cfg.loss, cfg.fourier_alpha, cfg.fourier_power)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema.update(model)

        # the running loss stays on the device: reading it every step would stall a GPU
        detached = loss.detach()
        loss_ema = detached if loss_ema is None else 0.98 * loss_ema + 0.02 * detached
        state.step += 1
        progress.update(1)
        if state.step % 50 == 0 or state.step == cfg.steps or state.step % cfg.checkpoint_every == 0:
            state.loss_ema = float(loss_ema)
            progress.set_postfix(loss=f"{state.loss_ema:.4f}")
        state.wall_seconds = time.perf_counter() - started
        if state.step % 50 == 0 or state.step == cfg.steps:
            state.loss_history.append((state.step, round(state.loss_ema, 5)))
            rate = state.wall_seconds / state.step
            log.info(
                "step %d/%d loss %.4f lr %.2e %.2f s/step eta %.0f min",
                state.step,
                cfg.steps,
                state.loss_ema,
                learning_rate_at(state.step, cfg),
                rate,
                rate * (cfg.steps - state.step) / 60,
            )
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
            _save_checkpoint(cfg, state, model, ema, optimizer, rng)
    progress.close()
    return ema, state
