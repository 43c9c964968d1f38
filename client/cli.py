"""``denoise``: the service from the command line.

    denoise generate --digit 7 --sampler dpmpp_2m --steps 20 -o seven.png
    denoise compare --sampler ddpm,ddim,unipc --steps 10 --digit 3 --seed 1 -o grid.png
    denoise models | samplers | job ID | cancel ID

Exit status: 0 done; 2 bad input (a usage error, or the API's 4xx: the message names the field
and what it may be); 1 a server or network error, or a job that failed; 130 interrupted (the
jobs it started are cancelled).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import httpx

from client.async_client import AsyncDenoiseClient
from client.compare import Setting, expand, run_settings, write_grid
from client.core import DEFAULT_TIMEOUT, DEFAULT_URL, RetryPolicy, succeeded
from client.errors import ClientError, DenoiseError
from client.images import init_image, save_images
from client.progress import ProgressBar
from client.sync_client import DenoiseClient
from protocol.schema import (
    GeneratedImage,
    GenerationRequest,
    JobView,
    SamplerName,
    ScheduleName,
    VarianceForm,
    VarianceType,
    WebhookEventName,
)

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


@dataclass(frozen=True)
class KnobOption:
    """A request field as a command-line option; its help is the field's own description."""

    flag: str
    field: str
    kind: Callable[[str], Any]  # a type, or a parser of the option's text
    choices: tuple[str, ...] | None = None
    short: str | None = None
    help: str | None = None

    @property
    def label(self) -> str:
        return self.flag.removeprefix("--")

    def description(self) -> str:
        return self.help or GenerationRequest.model_fields[self.field].description or self.field


KNOB_OPTIONS = (
    KnobOption("--model", "model", str),
    KnobOption("--digit", "class_label", int, help="the digit (class label) to draw"),
    KnobOption("--prompt", "prompt", str),
    KnobOption("--negative-prompt", "negative_prompt", str),
    KnobOption("--seed", "seed", int),
    KnobOption("--num-images", "num_images", int, short="-n", help="images; image i uses seed + i"),
    KnobOption("--sampler", "sampler", str, choices=get_args(SamplerName)),
    KnobOption("--steps", "steps", int),
    KnobOption("--schedule", "schedule", str, choices=get_args(ScheduleName)),
    KnobOption("--deterministic", "deterministic", bool),
    KnobOption("--eta", "eta", float),
    KnobOption("--variance-bound", "variance_bound", float),
    KnobOption("--variance-scale", "variance_scale", float),
    KnobOption("--variance-type", "variance_type", str, choices=get_args(VarianceType)),
    KnobOption("--variance-form", "variance_form", str, choices=get_args(VarianceForm)),
    KnobOption("--clip-sample", "clip_sample", bool),
    KnobOption("--dynamic-thresholding", "dynamic_thresholding", bool),
    KnobOption("--dynamic-thresholding-ratio", "dynamic_thresholding_ratio", float),
    KnobOption("--guidance-scale", "guidance_scale", float),
    KnobOption("--guidance-rescale", "guidance_rescale", float),
    KnobOption("--width", "width", int),
    KnobOption("--height", "height", int),
    KnobOption(
        "--init-image",
        "init_image",
        init_image,
        help="a PNG or JPEG file to start from (img2img / denoising; see --strength)",
    ),
    KnobOption("--strength", "strength", lambda text: text if text == "auto" else float(text)),
    KnobOption("--timeout", "timeout_s", float, help="the job's deadline in seconds after submission"),
    KnobOption("--webhook", "webhook", str),
    KnobOption(
        "--webhook-events",
        "webhook_events",
        lambda text: _names(text, get_args(WebhookEventName)),
        help=f"comma-separated: {', '.join(get_args(WebhookEventName))} (default: completed)",
    ),
)
# a cell shows one image; a webhook is where events go, not a setting to compare
NOT_COMPARED = {"num_images", "webhook", "webhook_events", "init_image"}


def _boolean(text: str) -> bool:
    value = {
        "true": True,
        "yes": True,
        "on": True,
        "1": True,
        "false": False,
        "no": False,
        "off": False,
        "0": False,
    }
    if text.lower() not in value:
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return value[text.lower()]


def _names(text: str, allowed: tuple[str, ...]) -> list[str]:
    """``a,b`` as a list of names, each one of ``allowed``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in allowed:
            raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(allowed)}")
    return names


def _value_list(option: KnobOption) -> Callable[[str], list[Any]]:
    """``a,b,c`` as a list of the option's type, each value checked."""
    convert = _boolean if option.kind is bool else option.kind

    def parse(text: str) -> list[Any]:
        values = []
        for item in text.split(","):
            try:
                value = convert(item.strip())
            except ValueError as error:
                raise argparse.ArgumentTypeError(f"{item!r}: {error}") from error
            if option.choices and value not in option.choices:
                raise argparse.ArgumentTypeError(f"{item!r} is not one of {', '.join(option.choices)}")
            values.append(value)
        return values

    return parse


