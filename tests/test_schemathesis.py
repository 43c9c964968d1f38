"""Property-based tests of the live API against its own OpenAPI schema (schemathesis).

Every operation gets up to 50 generated requests per phase (examples, coverage, fuzzing) from a
fixed seed, valid and invalid alike, and every response goes through all of schemathesis'
checks: no 5xx (but the OpenAI route's designed 504), status codes, content types, headers and
bodies as the schema declares them, invalid data refused, valid data accepted, and (with API
keys) a request without a valid key refused. Run twice: against an open API and against one that
asks for API keys.

The API under test serves the session's Redis and worker with small limits (2 images, 2 s job
deadlines, 1 s sync waits) so that the jobs the fuzzer creates stay small.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.schemas import BaseSchema

from app.main import create_app
from app.settings import ApiSettings
from tests.conftest import ApiProcess

pytestmark = pytest.mark.reliability

API_KEY = "schemathesis-key-0123456789abcdef"
SEED = 20_240_601
MAX_EXAMPLES = 50
# every job the fuzzer creates is over within 2 s (its deadline), and a sync POST waits 1 s
LIMITS = {"max_images": 2, "sync_timeout_s": 1, "job_timeout_s": 2, "max_job_timeout_s": 2}

# A request can be valid against the JSON Schema and still be refused with a 422 that names the
# field: the rules that span fields (a knob the chosen sampler ignores, a class label beyond the
# model's classes, this deployment's lower step and image limits) are beyond JSON Schema. So for
# POST /v1/generations, a 422 is an accepted answer to schema-valid data; every other check
# (and every other operation) keeps schemathesis' defaults.
# (An `[[operations]]` entry applies where ANY of its include-* filters matches; `include-name`, the
# operation's "METHOD path", picks exactly one.)
CONFIG = f"""
seed = {SEED}

[generation]
max-examples = {MAX_EXAMPLES}

[[operations]]
include-name = "POST /v1/generations"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "409", "422", "429"]

[[operations]]
include-name = "POST /v1/images/generations"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "429", "504"]
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "504"]
"""
# The OpenAI-compatible route answers schema-valid data with OpenAI's 400 where the native one
# answers 422 (a prompt that names no class of the model, a size it cannot draw), and a 404 for a
# model that is not served. OpenAI's API has no asynchronous answer, so a job that outlives the
# 1 s sync wait is a 504 there: the one 5xx by design, accepted for that operation only.
DESIGNED_5XX = {("POST", "/v1/images/generations"): {504}}


def acceptable(case: schemathesis.Case, status: int) -> bool:
    return status < 500 or status in DESIGNED_5XX.get((case.method.upper(), case.path), set())


def load_schema(settings: ApiSettings) -> BaseSchema:
    """The OpenAPI schema of an API with these settings (the test checks the live one is the same;
    schemathesis' lazy, fixture-based loader does not run under pytest 9.2)."""
    return schemathesis.openapi.from_dict(
        create_app(settings).openapi(), config=SchemathesisConfig.from_str(CONFIG)
    )


OPEN = ApiSettings(**LIMITS)  # type: ignore[arg-type]
KEYED = ApiSettings(**LIMITS, api_keys=[API_KEY])  # type: ignore[arg-type]
open_schema = load_schema(OPEN)
keyed_schema = load_schema(KEYED)


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    statuses: Counter[int] = field(default_factory=Counter)
    operations: set[str] = field(default_factory=set)

    def record(self, case: schemathesis.Case, status: int) -> None:
        self.statuses[status] += 1
        self.operations.add(case.operation.label)


def _serve(start_api: Callable[..., ApiProcess], name: str, settings: ApiSettings) -> Iterator[Target]:
    env = {f"DENOISE_{k.upper()}": str(v) for k, v in LIMITS.items()}
    headers = {}
    if settings.api_keys:
        env["DENOISE_API_KEYS"] = API_KEY
        headers = {"Authorization": f"Bearer {API_KEY}"}
    api = start_api(**env)
    assert httpx.get(f"{api.url}/openapi.json").json() == create_app(settings).openapi()
    target = Target(name, api.url, headers)
    yield target
    # the jobs it made end by their 2 s deadlines; leave the shared worker idle for the next tests
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = httpx.get(f"{api.url}/readyz").json().get("workers", [])
        if workers and all(w["in_flight"] == 0 for w in workers) and not _queued(api.url, headers):
            break
        time.sleep(0.2)
    server_errors = sum(n for code, n in target.statuses.items() if code >= 500 and code != 504)
    print(
        f"\nschemathesis ({name}): {target.statuses.total()} requests over {len(target.operations)} "
        f"operations, statuses {dict(sorted(target.statuses.items()))}; {server_errors} server errors "
        "(504: an OpenAI-route job outlived the sync wait), "
        "0 check failures (schema violations included)"
    )


def _queued(url: str, headers: dict[str, str]) -> float:
    exposition = httpx.get(f"{url}/metrics", headers=headers).text
    return sum(
        float(line.split()[-1])
        for line in exposition.splitlines()
        if line.startswith("denoise_api_queued_jobs{")
    )


@pytest.fixture(scope="module")
def open_api(start_api: Callable[..., ApiProcess], worker_process: dict[str, str]) -> Iterator[Target]:
    yield from _serve(start_api, "open", OPEN)


@pytest.fixture(scope="module")
def keyed_api(start_api: Callable[..., ApiProcess], worker_process: dict[str, str]) -> Iterator[Target]:
    yield from _serve(start_api, "API keys", KEYED)


@open_schema.parametrize()
def test_the_open_api_honours_its_schema(case: schemathesis.Case, open_api: Target) -> None:
    response = case.call_and_validate(base_url=open_api.url)  # raises on any failed check
    open_api.record(case, response.status_code)
    assert acceptable(case, response.status_code), response.text


@keyed_schema.parametrize()
def test_the_api_with_keys_honours_its_schema(case: schemathesis.Case, keyed_api: Target) -> None:
    response = case.call_and_validate(base_url=keyed_api.url, headers=keyed_api.headers)
    keyed_api.record(case, response.status_code)
    assert acceptable(case, response.status_code), response.text
