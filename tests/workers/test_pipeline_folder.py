"""Pipeline folders built with diffusers' and transformers' own classes are recognised by their
components, load in every weight format, and nothing outside the served classes is instantiated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.fixtures.pipelines import build_ddpm, build_dit, build_stable_diffusion
from workers.models.pipeline_folder import UnsupportedModelFolder, read_pipeline_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipelines")
    return {
        "sd": build_stable_diffusion(root / "sd"),
        "sd-fp16": build_stable_diffusion(root / "sd-fp16", fp16_variant=True),
        "ddpm": build_ddpm(root / "ddpm", num_classes=10),
        "dit": build_dit(root / "dit"),
    }


@pytest.mark.parametrize(
    ("name", "family", "roles"),
    [
        ("sd", "latent_text_unet", {"unet", "vae", "text_encoder", "tokenizer"}),
        ("sd-fp16", "latent_text_unet", {"unet", "vae", "text_encoder", "tokenizer"}),
        ("ddpm", "pixel_unet", {"unet"}),
        ("dit", "latent_class_transformer", {"transformer", "vae"}),
    ],
)
def test_a_folder_is_recognised_by_its_components(
    folders: dict[str, Path], name: str, family: str, roles: set[str]
) -> None:
    folder = read_pipeline_folder(folders[name])
    assert folder.family == family and set(folder.components) == roles
    assert "num_train_timesteps" in folder.scheduler_config()


def test_variant_files_are_found_and_loaded_in_the_service_dtype(folders: dict[str, Path]) -> None:
    folder = read_pipeline_folder(folders["sd-fp16"])
    assert folder.component_variant("unet") == "fp16"
    unet = folder.load("unet", torch.float32)
    assert unet.dtype == torch.float32
    plain = read_pipeline_folder(folders["sd"])
    reference = plain.load("unet", torch.float32)
    # the fp16 file holds the same seeded weights, rounded to half precision
    for (name, a), (_, b) in zip(unet.state_dict().items(), reference.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=2e-3, rtol=1e-2), name


def test_bin_weights_load(folders: dict[str, Path], tmp_path: Path) -> None:
    unet = read_pipeline_folder(folders["ddpm"]).load("unet", torch.float32)
    folder = tmp_path / "ddpm-bin"
    (folder / "unet").mkdir(parents=True)
    (folder / "scheduler").mkdir()
    for name in ("model_index.json", "scheduler/scheduler_config.json"):
        (folder / name).write_text((folders["ddpm"] / name).read_text())
    unet.save_pretrained(folder / "unet", safe_serialization=False)
    assert (folder / "unet" / "diffusion_pytorch_model.bin").is_file()
    again = read_pipeline_folder(folder).load("unet", torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(unet.parameters(), again.parameters(), strict=True))


def test_a_class_outside_the_served_set_is_refused_before_anything_loads(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    index = json.loads((folders["ddpm"] / "model_index.json").read_text())
    index["unet"] = ["os", "system"]
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(UnsupportedModelFolder, match=r"os\.system"):
        read_pipeline_folder(tmp_path)


def test_an_unserved_layout_names_the_served_ones(folders: dict[str, Path], tmp_path: Path) -> None:
    index = json.loads((folders["sd"] / "model_index.json").read_text())
    del index["text_encoder"]
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(UnsupportedModelFolder, match="Stable Diffusion"):
        read_pipeline_folder(tmp_path)
