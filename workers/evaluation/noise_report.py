"""The sampling-noise sweep's answers and markdown tables, computed from its JSON report."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

WITHIN = 0.10  # "within 10% of the reference FD"
MAX_NFE = 20
LATE_START = 1e-3  # ᾱ at the first step above which the N(0, I) initial latent is off the marginal
IDENTICAL_KEYS = {
    "exact": ("low_ratio", "high_ratio", "fd", "noise_estimate"),
    "trained": ("accuracy", "fd_features", "hf_ratio", "noise_estimate"),
}


def report_rows(report: dict[str, Any], kind: str, group: str | None = None) -> list[dict[str, Any]]:
    """The rows of ``kind`` (``exact`` or ``trained``) that ran, only those in ``group`` if given."""
    rows = report.get(kind, {}).get("rows", [])
    return [r for r in rows if "skipped" not in r and (group is None or group in r["groups"])]


def _reference(report: dict[str, Any]) -> dict[str, Any] | None:
    return next(iter(report_rows(report, "exact", "reference")), None)


def variance_bound_of(row: dict[str, Any]) -> float:
    """The row's requested ``variance_bound``; infinity when it asked for none."""
    bound = row["request"].get("variance_bound")
    return float("inf") if bound is None else float(bound)


def bound_families(report: dict[str, Any], kind: str) -> dict[str, list[dict[str, Any]]]:
    """The ``bound`` group's rows of ``kind`` by sampler family and steps, each from no bound down
    to 0; a posterior-form family starts from the unbounded row of its sampler."""
    families: dict[str, list[dict[str, Any]]] = {}
    rows = report_rows(report, kind, "bound")
    for row in rows:
        families.setdefault(f"{row['family'].split(' b=')[0]}, {row['nfe']} steps", []).append(row)
    for name, members in families.items():
        if " posterior, " in name:
            unbounded = name.replace(" posterior, ", ", ")
            members += [r for r in families.get(unbounded, []) if "variance_bound" not in r["request"]]
    for rows in families.values():
        rows.sort(key=variance_bound_of, reverse=True)  # none, 0.2, ..., 0
    return families


def add_answers(report: dict[str, Any]) -> None:
    """Adds ``report["answers"]``: the numbers that answer the sweep's questions."""
    answers: dict[str, Any] = {}
    reference = _reference(report)
    if reference is not None:
        answers["reference"] = {"label": reference["label"]}
        for metric in ("fd_structured", "fd"):
            fd_ref = reference[metric]
            answers["reference"][metric] = fd_ref
            for row in report_rows(report, "exact"):
                row[f"{metric}_over_reference"] = row[metric] / fd_ref
            cheap = sorted(
                (r for r in report_rows(report, "exact") if r["nfe"] <= MAX_NFE), key=lambda r: r[metric]
            )
            answers[f"within_10pct_at_20_nfe_{metric}"] = [
                {
                    "label": r["label"],
                    "nfe": r["nfe"],
                    metric: r[metric],
                    "over_reference": r[metric] / fd_ref,
                }
                for r in cheap
                if r[metric] <= (1 + WITHIN) * fd_ref
            ]
            if cheap:
                answers[f"best_at_20_nfe_{metric}"] = {
                    "label": cheap[0]["label"],
                    "over_reference": cheap[0][metric] / fd_ref,
                }
    ordering: dict[str, list[dict[str, Any]]] = {}
    for row in report_rows(report, "exact", "ordering"):
        ordering.setdefault(str(row["nfe"]), []).append(row)
    answers["ordering_by_fd_structured"] = {
        steps: [
            {
                "label": r["label"],
                "fd_structured": r["fd_structured"],
                "fd_exact": r.get("fd_exact"),
                "low_ratio": r["low_ratio"],
            }
            for r in sorted(rows, key=lambda r: r.get("fd_exact", r["fd_structured"]))
        ]
        for steps, rows in ordering.items()
    }
    # rows whose every metric agrees to 4 significant digits: equivalent parameterisations of
    # one sampler (same noise draws), a consistency check
    identical = []
    for kind, keys in IDENTICAL_KEYS.items():
        same: dict[tuple[str, ...], list[str]] = {}
        for row in report_rows(report, kind):
            same.setdefault(tuple(f"{row[k]:.4g}" for k in keys), []).append(row["label"])
        identical += [f"{kind}: " + " = ".join(labels) for labels in same.values() if len(labels) > 1]
    answers["identical_results"] = identical
    answers["late_start"] = [
        {"label": r["label"], "alpha_prod_start": r["alpha_prod_start"]}
        for kind in ("exact", "trained")
        for r in report_rows(report, kind)
        if r.get("alpha_prod_start", 0.0) > LATE_START
    ]
    bound: dict[str, Any] = {}
    for kind in ("exact", "trained"):
        for family, rows in bound_families(report, kind).items():
            noise = [r["noise_estimate"] for r in rows]
            bound[f"{kind}: {family}"] = {
                "bounds": [r["request"].get("variance_bound") for r in rows],
                "noise_estimate": noise,
                "monotone": all(b <= a + 1e-9 for a, b in pairwise(noise)),
            }
    answers["variance_bound"] = bound
    for kind in ("exact", "trained"):
        if report_rows(report, kind):
            answers[f"default_choice_{kind}"] = choose_default(report, kind)
    report["answers"] = answers


