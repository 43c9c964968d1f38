"""The ``denoise`` command as a subprocess (``python -m client.cli``, from the worktree) against
the live test API."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from client.grid import default_font, layout_grid, noise_label
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("worker_process")


def denoise(api_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args[:1], "--url", api_url, *args[1:]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def raw_images(client: httpx.Client, **knobs: object) -> list[dict[str, object]]:
    response = client.post("/v1/generations", json=knobs)
    assert response.status_code == 200, response.text
    return response.json()["images"]  # type: ignore[no-any-return]


def test_generate_writes_each_image_beside_the_first(
    api_url: str, client: httpx.Client, tmp_path: Path
) -> None:
    out = tmp_path / "seven.png"
    args = ["generate", "--digit", "7", "--sampler", "dpmpp_2m", "--steps", "20", "--seed", "3", "-n", "2"]
    done = denoise(api_url, *args, "-o", str(out))
    assert done.returncode == 0, done.stderr
    expected = raw_images(client, class_label=7, sampler="dpmpp_2m", steps=20, seed=3, num_images=2)
    written = [out, tmp_path / "seven-1.png"]
    assert [path.read_bytes() for path in written] == [
        base64.b64decode(str(i["png_base64"])) for i in expected
    ]
    assert str(out) in done.stdout and "σ̂" in done.stdout


def test_compare_writes_a_labelled_grid_with_one_cell_per_setting(
    api_url: str, client: httpx.Client, tmp_path: Path
) -> None:
    out = tmp_path / "grid.png"
    samplers = ["ddpm", "ddim", "unipc"]
    args = ["compare", "--sampler", ",".join(samplers), "--steps", "10", "--digit", "3", "--seed", "1"]
    done = denoise(api_url, *args, "--scale", "4", "-o", str(out))
    assert done.returncode == 0, done.stderr
    cells = [raw_images(client, class_label=3, steps=10, seed=1, sampler=name)[0] for name in samplers]
    font = default_font()
    captions = [
        [f"sampler={name}", noise_label(float(str(c["noise_estimate"])), font)]
        for name, c in zip(samplers, cells, strict=True)
    ]
    layout = layout_grid([(28, 28)] * 3, captions, columns=3, scale=4, title="digit=3  seed=1  steps=10")
    grid = Image.open(out)
    assert grid.size == layout.size and (layout.columns, layout.rows) == (3, 1)
    for index, cell in enumerate(cells):
        png = Image.open(io.BytesIO(base64.b64decode(str(cell["png_base64"]))))
        expected = png.resize((112, 112), Image.Resampling.NEAREST)
        box = layout.image_box(index, 112, 112)
        assert grid.crop(box).tobytes() == expected.tobytes(), samplers[index]
    for name in samplers:
        assert f"sampler={name}" in done.stdout


def test_bad_input_exits_2_with_the_apis_message_on_one_line(api_url: str, tmp_path: Path) -> None:
    done = denoise(api_url, "generate", "--digit", "1", "--steps", "0", "-o", str(tmp_path / "x.png"))
    assert done.returncode == 2
    assert done.stderr.strip() == "denoise: ValidationError: steps: steps must be between 1 and 1000; got 0"
    refused = denoise(
        api_url, "compare", "--sampler", "ddpm,ddim", "--eta", "0.5", "-o", str(tmp_path / "g.png")
    )
    assert refused.returncode == 2 and "eta" in refused.stderr
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "g.png").exists()


def test_listings_job_and_cancel(api_url: str, client: httpx.Client) -> None:
    models = denoise(api_url, "models")
    assert models.returncode == 0 and "mnist-unet" in models.stdout
    samplers = denoise(api_url, "samplers")
    assert samplers.returncode == 0 and "dpmpp_2m" in samplers.stdout
    job = client.post(
        "/v1/generations", json={"class_label": 0, "steps": 1000}, headers={"Prefer": "respond-async"}
    )
    job_id = job.json()["id"]
    cancelled = denoise(api_url, "cancel", job_id)
    assert cancelled.returncode == 0 and job_id in cancelled.stdout
    shown = denoise(api_url, "job", job_id, "--wait")
    assert shown.returncode == 1 and "cancelled" in shown.stdout  # a job that did not succeed
    missing = denoise(api_url, "job", "0" * 32)
    assert missing.returncode == 2 and "NotFound" in missing.stderr
    unreachable = denoise("http://127.0.0.1:9", "models", "--retries", "0")
    assert unreachable.returncode == 1 and "TransportError" in unreachable.stderr
