"""The alert rules and the Grafana dashboard cover what an operator watches.

Coverage is asserted on the PromQL itself, not on alert names or panel titles, which can stay
the same while the expression under them stops meaning what the name says.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.monitoring import DASHBOARDS, PROMETHEUS, ROOT, alert_rules, panels

SEVERITIES = {"warning", "critical"}

# `rate(<series>{...}[<range>])` and friends, with the selector optional.
RANGE = r"\[[^\]]+\]"
FAILED = 'status="failed"'


def _rate_of(series: str, matcher: str = "") -> str:
    selector = rf"\{{[^}}]*{matcher}[^}}]*\}}" if matcher else r"(\{[^}]*\})?"
    return rf"rate\(\s*{series}{selector}{RANGE}\s*\)"


def _quantile(q: str, series: str) -> str:
    """histogram_quantile(q, sum by (le, ...) (rate(series...))): `le` must survive aggregation."""
    return rf"histogram_quantile\(\s*{q}\s*,\s*sum by \((\w+,\s*)*le(,\s*\w+)*\)\s*\(\s*{_rate_of(series)}"


def _scrape_jobs() -> set[str]:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    return {job["job_name"] for job in config["scrape_configs"]}


def _normalised(expr: str) -> str:
    return re.sub(r"\s+", " ", expr).strip()


def _alerts_matching(*patterns: str) -> list[str]:
    """Names of the alerts whose expression matches every pattern."""
    return [
        rule["alert"]
        for rule in alert_rules()
        if all(re.search(pattern, _normalised(rule["expr"])) for pattern in patterns)
    ]


# --------------------------------------------------------------------------- alerts
def test_alert_rules_are_complete() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names repeat"
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{rule['alert']}: no `for` duration"
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_alert_on_a_growing_queue() -> None:
    depth = "denoise_api_queue_depth"
    assert _alerts_matching(
        rf"max by \(model\) \(\s*{depth}\s*\) > \d+",
        rf"(delta|deriv|increase)\(\s*{depth}{RANGE}\s*\)\s*\)\s*> 0",
    )
    # Every API replica reports the same stream: summing over replicas would multiply the depth.
    for rule in alert_rules():
        assert not re.search(rf"sum\b[^()]*\(\s*{depth}", rule["expr"]), rule["alert"]


def test_alerts_on_missing_workers() -> None:
    """Both shapes: nothing scraped at all, and jobs queued while no worker has a loaded model."""
    scraped = _alerts_matching(r'absent\(\s*up\{job="(\w+)"\} == 1\s*\)')
    assert scraped, "no alert on a worker that is not scraped"
    jobs = {
        re.search(r'job="(\w+)"', _normalised(rule["expr"])).group(1)  # type: ignore[union-attr]
        for rule in alert_rules()
        if rule["alert"] in scraped
    }
    assert {"api", "worker"} <= jobs <= _scrape_jobs(), f"absent(up{{job=...}}) for {jobs}"
    # per model: a live worker of one model must not hide jobs queued for another
    assert _alerts_matching(
        r"max by \(model\) \(\s*denoise_api_queue_depth\s*\) > 0",
        r"unless on \(model\) max by \(model\) \(\s*denoise_worker_model_load_seconds > 0\s*\)",
    ), "no scale-to-zero-aware alert, per model, for queued jobs without a worker"


def test_alert_on_the_failure_ratio() -> None:
    finished = "denoise_worker_jobs_finished_total"
    failed = _rate_of(finished, FAILED)
    matches = _alerts_matching(
        rf"sum\(\s*{failed}\s*\) / sum\(\s*rate\(\s*{finished}{RANGE}\s*\)\s*\) > (0?\.\d+)"
    )
    assert matches, "no alert on failed / all finished jobs"


def test_alert_on_p95_generation_latency() -> None:
    assert _alerts_matching(
        _quantile("0.95", "denoise_api_request_duration_seconds_bucket"),
        r'route="/v1/generations"',
        r"\) > \d+",
    )


def test_prometheus_loads_the_alert_rules() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert [Path(path).name for path in config["rule_files"]] == ["alerts.yml"]


# --------------------------------------------------------------------------- dashboard
def _panel_exprs(dashboard: dict[str, Any]) -> list[list[str]]:
    return [
        [_normalised(target["expr"]) for target in panel.get("targets", []) if "expr" in target]
        for panel in panels(dashboard["panels"])
    ]


REQUIRED_PANELS = {
    "queue depth": [r"max by \(model\) \(\s*denoise_api_queue_depth\s*\)"],
    "latency percentiles": [
        _quantile("0.5", "denoise_api_request_duration_seconds_bucket"),
        _quantile("0.95", "denoise_api_request_duration_seconds_bucket"),
    ],
    "images/s": [_rate_of("denoise_worker_images_generated_total")],
    "rows per forward": [
        _rate_of("denoise_worker_batch_rows_sum")
        + r"\s*\) / sum\(\s*"
        + _rate_of("denoise_worker_batch_rows_count")
    ],
    "step time": [_quantile("0.95", "denoise_worker_step_seconds_bucket")],
    "failures": [_rate_of("denoise_worker_jobs_finished_total", FAILED)],
    "noise estimate": [r"\bdenoise_worker_image_noise_estimate_(bucket|sum|count)\b"],
}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
@pytest.mark.parametrize("concept", sorted(REQUIRED_PANELS))
def test_dashboard_has_a_panel_for(path: Path, concept: str) -> None:
    """One panel holds all the queries of a concept (e.g. p50 and p95 side by side)."""
    exprs_by_panel = _panel_exprs(json.loads(path.read_text()))
    patterns = REQUIRED_PANELS[concept]
    assert any(
        all(any(re.search(p, expr) for expr in exprs) for p in patterns) for exprs in exprs_by_panel
    ), f"{path.name}: no panel for {concept} ({patterns})"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_queries_the_provisioned_datasource(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    provisioned = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uids = {source["uid"] for source in provisioned["datasources"] if source["type"] == "prometheus"}
    variables = {v["name"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"}
    allowed = uids | {f"${{{name}}}" for name in variables} | {f"${name}" for name in variables}
    for panel in panels(dashboard["panels"]):
        for item in [panel, *panel.get("targets", [])]:
            if "datasource" in item and panel.get("type") != "row":
                assert item["datasource"]["uid"] in allowed, f"panel {panel['id']}: {item['datasource']}"