QUALITY = {"exact": "fd_exact", "trained": "fd_features"}
SCHEDULE_RESULTS = Path("eval/results/schedules")
OLD_DEFAULT_REFERENCE = "DDIM, 50 steps"


def teacher_errors(model: str) -> tuple[dict[tuple[Any, Any, Any], float], float] | None:
    """The held-out RMS from the teacher of every (sampler, schedule, steps) that
    ``optimize_schedules`` judged on ``model``, and that of 50-step DDIM; None before it ran."""
    path = SCHEDULE_RESULTS / f"{model}.json"
    if not path.exists():
        return None
    document = json.loads(path.read_text())
    errors = {}
    for sampler, by_steps in document["schedules"].items():
        for steps, record in by_steps.items():
            for schedule, value in record.get("held_out", {}).items():
                errors[(sampler, schedule, int(steps))] = float(value)
    limit = document.get("references", {}).get(OLD_DEFAULT_REFERENCE)
    return (errors, float(limit)) if limit is not None else None


FLOOR_NOISE = {"exact": "fd_structured", "trained": "fd_features"}


def _quality(row: dict[str, Any], kind: str) -> float:
    """Lower is better: the closed-form FD* on the exact model (the estimate where there is none),
    the FD of features on the trained one."""
    return float(row[QUALITY[kind]] if QUALITY[kind] in row else row["fd_structured"])


def choose_default(report: dict[str, Any], kind: str) -> dict[str, Any]:
    """The cheapest setting (fewest NFE) whose quality is within the estimator's noise (the floor
    row's sd) of the best measured, among the settings a request can make at the model's default
    guidance (no variance knobs); on the trained model its accuracy must also be the best's, to
    one image in a hundred."""
    candidates = [
        r
        for r in report_rows(report, kind)
        if not {"guidance_scale", "variance_bound", "variance_scale"} & set(r["request"])
    ]
    noise = float(report[kind]["floor"][FLOOR_NOISE[kind]]["sd"])
    best = min(candidates, key=lambda r: _quality(r, kind))
    good = [
        r
        for r in candidates
        if _quality(r, kind) <= _quality(best, kind) + noise
        and (kind == "exact" or r["accuracy"] >= best["accuracy"] - 0.01)
    ]
    chosen = min(good, key=lambda r: (r["nfe"], _quality(r, kind)))
    summary: dict[str, Any] = {
        "metric": QUALITY[kind],
        "noise": noise,
        "best": {"label": best["label"], "nfe": best["nfe"], "value": _quality(best, kind)},
        "chosen": {"label": chosen["label"], "nfe": chosen["nfe"], "value": _quality(chosen, kind)},
        "within_noise": sorted(
            ({"label": r["label"], "nfe": r["nfe"], "value": _quality(r, kind)} for r in good),
            key=lambda r: (r["nfe"], r["value"]),
        ),
    }
    teacher = teacher_errors(report[kind]["model"]) if kind == "trained" else None
    if teacher is not None:
        # the features' FD cannot see fine detail: also ask for the old default's distance from
        # the teacher's images (the ODE solved finely), on latents the schedule search never saw
        errors, limit = teacher
        for entry in summary["within_noise"]:
            row = next(r for r in good if r["label"] == entry["label"])
            entry["teacher_rms"] = errors.get((row.get("sampler"), row.get("schedule"), row.get("nfe")))
        close = [
            e for e in summary["within_noise"] if e["teacher_rms"] is not None and e["teacher_rms"] <= limit
        ]
        summary["teacher_limit"] = limit
        if close:
            summary["chosen_as_close_to_the_teacher"] = min(close, key=lambda e: (e["nfe"], e["value"]))
    for row in report_rows(report, kind, "default"):
        summary["default request" if row["label"] == "default request" else "old default"] = {
            "label": row["label"],
            "sampler": row.get("sampler"),
            "steps": row.get("steps"),
            "schedule": row.get("schedule"),
            "nfe": row["nfe"],
            "value": _quality(row, kind),
            **({"accuracy": row["accuracy"]} if kind == "trained" else {}),
        }
    return summary


