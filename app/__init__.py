"""The HTTP API of the denoising service. It validates and enqueues; it never runs a model
(and never imports torch)."""
