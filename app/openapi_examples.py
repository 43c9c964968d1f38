"""Named example requests for the OpenAPI page: one per knob that shapes the sampling noise, and
one with a webhook."""

from __future__ import annotations

from typing import Any

# a held-out digit (workers.training.data.holdout_indices, the 8th) with Gaussian noise of σ = 50
# gray levels (numpy seed 0), clipped to 0..255: a 28×28 grey PNG
NOISY_DIGIT_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAACbUlEQVR42kXS70vcdQAA4Kc7zzudet7XTs+dp5fz1525malrTr2d"
    "0xlrzDFiBlJE+KYgCmLUi70Me2m9WvRi0KBgvSsIYlEQNUYbDCtkxApW2ygmtdZawdA+vSjoH3hePWoVE6LqLsSA7KhZ0VCC+Na2"
    "jb9F39/9S//uK4cKtffuVXpKd27/erPrt/tld8CiZgszRfHuEUvsii3XgWKh6nELNIym0P4QD9KlRYL6HeZ7yhP95RpoRGP0woUQ"
    "JkzJZFtammFcDaTx4c1rvwc1YtX27ludLV1s2aTL7cpKOLh59iKbR6GAngEp5pIn58If4VSzcJpuZkfA5BFwNvyylnmiXlhRz5iB"
    "QSnHIf3eV3ffHlodpXxpkHltUIte1sOlUEorTxZXNUI8y5TROhouhx/P7x+WFW/YUBSJNW7s9XlDNsF3fX76uXvNmK3jayNXlwv/"
    "maXIsXD+jZmZygRq4180EA1AvuaIqHI9HDxhpwmp+O6VVnX6HsbcuGe5HpZfMpw3btZ8ONO3PL5PQod0tuzj9WPT+rFnLDN47SM4"
    "lDoAbfkPbpyCWZLbZsOrlQdE1TZMp7X2vH+hmaqnnzJycf31TK+lJo92RSyVCOM07Wsa8Oaf4a1JUVYdw5B8TPimMObwixufXA7P"
    "q7GfDLL3KV4V+7Ry7suO5MK5W1/HXsvd6PhW451/s8kdXgohXDkT3jn9jNh0tH1oMTVFM0hw8od3w2erY7106nuFR0zISMpwIJ0Q"
    "UU0Nmsvk8jhaZRSVHMlcijQV5Ev5na2ZnL2UPen/66baQZ+27XMWKwov15fsSXkO8r2RETo7nMD8PytupZ5ZlFfGAAAAAElFTkSu"
    "QmCC"
)

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
    "denoise": {
        "summary": "Denoise your own image: strength auto measures its noise and starts there",
        "value": {
            "model": "mnist-unet-heldout",
            "init_image": NOISY_DIGIT_PNG,
            "strength": "auto",
            "seed": 1,
        },
    },
    "img2img": {
        "summary": "img2img: the last 60% of 10 DDIM steps from the image, steered to a 3",
        "value": {
            "init_image": NOISY_DIGIT_PNG,
            "strength": 0.6,
            "class_label": 3,
            "sampler": "ddim",
            "steps": 10,
            "seed": 1,
        },
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