def _pm(value: dict[str, float], digits: int) -> str:
    return f"{value['mean']:.{digits}f} ± {value['sd']:.{digits}f}"


def exact_table(report: dict[str, Any], group: str | None = None) -> list[str]:
    part = report["exact"]
    floor, n = part["floor"], part["per_class"]
    lines = [
        "| setting | NFE | low-dir var ratio | high-dir var ratio | FD* | FD* / ref | FD* exact "
        f"| FD (n = {n}) | FD / ref | σ̂ (gray) | s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    if group is None:
        lines.append(
            f"| {floor['label']} (floor) | – | {_pm(floor['low_ratio'], 3)} | {_pm(floor['high_ratio'], 3)} "
            f"| {_pm(floor['fd_structured'], 2)} | | 0 | {_pm(floor['fd'], 1)} | "
            f"| {_pm(floor['noise_estimate'], 1)} | |"
        )
    for row in report_rows(report, "exact", group):
        ratios = [
            f"{row[k]:.2f}" if k in row else "" for k in ("fd_structured_over_reference", "fd_over_reference")
        ]
        exact = f"{row['fd_exact']:.3g}" if "fd_exact" in row else ""
        lines.append(
            f"| {row['label']} | {row['nfe']} | {row['low_ratio']:.3f} | {row['high_ratio']:.3f} "
            f"| {row['fd_structured']:.2f} | {ratios[0]} | {exact} | {row['fd']:.1f} | {ratios[1]} "
            f"| {row['noise_estimate']:.1f} | {row['seconds']:.1f} |"
        )
    return lines


def trained_table(report: dict[str, Any], group: str | None = None) -> list[str]:
    part = report["trained"]
    floor = part["floor"]
    lines = [
        "| setting | NFE | rows/image | accuracy | FD (PCA features) | HF energy ratio | σ̂ (gray) | s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    if group is None:
        lines.append(
            f"| {floor['label']} (floor) | – | – | {_pm(floor['accuracy'], 3)} "
            f"| {_pm(floor['fd_features'], 3)} "
            f"| {_pm(floor['hf_ratio'], 3)} | {_pm(floor['noise_estimate'], 2)} | |"
        )
    for row in report_rows(report, "trained", group):
        lines.append(
            f"| {row['label']} | {row['nfe']} | {row['rows_per_image']} | {row['accuracy']:.3f} "
            f"| {row['fd_features']:.3f} | {row['hf_ratio']:.3f} | {row['noise_estimate']:.2f} "
            f"| {row['seconds']:.1f} |"
        )
    return lines


def _answer_lines(report: dict[str, Any]) -> list[str]:
    answers = report.get("answers", {})
    lines: list[str] = []
    if "reference" in answers:
        ref = answers["reference"]
        floor = report["exact"]["floor"]["fd_structured"]
        lines += [
            f"The reference's FD* ({ref['fd_structured']:.2f}) vs n exact draws' "
            f"({floor['mean']:.2f} ± {floor['sd']:.2f}): FD* below about mean + 2 sd is not "
            "distinguishable from exact sampling at this n.",
            "",
        ]
        for metric, name in (("fd_structured", "FD*"), ("fd", "sample FD (biased at this n)")):
            within = answers[f"within_10pct_at_20_nfe_{metric}"]
            names = ", ".join(f"{w['label']} ({w['over_reference']:.2f})" for w in within) or "none"
            best = answers.get(f"best_at_20_nfe_{metric}")
            lowest = (
                f" Lowest at ≤ {MAX_NFE} NFE: {best['label']} ({best['over_reference']:.2f} × ref)."
                if best
                else ""
            )
            lines += [
                f"**{name}: settings at ≤ {MAX_NFE} NFE within {WITHIN:.0%} of {ref['label']} "
                f"({ref[metric]:.2f}):** {names}.{lowest}",
                "",
            ]
    for steps, ranked in answers.get("ordering_by_fd_structured", {}).items():
        order = " < ".join(
            f"{r['label']} ({r['fd_exact']:.2f}; estimate {r['fd_structured']:.2f}; low {r['low_ratio']:.2f})"
            if r.get("fd_exact") is not None
            else f"{r['label']} ({r['fd_structured']:.2f}; low {r['low_ratio']:.2f})"
            for r in ranked
        )
        lines.append(
            f"- {steps} NFE, by the closed-form FD* (the estimate; low-direction variance ratio): {order}"
        )
    if answers.get("ordering_by_fd_structured"):
        lines.append("")
    lines += [
        f"- same results to 4 digits (equivalent samplers): {s}" for s in answers.get("identical_results", [])
    ]
    lines += [
        f"- {late['label']} starts where ᾱ = {late['alpha_prod_start']:.3g}: the N(0, I) initial latent is "
        "not the marginal of x_t there"
        for late in answers.get("late_start", [])
    ]
    for name, sweep in answers.get("variance_bound", {}).items():
        points = ", ".join(
            f"{'none' if b is None else f'{b:g}'}: {n:.2f}"
            for b, n in zip(sweep["bounds"], sweep["noise_estimate"], strict=True)
        )
        verdict = "falls monotonically" if sweep["monotone"] else "does NOT fall monotonically"
        lines.append(f"- variance_bound, {name}: σ̂ {verdict} ({points})")
    for kind in ("exact", "trained"):
        choice = answers.get(f"default_choice_{kind}")
        if not choice:
            continue
        chosen, best = choice["chosen"], choice["best"]
        lines.append(
            f"- default, {kind} model ({choice['metric']}, noise {choice['noise']:.2f}): cheapest "
            f"within noise of the best ({best['label']}, {best['value']:.3g}) is **{chosen['label']}** "
            f"({chosen['nfe']} NFE, {chosen['value']:.3g})"
        )
        closest = choice.get("chosen_as_close_to_the_teacher")
        if closest:
            lines.append(
                f"  - and no farther from the teacher's images than 50 DDIM steps (held-out RMS ≤ "
                f"{choice['teacher_limit']:.3g}): **{closest['label']}** ({closest['nfe']} NFE, RMS "
                f"{closest['teacher_rms']:.3g})"
            )
        for key in ("default request", "old default"):
            if key in choice:
                row = choice[key]
                lines.append(
                    f"  - {key}: {row['sampler']} {row['schedule']} {row['steps']} ({row['nfe']} NFE): "
                    f"{row['value']:.3g}"
                )
    return lines


def markdown_report(report: dict[str, Any]) -> str:
    lines = [
        f"# Sampling noise by setting ({report['mode']} sweep)",
        "",
        f"Command: `{report.get('command', 'python -m workers.evaluation.noise_sweep')}`; "
        f"{report['wall_seconds']:.0f} s in all. NFE: one model evaluation per step; a guided step "
        "counts 1 NFE of a doubled batch (rows/image = 2 NFE). σ̂: mean Donoho wavelet-MAD noise "
        "estimate of the 8-bit images. s: wall seconds of the setting's one batched engine run "
        "(2 shared CPU cores; the exact model's conditional rows evaluated class by class, "
        "``ClassRoutedDenoiser``).",
        "",
    ]
    if "exact" in report:
        part = report["exact"]
        lines += [
            f"## Exact-score model `{part['model']}` (classes {part['classes']}, {part['per_class']} "
            "images each; ratios and FD per class, then averaged)",
            "",
            "Variance ratio = sample variance / true variance; low = the directions off the top-k "
            "principal components of each class (> 1: noise left in, < 1: over-smoothed). FD to "
            f"N(μ_c, Σ_c) at n = {part['per_class']}; the floor row is the FD of n exact draws "
            f"(mean ± sd over {part['floor_repeats']} draws).",
            "",
            *exact_table(report),
            "",
        ]
    if "trained" in report:
        part = report["trained"]
        lines += [
            f"## Trained model `{part['model']}` ({part['per_class']} images per class, all classes)",
            "",
            f"Accuracy: SVC (held-out accuracy {part['classifier_held_out_accuracy']:.3f}); FD of "
            f"{part['feature_map']}; HF energy ratio: share of spectral energy above 0.25 "
            "cycles/pixel, samples over the 5,000 digits (1 = like the data).",
            "",
            *trained_table(report),
            "",
        ]
    lines += ["## Answers", "", *_answer_lines(report), ""]
    for group, title in (
        ("ordering", "DDIM paper ordering (10–20 steps)"),
        ("ladder", "Stochastic samplers as steps grow"),
        ("solver", "Schedules and higher-order solvers"),
        ("schedules", "Optimized schedules against uniform and Karras"),
        ("default", "The default request against the old default (50 DDIM steps)"),
        ("guidance", "Guidance"),
        ("bound", "variance_bound"),
    ):
        if "exact" in report and report_rows(report, "exact", group):
            lines += [f"### {title}: exact model", "", *exact_table(report, group), ""]
        if "trained" in report and report_rows(report, "trained", group):
            lines += [f"### {title}: trained model", "", *trained_table(report, group), ""]
    return "\n".join(lines).rstrip()
