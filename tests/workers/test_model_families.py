"""Every family behind one engine, on pipeline folders built with diffusers' own classes and
loaded through a registry entry as an operator's would be: every sampler runs, seeds reproduce
bit for bit, sizes and conditions are per row, and an image does not depend on its batch mates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.schedulers.scheduling_utils import AysSchedules

from protocol.resolution import Limits, RequestFieldError, resolve_request
from protocol.samplers import SAMPLERS
from protocol.schema import GenerationRequest, ResolvedConfig
from tests.fixtures.pipelines import build_ddpm, build_dit, build_stable_diffusion
from workers.images import to_uint8
from workers.models.latent_text_model import LatentTextModel
from workers.models.loaded_model import LoadedModel
from workers.models.loading import load_model, resolve_device, warm_up_batch_sizes
from workers.models.registry import RegistryEntry
from workers.sampling.engine import SamplingEngine, generate
from workers.sampling.schedules import timestep_schedule
from workers.sampling.state import new_states


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedModel]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("families")
    folders = {
        "sd": build_stable_diffusion(root / "sd"),
        "sd-fp16": build_stable_diffusion(root / "sd-fp16", fp16_variant=True),
        "cifar": build_ddpm(root / "cifar"),
        "classes-v": build_ddpm(
            root / "classes-v",
            channels=1,
            size=16,
            num_classes=4,
            prediction_type="v_prediction",
            beta_schedule="squaredcos_cap_v2",
        ),
        "x0": build_ddpm(
            root / "x0", channels=3, size=16, prediction_type="sample", beta_schedule="scaled_linear"
        ),
        "dit": build_dit(root / "dit"),
    }
    return {
        name: load_model(RegistryEntry(name=name, path=path), torch.device("cpu"), torch.float32)
        for name, path in folders.items()
    }


def resolve(model: LoadedModel, **fields: object) -> ResolvedConfig:
    request = GenerationRequest.model_validate({"model": model.info.name, "steps": 4, "seed": 3, **fields})
    return resolve_request(request, {model.info.name: model.info}, model.info.name, Limits.absolute())


def pixels(model: LoadedModel, config: ResolvedConfig) -> list[np.ndarray]:
    states = generate(model, config)
    return [to_uint8(s.image) for s in states if s.image is not None]


def test_model_info_says_family_conditioning_and_sizes(models: dict[str, LoadedModel]) -> None:
    sd, dit, cifar = models["sd"].info, models["dit"].info, models["cifar"].info
    assert (sd.family, sd.conditioning, sd.image_size, sd.channels) == ("latent_text_unet", "prompt", 16, 3)
    assert (sd.size_multiple, sd.min_size, sd.max_size, sd.max_prompt_tokens) == (4, 4, 32, 14)
    assert sd.default_guidance_scale == 7.5 and sd.training_noise_schedule == "scaled_linear"
    assert (dit.family, dit.conditioning, dit.num_classes, dit.image_size) == (
        "latent_class_transformer",
        "class_label",
        1000,
        16,
    )
    assert (cifar.family, cifar.conditioning, cifar.image_size, cifar.channels) == (
        "pixel_unet",
        "none",
        32,
        3,
    )
    assert models["classes-v"].info.prediction_type == "v_prediction"


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("sd", {"prompt": "a red cat", "negative_prompt": "blurry"}),
        ("dit", {"class_label": 207}),
        ("cifar", {}),
        ("classes-v", {"class_label": 2}),
        ("x0", {}),
    ],
)
def test_every_sampler_runs_and_reproduces_on_every_family(
    models: dict[str, LoadedModel], name: str, fields: dict[str, object], sampler: str
) -> None:
    model = models[name]
    if model.info.prediction_type not in SAMPLERS[sampler].prediction_types:
        with pytest.raises(RequestFieldError, match="cannot use a model that predicts"):
            resolve(model, sampler=sampler, **fields)
        return
    config = resolve(model, sampler=sampler, **fields)
    first, again = pixels(model, config), pixels(model, config)
    size, channels = model.info.image_size, model.info.channels
    assert first[0].shape == ((size, size) if channels == 1 else (size, size, channels))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_text_rows_with_different_prompts_and_sizes_share_a_tick(models: dict[str, LoadedModel]) -> None:
    model = models["sd"]
    assert isinstance(model, LatentTextModel)
    configs = [
        resolve(model, prompt="a cat", seed=1),
        resolve(model, prompt="a dog on a hill", seed=2, guidance_scale=1.0),
        resolve(model, prompt="a cat", seed=3, width=32, height=16),
    ]
    engine = SamplingEngine(model, max_rows=16)
    for i, config in enumerate(configs):
        engine.admit(new_states(f"job-{i}", config, model))
    stats = engine.tick()
    assert stats is not None and stats.states == 3 and stats.rows == 5  # guided 2 + 1 + guided 2
    while engine.tick() is not None:
        pass
    together = [state for job in engine.finished() for state in job]
    assert [s.image.shape[-2:] for s in together if s.image is not None] == [(16, 16), (16, 16), (16, 32)]
    for state, config in zip(together, configs, strict=True):
        alone = pixels(model, config)[0]
        assert state.image is not None
        assert np.abs(to_uint8(state.image).astype(int) - alone.astype(int)).max() <= 1


def test_prompt_embeddings_are_cached(models: dict[str, LoadedModel]) -> None:
    model = models["sd"]
    assert isinstance(model, LatentTextModel)
    model.prompts.embed("a lighthouse")
    hits = model.prompts.hits
    model.prompts.embed("a lighthouse")
    assert model.prompts.hits == hits + 1


def test_fp16_variant_folder_serves_like_the_full_one(models: dict[str, LoadedModel]) -> None:
    config = resolve(models["sd"], prompt="a cat", sampler="ddim")
    full = pixels(models["sd"], config)[0].astype(int)
    half = pixels(models["sd-fp16"], config.model_copy(update={"model": "sd-fp16"}))[0].astype(int)
    assert np.abs(full - half).mean() < 8  # the same seeded weights, rounded to half precision


@pytest.mark.parametrize(
    ("name", "fields", "field"),
    [
        ("sd", {"class_label": 1}, "class_label"),
        ("sd", {"prompt": "a cat", "width": 18}, "width"),
        ("sd", {"prompt": "a cat", "height": 64}, "height"),
        ("sd", {"prompt": "a cat", "negative_prompt": "x", "guidance_scale": 1.0}, "negative_prompt"),
        ("dit", {"prompt": "a goldfish"}, "prompt"),
        ("dit", {"class_label": 1000}, "class_label"),
        ("cifar", {"width": 64}, "width"),
        ("classes-v", {}, "class_label"),  # no null class: a class is required
        ("classes-v", {"class_label": 1, "guidance_scale": 3.0}, "guidance_scale"),
    ],
)
def test_what_a_model_cannot_honour_is_refused_naming_the_field(
    models: dict[str, LoadedModel], name: str, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(RequestFieldError) as refused:
        resolve(models[name], **fields)
    assert refused.value.field == field


def test_knobs_change_a_text_image(models: dict[str, LoadedModel]) -> None:
    model = models["sd"]
    base = resolve(model, prompt="a cat", sampler="ddim", eta=1.0)
    reference = pixels(model, base)[0]
    for change in (
        {"seed": 4},
        {"steps": 6},
        {"prompt": "a dog"},
        {"negative_prompt": "grass"},
        {"guidance_scale": 3.0},
        {"guidance_rescale": 0.7},
        {"variance_bound": 0.01},
        {"clip_sample": True},
    ):
        changed = pixels(model, resolve(model, sampler="ddim", eta=1.0, **{"prompt": "a cat", **change}))[0]
        assert not np.array_equal(changed, reference), change


def test_ays_is_offered_on_stable_diffusions_noise_schedule_and_visits_its_table(
    models: dict[str, LoadedModel],
) -> None:
    sd = models["sd"]
    assert sd.info.ays_schedule
    assert not any(models[name].info.ays_schedule for name in ("cifar", "classes-v", "x0", "dit"))
    table = list(AysSchedules["StableDiffusionTimesteps"])
    for sampler in ("ddim", "ddpm", "dpmpp_2m", "unipc", "euler"):
        config = resolve(sd, prompt="a seven", sampler=sampler, schedule="ays", steps=10)
        state = generate(sd, config)[0]
        assert [int(t) for t in state.scheduler.timesteps] == table, sampler
        assert state.image is not None and torch.isfinite(state.image).all()
    seven = generate(sd, resolve(sd, prompt="a seven", sampler="dpmpp_2m", schedule="ays", steps=7))[0]
    alphas = seven.scheduler.alphas_cumprod.numpy()
    assert [int(t) for t in seven.scheduler.timesteps] == timestep_schedule("ays", 7, 1000, alphas)
    with pytest.raises(RequestFieldError) as refused:
        resolve(models["x0"], schedule="ays")
    assert refused.value.field == "schedule" and "Stable Diffusion" in refused.value.message


def test_a_compiled_network_is_warmed_up_at_every_power_of_two_and_the_budget() -> None:
    """Inductor's dynamic graphs specialise batch 1 and recompile past size thresholds: the
    warm-up meets each threshold before the worker reports ready."""
    assert warm_up_batch_sizes(32) == [1, 2, 4, 8, 16, 32]
    assert warm_up_batch_sizes(48) == [1, 2, 4, 8, 16, 32, 48]
    assert warm_up_batch_sizes(1) == [1]
    assert warm_up_batch_sizes(3) == [1, 2, 3]


def test_bfloat16_runs_on_the_cpu_when_asked_and_float16_falls_back() -> None:
    assert resolve_device("cpu", "bfloat16") == (torch.device("cpu"), torch.bfloat16)
    assert resolve_device("cpu", "float16") == (torch.device("cpu"), torch.float32)
    assert resolve_device("cpu", "float32") == (torch.device("cpu"), torch.float32)
