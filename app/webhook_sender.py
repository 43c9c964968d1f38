"""One delivery attempt: check the target, sign, POST, and say how it went (never raises).

Following Standard Webhooks: a 2xx is a success and anything else a failure; redirects are not
followed (a 3xx fails: the receiver should update its URL, and a redirect could point past the
SSRF checks); ``410 Gone`` means the receiver wants no more, so it is not retried; a
``Retry-After`` (429, 503) stretches the next delay up to the backoff cap.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Literal

import httpx

from app.webhook_signing import signed_headers
from app.webhook_targets import TargetRefused, TargetUnresolved, vetted_address
from protocol.webhooks import WebhookDelivery

AttemptResult = Literal["delivered", "http_error", "timeout", "connection_error", "unresolved", "refused"]
USER_AGENT = "denoise-webhooks/0.1"


@dataclass(frozen=True)
class Attempt:
    result: AttemptResult
    detail: str  # "HTTP 500", "ConnectError: ...": kept with a retried or dead-lettered delivery
    seconds: float
    final: bool = False  # no later attempt can succeed: 410 Gone, a refused address
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.result == "delivered"


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) in seconds from ``now``."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class WebhookSender:
    """POSTs deliveries with one ``httpx.AsyncClient`` (no keep-alive: every attempt connects to
    the address it has just checked, and a pooled connection would skip that)."""

    def __init__(self, keys: list[bytes], allow_private: bool, timeout_s: float) -> None:
        self.keys = keys
        self.allow_private = allow_private
        self.timeout_s = timeout_s
        self.http = httpx.AsyncClient(
            timeout=timeout_s,
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: the checked address is the one reached
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": USER_AGENT},
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send(self, delivery: WebhookDelivery) -> Attempt:
        started = time.perf_counter()

        def attempt(result: AttemptResult, detail: str, **more: object) -> Attempt:
            return Attempt(result, detail, time.perf_counter() - started, **more)  # type: ignore[arg-type]

        try:
            address = await vetted_address(delivery.url, self.allow_private, self.timeout_s)
        except TargetRefused as refused:
            return attempt("refused", str(refused), final=True)
        except TargetUnresolved as unresolved:
            return attempt("unresolved", str(unresolved))
        url = httpx.URL(delivery.url)
        headers = {"Content-Type": "application/json"}
        extensions = {}
        if address is not None:
            headers["Host"] = url.netloc.decode("ascii")
            if url.scheme == "https":
                extensions["sni_hostname"] = url.host  # TLS and its certificate check keep the name
            url = url.copy_with(host=address)
        body = delivery.body.encode()
        headers.update(signed_headers(self.keys, delivery.id, int(time.time()), body))
        try:
            response = await self.http.post(url, content=body, headers=headers, extensions=extensions)
        except httpx.TimeoutException as error:
            return attempt("timeout", f"{type(error).__name__}: no answer within {self.timeout_s:g} s")
        except httpx.HTTPError as error:
            return attempt("connection_error", f"{type(error).__name__}: {error}"[:300])
        if response.is_success:
            return attempt("delivered", f"HTTP {response.status_code}")
        return attempt(
            "http_error",
            f"HTTP {response.status_code}",
            final=response.status_code == 410,
            retry_after_s=retry_after_seconds(response.headers.get("Retry-After"), time.time()),
        )
