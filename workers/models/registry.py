"""The model registry: names a deployment serves, mapped to local directories.

A TOML file (``DENOISE_MODEL_REGISTRY``) with one table per model::

    [models.mnist-unet]
    path = "mnist-unet"          # relative to the registry file, or absolute
    description = "..."

Requests name models, never paths: a name outside this file is refused by the API.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

BUNDLED_REGISTRY = Path(__file__).with_name("registry.toml")


class UnknownModelError(KeyError):
    pass


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    path: Path
    description: str


def load_registry(registry_file: Path = BUNDLED_REGISTRY) -> dict[str, RegistryEntry]:
    data = tomllib.loads(registry_file.read_text())
    entries = {}
    for name, table in data.get("models", {}).items():
        path = Path(table["path"])
        if not path.is_absolute():
            path = (registry_file.parent / path).resolve()
        entries[name] = RegistryEntry(name=name, path=path, description=str(table.get("description", "")))
    return entries


def lookup(name: str, registry_file: Path = BUNDLED_REGISTRY) -> RegistryEntry:
    entries = load_registry(registry_file)
    if name not in entries:
        raise UnknownModelError(
            f"model {name!r} is not in {registry_file}; known: {', '.join(sorted(entries))}"
        )
    return entries[name]
