"""End to end over HTTP: API process -> real Redis -> real worker process with the bundled model."""

from __future__ import annotations

import base64
import io
import time

import httpx
import numpy as np
import pytest
import redis
from PIL import Image

from protocol.keys import jobs_stream_key
from protocol.schema import GenerationRequest

STREAM = jobs_stream_key("mnist-unet")


def decode_png(image: dict[str, object]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(str(image["png_base64"]))))


def poll(client: httpx.Client, job_id: str, until: set[str], timeout_s: float = 120) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = client.get(f"/v1/jobs/{job_id}").json()
        if body["status"] in until:
            return body  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} did not reach {until}")


def test_sync_generation_returns_a_reproducible_png_with_timings(client: httpx.Client) -> None:
    request = {"class_label": 7, "steps": 50, "sampler": "ddim", "seed": 1}
    first = client.post("/v1/generations", json=request)
    second = client.post("/v1/generations", json=request)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "succeeded"
    assert first.headers["location"] == f"/v1/jobs/{body['id']}"
    image = body["images"][0]
    assert (image["index"], image["seed"], image["class_label"]) == (0, 1, 7)
    png = decode_png(image)
    assert png.format == "PNG" and png.size == (28, 28) and png.mode == "L"
    assert image["png_base64"] == second.json()["images"][0]["png_base64"]  # bit-identical
    config = body["config"]
    assert config["deterministic"] is True and config["eta"] == 0.0
    assert len(config["timesteps"]) == 50 and config["timesteps"][0] == 999
    timings = body["timings"]
    assert set(timings) == {"queue_wait_ms", "inference_ms", "step_ms_mean", "encode_ms", "total_ms"}
    assert timings["inference_ms"] > 0 and timings["total_ms"] >= timings["inference_ms"]
    assert body["progress"] == {"step": 50, "total": 50}
    assert 0 <= image["noise_estimate"] < 5  # gray levels; a clean digit scores near 0


def test_noise_estimate_reports_the_noise_a_sampler_leaves(client: httpx.Client) -> None:
    def mean_estimate(knobs: dict[str, object]) -> float:
        body = client.post(
            "/v1/generations", json={"class_label": 5, "steps": 10, "seed": 3, "num_images": 4, **knobs}
        ).json()
        return sum(i["noise_estimate"] for i in body["images"]) / 4

    # DDPM with the large variance β_t at 10 steps leaves visible noise; deterministic DDIM does not
    assert mean_estimate({"sampler": "ddpm", "variance_type": "fixed_large"}) > 5 * max(
        0.5, mean_estimate({"sampler": "ddim"})
    )


def test_num_images_use_consecutive_seeds(client: httpx.Client) -> None:
    batch = client.post(
        "/v1/generations", json={"class_label": 3, "steps": 8, "seed": 40, "num_images": 3}
    ).json()
    single = client.post("/v1/generations", json={"class_label": 3, "steps": 8, "seed": 42}).json()
    assert [i["seed"] for i in batch["images"]] == [40, 41, 42]
    assert batch["images"][2]["png_base64"] == single["images"][0]["png_base64"]


def test_seed_is_assigned_and_returned(client: httpx.Client) -> None:
    body = client.post("/v1/generations", json={"class_label": 1, "steps": 4}).json()
    seed = body["config"]["seed"]
    again = client.post("/v1/generations", json={"class_label": 1, "steps": 4, "seed": seed}).json()
    assert again["images"][0]["png_base64"] == body["images"][0]["png_base64"]


def test_async_generation_answers_202_and_the_job_url_serves_the_result(client: httpx.Client) -> None:
    response = client.post(
        "/v1/generations",
        json={"class_label": 2, "steps": 20, "sampler": "dpmpp_2m", "schedule": "karras"},
        headers={"Prefer": "respond-async"},
    )
    assert response.status_code == 202
    assert response.json()["status"] in {"queued", "running"}
    location = response.headers["location"]
    body = poll(client, location.rsplit("/", 1)[1], {"succeeded", "failed"})
    assert body["status"] == "succeeded"
    assert body["config"]["sampler"] == "dpmpp_2m" and len(body["config"]["timesteps"]) == 20
    assert client.get(location).json()["images"][0]["png_base64"] == body["images"][0]["png_base64"]


