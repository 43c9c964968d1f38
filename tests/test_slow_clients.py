"""Slow clients cannot starve the API: header and body deadlines, and a cap on connections.

An API process with short deadlines (2 s) takes a few hundred connections that trickle bytes (a
slowloris sending header lines one at a time; bodies sent a byte at a time) while a normal client
keeps using it; the normal requests keep their latency and every slow connection is closed within
its deadline.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import Callable

import httpx

from tests.conftest import ApiProcess

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
SLOW_HEADERS = 150
SLOW_BODIES = 150
SLACK_S = 2.0  # a closed connection is noticed within this long past its deadline


def address(api: ApiProcess) -> tuple[str, int]:
    host, port = api.url.removeprefix("http://").split(":")
    return host, int(port)


async def trickle(host: str, port: int, head: bytes, drip: bytes, give_up_s: float) -> tuple[float, bytes]:
    """Sends ``head``, then ``drip`` every 0.25 s until the server closes the connection.

    Returns:
        (seconds until it closed, what the server sent before closing).
    """
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    answer = b""
    try:
        writer.write(head)
        while time.monotonic() - started < give_up_s:
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.25)
            except TimeoutError:
                writer.write(drip)
                await writer.drain()
                continue
            if not data:
                break
            answer += data
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
    return time.monotonic() - started, answer


async def latencies(url: str, count: int) -> list[float]:
    result = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = await client.get("/v1/models")
            assert response.status_code == 200, response.text
            result.append(time.perf_counter() - started)
    return result


async def under_slow_clients(api: ApiProcess) -> tuple[list[float], list[float], list, list]:
    host, port = address(api)
    baseline = await latencies(api.url, 40)
    give_up_s = 4 * max(HEADER_TIMEOUT_S, BODY_TIMEOUT_S) + 10
    headers = [
        trickle(host, port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n", b"X", give_up_s)
        for _ in range(SLOW_HEADERS)
    ]
    head = (
        b"POST /v1/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    bodies = [trickle(host, port, head, b" ", give_up_s) for _ in range(SLOW_BODIES)]
    slow = asyncio.gather(asyncio.gather(*headers), asyncio.gather(*bodies))
    await asyncio.sleep(0.5)  # all connected and trickling
    loaded = await latencies(api.url, 40)
    slow_headers, slow_bodies = await slow
    return baseline, loaded, slow_headers, slow_bodies


def test_slow_clients_are_cut_off_and_normal_requests_keep_their_latency(
    start_api: Callable[..., ApiProcess], worker_process: dict[str, str]
) -> None:
    api = start_api(
        DENOISE_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        DENOISE_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        DENOISE_MODELS_CACHE_S="0",
    )
    baseline, loaded, slow_headers, slow_bodies = asyncio.run(under_slow_clients(api))
    p50_base, p50_loaded = statistics.median(baseline), statistics.median(loaded)
    header_closed = [elapsed for elapsed, _ in slow_headers]
    body_closed = [elapsed for elapsed, _ in slow_bodies]
    print(
        f"\n{SLOW_HEADERS} slowloris + {SLOW_BODIES} slow bodies: GET /v1/models p50 "
        f"{1000 * p50_base:.1f} ms alone, {1000 * p50_loaded:.1f} ms beside them; slow headers closed after "
        f"{min(header_closed):.1f}-{max(header_closed):.1f} s, slow bodies after "
        f"{min(body_closed):.1f}-{max(body_closed):.1f} s"
    )
    assert p50_loaded <= 2 * p50_base + 0.005
    assert max(header_closed) <= HEADER_TIMEOUT_S + SLACK_S
    assert all(answer == b"" for _, answer in slow_headers)  # closed, as nginx does, without an answer
    assert max(body_closed) <= BODY_TIMEOUT_S + SLACK_S
    for _, answer in slow_bodies:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"body_timeout_s" in answer


def test_connections_past_the_cap_are_503_and_idle_ones_are_closed(
    start_api: Callable[..., ApiProcess], worker_process: dict[str, str]
) -> None:
    api = start_api(DENOISE_MAX_CONNECTIONS="10", DENOISE_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S))
    idle = [socket.create_connection(address(api)) for _ in range(12)]
    try:
        assert httpx.get(f"{api.url}/v1/samplers").status_code == 503
        for sock in idle:  # connections that never send a byte are closed by the header deadline
            sock.settimeout(HEADER_TIMEOUT_S + SLACK_S)
            assert sock.recv(1) == b""
        assert httpx.get(f"{api.url}/v1/samplers").status_code == 200
    finally:
        for sock in idle:
            sock.close()
