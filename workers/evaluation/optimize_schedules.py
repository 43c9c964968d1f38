"""Timesteps that minimise a measured error, per model, sampler and number of steps (NFE), served
as ``schedule: "optimized"``.

    python -m workers.evaluation.optimize_schedules --model mnist-gauss [--steps 4 5 6 8 10 15 20]
        [--samplers ddim unipc ...] [--no-write] [--out eval/results/schedules]

- **Exact-score models** (``gaussian_mixture``): the objective is the closed-form FD* of the
  sampler's output distribution, averaged over all classes (``workers.evaluation.exact_error``:
  the population value the sweep's estimator approaches, noise-free, a few ms per evaluation). It
  is minimised by integer pattern search (``schedule_search.pattern_search``) from the three best
  hand-made schedules (Stable Diffusion's AYS table moved by σ among them) and from the optima
  already found for the other samplers at the same steps (the best search wins). Every sampler here,
  DDPM included (its injected noise is propagated exactly).
- **Trained models**: GITS (Chen et al. 2024). A teacher (UniPC on ~130 grid timesteps, at the
  model's default guidance) records its trajectory from fixed latents; the N-step path through the
  grid with the least summed error of one DDIM step against the teacher is found by dynamic
  programming (``teacher``, ``schedule_search.dynamic_programming``). DDIM and Euler take that path
  (a DDIM step is an Euler step in σ-space); the multistep solvers (DPM-Solver++ 2M, UniPC), whose
  steps depend on their history, start from the best of the path and the hand-made schedules by
  their own error against the teacher (RMS per pixel from the same latents, 2 images per class)
  and refine it by pattern search on that error. Every list is then judged on the teacher's other
  3 images per class (``held_out``). Stochastic samplers have no ODE to follow: none.

Writes ``optimized_schedules.json`` into the model's folder (``workers.models.optimized_schedules``;
``--no-write`` to skip), the model card's "Optimized schedules" section (between the markers
below, appended if absent), and ``<out>/<model>.json``, ``.md`` and ``_vs_nfe.png`` with every
candidate's error.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protocol.resolution import Limits, resolve_request
from protocol.schema import GenerationRequest, ResolvedConfig, SamplerName, ScheduleName
from workers.evaluation.exact_error import exact_error
from workers.evaluation.noise_models import exact_mixture
from workers.evaluation.schedule_plots import write_schedule_figure
from workers.evaluation.schedule_search import dynamic_programming, pattern_search
from workers.evaluation.teacher import Teacher, ddim_step_costs, teacher_error, teacher_trajectory
from workers.models.loading import LoadedModel, load_model
from workers.models.optimized_schedules import write_optimized_schedules
from workers.models.registry import lookup
from workers.sampling.scheduler_factory import build_scheduler
from workers.sampling.schedules import AYS_TIMESTEPS

DEFAULT_STEPS = (4, 5, 6, 8, 10, 15, 20)
EXACT_SAMPLERS: tuple[SamplerName, ...] = ("ddim", "euler", "dpmpp_2m", "unipc", "ddpm")
TEACHER_SAMPLERS: tuple[SamplerName, ...] = ("ddim", "euler", "dpmpp_2m", "unipc")
HAND_MADE: tuple[ScheduleName, ...] = ("uniform", "linspace", "karras", "cosine", "quadratic")
TEACHER_IMAGES_PER_CLASS = 5
REFINE_IMAGES_PER_CLASS = 2  # the search's images; the other 3 of each class judge the result
REFINE_EVALUATIONS = 40
SEED = 777
DEFAULT_OUT = Path("eval/results/schedules")
CARD_START, CARD_END = "<!-- optimized-schedules -->", "<!-- /optimized-schedules -->"
LIMITS = Limits.absolute()


def resolved(model: LoadedModel, **fields: Any) -> ResolvedConfig:
    """A resolved request on ``model`` (class 0, the model's default guidance unless given)."""
    request = GenerationRequest(class_label=0, seed=0, **fields)
    return resolve_request(request, {model.info.name: model.info}, model.info.name, LIMITS)


def visited(model: LoadedModel, config: ResolvedConfig) -> list[int]:
    return [
        int(t) for t in build_scheduler(config, model.scheduler_config, model.optimized_schedules).timesteps
    ]


def ays_by_sigma(steps: int, alphas_cumprod: np.ndarray) -> list[int]:
    """For comparison only: Stable Diffusion's AYS table moved to another noise schedule by σ (its
    σ values, log-linearly interpolated to ``steps``, at this schedule's nearest timesteps)."""
    sd = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    sd_sigmas = np.sqrt((1 - np.cumprod(1 - sd.numpy())) / np.cumprod(1 - sd.numpy()))
    table = np.log(sd_sigmas[list(AYS_TIMESTEPS)])[::-1]
    log_sigmas = np.interp(np.linspace(0, 1, steps), np.linspace(0, 1, len(table)), table)[::-1]
    own = np.log(np.sqrt((1 - alphas_cumprod) / alphas_cumprod))
    timesteps = np.round(np.interp(log_sigmas, own, np.arange(len(own)))).astype(int)
    for i in range(1, len(timesteps)):  # distinct, descending
        timesteps[i] = min(timesteps[i], timesteps[i - 1] - 1)
    return [int(t) for t in timesteps]


# ------------------------------------------------------------------ exact-score models
def optimize_exact(model: LoadedModel, samplers: list[SamplerName], steps_list: list[int]) -> dict:
    """Pattern search on the closed-form FD* (all classes) from the best hand-made schedules and the
    other samplers' optima (the best search wins)."""
    mixture = exact_mixture(model)
    classes = list(range(mixture.num_classes))
    alphas = mixture.alphas_cumprod.numpy()
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for sampler in samplers:
        results[sampler] = {}
        for steps in steps_list:
            started = time.perf_counter()
            base = resolved(model, sampler=sampler, steps=steps, schedule="karras", guidance_scale=1.0)

            def objective(timesteps: list[int], base: ResolvedConfig = base) -> float:
                return exact_error(mixture, model.scheduler_config, base, classes, timesteps=timesteps).fd

            hand_made: dict[str, dict[str, Any]] = {}
            for schedule in HAND_MADE:
                config = base.model_copy(update={"schedule": schedule})
                timesteps = visited(model, config)
                hand_made[schedule] = {"timesteps": timesteps, "error": objective(timesteps)}
            ays = ays_by_sigma(steps, alphas)
            hand_made["ays_sigma"] = {"timesteps": ays, "error": objective(ays)}
            ranked = sorted(hand_made, key=lambda name: hand_made[name]["error"])
            starts = {name: hand_made[name]["timesteps"] for name in ranked[:3]}
            # and the optima already found for the other samplers at these steps
            starts.update(
                {
                    f"{other} optimized": found[steps]["timesteps"]
                    for other, found in results.items()
                    if steps in found
                }
            )
            searches = {name: pattern_search(objective, timesteps, 999) for name, timesteps in starts.items()}
            start = min(searches, key=lambda name: searches[name].value)
            best = searches[start]
            results[sampler][steps] = {
                "timesteps": best.timesteps,
                "error": best.value,
                "start": start,
                "evaluations": sum(s.evaluations for s in searches.values()),
                "seconds": round(time.perf_counter() - started, 1),
                "hand_made": {name: entry["error"] for name, entry in hand_made.items()},
            }
            _report(sampler, steps, results[sampler][steps])
    return results


def reference_error(model: LoadedModel) -> float:
    """The closed-form FD* (all classes) of 1,000-step DDPM, the sweep's reference."""
    mixture = exact_mixture(model)
    config = resolved(model, sampler="ddpm", steps=1000, guidance_scale=1.0)
    return exact_error(mixture, model.scheduler_config, config, list(range(mixture.num_classes))).fd


# ------------------------------------------------------------------ trained models
def optimize_with_teacher(
    model: LoadedModel, samplers: list[SamplerName], steps_list: list[int], teacher: Teacher
) -> dict:
    """GITS paths for every sampler; the multistep solvers' refined on their teacher error."""
    cost = ddim_step_costs(teacher)
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for sampler in samplers:
        results[sampler] = {}
        request = teacher.request.model_copy(update={"sampler": sampler})
        for steps in steps_list:
            started = time.perf_counter()
            path, path_cost = dynamic_programming(cost, steps)
            gits = [teacher.grid[i] for i in path]

            def objective(timesteps: list[int], request: GenerationRequest = request) -> float:
                return teacher_error(model, teacher, request, timesteps, REFINE_IMAGES_PER_CLASS)

            def held_out(timesteps: list[int], request: GenerationRequest = request) -> float:
                images = TEACHER_IMAGES_PER_CLASS - REFINE_IMAGES_PER_CLASS
                return teacher_error(
                    model, teacher, request, timesteps, images, first=REFINE_IMAGES_PER_CLASS
                )

            candidates = {"gits": gits}
            for schedule in ("uniform", "karras"):
                config = resolved(model, sampler=sampler, steps=steps, schedule=schedule)
                candidates[schedule] = visited(model, config)
            errors = {name: objective(timesteps) for name, timesteps in candidates.items()}
            record: dict[str, Any] = {"dp_cost": path_cost, "hand_made": errors, "gits": gits}
            if sampler in ("dpmpp_2m", "unipc"):
                # the other multistep solver's refined list is a start too
                others = {
                    f"{other} optimized": found[steps]["timesteps"]
                    for other, found in results.items()
                    if other in ("dpmpp_2m", "unipc") and steps in found
                }
                starts = {**candidates, **others}
                errors_all = {**errors, **{name: objective(t) for name, t in others.items()}}
                start = min(errors_all, key=errors_all.__getitem__)
                search = pattern_search(
                    objective, starts[start], 999, first_step=16, max_evaluations=REFINE_EVALUATIONS
                )
                record.update(timesteps=search.timesteps, error=search.value, start=start)
                record["evaluations"] = search.evaluations
            else:
                record.update(timesteps=gits, error=errors["gits"], start="gits", evaluations=0)
            # judged on latents the search never saw
            record["held_out"] = {
                "optimized": held_out(record["timesteps"]),
                **{name: held_out(timesteps) for name, timesteps in candidates.items()},
            }
            record["seconds"] = round(time.perf_counter() - started, 1)
            results[sampler][steps] = record
            _report(sampler, steps, record)
    return results


def teacher_references(model: LoadedModel, teacher: Teacher) -> dict[str, float]:
    """The teacher error of 50 DDIM steps (the default before it was measured), on the held-out
    images, for scale."""
    images = TEACHER_IMAGES_PER_CLASS - REFINE_IMAGES_PER_CLASS
    request = teacher.request.model_copy(update={"sampler": "ddim", "steps": 50, "schedule": "uniform"})
    return {
        "DDIM, 50 steps": teacher_error(model, teacher, request, None, images, first=REFINE_IMAGES_PER_CLASS)
    }


def _report(sampler: str, steps: int, record: dict[str, Any]) -> None:
    hand = ", ".join(f"{k} {v:.4g}" for k, v in record["hand_made"].items())
    print(
        f"  {sampler:9} {steps:3} steps: {record['error']:.4g} from {record['start']} "
        f"({hand}) {record['timesteps']}  {record['seconds']} s",
        flush=True,
    )


# ------------------------------------------------------------------ outputs
def markdown_table(document: dict[str, Any]) -> str:
    """Sampler × steps: the optimised error against the best hand-made schedule's (and, where the
    search saw only some images, both on the images it never saw)."""
    held_out = any("held_out" in r for by_steps in document["schedules"].values() for r in by_steps.values())
    extra = " held out: optimized / best hand-made |" if held_out else ""
    lines = [
        f"| sampler | NFE | {document['objective_short']}: optimized | best hand-made | uniform |{extra} "
        "timesteps |",
        "| --- | ---: | ---: | ---: | ---: |" + (" ---: |" if held_out else "") + " --- |",
    ]
    for sampler, by_steps in document["schedules"].items():
        for steps, record in by_steps.items():
            hand = {k: v for k, v in record["hand_made"].items() if k != "gits"}
            best = min(hand, key=hand.__getitem__)
            cells = [sampler, str(steps), f"**{record['error']:.4g}**", f"{hand[best]:.4g} ({best})"]
            cells.append(f"{hand['uniform']:.4g}")
            if held_out:
                judged = record["held_out"]
                cells.append(f"{judged['optimized']:.4g} / {judged[best]:.4g}")
            cells.append(", ".join(map(str, record["timesteps"])))
            lines.append("| " + " | ".join(cells) + " |")
    references = document.get("references", {})
    if references:
        lines += ["", "Reference: " + "; ".join(f"{k}: {v:.4g}" for k, v in references.items()) + "."]
    return "\n".join(lines)


def update_model_card(card: Path, document: dict[str, Any]) -> None:
    """Rewrites the card's section between ``CARD_START`` and ``CARD_END`` (appended if absent)."""
    section = "\n".join(
        [
            CARD_START,
            "## Optimized schedules",
            "",
            f'`schedule: "optimized"` visits the timesteps in `optimized_schedules.json`, found by '
            f"`{document['command']}` ({document['method']}). Objective: {document['objective']}.",
            "",
            markdown_table(document),
            "",
            f"Optimised {document['date']} on the 2-core development machine in {document['seconds']:.0f} s.",
            CARD_END,
        ]
    )
    text = card.read_text() if card.exists() else ""
    if CARD_START in text and CARD_END in text:
        head, rest = text.split(CARD_START, 1)
        text = head + section + rest.split(CARD_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    card.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m workers.evaluation.optimize_schedules",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="mnist-gauss", help="a registry name")
    parser.add_argument("--steps", type=int, nargs="+", default=list(DEFAULT_STEPS))
    parser.add_argument("--samplers", nargs="+", help="default: every sampler the method serves")
    parser.add_argument("--no-write", action="store_true", help="leave the model folder untouched")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    entry = lookup(args.model)
    model = load_model(entry, torch.device("cpu"), torch.float32)
    model.optimized_schedules = {}  # search from scratch, never from the served table
    model.info = model.info.model_copy(update={"optimized_schedules": {}})
    started = time.perf_counter()
    exact = model.info.family == "gaussian_mixture"
    samplers = args.samplers or list(EXACT_SAMPLERS if exact else TEACHER_SAMPLERS)
    document: dict[str, Any] = {"model": args.model, "command": _command(args)}
    if exact:
        print(f"{args.model}: pattern search on the closed-form FD*", flush=True)
        document.update(
            method="integer pattern search from the three best hand-made schedules and the other "
            "samplers' optima",
            objective="the closed-form FD* of the output distribution (guidance 1), mean over all 10 classes",
            objective_short="exact FD*",
            schedules=optimize_exact(model, samplers, args.steps),
            references={"DDPM, 1000 steps": reference_error(model)},
        )
    else:
        print(f"{args.model}: teacher trajectory ({TEACHER_IMAGES_PER_CLASS} images per class)", flush=True)
        classes = list(range(model.info.num_classes or 1)) if model.info.num_classes else [0]
        teacher = teacher_trajectory(model, classes, TEACHER_IMAGES_PER_CLASS, SEED)
        print(f"  teacher: {len(teacher.grid)} NFE, {time.perf_counter() - started:.0f} s", flush=True)
        document.update(
            method="GITS dynamic programming over a UniPC teacher trajectory on "
            f"{len(teacher.grid)} grid timesteps ({TEACHER_IMAGES_PER_CLASS} images per class, default "
            "guidance); DPM-Solver++ and UniPC refined by pattern search on their own teacher error",
            objective="RMS difference per pixel from the teacher's images, same latents "
            f"({REFINE_IMAGES_PER_CLASS} images per class; held out: the other "
            f"{TEACHER_IMAGES_PER_CLASS - REFINE_IMAGES_PER_CLASS})",
            objective_short="RMS vs teacher",
            teacher_grid=teacher.grid,
            schedules=optimize_with_teacher(model, samplers, args.steps, teacher),
            references=teacher_references(model, teacher),
        )
    document["seconds"] = round(time.perf_counter() - started, 1)
    document["date"] = time.strftime("%Y-%m-%d")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.model}.json").write_text(json.dumps(document, indent=1) + "\n")
    (args.out / f"{args.model}.md").write_text(markdown_table(document) + "\n")
    write_schedule_figure(document, args.out / f"{args.model}_vs_nfe.png")
    print("\n" + markdown_table(document))
    if not args.no_write:
        folder = entry.folder()
        path = write_optimized_schedules(folder, document)
        update_model_card(folder / "README.md", document)
        print(f"\nwrote {path} and the model card's section")


def _command(args: argparse.Namespace) -> str:
    steps = "" if list(args.steps) == list(DEFAULT_STEPS) else " --steps " + " ".join(map(str, args.steps))
    samplers = f" --samplers {' '.join(args.samplers)}" if args.samplers else ""
    return f"python -m workers.evaluation.optimize_schedules --model {args.model}{steps}{samplers}"


if __name__ == "__main__":
    main()
