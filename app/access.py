"""Who may call the API: optional API keys and a per-caller token bucket kept in Redis.

Keys come as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. A presented key is hashed
and compared with the hash of every configured key by ``hmac.compare_digest`` (equal lengths,
no early exit), so the time taken says nothing about which key, or how much of one, matched.
Callers are known by a short hash of their key (never the key itself) in Redis keys and logs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.errors import TooManyRequests, Unauthorized
from app.metrics import ApiMetrics
from protocol.keys import rate_limit_key

OPEN_PRINCIPAL = "open"

# KEYS[1] the caller's bucket. ARGV[1] tokens added per second, ARGV[2] bucket size (burst).
# Returns {1, '0'} when a token was taken, else {0, seconds until one is available}. Redis's
# own clock, so that every API replica refills the same bucket at the same rate.
TAKE_TOKEN_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {taken, tostring(wait)}
"""

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <API key>`")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    def __init__(self, keys: Sequence[str]) -> None:
        self._digests = [_digest(key) for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def principal(self, presented: str | None) -> str:
        """The caller's name (a hash of its key), or raises Unauthorized."""
        if not presented:
            raise Unauthorized("an API key is required: send `Authorization: Bearer <key>` or `X-API-Key`")
        digest = _digest(presented)
        matched = False
        for configured in self._digests:  # every key, always: no early exit
            matched |= hmac.compare_digest(digest, configured)
        if not matched:
            raise Unauthorized("invalid API key")
        return f"key-{digest.hex()[:16]}"


class RateLimiter:
    """A token bucket per caller: ``burst`` requests at once, refilled at ``per_s``; 0 turns it off."""

    def __init__(self, client: aioredis.Redis, per_s: float, burst: int) -> None:
        self.per_s = per_s
        self.burst = burst
        self._take = client.register_script(TAKE_TOKEN_SCRIPT)

    @property
    def enabled(self) -> bool:
        return self.per_s > 0

    async def take(self, principal: str) -> None:
        """Raises TooManyRequests (with the wait until the next token) when the bucket is empty."""
        if not self.enabled:
            return
        taken, wait_s = await self._take(keys=[rate_limit_key(principal)], args=[self.per_s, self.burst])
        if not int(taken):
            raise TooManyRequests(
                f"rate limit of {self.per_s:g} requests/s (burst {self.burst}) exceeded; "
                f"retry after {float(wait_s):.2f} s",
                float(wait_s),
            )


class AccessControl:
    def __init__(self, keys: ApiKeys, limiter: RateLimiter, metrics: ApiMetrics) -> None:
        self.keys = keys
        self.limiter = limiter
        self.metrics = metrics

    async def admit(self, principal: str | None, presented: str | None) -> str:
        """The caller's name once its key (when keys are configured) and its rate are accepted."""
        if self.keys.enabled:
            try:
                principal = self.keys.principal(presented)
            except Unauthorized:
                self.metrics.rejected.labels("unauthorized").inc()
                raise
        principal = principal or OPEN_PRINCIPAL
        try:
            await self.limiter.take(principal)
        except TooManyRequests:
            self.metrics.rejected.labels("rate_limited").inc()
            raise
        return principal


def _access(request: Request) -> AccessControl:
    return request.app.state.access  # type: ignore[no-any-return]


async def _with_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    presented = bearer.credentials if bearer is not None else api_key
    request.state.principal = await _access(request).admit(None, presented)


async def _without_key(request: Request) -> None:
    # an open API rate-limits per client address, but scopes nothing else by it
    address = request.client.host if request.client else "unknown"
    await _access(request).admit(f"addr-{address}", None)


def guard(api_keys: bool, rate_limited: bool) -> list[Any]:
    """Route dependencies for the guarded paths; with keys the OpenAPI schema declares both schemes."""
    if api_keys:
        return [Depends(_with_key)]
    if rate_limited:
        return [Depends(_without_key)]
    return []


def caller(request: Request) -> str:
    """The caller's name: a hash of its API key, or ``open`` when the API has no keys."""
    return str(getattr(request.state, "principal", OPEN_PRINCIPAL))
