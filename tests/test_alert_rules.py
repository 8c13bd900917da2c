"""The Prometheus alerting rules shipped for the fleet exporter: valid, and firing as their unit tests say."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).parents[1] / "deploy" / "prometheus"
ALERTS = {"AsicRigDown", "AsicRigHot", "AsicHashrateBelowNominal", "AsicCurtailmentNotComplied", "AsicSitePowerOverCap"}

promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (Debian: apt-get install prometheus)"
)


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], cwd=RULES, capture_output=True, text=True, timeout=120)


@promtool
def test_the_rules_check():
    done = _promtool("check", "rules", "asic-alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


@promtool
def test_the_rules_fire_as_their_unit_tests_say():
    done = _promtool("test", "rules", "asic-alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_alert_has_a_wait_a_severity_and_a_summary():
    text = (RULES / "asic-alerts.yml").read_text()
    blocks = re.split(r"\n\s*- alert: ", text)[1:]
    assert {b.split("\n", 1)[0].strip() for b in blocks} == ALERTS
    for block in blocks:
        assert re.search(r"\n\s+for: \d+m", block) and re.search(r"\n\s+severity: (warning|critical)", block), block
        assert "summary:" in block and "{{" in block
    tested = (RULES / "asic-alerts.test.yml").read_text()
    assert all(f"alertname: {name}" in tested for name in ALERTS)