def test_stochastic_requests_differ_by_seed_and_repeat_by_seed(client: httpx.Client) -> None:
    def png(seed: int) -> str:
        body = client.post(
            "/v1/generations", json={"class_label": 4, "steps": 10, "sampler": "ddpm", "seed": seed}
        ).json()
        return str(body["images"][0]["png_base64"])

    assert png(5) == png(5)
    assert png(5) != png(6)


def test_cancel_a_queued_and_a_running_job(client: httpx.Client, redis_client: redis.Redis) -> None:
    # 16 guided images = 32 rows fill the worker's default max_batch, so the next job waits
    long_job = {"class_label": 8, "steps": 1000, "num_images": 16, "guidance_scale": 2.0}
    running = client.post("/v1/generations", json=long_job, headers={"Prefer": "respond-async"}).json()["id"]
    queued = client.post(
        "/v1/generations", json={"class_label": 1, "steps": 5}, headers={"Prefer": "respond-async"}
    ).json()["id"]
    poll(client, running, {"running"})

    cancelled = client.delete(f"/v1/jobs/{queued}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    stopping = client.delete(f"/v1/jobs/{running}")
    assert stopping.status_code == 202

    final = poll(client, running, {"cancelled", "succeeded", "failed"}, timeout_s=30)
    assert final["status"] == "cancelled"
    assert final["progress"]["step"] < 1000
    # the queued job never started, even after the worker read its stream entry
    time.sleep(0.5)
    never_ran = client.get(f"/v1/jobs/{queued}").json()
    assert never_ran["status"] == "cancelled" and never_ran["images"] is None
    assert redis_client.hget(f"denoise:job:{queued}", "started_at") == "null"
    assert client.delete(f"/v1/jobs/{queued}").status_code == 409


def test_a_job_past_its_deadline_fails_within_a_step_and_its_batch_mates_go_on(
    client: httpx.Client,
) -> None:
    async_ = {"Prefer": "respond-async"}
    doomed = client.post(
        "/v1/generations", json={"class_label": 2, "steps": 1000, "timeout_s": 1.5}, headers=async_
    ).json()
    mate_request = {"class_label": 4, "steps": 60, "seed": 9, "sampler": "ddim", "eta": 0.5}
    mate = client.post("/v1/generations", json=mate_request, headers=async_).json()["id"]
    assert doomed["deadline_at"] == pytest.approx(doomed["created_at"] + 1.5)

    final = poll(client, doomed["id"], {"cancelled", "succeeded", "failed"}, timeout_s=60)
    assert final["status"] == "failed" and final["error"]["type"] == "DeadlineExceeded", final
    assert 0 < final["progress"]["step"] < 1000 and final["images"] is None
    assert final["finished_at"] - final["deadline_at"] < 1.0  # a step is ~30 ms here

    shared = poll(client, mate, {"cancelled", "succeeded", "failed"})
    alone = client.post("/v1/generations", json=mate_request).json()
    assert shared["status"] == "succeeded"
    difference = np.abs(
        np.asarray(decode_png(shared["images"][0]), dtype=int)
        - np.asarray(decode_png(alone["images"][0]), dtype=int)
    )
    assert difference.max() <= 1


def test_a_job_that_expires_in_the_queue_is_failed_not_run(client: httpx.Client) -> None:
    body = client.post("/v1/generations", json={"class_label": 2, "steps": 5, "timeout_s": 0.001}).json()
    assert body["status"] == "failed" and body["error"]["type"] == "DeadlineExceeded", body
    assert "before the job started" in body["error"]["message"]
    assert body["progress"]["step"] == 0 and body["images"] is None


BAD_REQUESTS = [
    ({"steps": 0}, "steps", "greater than or equal to 1"),
    ({"steps": 5000}, "steps", "less than or equal to 1000"),
    ({"steps": "many"}, "steps", "valid integer"),
    ({"num_images": 17}, "num_images", "less than or equal to 16"),
    ({"sampler": "heun"}, "sampler", "'ddpm', 'ddim'"),
    ({"schedule": "exponential"}, "schedule", "'uniform'"),
    ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
    ({"class_label": 12}, "class_label", "between 0 and 9"),
    ({"class_label": 1, "sampler": "euler", "eta": 0.5}, "eta", "samplers that honour it: ddim"),
    ({"class_label": 1, "sampler": "ddpm", "deterministic": True}, "deterministic", "always injects noise"),
    ({"class_label": 1, "sampler": "ddim", "variance_bound": 0.1}, "variance_bound", "no effect"),
    ({"class_label": 1, "eta": 1.5}, "eta", "less than or equal to 1"),
    ({"class_label": 1, "guidance_scale": 25}, "guidance_scale", "between 0 and 20"),
    ({"model": "../../etc/passwd"}, "model", "available: mnist-gauss, mnist-text, mnist-unet"),
    ({"prompt": "a seven"}, "prompt", "takes no prompt"),
    ({"seed": -1}, "seed", "greater than or equal to 0"),
    ({"timeout_s": 7200}, "timeout_s", "between 0.001 and 3600"),
    ({"timeout_s": 0}, "timeout_s", "greater than 0"),
]


@pytest.mark.parametrize(("payload", "field", "says"), BAD_REQUESTS)
def test_bad_input_is_a_422_naming_the_field_and_nothing_is_enqueued(
    client: httpx.Client, redis_client: redis.Redis, payload: dict[str, object], field: str, says: str
) -> None:
    before = redis_client.xlen(STREAM)
    response = client.post("/v1/generations", json=payload)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(field in e["loc"] and says in e["msg"] for e in errors), errors
    assert redis_client.xlen(STREAM) == before


def test_malformed_json_is_a_422(client: httpx.Client, redis_client: redis.Redis) -> None:
    before = redis_client.xlen(STREAM)
    response = client.post(
        "/v1/generations", content=b'{"steps": 5,', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert redis_client.xlen(STREAM) == before


def test_unknown_and_malformed_job_ids(client: httpx.Client) -> None:
    assert client.get(f"/v1/jobs/{'0' * 32}").status_code == 404
    assert client.get("/v1/jobs/not-a-job").status_code == 422
    assert client.delete(f"/v1/jobs/{'0' * 32}").status_code == 404


def test_models_and_samplers_describe_what_can_be_asked(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    assert [m["name"] for m in models] == ["mnist-gauss", "mnist-text", "mnist-unet"]  # the session worker's
    model = models[2]
    assert model["conditioning"] == "class_label" and model["num_classes"] == 10
    assert model["training_noise_schedule"] == "squaredcos_cap_v2"
    samplers = {s["name"]: s for s in client.get("/v1/samplers").json()}
    assert set(samplers) == {"ddpm", "ddim", "dpmpp_2m", "unipc", "euler", "euler_a"}
    assert "eta" in samplers["ddim"]["knobs"] and samplers["ddpm"]["noise"] == "stochastic"


def test_openapi_documents_every_knob(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    properties = schema["components"]["schemas"]["GenerationRequest"]["properties"]
    assert set(GenerationRequest.model_fields) <= set(properties)
    for name, prop in properties.items():
        assert prop.get("description"), f"{name} has no description"
    assert client.get("/docs").status_code == 200


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["workers"][0]["models"] == [
        "mnist-unet",
        "mnist-gauss",
        "mnist-text",
    ]


def test_both_processes_export_prometheus_histograms(
    client: httpx.Client, worker_process: dict[str, str]
) -> None:
    client.post("/v1/generations", json={"class_label": 0, "steps": 3})
    api = client.get("/metrics").text
    assert 'denoise_api_requests_total{code="200",method="POST",route="/v1/generations"}' in api
    assert "denoise_api_request_duration_seconds_bucket" in api
    assert 'denoise_api_queue_depth{model="mnist-unet"}' in api
    worker = httpx.get(worker_process["metrics_url"]).text
    for name in (
        "queue_wait_seconds",
        "inference_seconds",
        "step_seconds",
        "encode_seconds",
        "job_total_seconds",
        "batch_rows",
    ):
        assert f"denoise_worker_{name}_bucket" in worker, name
    assert 'denoise_worker_jobs_finished_total{model="mnist-unet",status="succeeded"}' in worker


def test_openapi_has_an_example_for_each_knob(client: httpx.Client) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/generations"]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    exercised = {field for example in examples.values() for field in example["value"]}
    knobs = {
        "steps",
        "schedule",
        "sampler",
        "deterministic",
        "eta",
        "variance_bound",
        "variance_scale",
        "variance_type",
        "clip_sample",
        "dynamic_thresholding",
        "guidance_scale",
        "guidance_rescale",
        "num_images",
        "seed",
        "class_label",
        "init_image",
        "strength",
    }
    assert knobs - {"deterministic"} <= exercised
