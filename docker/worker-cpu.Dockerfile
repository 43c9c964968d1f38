# syntax=docker/dockerfile:1
# The CPU worker image: slim Python, the CPU-capable torch the project pins, diffusers and this project.
# For development and CPU-only hosts; the GPU image (worker.Dockerfile) is the one to serve with.
#
#   docker build -f docker/worker-cpu.Dockerfile -t denoise-worker-cpu .     # from the repository root
#
# The default package index serves, for linux/amd64, a torch wheel that also pulls in the CUDA
# libraries (several GB). To get the small CPU-only build, pass the CPU wheel index of PyTorch's
# own package server: --build-arg TORCH_INDEX_URL=<that index>.
ARG PYTHON_IMAGE=python:3.11.15-slim-trixie

# ------------------------------------------------------------------ build: a venv holding torch + project
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, in its own layer (it is by far the largest and changes least), so the range in
# pyproject.toml (`torch>=2.4`) is already met when the project is installed.
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==${TORCH_VERSION}"
WORKDIR /src
# .dockerignore keeps .venv, runs/, tests/, deploy/ and caches out of this copy. The model
# (workers/models/mnist-unet) is package data of `workers`, so `pip install` puts it in the venv.
COPY . .
# The constraint keeps the torch installed above: no dependency may swap it for another build.
RUN --mount=type=cache,target=/root/.cache/pip \
    echo "torch==${TORCH_VERSION}" > /tmp/torch-constraint.txt \
 && pip install --constraint /tmp/torch-constraint.txt '.[worker]'

# ------------------------------------------------------------------ runtime
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="denoise-worker-cpu" \
      org.opencontainers.image.description="CPU worker of the denoise diffusion service"
RUN groupadd --system --gid 10001 denoise \
 && useradd --system --uid 10001 --gid denoise --home-dir /home/denoise --create-home \
        --shell /usr/sbin/nologin denoise
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py docker/check_models.py /opt/denoise/
# DENOISE_DEVICE=cpu: this image has no GPU build of torch; say so rather than rely on "auto".
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    DENOISE_DEVICE=cpu
WORKDIR /home/denoise
USER 10001:10001
# Fail the build, not the first job, when a registry model was not installed (pyproject's
# package-data globs decide which files ship) or cannot be read by the runtime user.
RUN python /opt/denoise/check_models.py
EXPOSE 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/denoise/healthcheck.py", "worker"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "workers"]
