"""SSRF protection: webhook hosts that resolve to loopback, private, link-local, multicast or any
other non-global address are refused (every address a name resolves to is checked), unless the
deployment allows private targets."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from app.webhook_targets import TargetRefused, TargetUnresolved, refusal, vetted_address


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "non-global"),  # shared address space (carrier NAT)
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_refusal_names_the_kind_of_address(address: str, kind: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "https://[::1]/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one decimal number
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
    ],
)
def test_private_targets_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(TargetRefused, match="webhooks go to public addresses only"):
        asyncio.run(vetted_address(url, allow_private=False, timeout_s=2))
    assert asyncio.run(vetted_address(url, allow_private=True, timeout_s=2)) is None


def test_a_public_address_is_the_one_to_connect_to() -> None:
    assert asyncio.run(vetted_address("https://93.184.216.34:8443/x", False, 2)) == "93.184.216.34"


def test_a_name_that_does_not_resolve_is_unresolved() -> None:
    with pytest.raises(TargetUnresolved, match="does not resolve"):
        asyncio.run(vetted_address("https://no-such-host.invalid/x", False, 2))
