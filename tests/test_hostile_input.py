"""Hostile input against the live API: no body, however malformed, is a 5xx or enqueues anything.

A corpus of raw bodies (non-finite numbers, huge exponents and integers, duplicate keys, deep
nesting, invalid UTF-8, a BOM, lone surrogates, wrong content types, empty bodies, values of the
wrong JSON type, booleans and numeric strings for numbers) is sent with ``content=`` to every route
that takes a body, as ``/openapi.json`` lists them, so a new route is covered by itself. Each answer
is a 4xx whose body is valid JSON (OpenAI's shape under ``/v1/images``) and names the field where
there is one; Redis holds the same jobs before and after.

Routes that take ``multipart/form-data`` (POST /v1/images/edits) get the JSON corpus too (a 4xx,
naming no field: JSON is not their format), and a multipart corpus of their own: missing, empty,
repeated and non-image files, the image as a text field, numbers that are not (``1e309``, ``NaN``,
``true``, ``abc``), repeated fields, a part without a name, a cut-short body, a wrong boundary, a
thousand parts and a field value past the part limit.
"""

from __future__ import annotations

import io
import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from PIL import Image

from protocol.keys import KEY_PREFIX

JSON = "application/json"
FORM = "multipart/form-data"
TEN_MB = b'{"prompt": "' + b"x" * (10 * 1024 * 1024) + b'"}'

# (name, the fields to add to the route's minimal body as raw JSON text, the field it names)
FIELD_CASES: list[tuple[str, str, str]] = [
    ("nan", '"guidance_scale": NaN', "guidance_scale"),
    ("infinity", '"guidance_scale": Infinity', "guidance_scale"),
    ("minus infinity", '"eta": -Infinity', "eta"),
    ("huge exponent for an int", '"steps": 1e309', "steps"),
    ("huge exponent for a float", '"guidance_scale": 1e999999', "guidance_scale"),
    ("integer of 5000 digits", '"seed": 1' + "0" * 5000, "seed"),
    ("seed past 2**63", '"seed": 18446744073709551616', "seed"),
    ("boolean for an int", '"class_label": true', "class_label"),
    ("boolean for a float", '"guidance_scale": false', "guidance_scale"),
    ("numeric string for an int", '"steps": "50"', "steps"),
    ("numeric string for a float", '"guidance_scale": "2.5"', "guidance_scale"),
    ("whole float for an int", '"steps": 50.0', "steps"),
    ("number for a boolean", '"deterministic": 1', "deterministic"),
    ("string for a boolean", '"clip_sample": "true"', "clip_sample"),
    ("list for an int", '"steps": [50]', "steps"),
    ("object for an int", '"steps": {"value": 50}', "steps"),
    ("null for an int with a default", '"num_images": null', "num_images"),
    ("number for a string", '"sampler": 5', "sampler"),
    ("string for a list", '"webhook_events": "completed"', "webhook_events"),
    ("duplicate key", '"steps": 2, "steps": 1000', "steps"),
    ("deep nesting", '"steps": ' + "[" * 40 + "]" * 40, "steps"),
    ("lone surrogate", '"negative_prompt": "\\ud800"', "negative_prompt"),
    ("unknown field", '"stepz": 2', "stepz"),
]

# (name, raw body, content type); nothing in them names a field
BODY_CASES: list[tuple[str, bytes, str | None]] = [
    ("empty body", b"", JSON),
    ("empty body without a content type", b"", None),
    ("whitespace", b"  \n ", JSON),
    ("null", b"null", JSON),
    ("a list", b"[]", JSON),
    ("a string", b'"steps"', JSON),
    ("a number", b"50", JSON),
    ("true", b"true", JSON),
    ("NaN alone", b"NaN", JSON),
    ("truncated", b'{"steps": ', JSON),
    ("trailing comma", b'{"steps": 2,}', JSON),
    ("single quotes", b"{'steps': 2}", JSON),
    ("a raw control character", b'{"prompt": "a\x01b"}', JSON),
    ("invalid UTF-8", b'{"prompt": "\xff\xfe"}', JSON),
    ("a BOM", b'\xef\xbb\xbf{"steps": 2}', JSON),
    ("UTF-16", '{"steps": 2}'.encode("utf-16"), JSON),
    ("nesting past the parser's stack", b"[" * 100_000 + b"]" * 100_000, JSON),
    ("plain text", b"steps=2", "text/plain"),
    ("plain text, not UTF-8", b"\xff\xfe\xfd", "text/plain"),
    ("a form", b"steps=2&seed=1", "application/x-www-form-urlencoded"),
    (
        "multipart",
        b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n",
        "multipart/form-data; boundary=x",
    ),
    ("xml", b"<steps>2</steps>", "application/xml"),
    ("a content type with a broken parameter", b'{"steps": true}', "application/json; charset"),
]


