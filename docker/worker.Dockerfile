# syntax=docker/dockerfile:1
# The GPU worker image: the official PyTorch CUDA runtime image plus diffusers and this project.
#
#   docker build -f docker/worker.Dockerfile -t denoise-worker .     # from the repository root
#
# torch comes from the base image and is never replaced: the tag pins torch 2.13.0 (the version the
# Makefile installs for development and tests) built for CUDA 12.6. Hosts need an NVIDIA driver
# for CUDA 12 (525 or newer through minor-version compatibility; 560 or newer is safest).
# Bump BASE_IMAGE deliberately; pin it by digest where builds must be repeatable.
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime

# ------------------------------------------------------------------ build: a venv over the base's torch
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# --system-site-packages: the venv sees the base's CUDA build of torch, so pip counts
# `torch>=2.4` as met and downloads nothing in its place. --without-pip: recent bases use the
# distribution's Python (PEP 668-managed, no ensurepip); its own pip, visible through the system
# site-packages, installs into the venv instead.
RUN python3 -m venv --system-site-packages --without-pip /opt/venv
WORKDIR /src
# .dockerignore keeps .venv, runs/, tests/, deploy/ and caches out of this copy. The model
# (workers/models/mnist-unet) is package data of `workers`, so `pip install` puts it in the venv.
COPY . .
# Constrain torch to exactly the base's build (e.g. 2.13.0+cu126) so no dependency can pull in a
# different one, and fail the build if a torch copy landed in the venv all the same.
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -c "from importlib.metadata import version; print('torch==' + version('torch'))" \
        > /tmp/torch-constraint.txt \
 && /opt/venv/bin/python -m pip install --constraint /tmp/torch-constraint.txt '.[worker]' \
 && /opt/venv/bin/python -c "import importlib.util, sys; origin = importlib.util.find_spec('torch').origin; sys.exit(f'torch was reinstalled into the venv: {origin}' if origin.startswith('/opt/venv/') else 0)"

# ------------------------------------------------------------------ runtime
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="denoise-worker" \
      org.opencontainers.image.description="GPU worker of the denoise diffusion service"
# uid 10001, not 1000: recent Ubuntu-based bases already have a user 1000 (`ubuntu`).
RUN groupadd --system --gid 10001 denoise \
 && useradd --system --uid 10001 --gid denoise --home-dir /home/denoise --create-home \
        --shell /usr/sbin/nologin denoise
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py docker/check_models.py /opt/denoise/
# HF_HUB_OFFLINE: models are local directories; nothing is ever fetched from a hub at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1
WORKDIR /home/denoise
USER 10001:10001
# Fail the build, not the first job, when a registry model was not installed (pyproject's
# package-data globs decide which files ship) or cannot be read by the runtime user.
RUN python /opt/denoise/check_models.py
# Prometheus metrics (DENOISE_METRICS_PORT); the worker serves no other port.
EXPOSE 9100
# Healthy once the model is loaded and the worker loop is running (see docker/healthcheck.py).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/denoise/healthcheck.py", "worker"]
# SIGTERM: the worker stops claiming jobs and finishes those in flight, then exits. Give it time
# (compose: stop_grace_period; Kubernetes: terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "workers"]
