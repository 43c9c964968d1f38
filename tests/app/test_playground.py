"""The playground's files as the API serves them (no Redis needed: nothing here starts the app's
lifespan). Its behaviour in a browser is tests/browser/test_playground.py's."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from app.playground import ASSETS_PATH, CONTENT_SECURITY_POLICY, PLAYGROUND_DIR
from app.settings import ApiSettings

ROOT = Path(__file__).resolve().parents[2]


def test_the_page_is_served_at_the_root_with_its_policy_and_the_default_model() -> None:
    client = TestClient(create_app(ApiSettings(default_model="mnist-gauss", api_keys=["k" * 32])))
    page = client.get("/")  # open, like /docs: the page itself asks for the key
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert '<meta name="denoise-default-model" content="mnist-gauss">' in page.text
    for asset in ("playground.js", "api.js", "column.js", "fields.js", "playground.css"):
        served = client.get(f"{ASSETS_PATH}/{asset}")
        assert served.status_code == 200, asset
        assert served.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_the_page_has_no_inline_code_and_loads_nothing_from_elsewhere() -> None:
    # the policy allows neither inline scripts nor inline styles
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    html = (PLAYGROUND_DIR / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == [] and " style=" not in html
    for path in PLAYGROUND_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"https?://", text), path.name  # relative URLs only: no CDN
        assert 'setAttribute("style"' not in text and "innerHTML" not in text, path.name
    imported = r'from "\./([\w.]+)"'
    imports = {name for js in PLAYGROUND_DIR.glob("*.js") for name in re.findall(imported, js.read_text())}
    assert imports and all((PLAYGROUND_DIR / name).is_file() for name in imports)


def test_every_file_of_the_page_is_package_data() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["app"]
    for path in PLAYGROUND_DIR.iterdir():
        relative = path.relative_to(ROOT / "app").as_posix()
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative
