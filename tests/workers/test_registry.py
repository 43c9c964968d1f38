"""Every model the bundled registry names loads through the real loading code and samples."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import resolved_config
from workers.models.loading import load_model
from workers.models.registry import load_registry
from workers.sampling.engine import generate

ENTRIES = load_registry()
DIGIT_CLASS_MODELS = sorted(
    name for name in ENTRIES if name not in ("mnist-text", "mnist-unet-unconditional")
)


def test_the_registry_holds_the_default_the_reference_the_text_model_and_the_variants() -> None:
    assert {"mnist-unet", "mnist-gauss", "mnist-text"} <= set(ENTRIES)
    variants = {f"mnist-unet-{s}-{loss}" for s in ("cosine", "linear") for loss in ("mse", "fourier")}
    assert variants <= set(ENTRIES)


@pytest.mark.parametrize("name", DIGIT_CLASS_MODELS)
def test_a_registered_class_model_loads_and_samples(name: str) -> None:
    model = load_model(ENTRIES[name], torch.device("cpu"), torch.float32)
    assert model.info.name == name and model.info.num_classes == 10 and model.null_class == 10
    assert model.info.prediction_type == "v_prediction"
    config = resolved_config(model=name, class_label=4, steps=3, guidance_scale=2.0)
    latent = generate(model, config)[0].latent
    assert latent.shape == (1, 1, 28, 28) and torch.isfinite(latent).all()


def test_the_text_model_loads_as_a_stable_diffusion_layout_pipeline() -> None:
    model = load_model(ENTRIES["mnist-text"], torch.device("cpu"), torch.float32)
    info = model.info
    assert (info.family, info.conditioning, info.image_size, info.channels) == (
        "latent_text_unet",
        "prompt",
        32,
        1,
    )
    assert (info.training_noise_schedule, info.prediction_type) == ("scaled_linear", "epsilon")
    config = resolved_config(
        model="mnist-text",
        class_label=None,
        prompt="the digit 7",
        steps=3,
        guidance_scale=3.0,
        width=32,
        height=32,
    )
    image = generate(model, config)[0].image
    assert image is not None and image.shape == (1, 1, 32, 32) and torch.isfinite(image).all()


def test_the_unconditional_folder_is_the_null_class_branch_of_mnist_unet() -> None:
    conditional = load_model(ENTRIES["mnist-unet"], torch.device("cpu"), torch.float32)
    unconditional = load_model(ENTRIES["mnist-unet-unconditional"], torch.device("cpu"), torch.float32)
    info = unconditional.info
    assert (info.family, info.conditioning, info.image_size, info.supports_guidance) == (
        "pixel_unet",
        "none",
        28,
        False,
    )
    for sampler, noise in (("ddim", {}), ("ddpm", {"deterministic": False, "eta": None})):
        knobs: dict[str, object] = {"class_label": None, "steps": 8, "sampler": sampler, "seed": 5, **noise}
        a = generate(conditional, resolved_config(**knobs))
        b = generate(unconditional, resolved_config(model="mnist-unet-unconditional", **knobs))
        assert a[0].image is not None and b[0].image is not None
        # the same function; the bias is added in another order, so equal to float round-off
        assert float((a[0].image - b[0].image).abs().max()) < 1e-3


def test_variants_record_their_training_objective() -> None:
    for schedule, beta in (("cosine", "squaredcos_cap_v2"), ("linear", "linear")):
        for loss in ("mse", "fourier"):
            model = load_model(ENTRIES[f"mnist-unet-{schedule}-{loss}"], torch.device("cpu"), torch.float32)
            assert model.info.training_noise_schedule == beta
