"""The configuration of every component of the Stable Diffusion layout, scaled down to 32×32 digits.

Stable Diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models")
runs the diffusion in the latent space z = E(x) of an autoencoder, conditioned through cross-attention
on the token states τ_θ(y) of a text encoder. The shapes here keep that layout with every size shrunk:

    x   1×32×32 grayscale digit (28×28 MNIST padded with background)
    z   4×8×8    VAE latent, downsampling factor f = 4 (SD: 4×64×64, f = 8)
    τ   16×64    CLIP text-encoder states (SD 1.5: 77×768)

The noise schedule is SD 1.5's ("scaled_linear", β from 0.00085 to 0.012 over 1000 steps).
"""

from __future__ import annotations

from typing import Any, Literal

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

PredictionType = Literal["epsilon", "v_prediction"]

IMAGE_SIZE = 32  # 28 + 2 pixels of background on each side: two stride-2 downsamplings need a multiple of 4
IMAGE_CHANNELS = 1  # the digits are grayscale; three identical channels would only triple the decoder's work
LATENT_CHANNELS = 4
LATENT_SIZE = 8  # IMAGE_SIZE / f with f = 2 ** (len(VAE block_out_channels) - 1) = 4
MAX_TOKENS = 16  # "<|startoftext|> a drawing of the digit seven <|endoftext|>" is 8; 16 leaves room
TEXT_HIDDEN = 64

# SD 1.5's noise schedule (its scheduler_config.json)
NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 0.00085
BETA_END = 0.012
BETA_SCHEDULE = "scaled_linear"


def vae_config() -> dict[str, Any]:
    """AutoencoderKL with three resolution levels (32, 16, 8), hence f = 4."""
    return {
        "in_channels": IMAGE_CHANNELS,
        "out_channels": IMAGE_CHANNELS,
        "down_block_types": ["DownEncoderBlock2D"] * 3,
        "up_block_types": ["UpDecoderBlock2D"] * 3,
        "block_out_channels": [16, 32, 32],
        "layers_per_block": 1,
        "latent_channels": LATENT_CHANNELS,
        "norm_num_groups": 8,
        "sample_size": IMAGE_SIZE,
        "scaling_factor": 1.0,  # replaced by 1/std of the training latents once the VAE is trained
    }


def build_vae(scaling_factor: float = 1.0) -> AutoencoderKL:
    return AutoencoderKL(**{**vae_config(), "scaling_factor": scaling_factor})


def text_encoder_config(
    vocab_size: int, bos_token_id: int, eos_token_id: int, pad_token_id: int
) -> CLIPTextConfig:
    """A two-layer CLIP text transformer (SD 1.5's is 12 layers of width 768)."""
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=4 * TEXT_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=TEXT_HIDDEN,
        hidden_act="quick_gelu",
        bos_token_id=bos_token_id,
        # the real id, not the legacy 2: CLIPTextModel pools at the first eos token it finds
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )


def build_text_encoder(
    vocab_size: int, bos_token_id: int, eos_token_id: int, pad_token_id: int
) -> CLIPTextModel:
    return CLIPTextModel(text_encoder_config(vocab_size, bos_token_id, eos_token_id, pad_token_id))


def unet_config() -> dict[str, Any]:
    """UNet2DConditionModel on 4×8×8 latents: cross-attention at 8×8, 4×4 and in the middle."""
    return {
        "sample_size": LATENT_SIZE,
        "in_channels": LATENT_CHANNELS,
        "out_channels": LATENT_CHANNELS,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        # (64, 128) trains at 0.7 s/step on one shared CPU core, (32, 64) at 0.25: within the time
        # budget, three times the steps of the smaller network buy more than the wider one
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "cross_attention_dim": TEXT_HIDDEN,
        # diffusers' historical name: with UNet2DConditionModel this is the number of heads
        "attention_head_dim": 2,
        "norm_num_groups": 16,
    }


def build_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(**unet_config())


def noise_scheduler(prediction_type: PredictionType) -> DDPMScheduler:
    """The training forward process q(x_t | x_0): SD 1.5's schedule."""
    return DDPMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule=BETA_SCHEDULE,
        prediction_type=prediction_type,
        clip_sample=False,
    )


def sampling_scheduler(prediction_type: PredictionType) -> DDIMScheduler:
    """The scheduler shipped in the pipeline folder: DDIM over the same schedule, spaced as SD 1.5's
    (``steps_offset=1``, ``set_alpha_to_one=False``)."""
    return DDIMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule=BETA_SCHEDULE,
        prediction_type=prediction_type,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def parameter_count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())