def body_routes(client: httpx.Client) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, path, a minimal body the route's schema accepts) of every operation with a body;
    None for a route that takes a multipart form instead of JSON."""
    schema = client.get("/openapi.json").json()
    routes: list[tuple[str, str, dict[str, Any] | None]] = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if FORM in content:
                routes.append((method.upper(), path, None))
            if JSON not in content:
                continue
            model = content[JSON]["schema"]
            if "$ref" in model:
                model = schema["components"]["schemas"][model["$ref"].split("/")[-1]]
            routes.append((method.upper(), path, {name: "" for name in model.get("required", [])}))
    return routes


def queue_state(redis_client: redis.Redis) -> dict[str, int]:
    """Every stream's length and the number of job records: what an enqueue would change."""
    state = {"jobs": sum(1 for _ in redis_client.scan_iter(f"{KEY_PREFIX}:job:*", count=1000))}
    for key in redis_client.scan_iter(f"{KEY_PREFIX}:*", count=1000, _type="stream"):
        state[key] = int(redis_client.xlen(key))
    return state


def strict_json(text: str) -> Any:
    """The answer's body as JSON, refusing what only Python's encoder would write (NaN, Infinity)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"the answer holds {constant}, which is not JSON")

    return json.loads(text, parse_constant=refuse)


def names(answer: Any, field: str, openai_shape: bool) -> bool:
    if openai_shape:
        error = answer["error"]
        return error["param"] == field or f"'{field}'" in error["message"]
    return any(field in [str(part) for part in item.get("loc", [])] for item in answer["detail"])


def check_refused(response: httpx.Response, path: str, field: str | None, what: str) -> None:
    assert 400 <= response.status_code < 500, (
        f"{what} on {path}: {response.status_code} {response.text[:300]}"
    )
    answer = strict_json(response.text)
    openai_shape = path.startswith("/v1/images")
    if openai_shape:
        assert set(answer) == {"error"} and answer["error"]["message"], f"{what} on {path}: {answer}"
    else:
        assert "detail" in answer, f"{what} on {path}: {answer}"
    if field is not None:
        assert names(answer, field, openai_shape), f"{what} on {path} does not name {field}: {answer}"


def test_every_hostile_body_is_a_4xx_in_the_route_shape_and_enqueues_nothing(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    routes = body_routes(client)
    assert {path for _, path, _ in routes} >= {
        "/v1/generations",
        "/v1/images/generations",
        "/v1/images/edits",
    }
    before = queue_state(redis_client)
    sent = 0
    for method, path, minimal in routes:
        opening = json.dumps({"prompt": ""} if minimal is None else minimal)[:-1]  # '{"prompt": ""'
        separator = ", " if opening != "{" else ""
        for what, fields, field in FIELD_CASES:
            raw = (opening + separator + fields + "}").encode()
            response = client.request(method, path, content=raw, headers={"content-type": JSON})
            # a form route refuses JSON whatever it holds (a duplicate key may still be named)
            check_refused(response, path, field if minimal is not None else None, what)
            sent += 1
        for what, raw_body, content_type in BODY_CASES:
            headers = {"content-type": content_type} if content_type else {}
            response = client.request(method, path, content=raw_body, headers=headers)
            check_refused(response, path, None, what)
            sent += 1
    assert queue_state(redis_client) == before
    print(f"\n{sent} hostile bodies on {len(routes)} routes: all 4xx, valid JSON, nothing enqueued")


# ------------------------------------------------------------- multipart form routes
BOUNDARY = "hostile-boundary"
Part = tuple[str | None, bytes, str | None]  # (name, value, filename: a file part when given)


def multipart(parts: list[Part], boundary: str = BOUNDARY, close: bool = True) -> bytes:
    """A multipart/form-data body written by hand, so that it can be malformed on purpose."""
    body = b""
    for name, value, filename in parts:
        disposition = "form-data" + (f'; name="{name}"' if name is not None else "")
        if filename is not None:
            disposition += f'; filename="{filename}"'
        headers = f"Content-Disposition: {disposition}\r\n"
        if filename is not None:
            headers += "Content-Type: image/png\r\n"
        body += f"--{boundary}\r\n{headers}\r\n".encode() + value + b"\r\n"
    return body + (f"--{boundary}--\r\n".encode() if close else b"")


def digit_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def form_cases() -> list[tuple[str, bytes, str, str | None]]:
    """(what, body, content type, the field named) of hostile multipart bodies; each is otherwise a
    request the route would run (a 28×28 grey PNG, prompt "7")."""
    image: Part = ("image", digit_png(), "digit.png")
    prompt: Part = ("prompt", b"7", None)
    content_type = f"{FORM}; boundary={BOUNDARY}"
    cases: list[tuple[str, list[Part] | bytes, str | None]] = [
        ("no image part", [prompt], "image"),
        ("an empty file", [("image", b"", "empty.png"), prompt], "image"),
        ("a file that is not an image", [("image", b"GIF89a not an image", "x.gif"), prompt], "image"),
        ("a PNG cut short", [("image", digit_png()[:40], "cut.png"), prompt], "image"),
        ("the image as a text field", [("image", digit_png(), None), prompt], "image"),
        ("two images", [image, ("image[]", digit_png(), "b.png"), prompt], "image"),
        ("a mask", [image, ("mask", digit_png(), "mask.png"), prompt], "mask"),
        ("no prompt", [image], "prompt"),
        ("the prompt as a file", [image, ("prompt", b"7", "prompt.txt")], "prompt"),
        ("n=1e309", [image, prompt, ("n", b"1e309", None)], "n"),
        ("n=NaN", [image, prompt, ("n", b"NaN", None)], "n"),
        ("n=true", [image, prompt, ("n", b"true", None)], "n"),
        ("n=abc", [image, prompt, ("n", b"abc", None)], "n"),
        ("n=2.0", [image, prompt, ("n", b"2.0", None)], "n"),
        ("n empty", [image, prompt, ("n", b"", None)], "n"),
        ("n past its bound", [image, prompt, ("n", b"99", None)], "n"),
        ("guidance_scale=Infinity", [image, prompt, ("guidance_scale", b"Infinity", None)], "guidance_scale"),
        ("steps of 5000 digits", [image, prompt, ("steps", b"9" * 5000, None)], "steps"),
        ("seed past 2**63", [image, prompt, ("seed", b"18446744073709551616", None)], "seed"),
        ("strength=0", [image, prompt, ("strength", b"0", None)], "strength"),
        ("strength=AUTO", [image, prompt, ("strength", b"AUTO", None)], "strength"),
        ("clip_sample=1", [image, prompt, ("clip_sample", b"1", None)], "clip_sample"),
        ("a duplicate field", [image, prompt, ("steps", b"2", None), ("steps", b"1000", None)], "steps"),
        ("init_image as a field", [image, prompt, ("init_image", b"AAAA", None)], "init_image"),
        ("an unknown field", [image, prompt, ("stepz", b"2", None)], "stepz"),
        ("invalid UTF-8 in a field", [image, ("prompt", b"\xff\xfe", None)], "prompt"),
        ("a giant field value", [image, ("prompt", b"x" * (1024 * 1024), None)], "prompt"),
        ("a part without a name", [image, prompt, (None, b"2", None)], None),
        ("a thousand parts", [image, prompt, *[(f"f{i}", b"1", None) for i in range(1000)]], None),
        ("a cut-short body", multipart([image, prompt], close=False)[:-10], None),
        ("no closing boundary", multipart([image, prompt], close=False), None),
        ("a wrong boundary", multipart([image, prompt], boundary="other"), None),
        ("an empty body", b"", None),
        ("garbage", b"\x00\xff" * 100, None),
    ]
    built = [
        (what, parts if isinstance(parts, bytes) else multipart(parts), content_type, field)
        for what, parts, field in cases
    ]
    valid = multipart([image, prompt])
    return [
        *built,
        ("no boundary parameter", valid, FORM, None),
        ("an empty boundary", valid, f"{FORM}; boundary=", None),
        ("a urlencoded form", b"prompt=7&image=x", "application/x-www-form-urlencoded", None),
    ]


def test_every_hostile_form_is_a_4xx_naming_its_field_and_enqueues_nothing(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    routes = [(method, path) for method, path, minimal in body_routes(client) if minimal is None]
    assert ("POST", "/v1/images/edits") in routes
    before = queue_state(redis_client)
    sent = 0
    for method, path in routes:
        for what, body, content_type, field in form_cases():
            response = client.request(method, path, content=body, headers={"content-type": content_type})
            check_refused(response, path, field, what)
            sent += 1
    assert queue_state(redis_client) == before
    print(f"\n{sent} hostile forms on {len(routes)} routes: all 4xx, valid JSON, nothing enqueued")


def test_validation_errors_echo_non_finite_input_as_strings(client: httpx.Client) -> None:
    raw = b'{"guidance_scale": NaN, "eta": Infinity, "steps": 1e309}'
    response = client.post("/v1/generations", content=raw, headers={"content-type": JSON})
    assert response.status_code == 422
    echoed = {item["loc"][-1]: item["input"] for item in strict_json(response.text)["detail"]}
    assert echoed == {"guidance_scale": "NaN", "eta": "Infinity", "steps": "Infinity"}


def test_a_duplicate_key_is_a_422_naming_it_not_the_last_value(client: httpx.Client) -> None:
    raw = b'{"class_label": 1, "steps": 2, "steps": 1000}'
    response = client.post("/v1/generations", content=raw, headers={"content-type": JSON})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "steps"]
    assert response.json()["detail"][0]["type"] == "duplicate_key"


# --------------------------------------------------------- a refused body is readable
def raw_exchange(api_url: str, head: bytes, body_parts: list[bytes]) -> bytes:
    """Writes the request whole, then reads the answer: what a naive client does."""
    host, port = api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_a_413_is_read_by_a_client_that_writes_its_whole_body_first(api_url: str) -> None:
    timings = {}
    for path in ("/v1/generations", "/v1/images/generations"):
        started = time.perf_counter()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(TEN_MB)}\r\n\r\n"
        ).encode()
        declared = raw_exchange(api_url, head, [TEN_MB])
        timings[f"{path} Content-Length"] = time.perf_counter() - started
        started = time.perf_counter()
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        step = 256 * 1024
        parts = [
            b"%x\r\n%s\r\n" % (len(TEN_MB[i : i + step]), TEN_MB[i : i + step])
            for i in range(0, len(TEN_MB), step)
        ]
        chunked = raw_exchange(api_url, head, [*parts, b"0\r\n\r\n"])
        timings[f"{path} chunked"] = time.perf_counter() - started
        for received in (declared, chunked):
            status_line, _, rest = received.partition(b"\r\n")
            assert status_line == b"HTTP/1.1 413 Request Entity Too Large", received[:200]
            body = json.loads(rest.partition(b"\r\n\r\n")[2])
            assert (
                ("error" in body) if path.startswith("/v1/images") else ("max_body_bytes" in body["detail"])
            )
    # urllib writes the whole body before it reads the status
    request = urllib.request.Request(
        f"{api_url}/v1/generations", data=TEN_MB, headers={"Content-Type": JSON}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413 and "max_body_bytes" in json.loads(refused.value.read())["detail"]
    print("\n10 MB body written whole, 413 read: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
