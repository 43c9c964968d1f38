"""Where a webhook may point: server-side request forgery (SSRF) protection.

A webhook URL is chosen by the caller, and the service POSTs to it from inside the deployment, so
it must not reach what only the deployment can reach: loopback, private networks, link-local
addresses (cloud metadata at 169.254.169.254), multicast, and every other address that is not
globally routable. The host is resolved and every address it resolves to is checked:

- at request time, so a bad URL is a 422 naming ``webhook`` and nothing is enqueued;
- again at each delivery attempt, because DNS can change in between (DNS rebinding: a name that
  resolved to a public address at submission and to 127.0.0.1 later). The attempt then connects
  to the address it checked, not to the name again (the Host header and, for https, the TLS
  server name and certificate check keep the name), so no second lookup can differ.

``DENOISE_WEBHOOK_ALLOW_PRIVATE=true`` turns the checks off (a receiver inside the cluster, tests).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
REFUSED_KINDS = (
    "loopback",
    "link_local",
    "multicast",
    "unspecified",
    "reserved",
    "private",
)  # most specific first


class TargetError(Exception):
    """The webhook's host cannot be delivered to."""


class TargetUnresolved(TargetError):
    """The host does not resolve (now): an attempt may succeed later."""


class TargetRefused(TargetError):
    """The host resolves to an address that webhooks may not reach."""


def refusal(address: IPAddress) -> str | None:
    """Why webhooks may not reach ``address`` (None: a global unicast address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for kind in REFUSED_KINDS:
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if not address.is_global:  # e.g. shared address space 100.64.0.0/10
        return "non-global"
    return None


async def resolve(url: str, timeout_s: float) -> tuple[str, list[str]]:
    """The URL's host and the addresses it resolves to (IP literals resolve to themselves).

    Raises:
        TargetUnresolved: the name does not resolve within ``timeout_s``.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=timeout_s
        )
    except (OSError, TimeoutError) as error:
        raise TargetUnresolved(f"host {host!r} does not resolve ({error or 'timed out'})") from error
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise TargetUnresolved(f"host {host!r} resolves to no address")
    return host, addresses


async def vetted_address(url: str, allow_private: bool, timeout_s: float) -> str | None:
    """The address to connect to for ``url``: its host's first address once every one of them
    is allowed; None when private targets are allowed (then the name is connected to as usual).

    Raises:
        TargetUnresolved: the host does not resolve.
        TargetRefused: it resolves to an address webhooks may not reach (any one of them refuses
            it: a resolver that mixes a public and a private answer must not choose for us).
    """
    if allow_private:
        return None
    host, addresses = await resolve(url, timeout_s)
    for address in addresses:
        why = refusal(ipaddress.ip_address(address.split("%", 1)[0]))  # drop an IPv6 zone
        if why is not None:
            raise TargetRefused(
                f"host {host!r} resolves to {address}, a {why} address: webhooks go to public "
                "addresses only on this deployment"
            )
    return addresses[0]
