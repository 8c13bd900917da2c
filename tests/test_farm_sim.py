"""``miner farm simulate``: simulated rigs on loopback, answering as stock Antminer and Braiins OS firmware do.

The farm runs in a background event loop; the tests talk to it as fleet tools do, with the project's own
client over real sockets, and compare what the rigs say with the ground truth the farm holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time

import pytest
from click.testing import CliRunner
from commands import MINER

from miner.asic import simulator
from miner.asic.client import ApiError, parse_reply, query, send_raw
from miner.asic.models import MODELS
from miner.asic.simulator import FAULTS, QUIRKS, Farm, Rig, rig_addresses
from miner.cli import main

DEADLINE = 60.0


class RunningFarm:
    """A Farm served by an event loop on its own thread, for tests that are plain functions."""

    def __init__(self, farm: Farm) -> None:
        self.farm = farm
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.targets = self.loop.run_until_complete(farm.start())
            except BaseException as exc:  # surfaced to the test below
                self.error = exc
                started.set()
                return
            started.set()
            self.loop.run_forever()
            self.loop.run_until_complete(farm.stop())
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(30), "the farm did not start"
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def rigs(self, **match) -> list[Rig]:
        out = []
        for rig in self.farm.rigs:
            if all((getattr(rig, k) if k != "family" else rig.model.family) == v for k, v in match.items()):
                out.append(rig)
        return out

    def ask(self, rig: Rig, command: str, parameter: str | None = None, timeout: float = 5.0) -> dict:
        return query(rig.host, rig.port, command, parameter, timeout)


@pytest.fixture
def farm():
    running = RunningFarm(Farm(40, seed=7, fault_rate=0.0, base="127.1.201.1"))
    yield running
    running.close()


@pytest.fixture
def faulty_farm(monkeypatch):
    monkeypatch.setattr(simulator, "SLOW_S", (0.6, 0.8))
    running = RunningFarm(Farm(40, seed=11, fault_rate=1.0, base="127.1.202.1"))
    yield running
    running.close()


def first(reply: dict, section: str) -> dict:
    return reply[section][0]


def healthy(running: RunningFarm, family: str, name: str | None = None) -> Rig:
    for rig in running.rigs(family=family, fault=None):
        if name is None or rig.model.name == name:
            return rig
    raise AssertionError(f"no healthy {family} {name} rig in this farm")


# --- addresses and seeds --------------------------------------------------------------------------------


def test_rig_addresses_are_loopback_skipping_network_and_broadcast():
    assert rig_addresses(3) == ["127.1.0.1", "127.1.0.2", "127.1.0.3"]
    span = rig_addresses(300, "127.1.0.250")
    assert span[:6] == ["127.1.0.250", "127.1.0.251", "127.1.0.252", "127.1.0.253", "127.1.0.254", "127.1.1.1"]
    assert len(set(span)) == 300 and not any(a.endswith((".0", ".255")) for a in span)
    for bad, message in (("10.0.0.1", "not a loopback"), ("127.1.0.x", "invalid base"), ("127.255.255.250", "past")):
        with pytest.raises(ValueError, match=message):
            rig_addresses(10, bad)


def test_the_farm_follows_its_seed():
    a, b, c = Farm(200, seed=5), Farm(200, seed=5), Farm(200, seed=6)
    assert [r.describe() for r in a.rigs] == [r.describe() for r in b.rigs]
    assert [r.describe() for r in a.rigs] != [r.describe() for r in c.rigs]
    counts = a.counts()
    assert counts["faulty"] == 10 and all(counts[f] == 2 for f in FAULTS)
    names = {r.model.label for r in a.rigs}
    assert names == {m.label for m in MODELS if m.weight}  # the mix covers every model in it
    dial = {r.model.label for r in Farm(200, seed=5, mix="dial").rigs}
    assert dial == {m.label for m in MODELS if m.mix} and len({m.name for m in MODELS if m.mix}) >= 3


# --- the physics, without sockets -----------------------------------------------------------------------


def _rig(name: str, family: str, fault: str | None = None) -> Rig:
    model = next(m for m in MODELS if m.name == name and m.family == family)
    rig = Rig(0, model, random.Random(1), now=0.0, wall=time.time())
    rig.fault = fault
    rig.temp = rig.target_temp()
    return rig


@pytest.mark.parametrize(("name", "family"), [(m.name, m.family) for m in MODELS])
def test_models_have_plausible_figures(name, family):
    rig = _rig(name, family)
    ths, watts = rig.rate_ghs() / 1e3, rig.power_w()
    model = rig.model
    assert 0.96 * model.ths <= ths <= 1.04 * model.ths
    assert watts / ths == pytest.approx(model.jth, rel=0.05)  # J/TH as the model's nameplate says
    assert 55 <= rig.chip_temp(0) <= 85 and all(2000 < rpm < 7000 for rpm in rig.fan_rpms())


def test_s19_and_s9_classes_match_their_nameplates():
    s19, s9 = _rig("Antminer S19", "bmminer"), _rig("Antminer S9", "bmminer")
    assert s19.model.ths == 95.0 and s19.model.jth == pytest.approx(34, abs=1)
    assert s9.model.ths == 13.5 and s9.model.jth == pytest.approx(98, abs=1)


def test_shares_arrive_at_the_rate_the_hash_rate_earns():
    rig = _rig("Antminer S19", "bmminer")
    rng = random.Random(3)
    before = rig.accepted + rig.rejected
    rig.advance(3600.0, rng)
    expected = rig.rate_ghs() * 1e9 * 3600 / (rig.diff * 2**32)
    assert rig.accepted + rig.rejected - before == pytest.approx(expected, rel=0.05)
    assert rig.hashes_gh > rig.rate_ghs() * 3600


def test_temperature_follows_load_and_ambient():
    rig = _rig("Antminer S19", "bmminer")
    rng = random.Random(3)
    hot = rig.temp
    assert hot == pytest.approx(rig.ambient + simulator.CHIP_RISE * rig.load() + 3.0)
    rig.paused = True
    rig.advance(simulator.TAU_S, rng)  # one time constant: two thirds of the way down
    assert rig.temp == pytest.approx(hot - (hot - rig.ambient - 3.0) * (1 - 2.718281828**-1), abs=0.01)
    rig.advance(simulator.TAU_S * 20, rng)
    assert rig.temp == pytest.approx(rig.ambient + 3.0, abs=0.1)
    assert rig.power_w() == rig.model.idle_w and rig.rate_ghs() == 0
    warm = _rig("Antminer S19", "bmminer")
    warm.ambient += 10
    assert warm.target_temp() == pytest.approx(hot + 10)


# --- firmware shapes ------------------------------------------------------------------------------------


def test_each_rig_has_its_own_loopback_address_on_4028(farm):
    hosts = [(r.host, r.port) for r in farm.farm.rigs]
    assert len(set(hosts)) == len(hosts)
    own = [r for r in farm.farm.rigs if r.port == 4028]
    if len(own) < len(hosts):  # this host cannot bind 127.1.x.y (or another farm holds them): ports instead
        assert all(r.host == "127.0.0.1" for r in farm.farm.rigs if r.port != 4028)
    assert own == [] or own[0].host == "127.1.201.1"
    for rig in farm.farm.rigs[:5]:
        assert first(farm.ask(rig, "summary"), "SUMMARY")["Elapsed"] == rig.elapsed()


def test_bmminer_rigs_answer_as_stock_antminer_firmware(farm):
    for name in ("Antminer S9", "Antminer S19"):
        rig = healthy(farm, "bmminer", name)
        base = rig.model.chain_base
        version = farm.ask(rig, "version")
        assert version["STATUS"][0]["Code"] == 22 and version["STATUS"][0]["Msg"] == "BMMiner versions"
        assert first(version, "VERSION")["Type"] == name and "BMMiner" in first(version, "VERSION")
        summary = first(farm.ask(rig, "summary"), "SUMMARY")
        assert isinstance(summary["GHS 5s"], str)  # bmminer prints its 5 s rate as a string
        assert float(summary["GHS 5s"]) == pytest.approx(rig.rate_ghs(), rel=0.03)
        head, stats = farm.ask(rig, "stats")["STATS"]
        assert head["Type"] == name
        assert [stats[f"chain_acn{base + b}"] for b in range(3)] == [rig.model.chips] * 3
        assert stats[f"temp2_{base}"] > stats[f"temp{base}"] > 0  # chip hotter than PCB
        assert [stats[f"fan{i + 1}"] for i in range(rig.model.fans)] == rig.fan_rpms()
        assert stats["chain_acs1" if base == 1 else "chain_acs6"].count("o") == rig.model.chips
        assert float(stats["total_rateideal"]) == rig.model.ths * 1e3 and stats["rate_unit"] == "GH"
        pools = farm.ask(rig, "pools")["POOLS"]
        assert [p["Stratum Active"] for p in pools] == [True, False]
    modern = healthy(farm, "bmminer", "Antminer S19")
    raw = send_raw(modern.host, modern.port, b'{"command":"stats","new_api":true}')
    new = parse_reply(raw)
    assert new["STATUS"]["STATUS"] == "S" and [c["asic_num"] for c in new["STATS"][0]["chain"]] == [76] * 3
    text = send_raw(modern.host, modern.port, b"summary").decode()
    assert text.startswith("STATUS=S,") and "|Elapsed=" in text


def test_bosminer_rigs_answer_as_braiins_os(farm):
    rig = healthy(farm, "bosminer")
    base = rig.model.chain_base
    version = farm.ask(rig, "version")
    assert "BOSminer+" in first(version, "VERSION") and "BOSminer" in version["STATUS"][0]["Description"]
    details = farm.ask(rig, "devdetails")["DEVDETAILS"]
    assert [d["ID"] for d in details] == [base, base + 1, base + 2]
    assert details[0]["Model"] == f"Bitmain {rig.model.name}" and details[0]["Chips"] == rig.model.chips
    devs = farm.ask(rig, "devs")["DEVS"]
    assert sum(d["MHS 1m"] for d in devs) == pytest.approx(rig.rate_ghs() * 1e3)
    assert devs[0]["Nominal MHS"] == pytest.approx(rig.model.ths * 1e6 / 3)
    temps = farm.ask(rig, "temps")["TEMPS"]
    assert [t["ID"] for t in temps] == [base, base + 1, base + 2] and all(t["Chip"] > t["Board"] for t in temps)
    assert [f["RPM"] for f in farm.ask(rig, "fans")["FANS"]] == rig.fan_rpms()
    tuner = first(farm.ask(rig, "tunerstatus"), "TUNERSTATUS")
    assert tuner["ApproximateMinerPowerConsumption"] == pytest.approx(rig.model.watts, rel=0.05)
    assert {c["Status"] for c in tuner["TunerChainStatus"]} == {"Stable"}
    summary = first(farm.ask(rig, "summary"), "SUMMARY")
    assert summary["MHS 1m"] == pytest.approx(rig.rate_ghs() * 1e3)
    joined = farm.ask(rig, "summary+temps+fans+tunerstatus")
    assert set(joined) == {"summary", "temps", "fans", "tunerstatus", "id"}


def test_unknown_and_joined_write_commands_are_refused(farm):
    rig = healthy(farm, "bmminer")
    assert farm.ask(rig, "bogus")["STATUS"][0]["Code"] == 14
    assert farm.ask(rig, "pause")["STATUS"][0]["Code"] == 14  # a BOSminer verb; stock firmware has none
    joined = farm.ask(rig, "summary+switchpool")
    assert joined["switchpool"][0]["STATUS"][0]["Code"] == 45 and rig.pool == 0
    assert send_raw(rig.host, rig.port, b'{"command":')[:2] == b'{"'
    assert parse_reply(send_raw(rig.host, rig.port, b'{"command":'))["STATUS"][0]["Code"] == 23


# --- control verbs act on the model ---------------------------------------------------------------------


def test_pause_and_resume_stop_and_restart_hashing(farm):
    rig = healthy(farm, "bosminer")
    reply = farm.ask(rig, "pause")
    assert reply["PAUSE"][0]["PAUSE"] is True and rig.paused
    assert all(d["MHS 5s"] == 0 for d in farm.ask(rig, "devs")["DEVS"])
    tuner = first(farm.ask(rig, "tunerstatus"), "TUNERSTATUS")
    assert tuner["ApproximateMinerPowerConsumption"] == round(rig.model.idle_w)  # idle power, no hashing
    assert first(farm.ask(rig, "summary"), "SUMMARY")["MHS 1m"] == 0
    accepted = rig.accepted
    time.sleep(0.2)
    farm.ask(rig, "summary")
    assert rig.accepted == accepted  # no shares while paused
    assert farm.ask(rig, "resume")["RESUME"][0]["RESUME"] is True and not rig.paused
    assert first(farm.ask(rig, "summary"), "SUMMARY")["MHS 1m"] == pytest.approx(rig.model.ths * 1e6, rel=0.04)


@pytest.mark.parametrize(("kind", "label"), [("asc", "ASC 1"), ("pga", "PGA1")])
def test_board_verbs_disable_one_hash_board(farm, kind, label):
    rig = healthy(farm, "bmminer", "Antminer S19")
    chain = rig.model.chain_base + 1
    full = rig.rate_ghs()
    reply = farm.ask(rig, f"{kind}disable", "1")
    assert reply["STATUS"][0]["STATUS"] == "S" and reply["STATUS"][0]["Msg"] == f"{label} set disable flag"
    stats = farm.ask(rig, "stats")["STATS"][1]
    assert float(stats[f"chain_rate{chain}"]) == 0 and float(stats[f"chain_rate{chain - 1}"]) > 0
    assert rig.rate_ghs() == pytest.approx(full * 2 / 3)
    again = farm.ask(rig, f"{kind}disable", "1")["STATUS"][0]
    assert again["STATUS"] == "I" and again["Msg"] == f"{label} already disabled"
    bad = farm.ask(rig, f"{kind}disable", "7")["STATUS"][0]
    assert bad["STATUS"] == "E" and "range is 0 - 2" in bad["Msg"]
    assert farm.ask(rig, f"{kind}disable")["STATUS"][0]["Code"] == 15  # missing id
    assert farm.ask(rig, f"{kind}enable", "1")["STATUS"][0]["Msg"] == f"{label} sent enable message"
    assert rig.rate_ghs() == pytest.approx(full)


def test_switchpool_moves_the_active_pool(farm):
    rig = healthy(farm, "bmminer")
    assert farm.ask(rig, "switchpool", "1")["STATUS"][0]["Code"] == 27
    pools = farm.ask(rig, "pools")["POOLS"]
    assert [p["Stratum Active"] for p in pools] == [False, True]
    assert [p["Priority"] for p in pools] == [1, 0]
    assert farm.ask(rig, "switchpool", "5")["STATUS"][0]["Code"] == 26


def test_restart_reboots_and_quit_stops_the_rig(farm, monkeypatch):
    monkeypatch.setattr(simulator, "BOOT_S", 0.5)
    rig = healthy(farm, "bmminer")
    assert first(farm.ask(rig, "summary"), "SUMMARY")["Elapsed"] > 60
    assert parse_reply(send_raw(rig.host, rig.port, b'{"command":"restart"}')) == {"STATUS": "RESTART"}
    with pytest.raises(ApiError, match="closed without a reply|reset"):  # the API is not up yet
        farm.ask(rig, "summary", timeout=2)
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            summary = first(farm.ask(rig, "summary", timeout=2), "SUMMARY")
            break
        except ApiError:
            time.sleep(0.1)
    else:
        raise AssertionError("the rig never came back from restart")
    assert summary["Elapsed"] <= 5 and summary["Accepted"] <= 10
    assert parse_reply(send_raw(rig.host, rig.port, b'{"command":"quit"}')) == {"STATUS": "BYE"}
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            farm.ask(rig, "summary", timeout=2)
        except ApiError as exc:
            if "refused" in str(exc):  # the listener is gone (one already queued may see a reset first)
                break
        time.sleep(0.05)
    else:
        raise AssertionError("the rig still answers after quit")


# --- faults ---------------------------------------------------------------------------------------------


def test_every_fault_and_quirk_is_seeded(faulty_farm):
    rigs = faulty_farm.farm.rigs
    assert {r.fault for r in rigs} == set(FAULTS)
    assert {r.quirk for r in rigs if r.fault == "malformed"} == set(QUIRKS)


def test_dead_board_and_overheating_show_as_real_rigs_show_them(faulty_farm):
    for rig in faulty_farm.rigs(fault="dead_board"):
        dead = rig.model.chain_base + rig.dead_board
        if rig.model.family == "bmminer":
            stats = faulty_farm.ask(rig, "stats")["STATS"][1]
            assert stats[f"chain_acn{dead}"] == 0 and stats[f"chain_acs{dead}"] == ""
            assert float(stats[f"chain_rate{dead}"]) == 0
        else:
            tuner = first(faulty_farm.ask(rig, "tunerstatus"), "TUNERSTATUS")["TunerChainStatus"]
            assert [c["Status"] != "Stable" for c in tuner] == [c["HashchainIndex"] == dead for c in tuner]
        assert rig.rate_ghs() == pytest.approx(rig.model.ths * 1e3 * rig.factor * 2 / 3)
    for rig in faulty_farm.rigs(fault="overheat"):
        if rig.model.family == "bmminer":
            stats = faulty_farm.ask(rig, "stats")["STATS"][1]
            assert stats["temp_max"] >= 90 and stats["fan1"] == 0
        else:
            assert max(t["Chip"] for t in faulty_farm.ask(rig, "temps")["TEMPS"]) >= 90
            assert faulty_farm.ask(rig, "fans")["FANS"][0]["RPM"] == 0


def test_unresponsive_and_slow_rigs(faulty_farm):
    (mute, *_) = faulty_farm.rigs(fault="unresponsive")
    started = time.monotonic()
    with pytest.raises(ApiError, match="timed out"):
        faulty_farm.ask(mute, "summary", timeout=0.5)
    assert time.monotonic() - started >= 0.5
    (slow, *_) = faulty_farm.rigs(fault="slow")
    started = time.monotonic()
    reply = faulty_farm.ask(slow, "summary", timeout=5)
    assert time.monotonic() - started >= slow.delay >= 0.6 and reply["SUMMARY"][0]["Elapsed"] > 0


def test_malformed_replies_are_the_ones_firmware_sends(faulty_farm):
    for rig in faulty_farm.rigs(fault="malformed"):
        raw = send_raw(rig.host, rig.port, b'{"command":"summary+pools"}')
        if rig.quirk == "no_nul":
            assert not raw.endswith(b"\0") and set(parse_reply(raw)) == {"summary", "pools", "id"}
        elif rig.quirk == "glued":
            assert b"}{" in raw and "_objects" in parse_reply(raw)
        elif rig.quirk == "trailing_comma":
            assert b",]" in raw and parse_reply(raw)["summary"][0]["SUMMARY"][0]["Accepted"] >= 0
            with pytest.raises(json.JSONDecodeError):
                json.loads(raw.rstrip(b"\0"))
        else:
            with pytest.raises(ApiError, match="not valid JSON"):
                parse_reply(raw)


# --- the command ----------------------------------------------------------------------------------------


def _start_cli_farm(tmp_path, *extra: str) -> tuple[subprocess.Popen, str]:
    hosts = str(tmp_path / "farm.txt")
    proc = subprocess.Popen(
        [*MINER, "farm", "simulate", "--rigs", "12", "--hosts-file", hosts, "--base-address", "127.1.203.1", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + DEADLINE
    while not os.path.exists(hosts):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no hosts file"
        time.sleep(0.05)
    return proc, hosts


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_cli_serves_until_a_signal_and_writes_the_hosts_file(tmp_path, signum, code):
    manifest = tmp_path / "manifest.json"
    proc, hosts = _start_cli_farm(tmp_path, "--seed", "4", "--manifest", str(manifest), "--fault-rate", "0")
    try:
        lines = open(hosts).read().splitlines()
        assert len(lines) == 12 and len(set(lines)) == 12
        rigs = json.loads(manifest.read_text())
        assert [f"{r['host']}:{r['port']}" for r in rigs] == lines
        result = CliRunner().invoke(main, ["asic", "summary", "--hosts-file", hosts, "--json"])
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout)
        assert [r["reachable"] for r in rows] == [True] * 12
        assert {r["miner_type"].split(" ")[0] for r in rows} <= {"Antminer", "BOSminer+"}
    finally:
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert out.startswith("stopped: 12 rigs (0 faulty)") and "requests answered" in out
    assert "farm: 12 rigs on " in err and "memory" in err
    if code == 130:
        assert err.strip().endswith("miner: interrupted")
    else:
        assert "Traceback" not in err


def test_cli_duration_ends_the_run(tmp_path):
    proc, _hosts = _start_cli_farm(tmp_path, "--duration", "0.5")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.startswith("stopped: 12 rigs"), err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base-address", "10.0.0.1"], "--base-address: base address '10.0.0.1' is not a loopback address"),
        (["--fault-rate", "1.5"], "'1.5' is not a finite number >= 0 and <= 1"),
        (["--fault-rate", "nan"], "'nan' is not a finite number"),
        (["--duration", "-1"], "'-1' is not a finite number > 0"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, args, message):
    result = CliRunner().invoke(main, ["farm", "simulate", "--rigs", "2", "--hosts-file", str(tmp_path / "h"), *args])
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert line.startswith("miner: error: ") and message in line, line


def test_cli_unwritable_hosts_file_is_one_line(tmp_path):
    target = tmp_path / "missing" / "farm.txt"
    result = CliRunner().invoke(
        main, ["farm", "simulate", "--rigs", "2", "--hosts-file", str(target), "--base-address", "127.1.204.1"]
    )
    assert result.exit_code == 1
    assert result.output.strip() == f"miner: error: cannot write '{target}': No such file or directory"


def test_bound_address_falls_back_to_ports(tmp_path):
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.1.205.2", 4028))
    holder.listen()
    try:
        running = RunningFarm(Farm(3, base="127.1.205.1", fault_rate=0.0))
        try:
            second = running.farm.rigs[1]
            assert second.host == "127.0.0.1" and second.port != 4028 and running.farm.fallbacks >= 1
            assert running.ask(second, "summary")["STATUS"][0]["Code"] == 11
        finally:
            running.close()
    finally:
        holder.close()


# --- pyasic, the library farm tools are built on --------------------------------------------------------


def test_pyasic_reads_hashrate_temperatures_and_fans(farm):
    pyasic = pytest.importorskip("pyasic", reason="pyasic is not installed (pip install pyasic to run this check)")
    rigs = [healthy(farm, "bmminer", "Antminer S9"), healthy(farm, "bosminer", "Antminer S9")]
    rigs = [r for r in rigs if r.port == 4028]
    if not rigs:
        pytest.skip("pyasic talks to port 4028 only, and this host could not bind 127.1.x.y:4028")

    async def read(rig: Rig):
        miner = await pyasic.get_miner(rig.host)
        data = await miner.get_data(include=["hashrate", "hashboards", "fans"])
        return type(miner).__name__, data

    for rig in rigs:
        name, data = asyncio.run(read(rig))
        assert name == ("BMMinerS9" if rig.model.family == "bmminer" else "BOSMinerS9")
        assert float(data.hashrate) == pytest.approx(rig.rate_ghs() / 1e3, rel=0.05)
        temps = [(b.temp, b.chip_temp) for b in data.hashboards]
        assert len(temps) == 3 and all(t and c and 40 < max(t, c) < 100 for t, c in temps)
        assert [f.speed for f in data.fans] == rig.fan_rpms()