def _add_knobs(parser: argparse.ArgumentParser, as_lists: bool) -> None:
    group = parser.add_argument_group("request knobs (absent: the model's and the sampler's defaults)")
    for option in KNOB_OPTIONS:
        if as_lists and option.field in NOT_COMPARED:
            continue
        flags = [option.short, option.flag] if option.short else [option.flag]
        text = option.description()
        if option.choices:
            text += f" ({', '.join(option.choices)})"
        metavar = option.label.upper().replace("-", "_")
        if as_lists:
            group.add_argument(
                *flags,
                dest=option.field,
                type=_value_list(option),
                metavar=f"{metavar}[,...]",
                help=text + "; a,b,c compares",
            )
        elif option.kind is bool:
            group.add_argument(*flags, dest=option.field, action=argparse.BooleanOptionalAction, help=text)
        else:
            group.add_argument(
                *flags,
                dest=option.field,
                type=option.kind,
                choices=option.choices,
                metavar=metavar if not option.choices else None,
                help=text,
            )


def build_parser() -> argparse.ArgumentParser:
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument(
        "--url", default=os.environ.get("DENOISE_URL", DEFAULT_URL), help="the API (env DENOISE_URL)"
    )
    group.add_argument("--api-key", default=os.environ.get("DENOISE_API_KEY"), help="env DENOISE_API_KEY")
    group.add_argument("--http-timeout", type=float, help="seconds per HTTP read (default 120)")
    group.add_argument("--retries", type=int, default=3, help="retries of 429/503 and dropped connections")
    group.add_argument("--max-retry-wait", type=float, default=30.0, help="the longest Retry-After honoured")
    shown = argparse.ArgumentParser(add_help=False)
    shown.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, help="default: when stderr is a tty"
    )

    parser = argparse.ArgumentParser(
        prog="denoise",
        description="The denoising service from the command line.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    generate = commands.add_parser(
        "generate", parents=[connection, shown], help="sample images and save them"
    )
    generate.add_argument(
        "-o", "--output", type=Path, help="PNG path; more images: NAME-1.png, ... (default: ID.png)"
    )
    _add_knobs(generate, as_lists=False)
    generate.set_defaults(run=cmd_generate)

    compare = commands.add_parser(
        "compare", parents=[connection, shown], help="one image per setting of the listed knobs, in a grid"
    )
    compare.add_argument("-o", "--output", type=Path, default=Path("compare.png"), help="the grid PNG")
    compare.add_argument("--scale", type=int, default=4, help="pixels per image pixel (nearest neighbour)")
    _add_knobs(compare, as_lists=True)
    compare.set_defaults(run=cmd_compare)

    for name, what in (("models", "the models served"), ("samplers", "the samplers and their knobs")):
        listing = commands.add_parser(name, parents=[connection], help=what)
        listing.add_argument("--json", action="store_true", help="print the API's JSON")
        listing.set_defaults(run=cmd_models if name == "models" else cmd_samplers)
    job = commands.add_parser("job", parents=[connection, shown], help="a job's status, progress and images")
    job.add_argument("job_id", metavar="ID")
    job.add_argument("--wait", action="store_true", help="follow the job until it ends")
    job.add_argument("-o", "--output", type=Path, help="save its images (as generate does)")
    job.add_argument("--json", action="store_true", help="print the API's JSON (with the PNGs)")
    job.set_defaults(run=cmd_job)
    cancel = commands.add_parser("cancel", parents=[connection], help="cancel a queued or running job")
    cancel.add_argument("job_id", metavar="ID")
    cancel.set_defaults(run=cmd_cancel)
    return parser


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    timeout = DEFAULT_TIMEOUT if args.http_timeout is None else httpx.Timeout(10.0, read=args.http_timeout)
    retry = RetryPolicy(max_retries=args.retries, max_wait_s=args.max_retry_wait)
    return {"api_key": args.api_key, "timeout": timeout, "retry": retry}


def _knobs(args: argparse.Namespace) -> dict[str, Any]:
    return {option.field: getattr(args, option.field, None) for option in KNOB_OPTIONS}


# ------------------------------------------------------------------------------ commands
def cmd_generate(args: argparse.Namespace) -> int:
    bar = ProgressBar(enabled=args.progress)
    with DenoiseClient(args.url, **_client_options(args)) as api:
        job = api.submit(**_knobs(args))
        bar.expect(job.id, job.config.steps)
        try:
            finished = api.follow(job.id, bar.update)
        except KeyboardInterrupt:
            bar.close()
            _cancel_quietly(api, job.id)
            raise
        finally:
            bar.close()
    succeeded(finished)
    paths = save_images(finished, args.output or Path(f"{finished.id}.png"))
    for path, image in zip(paths, finished.images or [], strict=True):
        print(f"{path}  {_image_line(image)}")
    print(_summary(finished))
    return 0


def _cancel_quietly(api: DenoiseClient, job_id: str) -> None:
    try:
        api.cancel(job_id)
        print(f"denoise: cancelled job {job_id}", file=sys.stderr)
    except DenoiseError as error:
        print(f"denoise: could not cancel job {job_id}: {error}", file=sys.stderr)


