"""Power dials: the efficiency curves, LuxOS's and Avalon's verbs and rules in the simulator, and
``miner asic power-target|sleep|wake`` steering them, reading them back and refusing bad input untouched."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
from click.testing import CliRunner
from test_farm_sim import RunningFarm

from miner.asic import power
from miner.asic.client import query
from miner.asic.models import MODELS
from miner.asic.simulator import Farm
from miner.cli import main

SPEED = 120.0  # a minute's ramp in half a second


def _dial_models():
    return [m for m in MODELS if m.dial]


@pytest.mark.parametrize("model", _dial_models(), ids=lambda m: f"{m.family}-{m.name}")
def test_efficiency_curves_tune_down_better_and_overclock_worse(model):
    low, nominal, high = model.min_w, model.watts, model.max_w
    assert model.ths_at(nominal) == pytest.approx(model.ths) and model.jth_at(nominal) == pytest.approx(model.jth)
    assert model.ths_at(low) < model.ths < model.ths_at(high)  # more power, more hashes ...
    assert model.jth_at(low) < model.jth < model.jth_at(high)  # ... at a worse J/TH
    settings = model.settings()
    assert settings[0] == pytest.approx(low, abs=0.1) and settings[-1] == pytest.approx(high, abs=0.1)
    assert any(abs(w - nominal) < 1 for w in settings), "the nominal draw is one of the settings"
    assert model.ths_at(model.idle_w) == 0.0


def test_an_s19_tuned_down_is_near_the_published_figures():
    s19 = next(m for m in MODELS if m.name == "Antminer S19" and m.family == "luxminer")
    assert s19.jth == pytest.approx(34.5) and 29 < s19.jth_at(0.7 * s19.watts) < 32 < 36 < s19.jth_at(1.2 * s19.watts)


@pytest.fixture
def dial_farm():
    running = RunningFarm(
        Farm(12, seed=3, fault_rate=0.0, base="127.1.241.1", mix="dial", speed=SPEED, session_timeout=1.0)
    )
    yield running
    running.close()


def _first(running, family):
    return next(r for r in running.farm.rigs if r.model.family == family)


def _status(reply):
    st = reply["STATUS"][0]
    return st["STATUS"], st["Code"], st["Msg"]


def test_luxos_sessions_are_one_at_a_time_and_expire(dial_farm):
    rig = _first(dial_farm, "luxminer")
    ask = dial_farm.ask
    assert _status(ask(rig, "curtail", "nosuch,sleep"))[2] == "Invalid session id"
    sid = ask(rig, "logon")["SESSION"][0]["SessionID"]
    assert _status(ask(rig, "logon"))[2] == "Another session is active"  # one session at a time
    assert _status(ask(rig, "profileset", f"{sid},2000W"))[0] == "E"  # ATM on: refused until atmset
    assert _status(ask(rig, "atmset", f"{sid},enabled=false"))[1] == 340
    status, code, msg = _status(ask(rig, "profileset", f"{sid},900W"))
    assert (status, code) == ("E", 322) and f"{rig.model.min_w:.0f}W-{rig.model.max_w:.0f}W" in msg
    assert rig.setting_w == rig.model.watts  # refused: left as it was
    assert _status(ask(rig, "profileset", f"{sid},-2"))[1] == 321
    assert rig.setting_w < rig.model.watts
    time.sleep(1.3)  # unused past its timeout: gone, and another logon is granted
    assert _status(ask(rig, "curtail", f"{sid},sleep"))[2] == "Invalid session id" and not rig.asleep
    assert "SESSION" in ask(rig, "logon")


def test_our_client_logs_on_reuses_the_session_and_logs_on_again_after_expiry(dial_farm):
    sim = _first(dial_farm, "luxminer")
    rig = power.Rig(sim.host, sim.port, "luxminer", sim.model, sim.model.name)
    sessions = power.Sessions()

    async def steer(watts):
        return await power.command(rig, "target", watts, sessions, 3.0, SPEED)

    first = asyncio.run(steer(sim.model.settings()[3]))
    assert first.complied and sessions.logons == 1  # one logon for atmset and profileset both
    reused = sessions.reused
    second = asyncio.run(steer(sim.model.settings()[5]))  # within the minute: the same session
    assert second.complied and sessions.logons == 1 and sessions.reused == reused + 1
    time.sleep(1.3)  # the rig drops the session; the client notices and logs on again
    third = asyncio.run(steer(sim.model.settings()[2]))
    assert third.complied and sessions.logons == 2
    assert abs(sim.power_w() - sim.model.settings()[2]) < 0.03 * sim.model.settings()[2]


def test_avalon_answers_one_connection_at_a_time(dial_farm):
    rig = _first(dial_farm, "avalon")
    first = socket.create_connection((rig.host, rig.port), timeout=5)
    second = socket.create_connection((rig.host, rig.port), timeout=5)
    second.sendall(b'{"command":"version"}')
    second.settimeout(0.5)
    with pytest.raises(socket.timeout):
        second.recv(100)  # waits while the first connection is being served
    first.sendall(b'{"command":"summary"}')
    first.settimeout(5)
    assert b"SUMMARY" in first.recv(65536)
    first.close()
    second.settimeout(5)
    assert b"CGMiner versions" in second.recv(65536)
    second.close()


def test_avalon_work_levels_and_soft_off(dial_farm):
    rig = _first(dial_farm, "avalon")
    status, code, msg = _status(dial_farm.ask(rig, "ascset", "0,worklevel,set,9"))
    assert (status, code) == ("E", 120) and "allowed range 0-6" in msg and rig.setting_w == rig.model.watts
    assert _status(dial_farm.ask(rig, "ascset", "0,worklevel,set,0"))[2] == "ASC 0 set OK"  # 0 is a level too
    assert rig.setting_w == pytest.approx(rig.model.min_w, abs=0.1)
    assert _status(dial_farm.ask(rig, "ascset", f"0,softoff,1:{int(time.time())}"))[1] == 118
    time.sleep(rig.model.ramp_s / SPEED + 0.2)
    mm = dial_farm.ask(rig, "stats")["STATS"][0]["MM ID0"]
    assert "SoftOFF[1]" in mm and "WORKLEVEL[0]" in mm and f"PS[0 1215 1238 64 {round(rig.model.idle_w)}" in mm


def _hosts(tmp_path, running, dial_only=False):
    path = tmp_path / ("dial.txt" if dial_only else "rigs.txt")
    rigs = [r for r in running.farm.rigs if r.model.dial or not dial_only]
    path.write_text("".join(f"{r.host}:{r.port}\n" for r in rigs))
    return str(path)


def _settings(running):
    return [(r.setting_w, r.asleep, r.atm) for r in running.farm.rigs]


def test_cli_power_target_sleep_and_wake_are_read_back(dial_farm, tmp_path):
    audit = tmp_path / "audit.jsonl"
    dial = sum(1 for r in dial_farm.farm.rigs if r.model.dial)
    runner = CliRunner()
    base = ["--hosts-file", _hosts(tmp_path, dial_farm), "--speed", str(SPEED), "--audit-log", str(audit)]
    dial_hosts = _hosts(tmp_path, dial_farm, dial_only=True)
    result = runner.invoke(main, ["asic", "power-target", "75%", *base, "--hosts-file", dial_hosts, "--json"])
    assert result.exit_code == 0, result.output
    outcomes = json.loads(result.stdout)
    assert len(outcomes) == dial < 12 and all(o["complied"] and o["readbacks"] == 1 for o in outcomes)
    for rig in dial_farm.farm.rigs:
        if rig.model.dial:
            assert rig.setting_w <= 0.75 * rig.model.watts + 0.5 and rig.power_w() < 0.8 * rig.model.watts
    result = runner.invoke(main, ["asic", "sleep", *base])
    assert result.exit_code == 0, result.output
    assert all(r.power_w() <= r.model.idle_w * 1.01 and r.rate_ghs() == 0 for r in dial_farm.farm.rigs)
    result = runner.invoke(main, ["asic", "wake", *base])
    assert result.exit_code == 0, result.output
    assert all(r.rate_ghs() > 0 for r in dial_farm.farm.rigs)
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert {line["event"] for line in lines} == {"command", "readback"}
    assert sum(1 for line in lines if line["event"] == "readback") == dial + 2 * 12
    assert all(s.session is None for s in dial_farm.farm.rigs)  # every LuxOS session logged off


def test_rigs_that_ignore_commands_are_found_within_two_read_backs(tmp_path):
    running = RunningFarm(
        Farm(40, seed=9, fault_rate=0.0, base="127.1.242.1", mix="dial", speed=SPEED, ignore_rate=0.05)
    )
    try:
        dial = [r for r in running.farm.rigs if r.model.dial]  # Braiins OS has no dial over its cgminer API
        ignoring = {f"{r.host}:{r.port}" for r in dial if r.ignores}
        assert len(ignoring) >= 1
        result = CliRunner().invoke(
            main,
            [
                "asic",
                "power-target",
                "70%",
                "--hosts-file",
                _hosts(tmp_path, running, True),
                "--speed",
                str(SPEED),
                "--json",
            ],
        )
        assert result.exit_code == 1
        outcomes = json.loads(result.stdout)
        bad = {f"{o['host']}:{o['port']}" for o in outcomes if not o["complied"]}
        assert bad == ignoring
        assert all(o["readbacks"] == 2 and o["acknowledged"] for o in outcomes if not o["complied"])
        assert f"{len(ignoring)} of {len(dial)} rig(s) did not comply" in result.stderr
    finally:
        running.close()


class _UnknownFirmware:
    """A cgminer-API server of a family with no power verbs known."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        reply = {
            "STATUS": [{"STATUS": "S", "Code": 22, "Msg": "versions", "Description": "sgminer 5"}],
            "VERSION": [{"SGMiner": "5.6", "API": "3.7"}],
        }
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.recv(4096)
            conn.sendall(json.dumps(reply).encode() + b"\0")
            conn.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["power-target", "900"], "is not in the allowed range ["),
        (["power-target", "75%", "BOS"], "bosminer has no power dial over its API"),
        (["power-target", "lots"], "is not watts"),
        (["power-target", "75%", "UNKNOWN"], "unknown firmware family"),
        (["power-target", "75%", "HELD"], "refused the session: Another session is active"),
        (["sleep", "HELD"], "refused the session"),
    ],
)
def test_cli_bad_input_is_one_line_and_touches_no_rig(dial_farm, tmp_path, args, message):
    hosts = _hosts(tmp_path, dial_farm, dial_only=args[0] == "power-target")
    extra = []
    if "UNKNOWN" in args:
        extra = [f"127.0.0.1:{_UnknownFirmware().port}"]
    if "HELD" in args:
        held = _first(dial_farm, "luxminer")
        assert "SESSION" in query(held.host, held.port, "logon")  # another tool holds the session
    if "BOS" in args:
        bos = _first(dial_farm, "bosminer")
        extra = [f"{bos.host}:{bos.port}"]
    args = [a for a in args if a not in ("UNKNOWN", "HELD", "BOS")]
    before = _settings(dial_farm)
    result = CliRunner().invoke(main, ["asic", *args, *extra, "--hosts-file", hosts, "--speed", str(SPEED)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("miner: error: ") and message in lines[0], result.stderr
    assert result.stdout == "" and _settings(dial_farm) == before


def test_this_miners_dial_is_its_thread_count():
    from test_api import FakeControl

    from miner.asic.server import ApiServer

    class Threads(FakeControl):
        def __init__(self) -> None:
            super().__init__()
            self.stats.device("CPU 2")
            self.stats.device("CPU 3")
            self.paused = False

        def set_device_enabled(self, index: int, enabled: bool) -> None:
            list(self.stats.devices.values())[index].enabled = enabled

        def pause(self) -> None:
            self.paused = True

        def resume(self) -> None:
            self.paused = False

    control = Threads()
    server = ApiServer(control, "127.0.0.1", 0, allow="W:127.0.0.1")
    server.start()
    try:
        target = f"127.0.0.1:{server.port}"
        result = CliRunner().invoke(main, ["asic", "power-target", "50%", target, "--json"])
        assert result.exit_code == 0, result.output
        (outcome,) = json.loads(result.stdout)
        assert outcome["complied"] and outcome["commands"] == ["pgadisable|2", "pgadisable|3"]
        assert [d.enabled for d in control.stats.devices.values()] == [True, True, False, False]
        refused = CliRunner().invoke(main, ["asic", "power-target", "3000", target])
        assert refused.exit_code == 2 and "reports no watts" in refused.stderr
        assert [d.enabled for d in control.stats.devices.values()] == [True, True, False, False]
        slept = CliRunner().invoke(main, ["asic", "sleep", target, "--json"])
        assert slept.exit_code == 0, slept.output and control.paused
        assert json.loads(slept.stdout)[0]["commands"] == ["pause"] and control.paused
    finally:
        server.stop()
