"""``denoise_model.json``: every bundled model's file round-trips byte for byte, its shared fields
are the digit data's, and a bad file is refused with the file and key named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workers.models.metadata import MODEL_METADATA_FILE, ModelMetadata
from workers.models.registry import load_registry
from workers.training.data import digit_model_metadata

# the project folders (denoise_model.json); pipeline folders (mnist-text) carry no such file
BUNDLED = sorted(
    (e for e in load_registry().values() if e.path is not None and (e.path / "denoise_model.json").is_file()),
    key=lambda entry: entry.name,
)


@pytest.mark.parametrize("entry", BUNDLED, ids=[entry.name for entry in BUNDLED])
def test_bundled_metadata_round_trips_byte_for_byte(entry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    on_disk = (entry.path / MODEL_METADATA_FILE).read_text()
    metadata = ModelMetadata.read(entry.path)
    assert metadata.to_json() == on_disk
    metadata.write(tmp_path)
    assert (tmp_path / MODEL_METADATA_FILE).read_bytes() == (entry.path / MODEL_METADATA_FILE).read_bytes()


@pytest.mark.parametrize("entry", BUNDLED, ids=[entry.name for entry in BUNDLED])
def test_bundled_metadata_is_what_the_digit_writers_produce(entry) -> None:  # type: ignore[no-untyped-def]
    metadata = ModelMetadata.read(entry.path)
    assert metadata.default_guidance_scale is not None
    written = digit_model_metadata(
        metadata.default_guidance_scale, training=metadata.training, fit=metadata.fit
    )
    # the sampling defaults are chosen later, by measurement (docs/noise.md), not by the writers
    measured = ("default_steps", "default_sampler", "default_schedule")
    written = written.model_copy(update={key: getattr(metadata, key) for key in measured})
    if metadata.network == "gaussian_mixture":  # save_gaussian_mixture adds the architecture
        written = written.model_copy(update={"architecture": "gaussian_mixture"})
    assert written.to_json() == metadata.to_json()


def test_absent_keys_stay_absent_and_take_the_defaults(tmp_path: Path) -> None:
    minimal = {"conditioning": "none", "image_size": 32, "channels": 3}
    (tmp_path / MODEL_METADATA_FILE).write_text(json.dumps(minimal))
    metadata = ModelMetadata.read(tmp_path)
    assert metadata.network == "unet2d" and metadata.request_defaults() == {}
    assert json.loads(metadata.to_json()) == minimal


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"architecture": "transformer"}, "architecture"),
        ({"image_sise": 28}, "image_sise"),
        ({"conditioning": "text"}, "conditioning"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_key(tmp_path: Path, change: dict, named: str) -> None:  # type: ignore[type-arg]
    fields = {"conditioning": "class_label", "image_size": 28, "channels": 1, **change}
    (tmp_path / MODEL_METADATA_FILE).write_text(json.dumps(fields))
    with pytest.raises(ValueError, match=named) as error:
        ModelMetadata.read(tmp_path)
    assert str(tmp_path / MODEL_METADATA_FILE) in str(error.value)
