"""API keys and settings parsing, in process."""

from __future__ import annotations

import hmac

import pytest
from pydantic import ValidationError

from app import access
from app.access import ApiKeys
from app.errors import Unauthorized
from app.settings import ApiSettings

KEYS = ["alpha-key-0123456789", "beta-key-0123456789"]


def test_a_key_is_accepted_and_its_caller_named_without_revealing_it() -> None:
    keys = ApiKeys(KEYS)
    first, second = keys.principal(KEYS[0]), keys.principal(KEYS[1])
    assert first != second and first == keys.principal(KEYS[0])
    assert KEYS[0] not in first and first.startswith("key-")


@pytest.mark.parametrize(
    "presented", [None, "", "alpha-key-012345678", "alpha-key-01234567890", "ALPHA-KEY-0123456789"]
)
def test_missing_or_wrong_keys_are_refused(presented: str | None) -> None:
    with pytest.raises(Unauthorized) as error:
        ApiKeys(KEYS).principal(presented)
    assert error.value.status_code == 401 and error.value.headers == {"WWW-Authenticate": "Bearer"}


def test_every_configured_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return compare(a, b)

    monkeypatch.setattr(access.hmac, "compare_digest", counting)
    ApiKeys(KEYS).principal(KEYS[0])  # matches the first key, and still compares the second
    assert calls == [(32, 32), (32, 32)]  # SHA-256 digests: equal lengths whatever was sent


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("k1,k2", ["k1", "k2"]), (" k1 , k2 ", ["k1", "k2"]), ('["k1", "k2"]', ["k1", "k2"]), ("", [])],
)
def test_api_keys_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("DENOISE_API_KEYS", raw)
    assert [k.get_secret_value() for k in ApiSettings().api_keys] == expected
    assert "k1" not in repr(ApiSettings())


def test_bad_access_settings_fail_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in [
        ("DENOISE_API_KEYS", '["has space"]'),
        ("DENOISE_OPEN_PATHS", "healthz"),
        ("DENOISE_RATE_LIMIT_PER_S", "-1"),
        ("DENOISE_MAX_BODY_BYTES", "10"),
        ("DENOISE_MAX_QUEUED_JOBS", "0"),
    ]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError):
            ApiSettings()
        monkeypatch.delenv(name)
    assert ApiSettings().open_paths == ["/healthz", "/readyz", "/metrics"]
