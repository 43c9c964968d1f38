"""Figures of the sampling-noise sweep (matplotlib's Agg canvas, no pyplot state; small PNGs).

- ``exact_vs_nfe.png``: on the exact model, the low-direction variance ratio and the FD against
  NFE, one line per sampler/schedule (guidance and variance bound at their defaults);
- ``variance_bound.png``: the noise estimate σ̂ against the variance bound, both models;
- ``schedules_vs_nfe.png``: the optimized schedule against uniform and Karras by NFE: the exact
  model's closed-form FD* and the trained model's FD of features;
- ``grid_exact.png``, ``grid_trained.png``: a strip of samples per selected setting, the
  reference draws (exact draws / real digits) first.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from workers.evaluation.noise_report import bound_families, report_rows, variance_bound_of
from workers.evaluation.sample_grid import tile

DPI = 80


def _plain_families(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    families: dict[str, list[dict[str, Any]]] = {}
    for row in report_rows(report, "exact"):
        request = row["request"]
        if "guidance_scale" in request or "variance_bound" in request:
            continue
        families.setdefault(row["family"], []).append(row)
    return {name: sorted(rows, key=lambda r: r["nfe"]) for name, rows in families.items() if len(rows) > 1}


def _exact_vs_nfe(report: dict[str, Any], path: Path) -> None:
    figure = Figure(figsize=(14, 4.4), dpi=DPI, layout="constrained")
    panels = figure.subplots(1, 3)
    n = report["exact"]["per_class"]
    metrics = (
        ("low_ratio", "variance ratio off the principal directions (1 = data)", "variance ratio"),
        ("fd_structured", "structured FD* to N(μ_c, Σ_c) (consistent)", "FD*"),
        ("fd", f"sample FD to N(μ_c, Σ_c) at n = {n}/class (biased)", "FD"),
    )
    families = _plain_families(report)
    for colour, (name, rows) in zip(palette(len(families)), families.items(), strict=True):
        deterministic = name.split()[0] in ("dpmpp_2m", "unipc", "euler") or "η=0" in name
        style = "--" if deterministic else "-"  # dashed: no noise injected after the initial latent
        for axes, (key, _, _) in zip(panels, metrics, strict=True):
            values = [r[key] for r in rows]
            axes.plot([r["nfe"] for r in rows], values, style, marker="o", ms=3, color=colour, label=name)
    floor = report["exact"]["floor"]
    reference = report.get("answers", {}).get("reference")
    for axes, (key, title, ylabel) in zip(panels, metrics, strict=True):
        low, high = floor[key]["mean"] - floor[key]["sd"], floor[key]["mean"] + floor[key]["sd"]
        axes.axhspan(low, high, color="grey", alpha=0.35, label="exact draws (mean ± sd)")
        if reference and key in reference:
            axes.axhline(reference[key], color="black", ls=":", lw=1, label=f"{reference['label']} (ref)")
        decorate(axes, title, ylabel)
    panels[1].set_yscale("log")
    panels[0].legend(fontsize=7, loc="upper right", ncols=2)
    figure.savefig(path)


def palette(count: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(count)]


def decorate(axes: Axes, title: str, ylabel: str) -> None:
    axes.set_xscale("log")
    axes.set_xlabel("NFE")
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3, which="both")


def _variance_bound(report: dict[str, Any], path: Path) -> None:
    figure = Figure(figsize=(6, 3.6), dpi=DPI, layout="constrained")
    axes = figure.subplots()
    for kind in ("exact", "trained"):
        for family, rows in bound_families(report, kind).items():
            bounds = [variance_bound_of(r) for r in rows]
            labels = ["none" if b == float("inf") else f"{b:g}" for b in bounds]
            axes.plot(labels, [r["noise_estimate"] for r in rows], marker="o", label=f"{kind}: {family}")
    axes.set_xlabel("variance_bound b (σ_t ≤ b)")
    axes.set_ylabel("mean noise estimate σ̂ (gray levels)")
    axes.set_yscale("log")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=7)
    figure.savefig(path)


def _schedule_families(report: dict[str, Any], kind: str) -> dict[str, list[dict[str, Any]]]:
    families: dict[str, list[dict[str, Any]]] = {}
    for row in report_rows(report, kind, "schedules"):
        families.setdefault(f"{row['sampler']} {row['schedule']}", []).append(row)
    return {name: sorted(rows, key=lambda r: r["nfe"]) for name, rows in families.items() if len(rows) > 1}


def _schedules_vs_nfe(report: dict[str, Any], path: Path) -> None:
    kinds = [k for k in ("exact", "trained") if _schedule_families(report, k)]
    figure = Figure(figsize=(6.5 * len(kinds), 4.4), dpi=DPI, layout="constrained")
    panels = np.atleast_1d(figure.subplots(1, len(kinds)))
    styles = {"optimized": "-", "karras": "--", "uniform": ":"}
    for axes, kind in zip(panels, kinds, strict=True):
        families = _schedule_families(report, kind)
        samplers = sorted({name.split()[0] for name in families})
        colours = dict(zip(samplers, palette(len(samplers)), strict=True))
        for name, rows in families.items():
            sampler, schedule = name.split()
            key = "fd_exact" if kind == "exact" else "fd_features"
            axes.plot(
                [r["nfe"] for r in rows],
                [r[key] if key in r else r["fd_structured"] for r in rows],
                styles.get(schedule, "-."),
                marker="o",
                ms=3,
                color=colours[sampler],
                label=name,
            )
        floor = report[kind]["floor"]["fd_structured" if kind == "exact" else "fd_features"]
        if kind == "exact":
            axes.axhline(floor["sd"], color="grey", lw=1, label="estimator's noise (sd of exact draws' FD*)")
            decorate(axes, "exact model: closed-form FD* (guidance 1)", "FD* (population value)")
            axes.set_yscale("log")
        else:
            low, high = floor["mean"] - floor["sd"], floor["mean"] + floor["sd"]
            axes.axhspan(low, high, color="grey", alpha=0.35, label="real digits (mean ± sd)")
            decorate(axes, "trained model: FD of PCA features (guidance 2)", "FD")
        axes.legend(fontsize=7, ncols=2)
    figure.savefig(path)


def _grid(grids: dict[str, list[np.ndarray]], path: Path) -> None:
    strips = {label: tile(tiles, len(tiles)) for label, tiles in grids.items() if tiles}
    width = max(s.shape[1] for s in strips.values())
    figure = Figure(figsize=(0.2 + width / 55, 0.8 * len(strips)), dpi=DPI, layout="constrained")
    for axes, (label, strip) in zip(
        np.atleast_1d(figure.subplots(len(strips), 1)), strips.items(), strict=True
    ):
        axes.imshow(strip, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_title(label, loc="left", fontsize=8, pad=2)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    save_grayscale(buffer, path)


def save_grayscale(png: Path | io.BytesIO, path: Path) -> None:
    """Re-encodes a gray figure as an 8-bit gray PNG (a third of the RGBA size)."""
    with Image.open(png) as image:
        image.convert("L").save(path, optimize=True)


def write_figures(
    report: dict[str, Any], grids: dict[str, dict[str, list[np.ndarray]]], out: Path
) -> list[Path]:
    """Writes every figure the report has data for; returns their paths."""
    written = []
    if "exact" in report and _plain_families(report):
        written.append(out / "exact_vs_nfe.png")
        _exact_vs_nfe(report, written[-1])
    if _schedule_families(report, "exact") or _schedule_families(report, "trained"):
        written.append(out / "schedules_vs_nfe.png")
        _schedules_vs_nfe(report, written[-1])
    if report_rows(report, "exact", "bound") or report_rows(report, "trained", "bound"):
        written.append(out / "variance_bound.png")
        _variance_bound(report, written[-1])
    for kind, model_grids in grids.items():
        written.append(out / f"grid_{kind}.png")
        _grid(model_grids, written[-1])
    return written
