"""The model registry: the names a deployment serves, mapped to model folders.

The bundled TOML file (``registry.toml`` beside this module) names the project's own models; an
operator adds entries without code with a file in the same format, named by
``DENOISE_REGISTRY_FILE`` (its entries win on a name clash)::

    [models.mnist-unet]
    path = "mnist-unet"              # relative to the TOML file, or absolute
    description = "..."

    [models.my-sd]
    hf_repo = "my-org/my-sd-model"   # resolved OFFLINE from the local Hugging Face cache
    revision = "main"                # a branch, tag or commit hash present in that cache
    variant = "fp16"                 # optional: load the ``*.fp16.*`` weight files
    default_steps = 25               # optional request defaults (else the model family's)
    default_sampler = "dpmpp_2m"
    default_schedule = "ays"         # where it exists for the request's sampler and steps
    default_guidance_scale = 7.5

A folder is a diffusers pipeline folder (``model_index.json``) or one of the project's own
(``denoise_model.json``); ``workers.models.loading`` reads either. Requests name models, never
paths: a name outside the registry is refused by the API.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

BUNDLED_REGISTRY = Path(__file__).with_name("registry.toml")
_SOURCE_KEYS = ("path", "hf_repo")
_DEFAULT_KEYS = ("default_steps", "default_sampler", "default_schedule", "default_guidance_scale")


class UnknownModelError(KeyError):
    pass


class RegistryError(ValueError):
    """A registry file that names a model in a way that cannot be loaded."""


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    path: Path | None  # a local folder; None for an ``hf_repo`` entry
    description: str = ""
    hf_repo: str | None = None
    revision: str = "main"
    variant: str | None = None
    defaults: tuple[tuple[str, object], ...] = ()  # request defaults stated by the entry

    def request_defaults(self) -> dict[str, object]:
        return dict(self.defaults)

    def folder(self, hf_cache_dir: Path | None = None) -> Path:
        """The model folder on this machine; an ``hf_repo`` is looked up in the local Hugging
        Face cache only (never downloaded).

        Raises:
            RegistryError: the folder is missing, or the repo/revision is not in the cache.
        """
        if self.path is not None:
            if not self.path.is_dir():
                raise RegistryError(f"model {self.name!r}: folder {self.path} does not exist")
            return self.path
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(
                snapshot_download(
                    repo_id=str(self.hf_repo),
                    revision=self.revision,
                    cache_dir=hf_cache_dir,
                    local_files_only=True,
                )
            )
        except (LocalEntryNotFoundError, FileNotFoundError) as error:
            raise RegistryError(
                f"model {self.name!r}: {self.hf_repo}@{self.revision} is not in the local Hugging Face "
                "cache; download it where there is network (huggingface-cli download) and mount the "
                "cache, this service never downloads at run time"
            ) from error


def _entry(name: str, table: dict[str, object], registry_file: Path) -> RegistryEntry:
    sources = [key for key in _SOURCE_KEYS if key in table]
    if len(sources) != 1:
        raise RegistryError(f"{registry_file}: model {name!r} needs exactly one of path, hf_repo")
    unknown = set(table) - {"path", "hf_repo", "revision", "variant", "description", *_DEFAULT_KEYS}
    if unknown:
        raise RegistryError(f"{registry_file}: model {name!r} has unknown keys {sorted(unknown)}")
    path = None
    if "path" in table:
        path = Path(str(table["path"]))
        if not path.is_absolute():
            path = (registry_file.parent / path).resolve()
    variant = table.get("variant")
    return RegistryEntry(
        name=name,
        path=path,
        description=str(table.get("description", "")),
        hf_repo=str(table["hf_repo"]) if "hf_repo" in table else None,
        revision=str(table.get("revision", "main")),
        variant=str(variant) if variant is not None else None,
        defaults=tuple((key, table[key]) for key in _DEFAULT_KEYS if key in table),
    )


def read_registry_file(registry_file: Path) -> dict[str, RegistryEntry]:
    data = tomllib.loads(registry_file.read_text())
    return {name: _entry(name, table, registry_file) for name, table in data.get("models", {}).items()}


def load_registry(extra_file: Path | None = None) -> dict[str, RegistryEntry]:
    """The bundled entries plus those of ``extra_file`` (an operator's; they win on a clash)."""
    entries = read_registry_file(BUNDLED_REGISTRY)
    if extra_file is not None:
        entries.update(read_registry_file(extra_file))
    return entries


def lookup(name: str, extra_file: Path | None = None) -> RegistryEntry:
    entries = load_registry(extra_file)
    if name not in entries:
        raise UnknownModelError(f"model {name!r} is not in the registry; known: {', '.join(sorted(entries))}")
    return entries[name]
