"""A pool killed and restarted 20 times under a running miner, over loopback, bounded in time.

The pool's state (jobs, sessions, duplicate set) survives each restart, as a
real pool's database would; only its listening server dies. The miner must
reconnect every time, never submit a share twice, and account for every
share its engine found: accepted, or stale for a stated reason.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from miner.engine import Engine
from miner.mining import Miner, PoolConfig
from miner.pool import EmbeddedChain, EmbeddedPool
from miner.stats import Stats
from stratum.server import ServerThread, StratumServer

HARD_NBITS = 0x1D00FFFF  # no share is a block, so the job never changes under the test
RESTARTS = 20


class RecordingStats(Stats):
    """Stats that also keep each share verdict with its reason."""

    def __init__(self) -> None:
        super().__init__()
        self.verdicts: list[tuple[str, str]] = []

    def share_result(self, outcome, difficulty, pool=None, device=None, reason="") -> None:
        self.verdicts.append((outcome, reason))
        super().share_result(outcome, difficulty, pool, device, reason)


def engine_for_test(stats: Stats) -> tuple[Engine, float]:
    """The fast CPU backend on one thread when it is there, else the reference one; and a share difficulty
    giving a few shares a second on it."""
    try:
        return Engine.for_backend("cpu", threads=1, stats=stats), 2.0**-10
    except Exception:
        return Engine.for_backend("reference", threads=1, stats=stats), 2.0**-22


class RestartablePool:
    """An EmbeddedPool whose server can be killed and brought back on the same port with the same pool state."""

    def __init__(self, difficulty: float) -> None:
        self.events: list[str] = []
        self.embedded = EmbeddedPool(
            difficulty=difficulty,
            vardiff=False,
            job_source=EmbeddedChain(nbits=HARD_NBITS),
            on_event=self.events.append,
        )
        self.embedded.start()
        self.port = self.embedded.port
        self.thread: ServerThread | None = self.embedded._thread

    def kill(self) -> None:
        assert self.thread is not None
        self.thread.stop()
        self.thread = None

    def revive(self, deadline: float) -> None:
        while True:
            thread = ServerThread(StratumServer(self.embedded.pool, "127.0.0.1", self.port))
            try:
                thread.start()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # the old socket may linger for a moment
                continue
            self.thread = thread
            return

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
        self.embedded.pool.stop()

    def count(self, pattern: str) -> int:
        return sum(1 for e in list(self.events) if re.search(pattern, e))


@pytest.mark.slow
def test_pool_killed_and_restarted_twenty_times() -> None:
    stats = RecordingStats()
    engine, difficulty = engine_for_test(stats)
    pool = RestartablePool(difficulty)
    lines: list[str] = []
    found: list = []
    miner = Miner(
        [PoolConfig(f"stratum+tcp://127.0.0.1:{pool.port}", "w", "x")],
        engine,
        stats,
        backoff_initial=0.05,
        backoff_max=0.3,
        silence_timeout=5.0,
        log=lines.append,
    )
    inner = engine.on_share

    def counting(share) -> None:
        found.append(share)
        inner(share)

    engine.on_share = counting
    deadline = time.monotonic() + 50
    miner.start()
    try:
        authorized = lambda: sum("authorized as" in line for line in list(lines))  # noqa: E731
        while authorized() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        for i in range(RESTARTS):
            time.sleep(0.3)
            pool.kill()
            time.sleep(0.3)  # the miner keeps scanning; what it finds now waits for the pool
            pool.revive(deadline)
            while authorized() < i + 2 and time.monotonic() < deadline:
                time.sleep(0.02)
        time.sleep(0.5)
    finally:
        miner.stop(2.0)
        pool.stop()
    threading.Event().wait(0.1)
    snap = stats.snapshot()
    summary = pool.embedded.summary()
    reconnects = sum("authorized as" in line for line in lines)
    disconnects = [line for line in lines if "disconnected" in line or "retrying" in line]

    assert reconnects == RESTARTS + 1, lines[-5:]
    assert len(disconnects) >= RESTARTS
    assert all(len(line.splitlines()) == 1 for line in lines)
    assert pool.count(r"rejected .*: 22 ") == 0, "a share was submitted twice"
    cut_off = sum(1 for o, r in stats.verdicts if o == "stale" and "connection lost" in r)
    # a share whose reply a kill cut off counts stale here, though the pool may have taken it
    assert snap["accepted"] <= summary["accepted"] <= snap["accepted"] + cut_off
    assert snap["rejected"] == 0
    assert snap["hw_errors"] == 0
    assert len(found) > 0
    # every share found was either accepted or counted stale for a reason (none silently dropped)
    assert snap["accepted"] + snap["stale"] == len(found), (snap, len(found))


@pytest.mark.slow
def test_shares_found_while_the_pool_is_down_are_submitted_after_it_returns() -> None:
    stats = RecordingStats()
    engine, difficulty = engine_for_test(stats)
    pool = RestartablePool(difficulty)
    lines: list[str] = []
    miner = Miner(
        [PoolConfig(f"stratum+tcp://127.0.0.1:{pool.port}", "w", "x")],
        engine,
        stats,
        backoff_initial=1.5,
        backoff_max=1.5,
        log=lines.append,
    )
    deadline = time.monotonic() + 30
    miner.start()
    try:
        while not any("authorized as" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        pool.kill()
        down_at = stats.snapshot()
        time.sleep(1.5)  # shares found now are queued
        pool.revive(deadline)
        while sum("authorized as" in line for line in lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        miner.stop(2.0)
        pool.stop()
    snap = stats.snapshot()
    assert snap["accepted"] > down_at["accepted"]
    # only a share whose reply the kill cut off may be stale (resending it could be a duplicate)
    assert [r for o, r in stats.verdicts if o == "stale" and "connection lost" not in r] == []
