"""``miner farm curtail --mode targets``: power targets planned along the efficiency curves, carried out,
read back; the cap held against rigs that ignore commands; the exporter's commanded and measured series
scraped by a real Prometheus."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_farm_sim import RunningFarm

from miner.asic import power
from miner.asic.curtail import MARGIN
from miner.asic.models import MODELS
from miner.asic.simulator import Farm
from miner.asic.targets import Dial, plan_targets
from miner.cli import main

SPEED = 200.0
PRICES = Path(__file__).parents[1] / "benchmarks" / "data" / "wet-dry-24.csv"
HASHPRICE = 0.0629  # per TH/s and day: the curtail command's default economics


def _dial(name: str, family: str, host: str = "h") -> Dial:
    model = next(m for m in MODELS if m.name == name and m.family == family)
    return Dial(power.Rig(host, 4028, family, model, name), model.watts, False)


def test_at_mid_prices_tuning_down_earns_more_than_switching_off():
    rigs = [_dial("Antminer S19", "luxminer", f"r{i}") for i in range(4)]
    price = 0.08  # above an S19's break-even at nominal (about 0.076), below it tuned down
    onoff = plan_targets(rigs, price, HASHPRICE, None, "onoff", hysteresis=0)
    targets = plan_targets(rigs, price, HASHPRICE, None, "targets", hysteresis=0)
    assert all(c.sleep for c in onoff.choices)  # on/off: nominal loses money, so every rig sleeps
    assert all(not c.sleep and c.watts < rigs[0].rig.model.watts for c in targets.choices)

    def hourly(plan):
        return sum(HASHPRICE / 24 * c.ths - price * c.watts / 1000 for c in plan.choices)

    assert hourly(targets) > hourly(onoff)


def test_the_cap_steps_down_the_cheapest_watts_first_and_holds():
    rigs = [_dial("Antminer S21", "luxminer", "s21"), _dial("Antminer S19", "luxminer", "s19")]
    rigs.append(_dial("AvalonMiner 1246", "avalon", "avalon"))
    free = plan_targets(rigs, 0.03, HASHPRICE, None)
    capped = plan_targets(rigs, 0.03, HASHPRICE, 6.0)
    assert free.planned_kw > 6.0 >= capped.planned_kw
    assert sum(c.watts * (1 + MARGIN) if not c.sleep else c.watts for c in capped.choices) / 1000 <= 6.0
    assert any(c.reason == "cap" for c in capped.choices)
    by = {c.dial.key: c for c in capped.choices}
    assert not by["s21:4028"].sleep  # the most efficient rig keeps running


def test_hysteresis_and_dwell_hold_a_rig_the_cap_does_not():
    rig = _dial("Antminer S19", "luxminer")
    best = plan_targets([rig], 0.05, HASHPRICE, None).choices[0]
    rig.setting_w = best.watts
    near = plan_targets([rig], 0.0505, HASHPRICE, None, hysteresis=0.2).choices[0]
    assert not near.change and near.reason == "hysteresis"
    held = plan_targets([rig], 0.2, HASHPRICE, None, min_dwell_s=900, last_change={rig.key: 0.0}, now=60.0)
    assert not held.choices[0].change and held.choices[0].reason == "dwell"
    forced = plan_targets([rig], 0.2, HASHPRICE, 0.5, min_dwell_s=900, last_change={rig.key: 0.0}, now=60.0)
    assert forced.choices[0].sleep and forced.choices[0].reason == "cap"


def _slots_and_hosts(tmp_path, running):
    hosts = tmp_path / "rigs.txt"
    hosts.write_text("".join(f"{r.host}:{r.port}\n" for r in running.farm.rigs))
    return str(hosts)


def _curtail(hosts, mode, cap_kw, *extra):
    args = ["farm", "curtail", "--hosts-file", hosts, "--prices", str(PRICES), "--mode", mode, "--replay"]
    args += ["--json", "--speed", str(SPEED), "--power-cap-kw", str(cap_kw), "--min-dwell", "0", *extra]
    result = CliRunner().invoke(main, args)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return result, lines[:-1], lines[-1]["summary"] if lines else None


def _farm(base, ignore=0.0):
    return RunningFarm(Farm(30, seed=19, fault_rate=0.0, base=base, mix="dial", speed=SPEED, ignore_rate=ignore))


def test_targets_beat_onoff_on_the_same_farm_and_schedule_and_keep_the_cap(tmp_path):
    nominal = sum(r.model.watts for r in Farm(30, seed=19, fault_rate=0.0, mix="dial").rigs) / 1000
    cap = round(nominal * 0.8, 1)
    results = {}
    for mode, base in (("onoff", "127.1.243.1"), ("targets", "127.1.244.1")):
        running = _farm(base)
        try:
            result, slots, total = _curtail(_slots_and_hosts(tmp_path, running), mode, cap)
            assert result.exit_code == 0, result.output
        finally:
            running.close()
        assert len(slots) == 24 and total["slots"] == 24
        assert all(s["measured_kw"] <= (s["cap_kw"] if s["cap_kw"] is not None else cap) for s in slots)
        assert total["max_kw"] <= cap and total["over_cap_slots"] == 0
        assert all(a["complied"] for s in slots for a in s["actions"])
        results[mode] = total
    assert results["targets"]["profit"] > results["onoff"]["profit"] > 0
    assert {"profit", "energy_kwh", "max_kw"} <= set(results["targets"])


def test_rigs_ignoring_commands_are_left_out_and_the_cap_still_holds(tmp_path):
    running = _farm("127.1.245.1", ignore=0.1)
    try:
        ignoring = {f"{r.host}:{r.port}" for r in running.farm.rigs if r.ignores}
        nominal = sum(r.model.watts for r in running.farm.rigs) / 1000
        cap = round(nominal * 0.6, 1)
        audit, state = tmp_path / "audit.jsonl", tmp_path / "state.json"
        result, slots, total = _curtail(
            _slots_and_hosts(tmp_path, running), "targets", cap, "--audit-log", str(audit), "--state", str(state)
        )
        assert result.exit_code == 0, result.output
    finally:
        running.close()
    assert len(ignoring) == 3 and set(total["non_compliant"]) == ignoring
    for s in slots:
        assert s["measured_kw"] <= min(cap, s["cap_kw"] or cap), s["slot"]
        for a in s["actions"]:
            if not a["complied"]:
                assert f"{a['host']}:{a['port']}" in ignoring and a["readbacks"] == 2  # found in two read-backs
    first_seen = next(s for s in slots if s["non_compliant"])  # found in the first slot that steers them
    assert set(first_seen["non_compliant"]) <= ignoring
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    assert {"command", "readback", "slot"} <= {e["event"] for e in events}
    saved = json.loads(state.read_text())
    assert all(
        saved["rigs"][key]["reason"] == "non_compliant" and not saved["rigs"][key]["compliant"] for key in ignoring
    )
    assert saved["site"]["price_per_kwh"] == slots[-1]["slot"]["price"]


def test_a_real_prometheus_scrapes_commanded_and_measured_watts(tmp_path):
    from test_farm_metrics import _exporter, prometheus

    if shutil.which("prometheus") is None:
        pytest.skip("the Prometheus server is not installed (Debian: apt-get install prometheus)")
    running = RunningFarm(Farm(8, seed=3, fault_rate=0.0, base="127.1.246.1", mix="dial", speed=SPEED))
    try:
        hosts = Path(_slots_and_hosts(tmp_path, running))
        state = tmp_path / "state.json"
        result, slots, _ = _curtail(str(hosts), "targets", 100, "--state", str(state))
        assert result.exit_code == 0, result.output
        exporter, port, _ = _exporter(hosts, "--interval", "1", "--timeout", "1", "--curtail-state", str(state))
        with prometheus(tmp_path, {"fleet": port}) as (server, query):
            try:
                _commanded_and_measured_scraped(running, state, slots, server, query)
            finally:
                exporter.send_signal(signal.SIGTERM)
                exporter.communicate(timeout=60)
    finally:
        running.close()


def _commanded_and_measured_scraped(running, state, slots, server, query) -> None:
    deadline = time.monotonic() + 90
    commanded = measured = []
    while time.monotonic() < deadline and (len(commanded) < 8 or len(measured) < 8):
        assert server.poll() is None, server.stderr.read()
        commanded, measured = query("asic_power_commanded_watts"), query("asic_power_measured_watts")
        time.sleep(0.5)
    saved = json.loads(state.read_text())["rigs"]
    got = {r["metric"]["host"]: float(r["value"][1]) for r in commanded}
    assert got == pytest.approx({k: v["commanded_w"] for k, v in saved.items()})
    for r in measured:
        rig = running.farm.rig_at(*r["metric"]["host"].rsplit(":", 1)[:1], 4028)
        assert float(r["value"][1]) == pytest.approx(rig.power_w(), rel=0.05)
    site = query("asic_site_price_per_kwh")
    assert float(site[0]["value"][1]) == slots[-1]["slot"]["price"]
    assert query('asic_curtail_reason{reason=~"running|price|cap|hysteresis"}')


def test_bad_input_touches_no_rig(tmp_path):
    running = _farm("127.1.247.1")
    try:
        hosts = _slots_and_hosts(tmp_path, running)
        held = next(r for r in running.farm.rigs if r.model.family == "luxminer")
        from miner.asic.client import query

        query(held.host, held.port, "logon")  # another tool holds its one session
        before = [(r.setting_w, r.asleep) for r in running.farm.rigs]
        result, _, _ = _curtail(hosts, "targets", 50)
        assert result.exit_code == 2
        (line,) = result.stderr.strip().splitlines()
        assert "refused the session" in line and "no rig was touched" in line
        assert [(r.setting_w, r.asleep) for r in running.farm.rigs] == before
    finally:
        running.close()
