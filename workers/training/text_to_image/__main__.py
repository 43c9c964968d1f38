"""python -m workers.training.text_to_image: train (or resume) the digit text-to-image model.

Stage 1 trains the VAE, stage 2 the UNet and the text encoder on the VAE's latents; both resume
from the checkpoints in --run-dir, and a finished stage is skipped. The result is exported as a
diffusers StableDiffusionPipeline folder.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from workers.training.text_to_image.export import export_pipeline
from workers.training.text_to_image.tokenizer_files import write_tokenizer
from workers.training.text_to_image.train import DiffusionConfig, load_trained, train_diffusion
from workers.training.text_to_image.vae import VaeConfig, vae_stage

log = logging.getLogger("workers.training.text_to_image")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workers.training.text_to_image", description=__doc__)
    parser.add_argument("--run-dir", type=Path, required=True, help="checkpoints, VAE and latents go here")
    parser.add_argument("--out", type=Path, help="export the pipeline folder here when done")
    parser.add_argument("--vae-steps", type=int, default=VaeConfig.steps)
    parser.add_argument("--steps", type=int, default=DiffusionConfig.steps, help="UNet + text encoder steps")
    parser.add_argument("--batch-size", type=int, default=DiffusionConfig.batch_size)
    parser.add_argument("--lr", type=float, default=DiffusionConfig.learning_rate, help="peak learning rate")
    parser.add_argument(
        "--caption-dropout",
        type=float,
        default=DiffusionConfig.caption_dropout,
        help="probability of the empty prompt (the unconditional branch of guidance)",
    )
    parser.add_argument(
        "--prediction-type", choices=["epsilon", "v_prediction"], default=DiffusionConfig.prediction_type
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a CPU shared with other jobs, two threads ran 4× slower)",
    )
    parser.add_argument(
        "--export-only", action="store_true", help="export the latest checkpoint of --run-dir and stop"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = write_tokenizer(args.run_dir / "tokenizer")
    vae_cfg = VaeConfig(steps=args.vae_steps, seed=args.seed)
    latents = vae_stage(vae_cfg, args.run_dir)
    vae_record = {
        "config": vae_cfg.__dict__,
        "scaling_factor": latents["scaling_factor"],
        "reconstruction_l1": latents["reconstruction_l1"],
    }
    if args.export_only:
        models, state, cfg = load_trained(args.run_dir, tokenizer)
    else:
        cfg = DiffusionConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            caption_dropout=args.caption_dropout,
            prediction_type=args.prediction_type,
            seed=args.seed,
        )
        models, state = train_diffusion(cfg, args.run_dir, latents, tokenizer)
    if args.out is not None:
        export_pipeline(args.run_dir, args.out, models, state, cfg, tokenizer, vae_record)
        log.info("exported %s", args.out)
        log.info("%s", json.dumps({"steps": state.step, "loss": state.loss_ema}))


if __name__ == "__main__":
    main()
