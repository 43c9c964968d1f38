"""``denoise compare``: one request per setting of the knobs given as lists, all on one seed, run
concurrently; the images laid out in a labelled grid with each one's noise estimate.

The settings are the Cartesian product of the listed values. The first listed knob (in the
order of ``denoise compare --help``) runs across the columns, the others down the rows.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.async_client import AsyncDenoiseClient
from client.core import succeeded
from client.grid import GridLayout, default_font, draw_grid, noise_label
from client.images import to_pil
from client.progress import ProgressBar
from protocol.schema import JobView


@dataclass(frozen=True)
class Setting:
    """One cell: the request's knobs, and the varied ones as (label, value) for its caption."""

    knobs: dict[str, Any]
    varied: tuple[tuple[str, Any], ...]

    @property
    def label(self) -> str:
        return " ".join(f"{name}={_show(value)}" for name, value in self.varied)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def expand(
    fixed: Mapping[str, Any], varied: Sequence[tuple[str, str, Sequence[Any]]]
) -> tuple[list[Setting], int]:
    """Every setting, row by row, and the number of columns.

    Args:
        fixed: knobs shared by every request (field name -> value).
        varied: (label, field name, values) of each knob given as a list, in column-first order.
    """
    if not varied:
        return [Setting(dict(fixed), ())], 1
    column_knob, *row_knobs = varied
    settings = []
    for row in itertools.product(*(values for _label, _field, values in row_knobs)):
        for column_value in column_knob[2]:
            chosen = [(column_knob[0], column_knob[1], column_value)]
            chosen += [(label, field, value) for (label, field, _), value in zip(row_knobs, row, strict=True)]
            knobs = dict(fixed) | {field: value for _label, field, value in chosen}
            settings.append(Setting(knobs, tuple((label, value) for label, _field, value in chosen)))
    return settings, len(column_knob[2])


async def run_settings(
    api: AsyncDenoiseClient, settings: Sequence[Setting], bar: ProgressBar
) -> list[JobView]:
    """Submits every setting at once, follows them concurrently; the succeeded jobs, in order.

    If any submission is refused, or the comparison is interrupted, the jobs already submitted
    are cancelled before the error is raised.
    """
    submitted = await asyncio.gather(*(api.submit(**s.knobs) for s in settings), return_exceptions=True)
    jobs = [job for job in submitted if isinstance(job, JobView)]
    try:
        for outcome in submitted:
            if isinstance(outcome, BaseException):
                raise outcome
        for job in jobs:
            bar.expect(job.id, job.config.steps)
        finished = await asyncio.gather(*(api.follow(job.id, bar.update) for job in jobs))
        return [succeeded(job) for job in finished]
    except BaseException:  # an error, or Ctrl-C (the task is cancelled): leave no job behind
        # a finished job answers 409 to its cancel, ignored with the other failures
        await asyncio.gather(*(api.cancel(job.id) for job in jobs), return_exceptions=True)
        raise


def write_grid(
    jobs: Sequence[JobView], settings: Sequence[Setting], columns: int, path: Path, title: str, scale: int
) -> GridLayout:
    """Image 0 of each job in its cell, captioned with its setting and noise estimate."""
    font = default_font()
    images, captions = [], []
    for job, setting in zip(jobs, settings, strict=True):
        image = (job.images or [])[0]
        images.append(to_pil(image))
        lines = [f"{label}={_show(value)}" for label, value in setting.varied]
        captions.append([*lines, noise_label(image.noise_estimate, font)])
    grid, layout = draw_grid(images, captions, columns, scale, title)
    grid.save(path)
    return layout
