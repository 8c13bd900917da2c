"""The Prometheus alerting rules in deploy/prometheus: promtool checks them and runs their unit tests."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RULES = ROOT / "deploy" / "prometheus" / "asic-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "asic-alerts.test.yml"
ALERTS = {
    "AsicRigDown",
    "AsicRigHot",
    "AsicHashrateBelowNominal",
    "AsicCurtailmentNotComplied",
    "AsicSitePowerOverCap",
}

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (tools/install_prometheus.sh, or apt-get install prometheus)",
)


def _promtool(*args: str) -> None:
    proc = subprocess.run(
        [shutil.which("promtool"), *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"


@needs_promtool
def test_rules_check():
    _promtool("check", "rules", str(RULES.relative_to(ROOT)))


@needs_promtool
def test_rules_unit_tests():
    _promtool("test", "rules", str(RULE_TESTS.relative_to(ROOT)))


def _field(body: str, key: str) -> str | None:
    match = re.search(rf"^\s*{key}:\s*(.+)$", body, re.M)
    return match[1].strip() if match else None


def _rules() -> list[dict]:
    """Each alerting rule as a dict: parsed with PyYAML where it is installed, else read from the text."""
    text = RULES.read_text()
    try:
        import yaml
    except ImportError:
        rules = []
        for chunk in re.split(r"^\s*- alert:", text, flags=re.M)[1:]:
            name, _, body = chunk.partition("\n")
            rules.append(
                {
                    "alert": name.strip(),
                    "for": _field(body, "for"),
                    "labels": {"severity": _field(body, "severity")},
                    "annotations": {"summary": _field(body, "summary")},
                }
            )
        return rules
    groups = yaml.safe_load(text)["groups"]
    assert [g["name"] for g in groups] == ["asic-farm"]
    return [rule for rule in groups[0]["rules"] if "alert" in rule]


def test_rules_name_the_alerts():
    rules = _rules()
    assert sorted(rule["alert"] for rule in rules) == sorted(ALERTS)
    for rule in rules:
        assert rule.get("for"), f"{rule['alert']} has no for:"
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, f"{rule['alert']} has no severity"
        assert rule.get("annotations", {}).get("summary"), f"{rule['alert']} has no summary"
