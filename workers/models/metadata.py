"""A model directory's ``denoise_model.json``: what the service needs to know about a model beyond
its weights and noise schedule (conditioning, classes, image shape, defaults, which network), and
the record of how it was made.

Written by ``workers.training.export`` (UNets) and ``workers.training.fit_gaussian`` (the Gaussian
mixture, through ``workers.models.gaussian_mixture.save_gaussian_mixture``); read by
``workers.models.loading`` and ``workers.models.gaussian_mixture``. The format::

    architecture            "unet2d" (also when absent) or "gaussian_mixture"
    conditioning            "class_label", "none" or "prompt"
    num_classes, null_class class labels 0..num_classes-1; null_class: the unconditional label
    class_names             one name per class
    image_size, channels    square images of image_size² pixels
    default_guidance_scale, default_steps, default_sampler, default_schedule
                            request defaults; when absent, ``protocol.schema.ModelInfo``'s apply
                            (``default_schedule`` applies where it exists for the request's
                            sampler and steps)
    training | fit          how the model was made (free-form; the service does not read it)

Absent keys stay absent: ``write`` after ``read`` gives the same bytes (keys in the order above,
``json.dumps`` with an indent of 2 and a final newline).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from protocol.schema import Conditioning, SamplerName, ScheduleName

MODEL_METADATA_FILE = "denoise_model.json"
Architecture = Literal["unet2d", "gaussian_mixture"]


class ModelMetadata(BaseModel):
    """The contents of ``denoise_model.json``; None: the key is absent from the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: Architecture | None = None
    conditioning: Conditioning
    num_classes: int | None = None
    null_class: int | None = None
    class_names: list[str] | None = None
    image_size: int
    channels: int
    default_guidance_scale: float | None = None
    default_steps: int | None = None
    default_sampler: SamplerName | None = None
    default_schedule: ScheduleName | None = None
    training: dict[str, Any] | None = None
    fit: dict[str, Any] | None = None

    @property
    def network(self) -> Architecture:
        """The network the directory holds: ``architecture``, else ``unet2d``."""
        return self.architecture or "unet2d"

    def request_defaults(self) -> dict[str, Any]:
        """The ``default_*`` keys the file states, as ``ModelInfo`` keyword arguments."""
        stated = {
            "default_guidance_scale": self.default_guidance_scale,
            "default_steps": self.default_steps,
            "default_sampler": self.default_sampler,
            "default_schedule": self.default_schedule,
        }
        return {key: value for key, value in stated.items() if value is not None}

    def to_json(self) -> str:
        """The file's text: the stated keys in declaration order, records as given."""
        stated = {key: value for key, value in self.model_dump().items() if value is not None}
        return json.dumps(stated, indent=2) + "\n"

    def write(self, model_dir: Path) -> None:
        (model_dir / MODEL_METADATA_FILE).write_text(self.to_json())

    @classmethod
    def read(cls, model_dir: Path) -> ModelMetadata:
        """The metadata of ``model_dir``.

        Raises:
            ValueError: naming the file and each bad, missing or unknown key.
        """
        path = model_dir / MODEL_METADATA_FILE
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except ValidationError as error:
            raise ValueError(f"{path}: {error}") from error
