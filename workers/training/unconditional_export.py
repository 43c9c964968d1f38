"""The unconditional model inside a classifier-free-guidance model, as a standard pipeline folder.

A UNet trained with label dropout is also an unconditional model: fed its null class, it predicts
without any condition. ``UNet2DModel`` adds the class embedding to the timestep embedding
(``emb = time_embedding(t) + class_embedding(label)``) and ``time_embedding`` ends in a linear layer,
so adding the null class's embedding vector to that layer's bias gives a network WITHOUT class
input whose every output equals the original's at the null class. That network is written as a
``DDPMPipeline`` folder (``model_index.json``, ``unet/``, ``scheduler/``), which the service serves
as any pixel pipeline folder.

    python -m workers.training.unconditional_export --source workers/models/mnist-unet \\
        --out workers/models/mnist-unet-unconditional
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from workers.models.metadata import ModelMetadata


@torch.no_grad()
def unconditional_unet(unet: UNet2DModel, null_class: int) -> UNet2DModel:
    """A copy of ``unet`` without class input, equal to ``unet`` at ``null_class``."""
    config = {k: v for k, v in unet.config.items() if not k.startswith("_")}
    config["num_class_embeds"] = None
    plain = UNet2DModel.from_config(config)
    state = {k: v for k, v in unet.state_dict().items() if not k.startswith("class_embedding.")}
    null_embedding = unet.class_embedding.weight[null_class]
    state["time_embedding.linear_2.bias"] = state["time_embedding.linear_2.bias"] + null_embedding
    plain.load_state_dict(state)
    return plain.eval()


def export(source: Path, out: Path) -> Path:
    metadata = ModelMetadata.read(source)
    if metadata.null_class is None:
        raise ValueError(f"{source}: no null class, so no unconditional model inside")
    unet = UNet2DModel.from_pretrained(source / "unet", use_safetensors=True)
    scheduler = DDPMScheduler.from_pretrained(source / "scheduler")
    DDPMPipeline(unet=unconditional_unet(unet, metadata.null_class), scheduler=scheduler).save_pretrained(
        out, safe_serialization=True
    )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=Path("workers/models/mnist-unet"))
    parser.add_argument("--out", type=Path, default=Path("workers/models/mnist-unet-unconditional"))
    args = parser.parse_args(argv)
    print(f"wrote {export(args.source, args.out)}")


if __name__ == "__main__":
    main()
