"""Prometheus metrics: the fleet exporter over a simulated farm, this miner's own collector, and a real
Prometheus server scraping both (where the Debian package is installed)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from commands import MINER
from test_api import FakeControl
from test_farm_sim import RunningFarm

from miner.asic.fleet import fleet_summary
from miner.asic.simulator import Farm
from miner.cli import main

prometheus_client = pytest.importorskip(
    "prometheus_client", reason="prometheus_client is not installed (pip install prometheus_client)"
)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from miner.asic.metrics import FleetCollector, MetricsServer, MinerCollector  # noqa: E402

DEADLINE = 90.0


@pytest.fixture(scope="module")
def farm():
    running = RunningFarm(Farm(20, seed=31, fault_rate=0.5, base="127.1.221.1"))
    yield running
    running.close()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def series(found: dict, name: str, **labels) -> list[tuple[dict, float]]:
    hits = []
    for (n, items), value in found.items():
        d = dict(items)
        if n == name and all(d.get(k) == v for k, v in labels.items()):
            hits.append((d, value))
    return hits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fleet_series_say_what_the_sweep_found(farm):
    rows = fleet_summary([(r.host, r.port) for r in farm.farm.rigs], timeout=2.0)
    collector = FleetCollector()
    collector.update(rows, 1.25)
    found = samples(MetricsServer([collector]).render().decode())
    for row in rows:
        host = f"{row.host}:{row.port}"
        assert series(found, "asic_up", host=host)[0][1] == (1.0 if row.reachable else 0.0)
        states = {d["state"]: v for d, v in series(found, "asic_state", host=host)}
        assert states == {s: float(s == row.state) for s in ("up", "paused", "faulty", "down")}
        if row.reachable and row.ghs is not None:
            ((labels, ghs),) = series(found, "asic_hashrate_ghs", host=host)
            assert ghs == pytest.approx(row.ghs) and labels["model"] == row.model
        if row.power_w is not None:
            ((labels, watts),) = series(found, "asic_power_watts", host=host)
            assert watts == pytest.approx(row.power_w)
            assert labels["source"] == ("estimated" if row.power_estimated else "reported")
        fans = sorted(series(found, "asic_fan_rpm", host=host), key=lambda x: int(x[0]["fan"]))
        assert [v for _, v in fans] == [float(f) for f in (row.fans if row.reachable else [])]
        if row.accepted is not None:
            assert series(found, "asic_shares_accepted_total", host=host)[0][1] == row.accepted
    assert series(found, "asic_sweep_duration_seconds")[0][1] == 1.25
    by_state = {d["state"]: v for d, v in series(found, "asic_sweep_rigs")}
    assert sum(by_state.values()) == 20 and by_state["down"] >= 1
    assert series(found, "asic_problems", problem="overheating")


def test_miner_series_count_shares_devices_and_pools():
    control = FakeControl()
    control.stats.add_hashes("CPU 0", 3_000_000)
    control.stats.share_result("accepted", 2.0, control.stats.pools[0], "CPU 0")
    control.stats.share_result("rejected", 1.0, control.stats.pools[0], "CPU 1", reason="low difficulty")
    control.stats.hardware_error("CPU 1")
    found = samples(MetricsServer([MinerCollector(control)]).render().decode())
    assert series(found, "sha256d_shares_total", pool="0", result="accepted")[0][1] == 1
    assert series(found, "sha256d_shares_total", pool="0", result="rejected")[0][1] == 1
    assert series(found, "sha256d_share_difficulty_total", pool="0", result="accepted")[0][1] == 2.0
    assert series(found, "sha256d_hardware_errors_total", device="CPU 1")[0][1] == 1
    assert series(found, "sha256d_hashes_total", device="CPU 0")[0][1] == 3_000_000
    assert series(found, "sha256d_hashrate_hashes_per_second", device="CPU 0", window="5s")[0][1] > 0
    assert [v for _, v in sorted(series(found, "sha256d_pool_active"), key=lambda x: x[0]["pool"])] == [1.0, 0.0]
    (info, _), *_ = series(found, "sha256d_miner_info")
    assert info["kernel"] == "reference" and info["version"]
    assert all("@" not in d["url"] for d, _ in series(found, "sha256d_pool_up"))


def _exporter(hosts: Path, *extra: str) -> tuple[subprocess.Popen, int, list[str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(prometheus_client.__file__).parents[1]), env.get("PYTHONPATH")) if p
    )
    proc = subprocess.Popen(
        [*MINER, "farm", "exporter", "--hosts-file", str(hosts), "--listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, lines
        lines.append(line)
        found = re.search(r"/metrics on http://127\.0\.0\.1:(\d+)/metrics", line)
        if found:
            return proc, int(found.group(1)), lines
    raise AssertionError(f"no listening line: {lines}")


@contextlib.contextmanager
def prometheus(tmp_path: Path, jobs: dict[str, int]):
    """A real Prometheus server scraping each job's 127.0.0.1 port every second; yields it and a query
    function (instant query to its result list, [] while it is not up yet)."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the Prometheus server is not installed (Debian: apt-get install prometheus)")
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
        + "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            for job, port in jobs.items()
        )
    )
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )

    def query(expr: str) -> list[dict]:
        url = f"http://127.0.0.1:{web}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            reply = json.loads(_get(url))
        except OSError:
            return []
        return reply["data"]["result"] if reply.get("status") == "success" else []

    try:
        yield server, query
    finally:
        server.terminate()
        server.communicate(timeout=30)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read().decode()


