"""Static checks of the deployment files: no Docker engine, no cluster, no network.

They catch the drift that otherwise shows only at deploy time: a YAML typo, a DENOISE_* variable
that no settings class reads (pydantic-settings ignores unknown ones silently), a dashboard or
alert that queries a metric the code does not export, a COPY of a file that is not there, and a
KEDA trigger watching a stream the workers never write.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from app.metrics import ApiMetrics
from app.settings import ApiSettings
from protocol.keys import CONSUMER_GROUP, jobs_stream_key
from workers.metrics import WorkerMetrics
from workers.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))

YAML_FILES = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml"), COMPOSE_FILE])
METRIC_FILES = sorted(
    [DEPLOY / "prometheus" / "alerts.yml", *(DEPLOY / "grafana" / "dashboards").glob("*.json")]
)

ENV_PREFIX = "DENOISE_"
# compose's ${NAME:-default} / ${NAME-default} / ${NAME}: a check sees the default (or nothing).
COMPOSE_INTERPOLATION = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}")
METRIC_NAME = re.compile(r"\bdenoise_[a-z0-9_]+")
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _k8s_objects() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted([*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")]):
        for doc in _documents(path):
            if isinstance(doc, dict) and "kind" in doc:
                yield path, doc


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def _settings_for(name: str) -> tuple[type[BaseSettings], ...]:
    """Which settings classes read the environment of a compose service, container or image."""
    if name.startswith("api"):
        return (ApiSettings,)
    if name.startswith("worker"):
        return (WorkerSettings,)
    return (ApiSettings, WorkerSettings)


def _check_environment(
    where: str, env: dict[str, str], readers: tuple[type[BaseSettings], ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every DENOISE_* name is a field of a reader, and the readers accept the values."""
    ours = {key: value for key, value in env.items() if key.startswith(ENV_PREFIX)}
    fields = {name for cls in readers for name in cls.model_fields}
    unknown = sorted(key for key in ours if key.removeprefix(ENV_PREFIX).lower() not in fields)
    assert not unknown, (
        f"{where}: {unknown} are read by none of {[cls.__name__ for cls in readers]} "
        f"(known: {sorted(f'{ENV_PREFIX}{name.upper()}' for name in fields)})"
    )
    if not ours:
        return
    # The values must also pass the settings' own validation (types, bounds, closed choices).
    wanted = {key.removeprefix(ENV_PREFIX).lower() for key in ours}
    with monkeypatch.context() as patched:
        for key in list(os.environ):
            if key.startswith(ENV_PREFIX):
                patched.delenv(key)
        for key, value in ours.items():
            patched.setenv(key, value)
        for cls in readers:
            if not wanted & set(cls.model_fields):
                continue  # a shared ConfigMap: this class reads none of these keys
            try:
                cls()
            except ValidationError as error:
                pytest.fail(f"{where}: {cls.__name__} rejects these values: {error}")


# --------------------------------------------------------------------------- YAML and JSON
@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_yaml_parses(path: Path) -> None:
    assert _documents(path), f"{_rel(path)} holds no YAML document"


