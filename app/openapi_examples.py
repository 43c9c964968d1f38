"""Named example requests for the OpenAPI page: one per knob that shapes the sampling noise, and
one with a webhook."""

from __future__ import annotations

from typing import Any

GENERATION_EXAMPLES: dict[str, dict[str, Any]] = {
    "default": {
        "summary": "A 7 with the model's measured defaults (sampler, steps, schedule), fixed seed",
        "value": {"class_label": 7, "seed": 1},
    },
    "ddim_50": {
        "summary": "A 7, deterministic DDIM, 50 steps, fixed seed",
        "value": {"class_label": 7, "steps": 50, "sampler": "ddim", "seed": 1},
    },
    "optimized_schedule": {
        "summary": "UniPC on the timesteps optimised for this model, 8 steps",
        "value": {"class_label": 3, "sampler": "unipc", "steps": 8, "schedule": "optimized"},
    },
    "steps_and_schedule": {
        "summary": "Fewer steps, spent at low noise (quadratic schedule)",
        "value": {"class_label": 3, "steps": 20, "schedule": "quadratic"},
    },
    "karras": {
        "summary": "DPM-Solver++ 2M on Karras sigmas, 15 steps",
        "value": {"class_label": 5, "sampler": "dpmpp_2m", "schedule": "karras", "steps": 15},
    },
    "stochastic_ddim": {
        "summary": "DDIM with eta 0.5 (some injected noise)",
        "value": {"class_label": 2, "sampler": "ddim", "eta": 0.5, "seed": 7},
    },
    "ddpm_variance_type": {
        "summary": "DDPM with the large variance β_t",
        "value": {"class_label": 4, "sampler": "ddpm", "steps": 100, "variance_type": "fixed_large"},
    },
    "variance_bound": {
        "summary": "DDPM with the injected σ_t clamped at 0.05 (the step stays in the DDIM family)",
        "value": {"class_label": 4, "sampler": "ddpm", "steps": 100, "variance_bound": 0.05},
    },
    "variance_form": {
        "summary": "DDPM's literal posterior-mean clamp, for study (it loses variance)",
        "value": {
            "class_label": 4,
            "sampler": "ddpm",
            "steps": 100,
            "variance_bound": 0.05,
            "variance_form": "posterior",
        },
    },
    "variance_scale": {
        "summary": "Stochastic DDIM with the injected σ_t annealed to 60%",
        "value": {"class_label": 6, "sampler": "ddim", "eta": 1.0, "variance_scale": 0.6},
    },
    "clip_sample": {
        "summary": "x0 clipped to [-1, 1] at every step",
        "value": {"class_label": 8, "sampler": "ddim", "clip_sample": True},
    },
    "dynamic_thresholding": {
        "summary": "Imagen's dynamic thresholding of x0 (99.5th percentile)",
        "value": {"class_label": 8, "dynamic_thresholding": True, "dynamic_thresholding_ratio": 0.995},
    },
    "guidance": {
        "summary": "Stronger classifier-free guidance, with rescale",
        "value": {"class_label": 9, "guidance_scale": 3.0, "guidance_rescale": 0.5},
    },
    "several_images": {
        "summary": "Four images; image i uses seed + i",
        "value": {"class_label": 0, "num_images": 4, "seed": 100},
    },
    "deadline": {
        "summary": "Give up unless finished within 5 s of submission (fails with DeadlineExceeded)",
        "value": {"class_label": 1, "steps": 50, "timeout_s": 5},
    },
    "unconditional": {
        "summary": "No class label: an unconditional sample (guidance off)",
        "value": {"steps": 30},
    },
    "webhook": {
        "summary": "Signed POSTs to a receiver when the job starts and when it ends (see README, Webhooks)",
        "value": {
            "class_label": 7,
            "webhook": "https://hooks.example.com/denoise",
            "webhook_events": ["start", "completed"],
        },
    },
}

IMAGE_EXAMPLES: dict[str, dict[str, Any]] = {
    "default": {
        "summary": "Two 7s (the class name as prompt), 20 steps, fixed seed",
        "value": {
            "prompt": "7",
            "n": 2,
            "size": "28x28",
            "response_format": "b64_json",
            "steps": 20,
            "seed": 1,
        },
    },
    "number_word": {
        "summary": "A digit by its English word",
        "value": {"prompt": "seven", "steps": 20},
    },
    "knobs": {
        "summary": "The service's knobs as extra fields: DDPM with a variance bound",
        "value": {"prompt": "4", "sampler": "ddpm", "steps": 100, "variance_bound": 0.05, "seed": 3},
    },
    "unconditional": {
        "summary": "An empty prompt: an unconditional sample (guidance off)",
        "value": {"prompt": "", "steps": 30},
    },
}
