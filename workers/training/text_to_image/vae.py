"""Stage 1: the autoencoder E, D of latent diffusion, trained on the padded digits.

Rombach et al. (2022) train the KL-regularised autoencoder with a reconstruction loss, a small KL
term towards N(0, I) (weight 1e-6 in SD) and perceptual + adversarial losses. On 32×32 grayscale
digits an L1 reconstruction loss plus a small KL term suffices. Notation:

    x      image in [-1, 1], 1×32×32          q(z|x) = N(μ, σ²)   posterior of the encoder E
    z      latent, 4×8×8                      x̂ = D(z)           reconstruction
    s      scaling_factor = 1 / std(z) over the training set, so that the diffusion model sees
           latents of unit variance (SD 1.5: 0.18215)
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from workers.training.data import load_mnist_digits, to_model_space
from workers.training.text_to_image.checkpoints import learning_rate_at, load_if_present, save_atomically
from workers.training.text_to_image.components import IMAGE_SIZE, build_vae

log = logging.getLogger("workers.training.text_to_image")

PAD = (IMAGE_SIZE - 28) // 2


@dataclass(frozen=True)
class VaeConfig:
    steps: int = 1200
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    # per latent element, relative to the per-pixel L1: 100× SD's ratio, because our latent keeps
    # one value per 4 pixels (SD: one per 16) and a tighter prior keeps it smooth for the diffusion
    kl_weight: float = 1e-4
    seed: int = 0
    checkpoint_every: int = 100


def padded_digits() -> tuple[torch.Tensor, np.ndarray]:
    """The 5,000 digits as float32 [N, 1, 32, 32] in [-1, 1], padded with background (-1), and labels."""
    images, labels = load_mnist_digits()
    return F.pad(to_model_space(images), (PAD, PAD, PAD, PAD), value=-1.0), labels


def crop_to_digit(images: np.ndarray) -> np.ndarray:
    """[..., 32, 32] -> [..., 28, 28]: undoes the padding of ``padded_digits``."""
    return images[..., PAD : PAD + 28, PAD : PAD + 28]


def vae_loss(vae: AutoencoderKL, x: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (loss, L1 reconstruction error); loss = mean |x − D(z)| + w · KL(q(z|x) ‖ N(0, I)) per
    latent element, z ~ q(z|x)."""
    posterior = vae.encode(x).latent_dist
    z = posterior.sample()
    x_hat = vae.decode(z).sample
    reconstruction = (x_hat - x).abs().mean()
    kl_per_element = posterior.kl().mean() / z[0].numel()  # kl() sums over the latent's elements
    return reconstruction + kl_weight * kl_per_element, reconstruction.detach()


def train_vae(cfg: VaeConfig, run_dir: Path) -> AutoencoderKL:
    """Trains (or resumes) the VAE until ``cfg.steps``; returns it with scaling_factor still 1."""
    checkpoint = run_dir / "vae_checkpoint.pt"
    torch.manual_seed(cfg.seed)
    data, _ = padded_digits()
    vae = build_vae()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    rng = torch.Generator().manual_seed(cfg.seed)
    step, seconds, l1_ema = 0, 0.0, float("nan")
    saved = load_if_present(checkpoint)
    if saved is not None:
        vae.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.set_state(saved["torch_rng"])
        torch.set_rng_state(saved["global_rng"])  # posterior.sample() draws from the global generator
        step, seconds, l1_ema = saved["step"], saved["wall_seconds"], saved["l1_ema"]
        log.info("vae: resumed at step %d", step)
    vae.train()
    started = time.perf_counter() - seconds
    while step < cfg.steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, cfg.learning_rate, cfg.steps, cfg.warmup_steps)
        x = data[torch.randint(0, len(data), (cfg.batch_size,), generator=rng)]
        loss, l1 = vae_loss(vae, x, cfg.kl_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        l1_ema = float(l1) if step == 0 or l1_ema != l1_ema else 0.95 * l1_ema + 0.05 * float(l1)
        step += 1
        seconds = time.perf_counter() - started
        if step % 25 == 0 or step == cfg.steps:
            log.info("vae step %d/%d L1 %.4f %.2f s/step", step, cfg.steps, l1_ema, seconds / step)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_atomically(
                {
                    "config": asdict(cfg),
                    "model": vae.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "torch_rng": rng.get_state(),
                    "global_rng": torch.get_rng_state(),
                    "step": step,
                    "wall_seconds": seconds,
                    "l1_ema": l1_ema,
                },
                checkpoint,
            )
    return vae.eval()


@torch.no_grad()
def encode_training_set(vae: AutoencoderKL, seed: int = 0) -> dict[str, torch.Tensor | float]:
    """μ and σ of q(z|x) for every digit, and s = 1/std(z) of one sample z per digit, as SD
    computed its 0.18215 (on a batch of sampled latents)."""
    data, labels = padded_digits()
    means, stds = [], []
    for chunk in data.split(500):
        posterior = vae.encode(chunk).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    mean, std = torch.cat(means), torch.cat(stds)
    z = mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(seed))
    reconstruction = torch.cat([vae.decode(chunk).sample for chunk in mean.split(500)])
    return {
        "mean": mean,
        "std": std,
        "labels": torch.from_numpy(labels),
        "scaling_factor": float(1.0 / z.std()),
        "reconstruction_l1": float((reconstruction - data).abs().mean()),
    }


def vae_stage(cfg: VaeConfig, run_dir: Path) -> dict[str, torch.Tensor | float]:
    """Stage 1 end to end, skipped when done: trains the VAE, then writes ``vae/`` (with its
    scaling factor) and ``latents.pt`` (the posterior of every training digit) under ``run_dir``."""
    latents_file = run_dir / "latents.pt"
    if latents_file.exists() and (run_dir / "vae").exists():
        return torch.load(latents_file, weights_only=False)
    vae = train_vae(cfg, run_dir)
    latents = encode_training_set(vae, cfg.seed)
    vae.register_to_config(scaling_factor=latents["scaling_factor"])
    vae.save_pretrained(run_dir / "vae", safe_serialization=True)
    save_atomically(latents, latents_file)
    log.info(
        "vae: scaling_factor %.4f, reconstruction L1 %.4f on the training set",
        latents["scaling_factor"],
        latents["reconstruction_l1"],
    )
    return latents
