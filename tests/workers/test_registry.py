"""Every model the bundled registry names loads through the real loading code and samples."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import resolved_config
from workers.models.loading import load_model
from workers.models.registry import load_registry
from workers.sampling.engine import generate

ENTRIES = load_registry()


def test_the_registry_holds_the_default_the_reference_and_the_training_variants() -> None:
    assert {"mnist-unet", "mnist-gauss"} <= set(ENTRIES)
    variants = {f"mnist-unet-{s}-{loss}" for s in ("cosine", "linear") for loss in ("mse", "fourier")}
    assert variants <= set(ENTRIES)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_a_registered_model_loads_and_samples(name: str) -> None:
    model = load_model(ENTRIES[name], torch.device("cpu"), torch.float32)
    assert model.info.name == name and model.info.num_classes == 10 and model.null_class == 10
    assert model.info.prediction_type == "v_prediction"
    config = resolved_config(model=name, class_label=4, steps=3, guidance_scale=2.0)
    latent = generate(model, config)[0].latent
    assert latent.shape == (1, 1, 28, 28) and torch.isfinite(latent).all()


def test_variants_record_their_training_objective() -> None:
    for schedule, beta in (("cosine", "squaredcos_cap_v2"), ("linear", "linear")):
        for loss in ("mse", "fourier"):
            model = load_model(ENTRIES[f"mnist-unet-{schedule}-{loss}"], torch.device("cpu"), torch.float32)
            assert model.info.training_noise_schedule == beta
