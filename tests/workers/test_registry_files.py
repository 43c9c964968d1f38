"""An operator's registry file: local folders and Hugging Face repos resolved from the local cache
only, never downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.models.registry import BUNDLED_REGISTRY, RegistryError, load_registry, read_registry_file

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def hf_cache_with(cache: Path, repo: str, files: dict[str, str]) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/...}."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    snapshot = root / "snapshots" / COMMIT
    for name, text in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text(text)
    return snapshot


def test_an_operator_file_adds_entries_and_wins_on_a_clash(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    extra = write(
        tmp_path / "models.toml",
        f'[models.mine]\npath = "{folder}"\n\n[models.mnist-unet]\npath = "my-model"\ndescription = "x"\n',
    )
    entries = load_registry(extra)
    assert set(read_registry_file(BUNDLED_REGISTRY)) | {"mine"} == set(entries)
    assert entries["mine"].folder() == folder
    assert entries["mnist-unet"].folder() == folder  # relative to the operator's file


def test_a_hub_repo_resolves_from_the_local_cache_only(tmp_path: Path) -> None:
    snapshot = hf_cache_with(tmp_path / "hub", "org/tiny", {"model_index.json": "{}"})
    extra = write(tmp_path / "m.toml", '[models.tiny]\nhf_repo = "org/tiny"\nrevision = "main"\n')
    entry = load_registry(extra)["tiny"]
    assert entry.folder(hf_cache_dir=tmp_path / "hub") == snapshot
    by_commit = write(tmp_path / "c.toml", f'[models.tiny]\nhf_repo = "org/tiny"\nrevision = "{COMMIT}"\n')
    assert load_registry(by_commit)["tiny"].folder(hf_cache_dir=tmp_path / "hub") == snapshot
    missing = write(tmp_path / "n.toml", '[models.gone]\nhf_repo = "org/absent"\n')
    with pytest.raises(RegistryError, match="not in the local Hugging Face cache"):
        load_registry(missing)["gone"].folder(hf_cache_dir=tmp_path / "hub")


@pytest.mark.parametrize(
    "table",
    [
        'path = "a"\nhf_repo = "o/r"',  # two sources
        'description = "no source"',
        'path = "a"\nweights = "x"',  # an unknown key
    ],
)
def test_a_malformed_entry_is_refused_naming_the_model(tmp_path: Path, table: str) -> None:
    bad = write(tmp_path / "bad.toml", f"[models.broken]\n{table}\n")
    with pytest.raises(RegistryError, match="broken"):
        load_registry(bad)


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    extra = write(tmp_path / "m.toml", '[models.gone]\npath = "nowhere"\n')
    with pytest.raises(RegistryError, match="does not exist"):
        load_registry(extra)["gone"].folder()