def _wait_for_sweep(port: int) -> dict:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = samples(_get(f"http://127.0.0.1:{port}/metrics"))
        if series(found, "asic_sweeps_total") and series(found, "asic_sweeps_total")[0][1] >= 1:
            return found
        time.sleep(0.1)
    raise AssertionError("the exporter never finished a sweep")


def test_exporter_serves_the_fleet_and_stops_on_sigterm(farm, tmp_path):
    hosts = tmp_path / "farm.txt"
    hosts.write_text("".join(f"{r.host}:{r.port}\n" for r in farm.farm.rigs))
    proc, port, _ = _exporter(hosts, "--interval", "1", "--timeout", "1")
    try:
        found = _wait_for_sweep(port)
        assert len(series(found, "asic_up")) == 20
        healthy = [r for r in farm.farm.rigs if r.fault is None]
        assert len([v for _, v in series(found, "asic_up") if v == 1.0]) >= len(healthy)
        with pytest.raises(urllib.error.HTTPError):
            _get(f"http://127.0.0.1:{port}/nothing")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.startswith("stopped: ") and "sweep: 20 rigs in " in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--listen", "127.0.0.1:zz"], "--listen: port must be a number", 2),
        (["--interval", "nan"], "'nan' is not a finite number", 2),
        (["--listen", "127.0.0.1:1", "--hosts-file", "/nonexistent/farm.txt"], "cannot read hosts file", 2),
    ],
)
def test_exporter_bad_input_is_one_line(tmp_path, args, message, code):
    hosts = tmp_path / "farm.txt"
    hosts.write_text("127.0.0.1:4028\n")
    base = ["farm", "exporter", "--hosts-file", str(hosts), "--listen", "127.0.0.1:0"]
    result = CliRunner().invoke(main, base + args)
    assert result.exit_code == code
    (line,) = result.output.splitlines()
    assert line.startswith("miner: error: ") and message in line, line


def test_a_real_prometheus_scrapes_both_exporters(farm, tmp_path):
    if shutil.which("prometheus") is None:
        pytest.skip("the Prometheus server is not installed (Debian: apt-get install prometheus)")
    hosts = tmp_path / "farm.txt"
    hosts.write_text("".join(f"{r.host}:{r.port}\n" for r in farm.farm.rigs))
    control = FakeControl()
    control.stats.add_hashes("CPU 0", 5_000_000)
    control.stats.share_result("accepted", 1.0, control.stats.pools[0], "CPU 0")
    own = MetricsServer([MinerCollector(control)], "127.0.0.1", 0)
    own.start()
    exporter, port, _ = _exporter(hosts, "--interval", "1", "--timeout", "1")
    with prometheus(tmp_path, {"fleet": port, "miner": own.port}) as (server, query):
        try:
            _both_exporters_scraped(farm, server, query)
        finally:
            exporter.send_signal(signal.SIGTERM)
            exporter.communicate(timeout=60)
            own.stop()


def _both_exporters_scraped(farm, server, query) -> None:
    deadline = time.monotonic() + DEADLINE
    fleet, mine = [], []
    while time.monotonic() < deadline and (len(fleet) < 20 or not mine):
        assert server.poll() is None, server.stderr.read()
        fleet = query('asic_up{job="fleet"}')
        mine = query('sha256d_shares_total{job="miner",result="accepted"}')
        time.sleep(0.5)
    assert len(fleet) == 20, fleet
    assert {r["metric"]["host"] for r in fleet} == {f"{r.host}:{r.port}" for r in farm.farm.rigs}
    assert float(mine[0]["value"][1]) == 1.0
    rates = query("asic_hashrate_ghs")
    healthy = {f"{r.host}:{r.port}": r for r in farm.farm.rigs if r.fault is None}
    scraped = {r["metric"]["host"]: float(r["value"][1]) for r in rates}
    for host, rig in healthy.items():
        assert scraped[host] == pytest.approx(rig.rate_ghs(), rel=0.05), host
    assert query('up{job="miner"}')[0]["value"][1] == "1" and query('up{job="fleet"}')[0]["value"][1] == "1"
