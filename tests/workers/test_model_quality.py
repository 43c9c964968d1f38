"""The bundled model's quality bar (slow: about 5 minutes on 2 CPU cores; `make test-slow`).

A classifier fitted on the training digits must label at least 90% of generated digits as
the class that was requested, at the model's documented default guidance (50 DDIM steps,
20 images per class), and that default must beat guidance 1.
"""

from __future__ import annotations

import pytest

from workers.evaluation.class_accuracy import evaluate


@pytest.mark.slow
def test_default_guidance_draws_the_requested_digit(bundled_model) -> None:  # type: ignore[no-untyped-def]
    default = bundled_model.info.default_guidance_scale
    assert default > 1.0
    report = evaluate(bundled_model, [1.0, default], per_class=20, steps=50)
    off, on = report["rows"]  # type: ignore[misc]
    print(f"\naccuracy at guidance 1: {off['accuracy']:.3f}; at default {default:g}: {on['accuracy']:.3f}")
    assert report["classifier_held_out_accuracy"] > 0.9  # the judge itself is trustworthy
    assert on["accuracy"] >= 0.90
    assert on["accuracy"] > off["accuracy"]
