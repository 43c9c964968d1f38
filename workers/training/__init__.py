"""Training of the project's own diffusion models (run with ``python -m workers.training``)."""
