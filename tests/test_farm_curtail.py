"""Curtailment by the price of power: the schedule, the plan, and switching simulated rigs through their
own API verbs, confirmed by reading them back."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from test_farm_sim import RunningFarm

from miner.asic import curtail
from miner.asic.curtail import MARGIN, Rig, Slot, hashprice_per_th_day, plan_slot, read_prices, slot_at
from miner.asic.fleet import fleet_summary
from miner.asic.simulator import Farm
from miner.cli import main
from miner.explain import explain_economics

HASHPRICE = 0.05  # per TH/s and day: an S19 (34.5 J/TH) breaks even near 0.06/kWh, an S9 near 0.021
T0 = datetime(2026, 6, 1)


def slot(price: float, cap: float | None = None) -> Slot:
    return Slot(T0, T0 + timedelta(hours=1), price, cap, 2)


def rig(n: int, ths: float, watts: float, on: bool, idle: float = 50.0) -> Rig:
    return Rig(f"127.1.0.{n}", 4028, f"model{n}", "bosminer", ths, watts, idle, 3, on)


# --- the schedule ---------------------------------------------------------------------------------------


def test_prices_file_reads_hourly_and_seasonal_rows(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(
        "start,price_per_kwh,cap_kw\n# wet season: cheap hydro\n2026-05-01,0.021,\n2026-06-01T00:00,0.025,900\n"
        "2026-10-01,0.08,400\n"
    )
    slots = read_prices(str(path))
    assert [(s.start, s.price, s.cap_kw) for s in slots] == [
        (datetime(2026, 5, 1), 0.021, None),
        (datetime(2026, 6, 1), 0.025, 900.0),
        (datetime(2026, 10, 1), 0.08, 400.0),
    ]
    assert slots[0].end == slots[1].start and slots[-1].end == datetime(2027, 1, 31)  # as long as the one before
    assert slot_at(slots, datetime(2026, 7, 4, 12)) is slots[1] and slot_at(slots, datetime(2026, 4, 1)) is None
    alone = tmp_path / "one.csv"
    alone.write_text("2026-06-01T14:00+02:00,-0.01\n")  # a negative price: the grid pays to take power
    (only,) = read_prices(str(alone))
    assert only.end - only.start == timedelta(hours=1) and only.price == -0.01


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("start,price\n2026-06-01T00:00,0.05\n2026-06-01T01:00,zz\n", "line 3: price 'zz' is not a number"),
        ("2026-06-01T00:00,0.05\n2026-06-01T01:00\n", "line 2: expected start,price_per_kwh[,cap_kw], got 1 fields"),
        ("2026-06-01T00:00,0.05\nyesterday,0.04\n", "line 2: start 'yesterday' is not a date and time"),
        ("2026-06-01T02:00,0.05\n2026-06-01T01:00,0.04\n", "line 2: prices out of order"),
        ("2026-06-01T00:00,0.05,-10\n", "line 1: a negative power cap (-10 kW)"),
        ("2026-06-01T00:00,nan\n", "line 1: price 'nan' is not a finite number"),
        ("2026-06-01T00:00,0.05\n2026-06-01T01:00+00:00,0.05\n", "line 2: mixes times with and without"),
        ("# nothing\n", "has no price rows"),
    ],
)
def test_bad_prices_name_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "prices.csv"
    path.write_text(content)
    with pytest.raises(ValueError) as exc:
        read_prices(str(path))
    assert str(exc.value).startswith(f"prices file '{path}'") and message in str(exc.value)


def test_hashprice_is_the_economics_of_explain():
    for difficulty, reward, price in ((1e14, 3.125, 100_000), (8.3e13, 3.2, 61_000)):
        day = explain_economics(1e12, 0.0, 0.0, difficulty, reward, price)["revenue_per_day"]
        assert hashprice_per_th_day(difficulty, reward, price) == pytest.approx(day)


# --- the plan -------------------------------------------------------------------------------------------


def test_rigs_run_when_they_earn_more_than_power_costs_most_efficient_first():
    efficient, middling, hungry = rig(1, 100, 3000, False), rig(2, 95, 3300, False), rig(3, 13.5, 1323, False)
    plan = plan_slot([hungry, middling, efficient], slot(0.04), HASHPRICE)
    assert {d.rig.key: d.run for d in plan.decisions} == {hungry.key: False, middling.key: True, efficient.key: True}
    be = {d.rig.key: d.break_even for d in plan.decisions}
    assert be[efficient.key] == pytest.approx(HASHPRICE / 24 * 100 / 3.0)
    cap = (efficient.watts * (1 + MARGIN) - efficient.idle_w + 150) / 1000  # room for one rig above idle
    capped = plan_slot([hungry, middling, efficient], slot(0.04), HASHPRICE, cap_kw=cap)
    assert [d.rig.key for d in capped.decisions if d.run] == [efficient.key]
    assert "over the" in next(d.reason for d in capped.decisions if d.rig is middling)
    assert capped.planned_kw <= cap
    own = plan_slot([efficient], slot(0.04, cap=0.01), HASHPRICE, cap_kw=1000)  # a row's cap wins
    assert own.cap_kw == 0.01 and own.running == 0


def test_hysteresis_and_minimum_time_stop_flapping():
    running, stopped = rig(1, 100, 3000, True), rig(2, 100, 3000, False)
    be = HASHPRICE / 24 * 100 / 3.0
    near = slot(be * 1.02)  # just above break-even: inside a 5% band
    plan = plan_slot([running, stopped], near, HASHPRICE, hysteresis=0.05)
    assert [d.run for d in plan.decisions] == [True, False] and not plan.changes
    plan = plan_slot([running, stopped], slot(be * 0.97), HASHPRICE, hysteresis=0.05)
    assert not plan.changes  # just below: still inside the band
    assert plan_slot([running], slot(be * 1.10), HASHPRICE, hysteresis=0.05).changes  # clearly above: stop
    last = {running.key: 1000.0, stopped.key: 1000.0}
    held = plan_slot([running, stopped], slot(be * 2), HASHPRICE, None, 0.05, 3600, last, now=1000.0 + 600)
    assert not held.changes and all(d.reason.startswith("held") for d in held.decisions)
    forced = plan_slot([running], slot(be * 0.5, cap=0.01), HASHPRICE, None, 0.05, 3600, last, now=1600.0)
    assert forced.changes and "cap" in forced.decisions[0].reason  # the cap overrides the minimum time


def test_a_plan_carried_out_plans_nothing_more():
    rigs = [rig(n, 13.5 + 10 * n, 1300 + 150 * n, n % 2 == 0) for n in range(1, 30)]
    for price in (0.02, 0.05, 0.09):
        plan = plan_slot(rigs, slot(price, cap=40), HASHPRICE, hysteresis=0.05)
        done = [Rig(**{**d.rig.__dict__, "on": d.run}) for d in plan.decisions]
        again = plan_slot(done, slot(price, cap=40), HASHPRICE, hysteresis=0.05)
        assert again.changes == [] and again.running == plan.running


# --- against simulated rigs -----------------------------------------------------------------------------


def day_of_prices() -> list[Slot]:
    """A wet-season day: cheap hydro at night, a dear evening peak, and a tighter cap in the afternoon."""
    prices = [0.02, 0.02, 0.018, 0.018, 0.02, 0.025, 0.04, 0.055, 0.06, 0.05, 0.045, 0.04]
    prices += [0.035, 0.03, 0.03, 0.035, 0.05, 0.07, 0.09, 0.1, 0.08, 0.06, 0.04, 0.03]
    caps = [None] * 12 + [900.0] * 4 + [None] * 8
    return [
        Slot(T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1), p, c, h + 1)
        for h, (p, c) in enumerate(zip(prices, caps, strict=True))
    ]


@pytest.mark.slow
def test_a_day_in_compressed_time_keeps_the_cap_and_the_minimum_time():
    running = RunningFarm(Farm(500, seed=41, fault_rate=0.0, base="127.1.232.1"))
    try:
        targets = [(r.host, r.port) for r in running.farm.rigs]
        cap_kw, dwell = 1100.0, 2 * 3600.0
        last: dict[str, float] = {}
        changes: dict[str, list[tuple[float, str]]] = {}
        for s in day_of_prices():
            now = s.start.timestamp()
            rows = fleet_summary(targets, timeout=3.0, workers=128)
            rigs = [curtail.rig_from_row(r) for r in rows]
            assert all(rigs), "every simulated model has figures"
            plan = plan_slot(rigs, s, HASHPRICE, cap_kw, 0.05, dwell, last, now)
            actions = asyncio.run(curtail.apply(plan, timeout=3.0, confirm_s=10.0))
            assert len(actions) == len(plan.changes) and all(a.confirmed for a in actions), actions[:3]
            for a in actions:
                key = f"{a.host}:{a.port}"
                last[key] = now
                reason = next(d.reason for d in plan.changes if d.rig.key == key)
                changes.setdefault(key, []).append((now, reason))
            after = fleet_summary(targets, timeout=3.0, workers=128)
            measured = sum(r.power_w for r in after) / 1e3
            limit = s.cap_kw if s.cap_kw is not None else cap_kw
            assert measured <= limit, (s, measured)
            assert sum(1 for r in after if r.ghs) == plan.running
            again = plan_slot([curtail.rig_from_row(r) for r in after], s, HASHPRICE, cap_kw, 0.05, dwell, last, now)
            assert again.changes == [], again.changes[:3]
        assert changes, "the day's prices switch some rigs"
        for key, seen in changes.items():
            for (t1, _), (t2, why) in zip(seen, seen[1:], strict=False):
                assert t2 - t1 >= dwell or "cap" in why, (key, seen)
    finally:
        running.close()


@pytest.fixture
def small_farm():
    running = RunningFarm(Farm(24, seed=43, fault_rate=0.0, base="127.1.233.1"))
    yield running
    running.close()


def _files(tmp_path, running: RunningFarm, extra_host: str | None = None):
    hosts = tmp_path / "farm.txt"
    lines = [f"{r.host}:{r.port}" for r in running.farm.rigs] + ([extra_host] if extra_host else [])
    hosts.write_text("\n".join(lines) + "\n")
    prices = tmp_path / "prices.csv"
    prices.write_text(
        "start,price_per_kwh,cap_kw\n2026-06-01T00:00,0.02,\n2026-06-01T01:00,0.07,\n2026-06-01T02:00,0.03,30\n"
    )
    return str(hosts), str(prices)


def _states(running: RunningFarm) -> list[tuple]:
    return [(r.paused, r.enabled) for r in running.farm.rigs]


def test_cli_dry_run_prints_the_plan_and_switches_nothing(small_farm, tmp_path):
    hosts, prices = _files(tmp_path, small_farm)
    before = _states(small_farm)
    args = ["farm", "curtail", "--hosts-file", hosts, "--prices", prices, "--hashprice", "0.05"]
    result = CliRunner().invoke(main, [*args, "--at", "2026-06-01T01:30", "--dry-run", "--all"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["HOST", "MODEL", "TH/S", "KW", "J/TH"] and len(lines) == 1 + 24 + 1
    assert "stop" in result.stdout and lines[-1].startswith("slot 2026-06-01 01:00:00 to 2026-06-01 02:00:00")
    assert _states(small_farm) == before


def test_cli_once_switches_confirms_and_a_rerun_changes_nothing(small_farm, tmp_path):
    hosts, prices = _files(tmp_path, small_farm)
    state = tmp_path / "state.json"
    args = ["farm", "curtail", "--hosts-file", hosts, "--prices", prices, "--hashprice", "0.05", "--json"]
    args += ["--at", "2026-06-01T01:30", "--state", str(state)]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    stopped = {a["host"] + ":" + str(a["port"]) for a in report["actions"] if not a["run"]}
    assert stopped and all(a["confirmed"] for a in report["actions"])
    assert all(r.rate_ghs() == 0 for r in small_farm.farm.rigs if f"{r.host}:{r.port}" in stopped)
    assert first.stderr.count(": confirmed in ") == len(report["actions"])  # one log line per action
    assert set(json.loads(state.read_text())["last_change"]) == stopped
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and json.loads(again.stdout)["changes"] == []


def test_cli_follow_walks_the_schedule_in_compressed_time(small_farm, tmp_path):
    hosts, prices = _files(tmp_path, small_farm)
    args = ["farm", "curtail", "--hosts-file", hosts, "--prices", prices, "--hashprice", "0.05", "--follow"]
    result = CliRunner().invoke(main, [*args, "--at", "2026-06-01T00:00", "--speed", "3600", "--min-dwell", "0"])
    assert result.exit_code == 0, result.output
    slots = [line for line in result.stdout.splitlines() if line.startswith("slot ")]
    assert [line.split(" to ")[0] for line in slots] == [
        "slot 2026-06-01 00:00:00",
        "slot 2026-06-01 01:00:00",
        "slot 2026-06-01 02:00:00",
    ]
    assert "cap 30 kW" in slots[2]
    measured = float(slots[2].split("measured ")[1].split(" kW")[0].replace(",", ""))
    assert measured <= 30


@pytest.mark.parametrize(
    ("change", "message", "code"),
    [
        ({"prices": "2026-06-01T00:00,0.02\n2026-06-01T01:00,0.07,x\n"}, "line 2: cap 'x' is not a number", 2),
        ({"prices": "2026-06-01T01:00,0.02\n2026-06-01T00:00,0.07\n"}, "line 2: prices out of order", 2),
        ({"prices": "2026-06-01T00:00,0.02,-5\n"}, "line 1: a negative power cap (-5 kW)", 2),
        ({"args": ["--power-cap-kw", "-1"]}, "'-1' is not a finite number >= 0", 2),
        ({"args": ["--at", "2026-07-01T00:00"]}, "no price for 2026-07-01 00:00:00", 2),
        ({"unreachable": True}, "do not answer", 1),
    ],
)
def test_cli_bad_input_is_one_line_and_switches_nothing(small_farm, tmp_path, change, message, code):
    import socket

    dead = None
    if change.get("unreachable"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = f"127.0.0.1:{s.getsockname()[1]}"
    hosts, prices = _files(tmp_path, small_farm, dead)
    if "prices" in change:
        with open(prices, "w") as fh:
            fh.write(change["prices"])
    before = _states(small_farm)
    args = ["farm", "curtail", "--hosts-file", hosts, "--prices", prices, "--hashprice", "0.05"]
    args += change.get("args", ["--at", "2026-06-01T01:30"])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code
    (line,) = result.output.splitlines()
    assert line.startswith("miner: error: ") and message in line, line
    assert _states(small_farm) == before
    if dead:
        assert "no rig was switched" in line


def test_switch_undoes_a_half_done_switch():
    """A stock rig whose third board refuses ascdisable is left with every board enabled, not two."""
    running = RunningFarm(Farm(6, seed=45, fault_rate=0.0, base="127.1.234.1"))
    try:
        sim = next(r for r in running.farm.rigs if r.model.family == "bmminer")
        sim.model = type(sim.model)(**{**sim.model.__dict__, "boards": 2})  # the firmware knows two boards
        target = Rig(sim.host, sim.port, sim.model.name, "bmminer", 95.0, 3300.0, 70.0, 3, True)  # we say three
        action = asyncio.run(curtail.switch(target, False, timeout=2.0, confirm_s=2.0))
        assert not action.ok and "ascdisable" in action.message and "range is 0 - 1" in action.message
        assert sim.enabled & 0b11 == 0b11 and sim.rate_ghs() > 0
    finally:
        running.close()


def test_verbs_per_firmware():
    assert curtail.verbs(rig(1, 1, 1, True), False) == [("pause", None)]
    stock = Rig("h", 1, "Antminer S19", "bmminer", 95, 3300, 70, 3, False)
    assert curtail.verbs(stock, True) == [("ascenable", "0"), ("ascenable", "1"), ("ascenable", "2")]
    assert curtail.verbs(Rig("h", 1, "x", "cgminer", 1, 1, 0, 1, True), False) == []
    assert math.isinf(curtail.break_even_per_kwh(Rig("h", 1, "x", "x", 1, 0, 0, 1, True), 1.0))


def test_cli_plot_draws_the_schedule_that_ran(small_farm, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (the 'farm' extra)")
    hosts, prices = _files(tmp_path, small_farm)
    plot = tmp_path / "schedule.png"
    args = ["farm", "curtail", "--hosts-file", hosts, "--prices", prices, "--hashprice", "0.05", "--follow"]
    args += ["--at", "2026-06-01T00:00", "--speed", "3600", "--min-dwell", "0", "--plot", str(plot)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert f"schedule drawn to {plot}" in result.stderr
