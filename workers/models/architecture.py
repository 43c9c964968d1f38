"""The UNet architecture of the bundled class-conditional digit model."""

from __future__ import annotations

from diffusers import UNet2DModel


def build_digit_unet(num_classes: int, image_size: int = 28) -> UNet2DModel:
    """A ~1.1M-parameter UNet: channels 32/64/64, one ResNet layer per block, self-attention at 14x14.

    ``num_classes + 1`` class embeddings: the extra index is the null class that
    classifier-free guidance uses for the unconditional branch.
    """
    return UNet2DModel(
        sample_size=image_size,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=32,
        num_class_embeds=num_classes + 1,
    )
