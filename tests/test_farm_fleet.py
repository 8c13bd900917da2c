"""Fleet sweeps against a simulated farm: every rig reported, each fault marked as what it is, and dead or
hung rigs never holding up the sweep."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
from click.testing import CliRunner
from test_farm_sim import RunningFarm

from miner.asic import simulator
from miner.asic.fleet import Progress, fleet_control, fleet_summary, probe, sweep, totals
from miner.asic.simulator import Farm
from miner.cli import main


@pytest.fixture(scope="module")
def farm():
    saved = simulator.SLOW_S
    simulator.SLOW_S = (1.2, 1.4)
    try:
        running = RunningFarm(Farm(60, seed=21, fault_rate=0.5, base="127.1.211.1"))
    finally:
        simulator.SLOW_S = saved
    yield running
    running.close()


def targets(running: RunningFarm) -> list[tuple[str, int]]:
    return [(r.host, r.port) for r in running.farm.rigs]


def test_a_sweep_reports_every_rig_with_its_fault_marked(farm):
    seen: list[int] = []
    # a timeout well past the slow rigs' 1.2-1.4 s, so on a busy machine a slow rig still answers (and is
    # called slow) instead of timing out; the hung rigs cost that timeout once, in parallel
    rows = fleet_summary(targets(farm), timeout=5.0, workers=16, retries=1, on_progress=lambda p: seen.append(p.done))
    assert [(r.host, r.port) for r in rows] == targets(farm)
    assert seen == list(range(1, len(rows) + 1))  # progress after every host
    for rig, row in zip(farm.farm.rigs, rows, strict=True):
        where = f"{rig.describe()} -> {row.state}: {row.status}"
        if rig.fault is None or rig.quirk in ("no_nul", "glued", "trailing_comma"):
            assert row.state == "up" and row.status == "ok", where  # quirks the client reads through
            assert row.ghs == pytest.approx(rig.rate_ghs(), rel=0.05), where
            assert row.model == rig.model.name and row.family == rig.model.family, where
            assert row.chip_temp is not None and row.fans == rig.fan_rpms(), where
            if rig.model.family == "bosminer":
                assert not row.power_estimated and row.power_w == pytest.approx(rig.power_w(), abs=1), where
            else:
                assert row.power_estimated and row.power_w == pytest.approx(rig.power_w(), rel=0.08), where
        elif rig.fault == "dead_board":
            assert row.state == "faulty" and f"board {rig.dead_board}" in row.status, where
        elif rig.fault == "overheat":
            assert row.state == "faulty" and "overheating" in row.status and "fan 0 stopped" in row.status, where
        elif rig.fault == "unresponsive":
            assert row.state == "down" and not row.reachable and "timed out" in row.status, where
            assert row.attempts == 1, where  # connected, then silence: not asked twice
        elif rig.fault == "slow":
            assert row.slow and row.state == "up" and row.status.startswith("slow: answered in"), where
            assert row.latency_s >= rig.delay, where
        else:  # a reply cut short
            assert row.state == "faulty" and row.status.startswith("bad reply"), where
    t = totals(rows)
    assert t.hosts == 60 and t.up + t.paused + t.faulty + t.down == 60
    assert t.down == sum(1 for r in farm.farm.rigs if r.fault == "unresponsive")
    assert t.ths == pytest.approx(sum(r.ghs or 0 for r in rows) / 1e3)
    assert t.hottest[0][1] >= 90 and t.problems["overheating"] >= 1


def test_dead_and_hung_rigs_never_stall_the_sweep(farm):
    hung = [(r.host, r.port) for r in farm.farm.rigs if r.fault == "unresponsive"]
    dead = []
    for _ in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead.append(("127.0.0.1", s.getsockname()[1]))
    started = time.monotonic()
    rows = fleet_summary(hung * 4 + dead + targets(farm)[:10], timeout=0.5, workers=64, retries=1)
    elapsed = time.monotonic() - started
    assert elapsed < 10  # each hung rig costs two 0.5 s tries, in parallel; it holds its connection for minutes
    assert all(r.state == "down" for r in rows[: len(hung) * 4 + 5])
    assert {r.status for r in rows[len(hung) * 4 : len(hung) * 4 + 5]} == {"connection refused, 2 tries"}


def test_a_paused_rig_is_paused_not_down(farm):
    rig = next(r for r in farm.rigs(family="bosminer", fault=None))
    assert fleet_control([(rig.host, rig.port)], "pause")[0].ok
    try:
        (row,) = fleet_summary([(rig.host, rig.port)], timeout=2.0)
        assert row.state == "paused" and row.ghs == 0 and row.power_w == rig.model.idle_w
    finally:
        assert fleet_control([(rig.host, rig.port)], "resume")[0].ok
    (row,) = fleet_summary([(rig.host, rig.port)], timeout=2.0)
    assert row.state == "up"


def test_concurrency_is_bounded():
    """No more than --workers connections at once, counted by a server that holds each one a moment."""
    active, peak, lock = 0, 0, threading.Lock()
    server = socket.create_server(("127.0.0.1", 0), backlog=128)
    port = server.getsockname()[1]
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            conn.recv(8192)
            time.sleep(0.05)
        finally:
            # counted down before the reply: once the client has it, it may open the next connection at
            # once, before this thread runs again, and that is no breach of the bound
            with lock:
                active -= 1
        try:
            conn.sendall(b'{"STATUS":[{"STATUS":"S","When":1,"Code":11,"Msg":"Summary"}],"SUMMARY":[{"Elapsed":1}]}\0')
        finally:
            conn.close()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        seen: list[Progress] = []
        rows = asyncio.run(
            sweep([("127.0.0.1", port)] * 40, timeout=5, concurrency=4, retries=0, on_progress=seen.append)
        )
        assert len(rows) == 40 and all(r.reachable for r in rows)
        assert 1 <= peak <= 4 and seen[-1].done == 40
    finally:
        stop.set()
        thread.join(2)
        server.close()


def test_a_hung_rig_costs_one_timeout_and_a_refused_one_is_retried():
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog does), never answers
    try:
        started = time.monotonic()
        row = asyncio.run(probe("127.0.0.1", listener.getsockname()[1], timeout=0.3, retries=2))
        assert row.state == "down" and row.attempts == 1 and row.status == "timed out waiting for a reply (0.3 s)"
        assert 0.3 <= time.monotonic() - started < 0.3 + 1
    finally:
        listener.close()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    row = asyncio.run(probe("127.0.0.1", port, timeout=0.3, retries=2))
    assert row.attempts == 3 and row.status == "connection refused, 3 tries"  # a failing connection is retried


def test_cli_summary_over_the_farm(farm, tmp_path):
    hosts = tmp_path / "farm.txt"
    hosts.write_text("".join(f"{h}:{p}\n" for h, p in targets(farm)))
    result = CliRunner().invoke(main, ["asic", "summary", "--hosts-file", str(hosts), "--timeout", "2"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "60 host(s)," in out and "up " in out and "faulty " in out and "power " in out
    assert "hottest: " in out and "problems: " in out and "estimated from the model, marked *" in out
    assert result.stderr == ""  # no progress line off a terminal
    problems = CliRunner().invoke(main, ["asic", "summary", "--hosts-file", str(hosts), "--timeout", "2", "--problems"])
    body = problems.stdout.split("\n60 host(s)")[0].splitlines()[1:]
    readable = ("no_nul", "glued", "trailing_comma")  # quirks the client reads through: those rigs are up
    assert len(body) == sum(1 for r in farm.farm.rigs if r.fault and r.quirk not in readable)
    rows = json.loads(
        CliRunner().invoke(main, ["asic", "summary", "--hosts-file", str(hosts), "--json", "--timeout", "2"]).stdout
    )
    assert {r["state"] for r in rows} == {"up", "faulty", "down"}
    assert all({"power_w", "chip_temp", "fans", "problems", "latency_s"} <= set(r) for r in rows)


def test_progress_shows_on_a_terminal_only(monkeypatch):
    import io

    from miner.cli.asic import _ProgressLine

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr("sys.stderr", stream)
        line = _ProgressLine()
        progress = Progress(4)
        for state in ("up", "down", "faulty", "up"):
            progress.done += 1
            progress.counts[state] += 1
            line(progress)
        line.close()
        text = stream.getvalue()
        if shown:
            assert text.startswith("\r[") and "4/4 hosts: up 2, paused 0, faulty 1, down 1" in text
            assert text.endswith("\r\033[K")  # erased once the sweep is done
        else:
            assert text == ""


def test_exporter_without_prometheus_client_is_one_line(tmp_path, monkeypatch):
    from miner.asic import metrics

    def missing():
        raise metrics.MetricsUnavailable("Prometheus metrics need the prometheus_client package (pip install x)")

    monkeypatch.setattr(metrics, "_client", missing)
    hosts = tmp_path / "farm.txt"
    hosts.write_text("127.0.0.1:4028\n")
    result = CliRunner().invoke(main, ["farm", "exporter", "--hosts-file", str(hosts), "--listen", "0"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "miner: error: Prometheus metrics need the prometheus_client package (pip install x)"
    ]
