"""The common peer design, for comparison: an in-process server whose FastAPI handler hands
each request to a thread pool that runs the whole sampling loop (as the diffusers example
server does with ``run_in_executor``). Same model, same sampling code, same request; no queue,
no batching across requests.

    python -m bench.peer_server --port 8100 --threads 2
"""

from __future__ import annotations

import argparse
import asyncio
import time

import torch
import uvicorn
from fastapi import FastAPI

from protocol.resolution import Limits, resolve_request
from protocol.schema import GenerationRequest
from workers.images import png_base64, to_uint8
from workers.models.loading import load_model
from workers.models.registry import lookup
from workers.sampling.engine import generate

LIMITS = Limits.absolute()


def create_peer_app(
    model_name: str = "mnist-unet",
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    request_threads: int = 1,
) -> FastAPI:
    model = load_model(lookup(model_name), torch.device(device), dtype)
    models = {model.info.name: model.info}
    app = FastAPI(title="peer: thread-pool server")

    def run(request: GenerationRequest) -> dict[str, object]:
        # Each pool thread gets its own OpenMP team; measured here, a 2-thread team in a pool
        # thread beside the main thread's ran a request 2x slower than the main thread did,
        # and one thread per request was the peer's fastest setting (1 and 16 clients).
        torch.set_num_threads(request_threads)
        started = time.perf_counter()
        config = resolve_request(request, models, model.info.name, LIMITS)
        with torch.inference_mode():
            states = generate(model, config)
        images = [png_base64(to_uint8(s.latent)) for s in states]
        return {"status": "succeeded", "images": images, "ms": 1000 * (time.perf_counter() - started)}

    @app.post("/v1/generations")
    async def generations(request: GenerationRequest) -> dict[str, object]:
        """Runs the whole sampling loop for this request on the default thread pool."""
        return await asyncio.get_running_loop().run_in_executor(None, run, request)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peer_server")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--request-threads", type=int, default=1, help="torch threads per request")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    app = create_peer_app(
        device=args.device, dtype=getattr(torch, args.dtype), request_threads=args.request_threads
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
