"""The figure of ``optimize_schedules``: each sampler's error against NFE, optimized vs hand-made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from workers.evaluation.noise_plots import DPI, decorate

STYLES = {"optimized": "-", "gits": "-.", "uniform": ":", "karras": "--", "ays_sigma": (0, (5, 1, 1, 1))}


def write_schedule_figure(document: dict[str, Any], path: Path) -> Path:
    """One panel per sampler: the optimised error and each hand-made schedule's, by NFE (log)."""
    samplers = list(document["schedules"])
    figure = Figure(figsize=(3.6 * len(samplers), 3.6), dpi=DPI, layout="constrained")
    panels = figure.subplots(1, len(samplers), squeeze=False)[0]
    names = ["optimized", "uniform", "karras", "ays_sigma", "gits"]
    colours = dict(zip(names, ["black", "tab:blue", "tab:orange", "tab:green", "tab:purple"], strict=True))
    for axes, sampler in zip(panels, samplers, strict=True):
        by_steps = {int(k): v for k, v in document["schedules"][sampler].items()}
        steps = sorted(by_steps)
        # judged on the images the search never saw, where it saw only some (the references too)
        held_out = all("held_out" in by_steps[n] for n in steps)
        lines = {"optimized": [by_steps[n]["held_out" if held_out else "error"] for n in steps]}
        if held_out:
            lines["optimized"] = [by_steps[n]["held_out"]["optimized"] for n in steps]
        for name in names[1:]:
            source = "held_out" if held_out else "hand_made"
            if all(name in by_steps[n][source] for n in steps):
                lines[name] = [by_steps[n][source][name] for n in steps]
        for name, values in lines.items():
            axes.plot(
                steps, values, linestyle=STYLES[name], marker="o", ms=3, color=colours[name], label=name
            )
        for label, value in document.get("references", {}).items():
            axes.axhline(value, color="grey", ls=":", lw=1, label=label)
        decorate(axes, sampler + (" (held-out images)" if held_out else ""), document["objective_short"])
        axes.set_yscale("log")
        axes.set_xticks(steps, [str(n) for n in steps])
        axes.xaxis.set_minor_formatter(NullFormatter())
    panels[0].legend(fontsize=7)
    figure.savefig(path)
    return path
