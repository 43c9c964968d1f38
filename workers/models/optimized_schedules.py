"""A model folder's ``optimized_schedules.json``: timesteps optimised for this model, per sampler
and number of steps, served as ``schedule: "optimized"``.

Written by ``python -m workers.evaluation.optimize_schedules`` (which says how each list was
found and what it scored); read by ``workers.models.loading`` for every model folder that has
one. The format::

    {
      "format": 1,
      "model": "mnist-gauss",
      "method": "...", "objective": "...", "command": "...",      (free-form record)
      "schedules": {
        "unipc": {"5": {"timesteps": [999, 711, 402, 155, 21], ...record...}, "8": {...}},
        ...
      }
    }

Each list holds ``steps`` distinct training timesteps in [0, T), noisiest first; the engine visits
exactly those. Only ``timesteps`` is served; the other keys of an entry are the optimiser's record.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from protocol.samplers import SAMPLERS
from protocol.schema import SamplerName

OPTIMIZED_SCHEDULES_FILE = "optimized_schedules.json"
FORMAT = 1

Table = dict[SamplerName, dict[int, list[int]]]


def validate(table: dict[str, dict[int, list[int]]], num_train_timesteps: int, where: str) -> Table:
    """The table, checked: known samplers that take the schedule, and for each entry ``steps``
    distinct descending timesteps in [0, T).

    Raises:
        ValueError: naming ``where`` and the bad entry.
    """
    checked: Table = {}
    for sampler, by_steps in table.items():
        info = SAMPLERS.get(sampler)
        if info is None or "optimized" not in info.schedules:
            takers = [s.name for s in SAMPLERS.values() if "optimized" in s.schedules]
            raise ValueError(
                f"{where}: sampler {sampler!r} takes no optimized schedule; those that do: {takers}"
            )
        for steps, timesteps in by_steps.items():
            ok = (
                len(timesteps) == steps
                and all(isinstance(t, int) and 0 <= t < num_train_timesteps for t in timesteps)
                and all(a > b for a, b in itertools.pairwise(timesteps))
            )
            if not ok:
                raise ValueError(
                    f"{where}: {sampler} at {steps} steps needs {steps} distinct descending timesteps in "
                    f"[0, {num_train_timesteps}); got {timesteps}"
                )
        checked[info.name] = {steps: list(by_steps[steps]) for steps in sorted(by_steps)}
    return checked


def read_optimized_schedules(model_dir: Path, num_train_timesteps: int) -> Table:
    """The served table of ``model_dir`` (empty without the file)."""
    path = model_dir / OPTIMIZED_SCHEDULES_FILE
    if not path.is_file():
        return {}
    document = json.loads(path.read_text())
    if document.get("format") != FORMAT:
        raise ValueError(f"{path}: format {document.get('format')!r}, expected {FORMAT}")
    raw = {
        sampler: {int(steps): [int(t) for t in entry["timesteps"]] for steps, entry in by_steps.items()}
        for sampler, by_steps in document.get("schedules", {}).items()
    }
    return validate(raw, num_train_timesteps, str(path))


def steps_by_sampler(table: Table) -> dict[SamplerName, list[int]]:
    """What ``ModelInfo.optimized_schedules`` advertises: the steps available per sampler."""
    return {sampler: sorted(by_steps) for sampler, by_steps in table.items() if by_steps}


def write_optimized_schedules(model_dir: Path, document: dict[str, Any]) -> Path:
    """Writes ``document`` (the format above) beside the model; returns the path."""
    path = model_dir / OPTIMIZED_SCHEDULES_FILE
    path.write_text(json.dumps({"format": FORMAT, **document}, indent=1) + "\n")
    return path
