"""Pipeline folders nobody here hand-wrote (built with diffusers' and transformers' classes),
registered the way an operator does (``DENOISE_REGISTRY_FILE`` + ``DENOISE_MODELS``), served end
to end over HTTP by a real worker process beside the bundled models."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import pytest
import redis
from PIL import Image

from devstack.redis_server import RedisServer
from protocol.keys import MODELS_KEY
from tests.conftest import running_worker, wait_until
from tests.fixtures.pipelines import build_ddpm, build_dit, build_stable_diffusion

MODELS = ("tiny-sd", "tiny-ddpm", "tiny-dit")


@pytest.fixture(scope="module")
def pipeline_worker(
    redis_server: RedisServer, redis_client: redis.Redis, client: httpx.Client, tmp_path_factory
) -> Iterator[None]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("operator-models")
    build_stable_diffusion(root / "sd", fp16_variant=True)
    build_ddpm(root / "ddpm")
    build_dit(root / "dit")
    registry = root / "models.toml"
    registry.write_text(
        '[models.tiny-sd]\npath = "sd"\ndefault_steps = 8\n\n'
        '[models.tiny-ddpm]\npath = "ddpm"\ndefault_steps = 6\n\n'
        '[models.tiny-dit]\npath = "dit"\ndefault_steps = 6\ndefault_sampler = "dpmpp_2m"\n'
    )
    with running_worker(
        redis_server,
        root / "worker.log",
        "pipeline-worker",
        DENOISE_MODELS=",".join(MODELS),
        DENOISE_REGISTRY_FILE=str(registry),
        DENOISE_METRICS_PORT="0",
    ):
        wait_until(
            lambda: set(MODELS) <= {m["name"] for m in client.get("/v1/models").json()}, 30, "models listed"
        )
        yield
    redis_client.hdel(MODELS_KEY, *MODELS)


def png(body: dict, index: int = 0) -> Image.Image:  # type: ignore[type-arg]
    return Image.open(io.BytesIO(base64.b64decode(body["images"][index]["png_base64"])))


def test_models_say_their_family_conditioning_and_sizes(client: httpx.Client, pipeline_worker: None) -> None:
    models = {m["name"]: m for m in client.get("/v1/models").json()}
    sd, ddpm, dit = models["tiny-sd"], models["tiny-ddpm"], models["tiny-dit"]
    assert (sd["family"], sd["conditioning"], sd["image_size"], sd["size_multiple"]) == (
        "latent_text_unet",
        "prompt",
        16,
        4,
    )
    assert sd["default_steps"] == 8 and sd["max_prompt_tokens"] == 14
    assert (ddpm["family"], ddpm["conditioning"], ddpm["channels"]) == ("pixel_unet", "none", 3)
    assert (dit["family"], dit["num_classes"], dit["default_sampler"]) == (
        "latent_class_transformer",
        1000,
        "dpmpp_2m",
    )


def test_a_text_model_serves_prompts_at_its_own_and_other_sizes(
    client: httpx.Client, pipeline_worker: None
) -> None:
    request = {"model": "tiny-sd", "prompt": "a red cat", "negative_prompt": "blur", "seed": 5}
    first = client.post("/v1/generations", json=request)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "succeeded", body
    assert png(body).size == (16, 16) and png(body).mode == "RGB"
    assert body["config"]["guidance_scale"] == 7.5 and body["config"]["negative_prompt"] == "blur"
    again = client.post("/v1/generations", json=request).json()
    assert again["images"][0]["png_base64"] == body["images"][0]["png_base64"]  # bit for bit
    wide = client.post("/v1/generations", json={**request, "width": 32, "height": 16, "num_images": 2}).json()
    assert wide["status"] == "succeeded" and png(wide, 1).size == (32, 16)


def test_a_dit_and_a_pixel_ddpm_folder_serve(client: httpx.Client, pipeline_worker: None) -> None:
    dit = client.post("/v1/generations", json={"model": "tiny-dit", "class_label": 207, "seed": 1}).json()
    assert dit["status"] == "succeeded" and png(dit).size == (16, 16)
    assert dit["config"]["sampler"] == "dpmpp_2m" and dit["config"]["guidance_scale"] == 4.0
    ddpm = client.post("/v1/generations", json={"model": "tiny-ddpm", "sampler": "ddpm", "seed": 2}).json()
    assert ddpm["status"] == "succeeded" and png(ddpm).size == (32, 32) and png(ddpm).mode == "RGB"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "tiny-sd", "prompt": "a" * 15}, "prompt"),  # 15 character tokens > 14
        ({"model": "tiny-sd", "prompt": "a cat", "negative_prompt": "b" * 20}, "negative_prompt"),
        ({"model": "tiny-sd", "class_label": 3}, "class_label"),
        ({"model": "tiny-sd", "prompt": "a cat", "width": 18}, "width"),
        ({"model": "tiny-dit", "prompt": "a goldfish"}, "prompt"),
        ({"model": "tiny-ddpm", "class_label": 1}, "class_label"),
        ({"model": "tiny-ddpm", "height": 64}, "height"),
    ],
)
def test_what_a_model_cannot_honour_is_a_422_naming_the_field(
    client: httpx.Client, pipeline_worker: None, body: dict[str, object], field: str
) -> None:
    response = client.post("/v1/generations", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", field]
