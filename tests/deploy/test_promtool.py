"""promtool checks the rules and the config, and runs the alert rules' unit tests.

Prometheus' own parser and rule engine, not a regular expression: a PromQL syntax error, a bad
template in an annotation or an alert that no longer fires (or fires when it should stay quiet)
fails here. Debian's prometheus package provides promtool (`make system-tools`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import yaml

from tests.deploy import system_tools
from tests.deploy.monitoring import ALERTS, ALERTS_TEST, alert_rules, local_config


def test_promtool_checks_the_alert_rules() -> None:
    output = system_tools.run("promtool", "check", "rules", "--lint=all", "--lint-fatal", ALERTS)
    assert f"SUCCESS: {len(alert_rules())} rules found" in output, output


def test_alert_unit_tests_pass() -> None:
    system_tools.run("promtool", "test", "rules", ALERTS_TEST)


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    """A new alert needs its own cases in alerts_test.yml, not only the old alerts' ones."""
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    assert tests["rule_files"] == [ALERTS.name]
    outcomes: dict[str, set[str]] = defaultdict(set)
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            outcomes[case["alertname"]].add("fires" if case.get("exp_alerts") else "quiet")
    missing = {
        rule["alert"]: sorted({"fires", "quiet"} - outcomes[rule["alert"]])
        for rule in alert_rules()
        if outcomes[rule["alert"]] != {"fires", "quiet"}
    }
    assert not missing, f"alerts without these cases in {ALERTS_TEST.name}: {missing}"
    assert set(outcomes) <= {rule["alert"] for rule in alert_rules()}, "tests of alerts that do not exist"


def test_promtool_checks_the_prometheus_config(tmp_path: Path) -> None:
    """prometheus.yml names its rule files by their path in the container: check a copy that names
    the repository files compose mounts there (so a rule file compose does not mount fails too)."""
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(local_config()))
    output = system_tools.run("promtool", "check", "config", "--lint=all", "--lint-fatal", config)
    assert f"SUCCESS: {len(alert_rules())} rules found" in output, output
