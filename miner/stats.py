"""Mining statistics: hash rates, share outcomes, per device and per pool.

One :class:`Stats` object is written by the engine (hashes, hardware errors)
and by the work source (share verdicts), and read by the CLI's status line and
the cgminer-compatible API. All methods are thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

WINDOWS = {"5s": 5.0, "1m": 60.0, "5m": 300.0, "15m": 900.0}


class RateMeter:
    """Hashes per second over sliding windows, from one-second buckets."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._buckets: deque[list[float]] = deque()  # [second, hashes]
        self.total = 0

    def add(self, hashes: int, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        second = float(int(now))
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += hashes
        else:
            self._buckets.append([second, float(hashes)])
        self.total += hashes
        horizon = now - max(WINDOWS.values()) - 1
        while self._buckets and self._buckets[0][0] < horizon:
            self._buckets.popleft()

    def rate(self, window: float, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        span = min(window, max(now - self._start, 1e-9))
        cutoff = now - span
        total = 0.0
        for second, hashes in reversed(self._buckets):
            if second + 1 <= cutoff:
                break
            if second < cutoff:  # partly inside the window
                total += hashes * (second + 1 - cutoff)
            else:
                total += hashes
        return total / span

    def average(self, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        return self.total / max(now - self._start, 1e-9)


@dataclass
class ShareCounts:
    accepted: int = 0
    rejected: int = 0
    stale: int = 0
    diff_accepted: float = 0.0
    diff_rejected: float = 0.0
    diff_stale: float = 0.0
    last_share_time: float = 0.0
    last_share_difficulty: float = 0.0

    def record(self, outcome: str, difficulty: float, when: float) -> None:
        if outcome == "accepted":
            self.accepted += 1
            self.diff_accepted += difficulty
        elif outcome == "stale":
            self.stale += 1
            self.diff_stale += difficulty
        else:
            self.rejected += 1
            self.diff_rejected += difficulty
        self.last_share_time = when
        self.last_share_difficulty = difficulty


@dataclass
class DeviceStats:
    name: str
    kind: str = "CPU"
    meter: RateMeter = field(default_factory=RateMeter)
    shares: ShareCounts = field(default_factory=ShareCounts)
    hw_errors: int = 0
    enabled: bool = True
    last_valid_work: float = 0.0


@dataclass
class PoolStats:
    url: str
    user: str = ""
    priority: int = 0
    status: str = "Dead"  # cgminer: Alive, Dead, Disabled, Rejecting
    enabled: bool = True
    shares: ShareCounts = field(default_factory=ShareCounts)
    difficulty: float = 0.0
    works: int = 0
    discarded: int = 0
    get_failures: int = 0
    remote_failures: int = 0
    best_share: float = 0.0
    has_version_rolling: bool = False
    stratum_active: bool = False
    last_reason: str = ""


class Stats:
    """Everything a status line or the cgminer API reports."""

    def __init__(self, clock=time.monotonic, wallclock=time.time) -> None:
        self._lock = threading.Lock()
        self.clock = clock
        self.wallclock = wallclock
        self.started = clock()
        self.started_wall = wallclock()
        self.meter = RateMeter(clock)
        self.devices: dict[str, DeviceStats] = {}
        self.pools: list[PoolStats] = []
        self.shares = ShareCounts()
        self.hw_errors = 0
        self.found_blocks = 0
        self.best_share = 0.0
        self.works = 0
        self.found_block_hashes: list[str] = []

    # --- writers ----------------------------------------------------------------

    def device(self, name: str, kind: str = "CPU") -> DeviceStats:
        with self._lock:
            if name not in self.devices:
                self.devices[name] = DeviceStats(name, kind, RateMeter(self.clock))
            return self.devices[name]

    def add_pool(self, url: str, user: str = "") -> PoolStats:
        with self._lock:
            pool = PoolStats(url, user, priority=len(self.pools))
            self.pools.append(pool)
            return pool

    def add_hashes(self, device: str, hashes: int) -> None:
        dev = self.device(device)
        with self._lock:
            now = self.clock()
            dev.meter.add(hashes, now)
            self.meter.add(hashes, now)

    def hardware_error(self, device: str) -> None:
        dev = self.device(device)
        with self._lock:
            dev.hw_errors += 1
            self.hw_errors += 1

    def new_work(self, pool: PoolStats | None = None) -> None:
        with self._lock:
            self.works += 1
            if pool is not None:
                pool.works += 1

    def share_found(self, share_difficulty: float, pool: PoolStats | None = None) -> None:
        """A share passed host verification; track the best one seen."""
        with self._lock:
            self.best_share = max(self.best_share, share_difficulty)
            if pool is not None:
                pool.best_share = max(pool.best_share, share_difficulty)

    def share_result(
        self,
        outcome: str,
        difficulty: float,
        pool: PoolStats | None = None,
        device: str | None = None,
        reason: str = "",
    ) -> None:
        """outcome: 'accepted', 'rejected' or 'stale'."""
        with self._lock:
            now = self.wallclock()
            self.shares.record(outcome, difficulty, now)
            if pool is not None:
                pool.shares.record(outcome, difficulty, now)
                if reason:
                    pool.last_reason = reason
            if device is not None and device in self.devices:
                self.devices[device].shares.record(outcome, difficulty, now)
                if outcome == "accepted":
                    self.devices[device].last_valid_work = now

    def block_found(self, block_hash_display: str = "") -> None:
        with self._lock:
            self.found_blocks += 1
            if block_hash_display:
                self.found_block_hashes.append(block_hash_display)

    def zero(self) -> None:
        """Reset counters (cgminer's `zero` command); devices and pools stay."""
        with self._lock:
            self.shares = ShareCounts()
            self.hw_errors = 0
            self.best_share = 0.0
            self.found_blocks = 0
            for dev in self.devices.values():
                dev.shares = ShareCounts()
                dev.hw_errors = 0
            for pool in self.pools:
                pool.shares = ShareCounts()
                pool.best_share = 0.0

    # --- readers ----------------------------------------------------------------

    def elapsed(self) -> float:
        return self.clock() - self.started

    def hashrate(self, window: str = "5s") -> float:
        with self._lock:
            if window == "av":
                return self.meter.average()
            return self.meter.rate(WINDOWS[window])

    def device_hashrate(self, name: str, window: str = "5s") -> float:
        with self._lock:
            meter = self.devices[name].meter
            return meter.average() if window == "av" else meter.rate(WINDOWS[window])

    @property
    def total_hashes(self) -> int:
        return self.meter.total

    def snapshot(self) -> dict:
        """A plain dict for JSON output and status lines."""
        with self._lock:
            return {
                "elapsed": self.clock() - self.started,
                "hashes": self.meter.total,
                "hashrate_5s": self.meter.rate(5.0),
                "hashrate_av": self.meter.average(),
                "accepted": self.shares.accepted,
                "rejected": self.shares.rejected,
                "stale": self.shares.stale,
                "hw_errors": self.hw_errors,
                "best_share": self.best_share,
                "blocks": self.found_blocks,
            }
