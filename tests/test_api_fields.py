"""The cgminer API of a real ``miner mine``: after accepted shares, the fields cgminer fills hold true values.

A ``miner mine`` subprocess mines on an in-process embedded pool whose regtest chain moves with every block
found (each share at this difficulty is one), so block heights, new-block counts and stale shares all change
while the test reads the API as farm tools do, with the project's own client.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time

import pytest
from click.testing import CliRunner
from commands import MINER, backend

from miner import __version__
from miner.asic.client import ApiError, query, send_raw
from miner.asic.commands import handle_request
from miner.cli import main
from miner.coinbase import OP_TRUE_SCRIPT, build_coinbase
from miner.pool import EmbeddedPool
from miner.stats import Stats, coinbase_height
from miner.work import StratumJob

BACKEND = backend()
# A share every second or so on one core: 2 million hashes with the compiled kernel, 1000 with the reference one
DIFFICULTY = 2.0**-9 if BACKEND == "cpu" else 2.0**-20
SHARES = 4  # accepted shares to wait for
SECRET = "s3cret-pass"  # the worker's password: no reply may carry it
DEADLINE = 180.0  # numba compiling on a loaded 2-core machine, then the shares
COUNTERS = ("Accepted", "Rejected", "Stale", "Difficulty Accepted", "Difficulty Rejected", "Difficulty Stale")


def near(value: float) -> object:
    """Equal as api.c prints difficulties: to 8 decimals."""
    return pytest.approx(value, rel=1e-6, abs=2e-8)


class MinerProcess:
    """``miner mine`` on one thread with its API on a port the OS picks, read from its log."""

    def __init__(self, url: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*MINER, "mine", "-b", BACKEND, "-t", "1", "--api-listen", "127.0.0.1:0", "-o", url, "-p", SECRET, *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def api_port(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(r"cgminer API listening on 127\.0\.0\.1:(\d+)", line)
                if found:
                    return int(found.group(1))
            assert self.proc.poll() is None, self.lines[-10:]
            time.sleep(0.05)
        raise AssertionError(f"no API port in the log: {self.lines[-10:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)


def first(reply: dict, section: str) -> dict:
    records = reply[section]
    assert isinstance(records, list) and records, reply
    return records[0]


def joined(port: int) -> dict[str, dict]:
    """One summary+devs+pools+stats request: the sections of one reply."""
    reply = query("127.0.0.1", port, "summary+devs+pools+stats")
    return {name: reply[name][0] for name in ("summary", "devs", "pools", "stats")}


def counters(view: dict[str, dict]) -> tuple:
    summary, dev, pool = first(view["summary"], "SUMMARY"), first(view["devs"], "DEVS"), first(view["pools"], "POOLS")
    return tuple(rec.get(key) for rec in (summary, dev, pool) for key in COUNTERS) + (
        summary["Best Share"],
        pool["Best Share"],
        pool["Current Block Height"],
        summary["Network Blocks"],
    )


def quiet_view(port: int, deadline: float) -> dict[str, dict]:
    """Two replies in a row with the same counters: no share came between the sections being read."""
    while time.monotonic() < deadline:
        a = joined(port)
        b = joined(port)
        if counters(a) == counters(b):
            return b
    raise AssertionError("the counters never held still for two replies")


@pytest.fixture
def pool():
    with EmbeddedPool(difficulty=DIFFICULTY, vardiff=False) as embedded:
        yield embedded


@pytest.fixture
def mining(pool):
    host, port = pool.url.rsplit("//", 1)[1].rsplit(":", 1)
    miner = MinerProcess(f"stratum+tcp://worker:{SECRET}@{host}:{port}")
    try:
        yield miner
    finally:
        miner.stop()
    assert "Traceback" not in "\n".join(miner.lines), miner.lines[-20:]


def test_api_fields_hold_true_values(pool, mining) -> None:
    chain = pool.job_source
    deadline = time.monotonic() + DEADLINE
    port = mining.api_port(deadline)

    # Mine until several shares are accepted and the chain has moved; note the heights the API showed.
    heights: set[int] = set()
    while time.monotonic() < deadline:
        try:
            summary = first(query("127.0.0.1", port, "summary"), "SUMMARY")
            heights.add(first(query("127.0.0.1", port, "pools"), "POOLS")["Current Block Height"])
        except ApiError:
            summary = {}
        if summary.get("Accepted", 0) >= SHARES and len(chain.block_hashes) >= 2:
            break
        assert mining.proc.poll() is None, mining.lines[-10:]
        time.sleep(0.1)
    else:
        raise AssertionError(f"fewer than {SHARES} accepted shares: {mining.lines[-10:]}")

    # Current Block Height is cgminer's: the coinbase's BIP 34 height less one, the tip the job builds on.
    # The miner's job follows the chain after one notify; wait for a moment the two agree.
    while time.monotonic() < deadline:
        before = chain.height
        shown = first(query("127.0.0.1", port, "pools"), "POOLS")["Current Block Height"]
        heights.add(shown)
        assert shown <= chain.height - 1, (shown, chain.height)
        if chain.height == before and shown == before - 1 == pool.job_source.current().height - 1:
            agreed = shown
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the API's block height never matched the pool's job")

    view = quiet_view(port, deadline)
    summary = first(view["summary"], "SUMMARY")
    (dev,) = view["devs"]["DEVS"]
    (pool_rec,) = view["pools"]["POOLS"]
    stats = view["stats"]["STATS"]
    version_reply = query("127.0.0.1", port, "version")
    version = first(version_reply, "VERSION")
    found = pool.summary()
    print("SUMMARY", summary)
    print("DEVS", dev)
    print("POOLS", pool_rec)
    print("VERSION", version)
    print("STATS", stats)
    print("POOL SIDE", found, "chain height", chain.height, "blocks", len(chain.block_hashes))

    # --- shares: the same shares counted per device, per pool and in total (one device, one pool) ---
    accepted, rejected, stale = summary["Accepted"], summary["Rejected"], summary["Stale"]
    assert accepted >= SHARES and found["accepted"] >= accepted  # the pool counted each one it accepted
    for key in COUNTERS:
        assert dev.get(key, summary[key]) == near(summary[key]), key
        assert pool_rec[key] == near(summary[key]), key
    assert summary["Difficulty Accepted"] == near(accepted * DIFFICULTY)
    assert summary["Difficulty Stale"] == near(stale * DIFFICULTY)
    diff1 = summary["Difficulty Accepted"] + summary["Difficulty Rejected"] + summary["Difficulty Stale"]

    # Diff1 Work / Diff1 Shares: the shares found in diff-1 units, never a false 0 below difficulty 1
    assert dev["Diff1 Work"] > 0 and dev["Diff1 Work"] == near(diff1)
    assert pool_rec["Diff1 Shares"] == near(diff1)

    # Best Share: the best share's own difficulty, at least what every share had to meet
    assert summary["Best Share"] > 0 and summary["Best Share"] >= DIFFICULTY - 1e-8  # printed to 8 decimals
    assert pool_rec["Best Share"] == summary["Best Share"]  # one pool: its best is the best
    assert summary["Best Share"] >= pool_rec["Last Share Difficulty"]

    # Last Share *: the last accepted share's pool, time and work difficulty
    when = version_reply["STATUS"][0]["When"]
    assert dev["Last Share Pool"] == 0
    assert dev["Last Share Difficulty"] == near(DIFFICULTY)
    assert pool_rec["Last Share Difficulty"] == near(DIFFICULTY)
    assert 0 < dev["Last Share Time"] == pool_rec["Last Share Time"] <= when
    assert dev["Last Share Time"] <= dev["Last Valid Work"] <= when
    assert 0 < summary["Last getwork"] <= when and summary["Getworks"] >= 1

    # utilities and percentages, as api.c computes them (per minute of the unrounded Elapsed)
    elapsed = summary["Elapsed"]
    assert elapsed > 0
    for key, count in (("Work Utility", diff1), ("Utility", accepted)):
        low, high = count / (elapsed + 0.5) * 60 - 0.01, count / max(elapsed - 0.5, 1e-9) * 60 + 0.01
        assert low <= summary[key] <= high, (key, summary[key], count, elapsed)
    shares = accepted + rejected + stale  # all of one difficulty: the shares' ratios are their difficulties'
    for rec in (summary, pool_rec):
        assert rec["Pool Rejected%"] == pytest.approx(100 * rejected / shares, abs=1e-3)
        assert rec["Pool Stale%"] == pytest.approx(100 * stale / shares, abs=1e-3)
    for rec in (summary, dev):
        hw = rec["Hardware Errors"]
        assert rec["Device Hardware%"] == pytest.approx(100 * hw / (hw + diff1), abs=1e-3)

    # --- blocks: every share here is a block, so the chain moved and the pool saw it ---
    assert summary["Found Blocks"] >= 1 and found["blocks"] >= 1
    assert 1 <= summary["Network Blocks"] <= len(chain.block_hashes) + 1  # each a prevhash the chain had
    assert summary["Network Blocks"] >= len(heights - {0}) >= 1  # every height the API showed was a new block
    assert 1 <= agreed <= pool_rec["Current Block Height"] <= chain.height - 1  # the chain moved past genesis
    assert pool_rec["Current Block Version"] == chain.version == 0x20000000

    # --- who we are: our own name and version where cgminer puts its own ---
    assert version["Miner"] == f"sha256d-miner {__version__}" and version["API"] == "3.7"
    assert version["Type"] == "sha256d-miner" and "CGMiner" not in version
    assert version_reply["STATUS"][0]["Description"] == f"sha256d-miner {__version__}"
    assert stats[0]["Miner"] == f"sha256d-miner {__version__}" and "CGMiner" not in stats[0]
    assert stats[1]["ID"] == f"{dev['Name']}{dev['ID']}" and stats[1]["Total Hashes"] > 0
    assert any(s.get("ID") == "POOL0" for s in stats)

    # --- no reply carries the password, in either form ---
    for command in ("summary+devs+pools+stats+version+config+coin+lcd", "pools", "lcd"):
        for payload in (b'{"command":"%s"}' % command.encode(), command.encode()):
            assert SECRET.encode() not in send_raw("127.0.0.1", port, payload), command


def test_switchpool_moves_the_active_pool_and_the_fleet_view(pool) -> None:
    """After switchpool the new pool alone is Stratum Active, with its block fields, and asic summary shows it."""
    with EmbeddedPool(difficulty=DIFFICULTY, vardiff=False) as backup:
        urls = [p.url.replace("stratum+tcp://", f"stratum+tcp://worker:{SECRET}@") for p in (pool, backup)]
        miner = MinerProcess(urls[0], "-o", urls[1], "--api-allow", "W:127.0.0.1")
        try:
            deadline = time.monotonic() + DEADLINE
            port = miner.api_port(deadline)
            target = f"127.0.0.1:{port}"

            def view() -> tuple[str, list[dict]]:
                rows = json.loads(CliRunner().invoke(main, ["asic", "summary", target, "--json"]).stdout)
                return rows[0]["pool"], query("127.0.0.1", port, "pools")["POOLS"]

            def wait_for(url: str) -> list[dict]:
                while time.monotonic() < deadline:
                    shown, pools = view()
                    assert sum(p["Stratum Active"] for p in pools) <= 1, pools
                    both_up = all(p["Status"] == "Alive" for p in pools)
                    if shown == url and both_up and all(p["Current Block Version"] for p in pools):
                        return pools
                    assert miner.proc.poll() is None, miner.lines[-10:]
                    time.sleep(0.1)
                raise AssertionError(f"the fleet view never showed {url}: {view()}")

            pools = wait_for(pool.url)
            assert [p["Stratum Active"] for p in pools] == [True, False]
            result = CliRunner().invoke(main, ["asic", "switchpool", "1", target])
            assert result.exit_code == 0, result.output
            pools = wait_for(backup.url)
            assert [p["Stratum Active"] for p in pools] == [False, True]
            assert pools[1]["Stratum URL"] == backup.url.split("://", 1)[1]
            assert pools[1]["Current Block Version"] == backup.job_source.version == 0x20000000
            assert 0 <= pools[1]["Current Block Height"] <= backup.job_source.height - 1
        finally:
            miner.stop()
        assert "Traceback" not in "\n".join(miner.lines), miner.lines[-20:]


# --- the pieces, without a miner ------------------------------------------------------------------------


@pytest.mark.parametrize("height", [0, 1, 16, 17, 127, 128, 255, 256, 32767, 32768, 840_000, 2**31 - 1])
def test_coinbase_height_reads_the_bip34_push(height: int) -> None:
    coinb1 = build_coinbase(height, 50 * 10**8, OP_TRUE_SCRIPT).coinb1.hex()
    assert coinbase_height(coinb1) == height


def test_coinbase_height_of_what_is_not_a_coinbase_is_none() -> None:
    assert coinbase_height("") is None and coinbase_height("zz") is None and coinbase_height("01000000") is None
    two_inputs = "01000000" + "02" + "00" * 36 + "0151"
    assert coinbase_height(two_inputs) is None


def test_stats_count_blocks_heights_and_the_last_share_pool() -> None:
    stats = Stats()
    a, b = stats.add_pool("stratum+tcp://a:1"), stats.add_pool("stratum+tcp://b:2")
    stats.device("CPU 0")

    def job(prevhash: str, height: int) -> StratumJob:
        coinb1 = build_coinbase(height, 0, OP_TRUE_SCRIPT).coinb1.hex()
        return StratumJob("1", prevhash, coinb1, "", (), "20000000", "1d00ffff", "00000000")

    stats.job_seen(a, job("11" * 32, 101))
    stats.job_seen(a, job("11" * 32, 101))  # the same job again: no new block
    stats.job_seen(b, job("11" * 32, 101))  # the same block from another pool: no new block
    assert stats.network_blocks == 1 and a.current_height == b.current_height == 100
    stats.job_seen(a, job("22" * 32, 102))
    assert stats.network_blocks == 2 and a.current_height == 101 and a.current_version == 0x20000000
    assert stats.block_time("22" * 32) > 0 and a.nbits == 0x1D00FFFF

    stats.share_result("accepted", 0.25, b, "CPU 0")
    stats.share_result("rejected", 0.5, a, "CPU 0")  # the last share, but not accepted
    dev = stats.devices["CPU 0"]
    assert stats.pool_index(dev.last_share_pool) == 1 and dev.shares.last_share_difficulty == 0.25
    assert dev.shares.diff1 == pytest.approx(0.75) and a.shares.last_share_time == 0.0

    stats.share_found(3.5)  # several pools: the share's pool is unknown, the total still counts it
    assert stats.best_share == 3.5 and a.best_share == 0.5 and b.best_share == 0.25
    stats.share_found(7.0, a)
    assert stats.best_share == 7.0 and a.best_share == 7.0


def test_sub_one_difficulties_are_not_printed_as_zero() -> None:
    stats = Stats()
    stats.add_pool("stratum+tcp://a:1")
    stats.device("CPU 0")

    class Control:
        backend_name = "reference"

        def __init__(self) -> None:
            self.stats = stats
            self.started_wall = stats.started_wall

        def current_pool(self) -> int:
            return 0

    stats.share_found(0.0421)  # the only pool's share
    stats.share_result("accepted", 2.0**-9, stats.pools[0], "CPU 0")
    reply, _ = handle_request(b'{"command":"summary+devs+pools"}', Control(), False)
    text = reply.decode()
    assert '"Best Share":0.04210000' in text and '"Diff1 Work":0.00195312' in text
    assert '"Diff1 Shares":0.00195312' in text and '"Last Share Pool":0' in text
    stats.share_found(123.7)
    reply, _ = handle_request(b'{"command":"summary"}', Control(), False)
    assert '"Best Share":123,' in reply.decode()  # from 1 up, an integer as cgminer prints it