def cmd_compare(args: argparse.Namespace) -> int:
    knobs = _knobs(args)
    varied = [
        (option.label, option.field, knobs[option.field])
        for option in KNOB_OPTIONS
        if knobs.get(option.field) is not None and len(knobs[option.field]) > 1
    ]
    if not varied:
        print("denoise compare: give at least one knob as a list, e.g. --sampler ddim,ddpm", file=sys.stderr)
        return EXIT_USAGE
    listed = {field for _label, field, _values in varied}
    fixed = {
        field: values[0] for field, values in knobs.items() if values is not None and field not in listed
    }
    if "seed" not in fixed and "seed" not in listed:
        fixed["seed"] = secrets.randbelow(2**32)  # one seed for every cell, printed in the title
    settings, columns = expand(fixed, varied)
    labels = {option.field: option.label for option in KNOB_OPTIONS}
    title = "  ".join(f"{labels[field]}={value}" for field, value in fixed.items())
    bar = ProgressBar(enabled=args.progress)
    try:
        jobs = asyncio.run(_compare(args, settings, bar))
    finally:
        bar.close()
    write_grid(jobs, settings, columns, args.output, title, args.scale)
    for job, setting in zip(jobs, settings, strict=True):
        image = (job.images or [])[0]
        print(f"{setting.label:<40}  σ̂ {image.noise_estimate:6.2f}  job {job.id}")
    print(f"wrote {args.output}: {len(jobs)} cells, {columns} per row ({title})")
    return 0


async def _compare(args: argparse.Namespace, settings: Sequence[Setting], bar: ProgressBar) -> list[JobView]:
    async with AsyncDenoiseClient(args.url, **_client_options(args)) as api:
        return await run_settings(api, settings, bar)


def cmd_models(args: argparse.Namespace) -> int:
    with DenoiseClient(args.url, **_client_options(args)) as api:
        models = api.models()
    if args.json:
        print(json.dumps([model.model_dump(mode="json") for model in models], indent=2))
        return 0
    rows = [("model", "conditioning", "size", "defaults", "description")]
    for m in models:
        classes = f" ({m.num_classes} classes)" if m.num_classes else ""
        schedule = f" {m.default_schedule}" if m.default_schedule else ""
        defaults = (
            f"{m.default_sampler}{schedule}, {m.default_steps} steps, guidance {m.default_guidance_scale:g}"
        )
        size = f"{m.image_size}×{m.image_size}×{m.channels}"
        rows.append((m.name, m.conditioning + classes, size, defaults, m.description))
    _print_table(rows)
    return 0


def cmd_samplers(args: argparse.Namespace) -> int:
    with DenoiseClient(args.url, **_client_options(args)) as api:
        samplers = api.samplers()
    if args.json:
        print(json.dumps([sampler.model_dump(mode="json") for sampler in samplers], indent=2))
        return 0
    rows = [("sampler", "noise", "knobs", "schedules")]
    rows += [(s.name, s.noise, ", ".join(s.knobs) or "-", ", ".join(s.schedules)) for s in samplers]
    _print_table(rows)
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    with DenoiseClient(args.url, **_client_options(args)) as api:
        if args.wait:
            bar = ProgressBar(enabled=args.progress)
            try:
                job = api.follow(args.job_id, bar.update)
            finally:
                bar.close()
        else:
            job = api.job(args.job_id)
    if args.json:
        print(job.model_dump_json(indent=2))
    else:
        print(_summary(job))
        for image in job.images or []:
            print(f"  image {image.index}: {_image_line(image)}")
    if args.output and job.images:
        for path in save_images(job, args.output):
            print(path)
    return 0 if job.status in ("succeeded", "queued", "running") else EXIT_ERROR


def cmd_cancel(args: argparse.Namespace) -> int:
    with DenoiseClient(args.url, **_client_options(args)) as api:
        job = api.cancel(args.job_id)
    what = "cancelled" if job.status == "cancelled" else f"{job.status}; stops within one step"
    print(f"job {job.id}: {what}")
    return 0


def _image_line(image: GeneratedImage) -> str:
    return f"seed {image.seed}  {image.width}×{image.height}  σ̂ {image.noise_estimate:.2f}"


def _summary(job: JobView) -> str:
    lines = [f"job {job.id}: {job.status}, step {job.progress.step}/{job.progress.total}, model {job.model}"]
    config = job.config.model_dump(exclude={"timesteps", "model"}, exclude_none=True)
    lines.append("  " + " ".join(f"{name}={value}" for name, value in config.items()))
    if job.timings:
        lines.append(
            f"  {job.timings.total_ms:.0f} ms ({job.timings.queue_wait_ms:.0f} ms queued) on {job.worker}"
        )
    if job.error:
        lines.append(f"  error: {job.error.type}: {job.error.message}")
    return "\n".join(lines)


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print(
            "  ".join(
                [*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]
            ).rstrip()
        )


def main(argv: Sequence[str] | None = None) -> int:
    """The ``denoise`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ClientError as error:  # the request was wrong: the message says which field, and why
        print(f"denoise: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except DenoiseError as error:
        print(f"denoise: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("denoise: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
