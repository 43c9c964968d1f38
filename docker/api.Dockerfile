# syntax=docker/dockerfile:1
# The API image: FastAPI, the Redis client and prometheus_client; no torch (`app` never imports it).
#
#   docker build -f docker/api.Dockerfile -t denoise-api .     # from the repository root
#
# The base is pinned by tag so a rebuild is the same image; bump it deliberately, and pin it by
# digest (python:3.11.15-slim-trixie@sha256:...) where builds must be bit-for-bit repeatable.
ARG PYTHON_IMAGE=python:3.11.15-slim-trixie

# ------------------------------------------------------------------ build: a venv holding the project
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# .dockerignore keeps .venv, runs/, tests/, deploy/ and caches out of this copy.
COPY . .
# Base dependencies only (no extras), then fail the build if torch came in anyway: the API must
# stay a small image that starts in about a second.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . \
 && python -c "import importlib.util, sys; sys.exit('torch is installed in the API image' if importlib.util.find_spec('torch') else 0)"

# ------------------------------------------------------------------ runtime
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="denoise-api" \
      org.opencontainers.image.description="HTTP API of the denoise diffusion service (no model)"
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 denoise \
 && useradd --system --uid 10001 --gid denoise --home-dir /home/denoise --create-home \
        --shell /usr/sbin/nologin denoise
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/denoise/
# DENOISE_HOST: inside a container the API must listen on all interfaces (its default is loopback).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DENOISE_HOST=0.0.0.0
# Not the source tree: `python -m` puts the working directory first on sys.path, and the
# installed package is the one to run.
WORKDIR /home/denoise
USER 10001:10001
EXPOSE 8000
# Liveness only (/healthz). /readyz also needs a fresh worker heartbeat, and an API that is marked
# unhealthy while workers are scaled to zero would never receive the job that scales them up.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "/opt/denoise/healthcheck.py", "api"]
CMD ["python", "-m", "app"]
