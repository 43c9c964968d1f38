"""The monitoring files as the deploy tests read them: alert rules, dashboard queries, Prometheus config.

Shared by the static checks (test_alerts_and_dashboard.py), promtool (test_promtool.py) and the
live Prometheus (test_prometheus_server.py), so that each reads the files the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"
PROMETHEUS_CONFIG = PROMETHEUS / "prometheus.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
COMPOSE_FILE = ROOT / "docker-compose.yml"

# Grafana's built-in variables, at the values Grafana gives them for the compose stack: the
# scrape interval there is 15 s, and $__rate_interval is at least four scrape intervals.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
# $name, ${name} and ${name:format}
GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")

# Top-level PromQL set operators (with their on/ignoring/group modifiers) and a trailing
# comparison with a number: the joints along which parts_with_data() cuts an expression.
SET_OPERATOR = re.compile(
    r"\s(?:and|or|unless)\s+(?:(?:on|ignoring)\s*\([^)]*\)\s*)?(?:group_(?:left|right)\s*(?:\([^)]*\))?\s*)?"
)
THRESHOLD = re.compile(r"\s*(?:>=|<=|==|!=|>|<)\s*(?:bool\s+)?[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?\s*$")
CONSTANT = re.compile(r"vector\(\s*[-+]?[\d.]+\s*\)")


# --------------------------------------------------------------------------- alert rules
def alert_rules() -> list[dict[str, Any]]:
    """The alerting rules of alerts.yml (recording rules left out), in file order."""
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


# --------------------------------------------------------------------------- dashboards
def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    """(panel title, PromQL with the Grafana variables filled in) for every target of a dashboard."""
    dashboard = json.loads(path.read_text())
    values = dict(GRAFANA_BUILTINS)
    for variable in dashboard.get("templating", {}).get("list", []):
        current = variable.get("current", {}).get("value")
        if isinstance(current, str) and current:
            values[variable["name"]] = current
    return [
        (panel.get("title", f"panel {panel.get('id')}"), fill_grafana_variables(target["expr"], values))
        for panel in panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def fill_grafana_variables(expr: str, values: dict[str, str]) -> str:
    """``expr`` with each ``$name`` replaced; a variable without a value is an error, not a guess."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no test value for the Grafana variable ${name} in {expr!r}")
        return values[name]

    return GRAFANA_VARIABLE.sub(value, expr)


# --------------------------------------------------------------------------- PromQL
def _depths(expr: str) -> list[int]:
    """The bracket depth ((), [], {}) of each character of ``expr``, -1 inside a string.

    A bracket has the depth of what is around it, its contents one more.
    """
    depth, quote, depths = 0, "", []
    for char in expr:
        if quote or char in "\"'`":
            quote = "" if char == quote else (quote or char)
            depths.append(-1)
            continue
        if char in ")]}":
            depth -= 1
        depths.append(depth)
        if char in "([{":
            depth += 1
    return depths


def _inside(expr: str, opening: int) -> str | None:
    """What the bracket at ``expr[opening]`` holds, when the last character of ``expr`` closes it."""
    depths = _depths(expr)
    level = depths[opening]
    closes_last = expr[opening] == "(" and expr[-1] == ")" and depths[-1] == level
    if not closes_last or any(0 <= depth <= level for depth in depths[opening + 1 : -1]):
        return None
    return expr[opening + 1 : -1]


def _strip_parentheses(expr: str) -> str:
    expr = expr.strip()
    while expr.startswith("(") and (inner := _inside(expr, 0)) is not None:
        expr = inner.strip()
    return expr


def parts_with_data(expr: str) -> list[str]:
    """The sub-queries of ``expr`` that must return series on a healthy, busy service.

    An alert's expression is empty whenever the service is fine (that is what makes it quiet), so
    "it has data" says nothing about it; its parts do: the operands of ``and``/``unless``/``or``
    with a trailing threshold comparison (``> 10``) removed, and the argument of ``absent()``
    (``up{job="api"} == 1``, the healthy state). A ``vector(0)`` fallback has data by
    construction and is left out. An expression with none of these is its own only part.
    """
    depths = _depths(expr)
    cuts = [match for match in SET_OPERATOR.finditer(expr) if depths[match.start()] == 0]
    bounds = [0, *(bound for match in cuts for bound in match.span()), len(expr)]
    parts = []
    for start, end in zip(bounds[::2], bounds[1::2], strict=True):
        operand = _strip_parentheses(expr[start:end])
        threshold = THRESHOLD.search(operand)
        if threshold and all(depth == 0 for depth in _depths(operand)[threshold.start() :]):
            operand = _strip_parentheses(operand[: threshold.start()])
        if operand.startswith("absent(") and (inner := _inside(operand, len("absent"))) is not None:
            operand = _strip_parentheses(inner)
        if not CONSTANT.fullmatch(operand):
            parts.append(operand)
    return parts


# --------------------------------------------------------------------------- Prometheus config
def compose_mounts(service: str = "prometheus") -> dict[str, Path]:
    """Container path -> repository file, for the bind mounts of a compose service."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    mounts = {}
    for volume in compose["services"][service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def local_config(targets: dict[str, str] | None = None, interval: str | None = None) -> dict[str, Any]:
    """prometheus.yml for a Prometheus on this machine rather than in the compose stack.

    ``rule_files`` name the repository files that compose mounts at those container paths (a
    path compose does not mount is an error). ``targets`` (job name -> ``host:port/path``)
    replaces each named job's service discovery with that one static target and drops the other
    jobs; ``interval`` sets the scrape and evaluation intervals.
    """
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    mounts = compose_mounts()
    missing = [path for path in config.get("rule_files", []) if path not in mounts]
    if missing:
        raise KeyError(f"rule_files {missing} are not mounted into the prometheus service in compose")
    config["rule_files"] = [str(mounts[path]) for path in config.get("rule_files", [])]
    if interval is not None:
        config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    if targets is not None:
        jobs = []
        for job in config["scrape_configs"]:
            if job["job_name"] not in targets:
                continue
            address, _, path = targets[job["job_name"]].partition("/")
            job = {key: value for key, value in job.items() if not key.endswith("_sd_configs")}
            job.update(static_configs=[{"targets": [address]}], metrics_path=f"/{path}")
            jobs.append(job)
        config["scrape_configs"] = jobs
    return config
