"""Reads a diffusers pipeline folder (``model_index.json`` + one subfolder per component) and
tells which model family it holds; loads its components with their own libraries' classes.

Supported layouts (the component classes decide, not the pipeline's name, so a custom pipeline
class with the standard components is served too):

- ``pixel_unet``: ``unet`` = ``UNet2DModel`` and no VAE (``DDPMPipeline``/``DDIMPipeline``);
- ``latent_text_unet``: ``unet`` = ``UNet2DConditionModel``, ``vae`` = ``AutoencoderKL``,
  ``text_encoder`` = ``CLIPTextModel``, ``tokenizer`` = ``CLIPTokenizer`` (Stable Diffusion 1.x);
- ``latent_class_transformer``: ``transformer`` = ``DiTTransformer2DModel`` (or the older
  ``Transformer2DModel``) + ``vae`` = ``AutoencoderKL`` (``DiTPipeline``).

Only the classes named here are ever instantiated: ``model_index.json`` cannot make the worker
import or run anything else. Weights load from safetensors, ``.bin`` (torch's weights-only
loader) or the ``fp16`` variant files; a component whose folder holds only variant files gets
that variant without being asked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

PIPELINE_INDEX_FILE = "model_index.json"
FolderFamily = Literal["pixel_unet", "latent_text_unet", "latent_class_transformer"]

# (library, class) pairs a folder may name, by role; nothing else is ever instantiated
_ALLOWED: dict[str, set[tuple[str, str]]] = {
    "unet": {("diffusers", "UNet2DModel"), ("diffusers", "UNet2DConditionModel")},
    "transformer": {("diffusers", "DiTTransformer2DModel"), ("diffusers", "Transformer2DModel")},
    "vae": {("diffusers", "AutoencoderKL")},
    "text_encoder": {("transformers", "CLIPTextModel")},
    "tokenizer": {("transformers", "CLIPTokenizer"), ("transformers", "CLIPTokenizerFast")},
}
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


class UnsupportedModelFolder(ValueError):
    """A folder whose layout or component classes this service does not serve."""


@dataclass(frozen=True)
class PipelineFolder:
    path: Path
    pipeline_class: str
    components: dict[str, tuple[str, str]]  # role -> (library, class name), present components only
    family: FolderFamily
    variant: str | None  # the weight-file variant asked for by the registry entry ("fp16"), if any

    def component_variant(self, role: str) -> str | None:
        """The variant to load ``role`` with: the requested one, or the only one on disk."""
        folder = self.path / role
        weights = [p.name for p in folder.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES)]
        plain = [name for name in weights if len(name.split(".")) == 2]
        if self.variant is not None:
            if any(f".{self.variant}." in name for name in weights):
                return self.variant
            if plain:
                return None
            raise UnsupportedModelFolder(f"{folder}: no weights for variant {self.variant!r} ({weights})")
        if plain or not weights:
            return None
        variants = sorted({name.split(".")[-2] for name in weights})
        return variants[0]

    def load(self, role: str, dtype: torch.dtype) -> Any:
        """Instantiates one component from its subfolder, in ``dtype`` (models only)."""
        library, class_name = self.components[role]
        if library == "diffusers":
            import diffusers

            model_class = getattr(diffusers, class_name)
            return model_class.from_pretrained(
                self.path / role, variant=self.component_variant(role), torch_dtype=dtype
            )
        import transformers

        component_class = getattr(transformers, class_name)
        if role == "tokenizer":
            return component_class.from_pretrained(self.path / role)
        return component_class.from_pretrained(
            self.path / role, variant=self.component_variant(role), dtype=dtype
        )

    def scheduler_config(self) -> dict[str, Any]:
        """The training noise schedule (betas, prediction type) from ``scheduler/``."""
        config = json.loads((self.path / "scheduler" / "scheduler_config.json").read_text())
        return {k: v for k, v in config.items() if not k.startswith("_")}


def _family(components: dict[str, tuple[str, str]]) -> FolderFamily | None:
    unet = components.get("unet", ("", ""))[1]
    has_vae = "vae" in components
    if "transformer" in components and has_vae:
        return "latent_class_transformer"
    if unet == "UNet2DConditionModel" and has_vae and {"text_encoder", "tokenizer"} <= set(components):
        return "latent_text_unet"
    if unet == "UNet2DModel" and not has_vae:
        return "pixel_unet"
    return None


def is_pipeline_folder(path: Path) -> bool:
    return (path / PIPELINE_INDEX_FILE).is_file()


def read_pipeline_folder(path: Path, variant: str | None = None) -> PipelineFolder:
    """Parses ``model_index.json`` and checks every component is one this service serves.

    Raises:
        UnsupportedModelFolder: naming what the folder holds and the supported layouts.
    """
    index = json.loads((path / PIPELINE_INDEX_FILE).read_text())
    components: dict[str, tuple[str, str]] = {}
    for role, value in index.items():
        if role.startswith("_") or not isinstance(value, list) or len(value) != 2 or value[1] is None:
            continue
        if role in ("scheduler", "safety_checker", "feature_extractor", "image_encoder"):
            continue  # the scheduler's config is read as data; the others are not used for sampling
        pair = (str(value[0]), str(value[1]))
        if role not in _ALLOWED or pair not in _ALLOWED[role]:
            raise UnsupportedModelFolder(
                f"{path}: component {role!r} is {pair[0]}.{pair[1]}; served components: "
                + "; ".join(f"{r}: {', '.join(c for _, c in sorted(p))}" for r, p in _ALLOWED.items())
            )
        components[role] = pair
    family = _family(components)
    if family is None:
        raise UnsupportedModelFolder(
            f"{path}: components {sorted(components)} are not a served layout: a pixel UNet2DModel "
            "(DDPMPipeline), UNet2DConditionModel + AutoencoderKL + CLIPTextModel + CLIPTokenizer "
            "(Stable Diffusion), or a DiT transformer + AutoencoderKL (DiTPipeline)"
        )
    if not (path / "scheduler" / "scheduler_config.json").is_file():
        raise UnsupportedModelFolder(f"{path}: scheduler/scheduler_config.json is missing")
    return PipelineFolder(
        path=path,
        pipeline_class=str(index.get("_class_name", "")),
        components=components,
        family=family,
        variant=variant,
    )