@pytest.mark.parametrize("path", sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")), ids=_rel)
def test_dashboard_json_parses(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["panels"], f"{_rel(path)} has no panels"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"{_rel(path)}: panel ids repeat"


# --------------------------------------------------------------------------- settings
def test_compose_environment_is_read_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    services = _compose()["services"]
    checked = 0
    for name, service in services.items():
        env = service.get("environment") or {}
        if isinstance(env, list):  # the `- KEY=value` form
            env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
        env = {
            key: COMPOSE_INTERPOLATION.sub(lambda m: m.group(1) or "", str(value))
            for key, value in env.items()
        }
        _check_environment(f"docker-compose.yml service {name}", env, _settings_for(name), monkeypatch)
        checked += any(key.startswith(ENV_PREFIX) for key in env)
    assert checked >= 3, "expected DENOISE_* settings on the api and worker services"


def test_k8s_configmaps_and_env_are_read_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = 0
    for path, obj in _k8s_objects():
        where = f"{_rel(path)} {obj['kind']}/{obj.get('metadata', {}).get('name')}"
        if obj["kind"] == "ConfigMap":
            data = {key: str(value) for key, value in (obj.get("data") or {}).items()}
            _check_environment(where, data, (ApiSettings, WorkerSettings), monkeypatch)
            checked += 1
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            # Values from secrets or fields (valueFrom) are unknown here: check the name only.
            env = {item["name"]: str(item.get("value", "x")) for item in container.get("env", [])}
            _check_environment(
                f"{where} container {container['name']}", env, _settings_for(container["name"]), monkeypatch
            )
    assert checked, "no ConfigMap found under deploy/k8s"


# --------------------------------------------------------------------------- metrics
def _exported_metric_names() -> set[str]:
    names = set()
    for metrics in (ApiMetrics(), WorkerMetrics()):
        for family in metrics.registry.collect():
            # prometheus_client names a counter's family without `_total`; its samples carry it.
            names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


def test_dashboards_and_alerts_use_exported_metrics() -> None:
    exported = _exported_metric_names()
    assert exported, "the metrics classes exported nothing"
    for path in METRIC_FILES:
        used = {HISTOGRAM_SUFFIX.sub("", name) for name in METRIC_NAME.findall(path.read_text())}
        assert used, f"{_rel(path)} queries no denoise_* metric"
        unknown = sorted(used - exported)
        assert not unknown, f"{_rel(path)} uses metrics that app/ and workers/ do not export: {unknown}"


# --------------------------------------------------------------------------- Dockerfiles
def _instructions(path: Path) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined; heredoc bodies skipped."""
    lines = iter(path.read_text().splitlines())
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        while stripped.endswith("\\"):
            stripped = stripped[:-1] + " " + next(lines, "").strip()
        keyword, _, rest = stripped.partition(" ")
        heredoc = re.search(r"<<-?'?\"?(\w+)", rest)
        if heredoc:  # skip the body up to its terminator
            for body_line in lines:
                if body_line.strip() == heredoc.group(1):
                    break
        yield keyword.upper(), rest.strip()


@pytest.mark.parametrize("path", DOCKERFILES, ids=_rel)
def test_dockerfile_env_is_read_by_settings(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env: dict[str, str] = {}
    for keyword, arguments in _instructions(path):
        if keyword == "ENV":  # the KEY=value form (the legacy `ENV KEY value` is not used)
            env.update(item.partition("=")[::2] for item in shlex.split(arguments) if "=" in item)
    _check_environment(_rel(path), env, _settings_for(path.name), monkeypatch)


def _copy_sources_and_destination(arguments: str) -> tuple[list[str], str] | None:
    """COPY's sources and destination, or None for COPY --from (a build stage, not the context)."""
    parts = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
    flags = [part for part in parts if part.startswith("--")]
    if any(flag.startswith("--from=") for flag in flags):
        return None
    paths = [part for part in parts if not part.startswith("--")]
    return paths[:-1], paths[-1]


def _dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def _ignored(relative: str, patterns: list[str]) -> bool:
    """A close approximation of .dockerignore matching (no `!` exceptions are used there)."""
    parts = Path(relative).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(Path(prefix).name, bare)
            ):
                return True
    return False


@pytest.mark.parametrize("path", DOCKERFILES, ids=_rel)
def test_dockerfile_copy_sources_exist_in_the_build_context(path: Path) -> None:
    patterns = _dockerignore_patterns()
    copies = [
        _copy_sources_and_destination(args)
        for keyword, args in _instructions(path)
        if keyword in ("COPY", "ADD")
    ]
    context_copies = [copy for copy in copies if copy is not None]
    assert context_copies, f"{_rel(path)} copies nothing from the build context"
    for sources, _ in context_copies:
        for source in sources:
            matches = list(ROOT.glob(source)) if any(ch in source for ch in "*?[") else [ROOT / source]
            where = f"{_rel(path)}: COPY source {source!r}"
            assert matches and all(match.exists() for match in matches), f"{where} is missing"
            if source not in (".", "./"):
                assert not _ignored(source, patterns), f"{where} is excluded by .dockerignore"


def test_dockerignore_keeps_what_pip_install_needs() -> None:
    """`COPY . .` then `pip install .`: the packages and pyproject.toml must reach the image."""
    patterns = _dockerignore_patterns()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [pattern.rstrip("*") for pattern in includes]
    needed = ["pyproject.toml", *(name for name in packages if (ROOT / name).is_dir()), "workers/models"]
    for relative in needed:
        assert not _ignored(relative, patterns), f".dockerignore excludes {relative}, which the images need"
    for relative in ("tests", ".venv", "runs", ".git"):
        assert _ignored(relative, patterns), f".dockerignore should exclude {relative}"


IMAGE_PATH = re.compile(r"/opt/denoise/[\w.-]+")


def _copied_into_image(path: Path) -> set[str]:
    """The files a Dockerfile copies from the build context, by their path in the image."""
    copied: set[str] = set()
    for keyword, arguments in _instructions(path):
        copy = _copy_sources_and_destination(arguments) if keyword in ("COPY", "ADD") else None
        if copy is None:
            continue
        sources, destination = copy
        if destination.endswith("/") or len(sources) > 1:
            copied.update(f"{destination.rstrip('/')}/{Path(source).name}" for source in sources)
        else:
            copied.add(destination)
    return copied


@pytest.mark.parametrize("path", DOCKERFILES, ids=_rel)
def test_dockerfile_runs_only_what_it_copies(path: Path) -> None:
    """HEALTHCHECK and RUN lines use /opt/denoise/ scripts that this Dockerfile puts there."""
    referenced = {
        match
        for keyword, arguments in _instructions(path)
        if keyword != "COPY"
        for match in IMAGE_PATH.findall(arguments)
    }
    missing = sorted(referenced - _copied_into_image(path))
    assert not missing, f"{_rel(path)} uses {missing} but does not copy them into the image"


def test_compose_and_k8s_use_paths_the_images_have() -> None:
    """The healthchecks and exec probes in compose and k8s run scripts the images contain."""
    in_images = set().union(*(_copied_into_image(path) for path in DOCKERFILES))
    text = COMPOSE_FILE.read_text() + "".join(path.read_text() for path in sorted(K8S.rglob("*.yaml")))
    referenced = set(IMAGE_PATH.findall(text))
    assert referenced, "no /opt/denoise/ path found in compose or k8s files"
    assert referenced <= in_images, f"not copied into any image: {sorted(referenced - in_images)}"


# --------------------------------------------------------------------------- wiring
def test_compose_bind_mounts_exist() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"compose service {name} mounts missing {source}"


def test_keda_triggers_watch_the_workers_streams() -> None:
    """The ScaledObject's streams and group are those of the configured worker models: each
    model's stream is watched, and no other."""
    config = next(
        obj for path, obj in _k8s_objects() if obj["kind"] == "ConfigMap" and path.parent.name == "base"
    )
    models = config["data"]["DENOISE_MODELS"].split(",")
    triggers = [
        trigger
        for _, obj in _k8s_objects()
        if obj["kind"] == "ScaledObject"
        for trigger in obj["spec"]["triggers"]
    ]
    assert triggers, "no KEDA ScaledObject under deploy/k8s"
    for trigger in triggers:
        assert trigger["type"] == "redis-streams"
        assert trigger["metadata"]["consumerGroup"] == CONSUMER_GROUP
    assert {t["metadata"]["stream"] for t in triggers} == {jobs_stream_key(model) for model in models}


def test_secret_example_is_not_deployed() -> None:
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    assert (K8S / "base" / "secret.example.yaml").exists()
    assert "secret.example.yaml" not in kustomization["resources"]
    for resource in kustomization["resources"]:
        assert (K8S / "base" / resource).exists(), f"kustomization lists missing {resource}"
