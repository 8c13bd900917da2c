"""Mining statistics: hash rates, share outcomes, per device and per pool.

One :class:`Stats` object is written by the engine (hashes, hardware errors)
and by the work source (share verdicts), and read by the CLI's status line and
the cgminer-compatible API. All methods are thread-safe.

Hashes are also kept apart by whether the work was *live*: a work source
that can lose its pool (``mine`` while its only pool is down keeps scanning
the last job, whose shares no pool may take) says so with :meth:`Stats.set_live`,
and the headline rate is then the rate on live work over the time work was
live, not every hash over the whole run.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

WINDOWS = {"5s": 5.0, "1m": 60.0, "5m": 300.0, "15m": 900.0}
BLOCKS_REMEMBERED = 32  # prevhashes kept to tell a new block from one already counted (cgminer keeps 6)


def coinbase_height(coinb1_hex: str) -> int | None:
    """The BIP 34 height pushed first in the coinbase scriptSig that ``coinb1`` starts, or None.

    ``coinb1`` is the non-witness coinbase up to the extranonce: version, one input whose null prevout
    is followed by the scriptSig length and the script, which BIP 34 makes begin with the height:
    OP_0, OP_1..OP_16, or a push of 1..8 bytes of CScriptNum (little-endian, sign bit on top).
    """
    try:
        raw = bytes.fromhex(coinb1_hex)
    except (TypeError, ValueError):
        return None
    pos = 4  # version
    if raw[pos : pos + 2] == b"\x00\x01":  # a witness serialisation's marker and flag
        pos += 2
    if raw[pos : pos + 1] != b"\x01":  # a coinbase has exactly one input
        return None
    pos += 1 + 36  # input count, null prevout
    length = raw[pos : pos + 1]
    if not length or length[0] >= 0xFD:  # the scriptSig is at most 100 bytes: a one-byte length
        return None
    pos += 1
    op = raw[pos : pos + 1]
    if not op:
        return None
    if op[0] == 0x00:
        return 0
    if 0x51 <= op[0] <= 0x60:
        return op[0] - 0x50
    if not 1 <= op[0] <= 8 or len(raw) < pos + 1 + op[0]:
        return None
    data = raw[pos + 1 : pos + 1 + op[0]]
    if data[-1] & 0x80:  # negative: not a height
        return None
    return int.from_bytes(data, "little")


def _hex32(value) -> int | None:
    """A notify's 4-byte hex field as a number; None if absent or not hex."""
    try:
        return int(str(value), 16) & 0xFFFFFFFF if value else None
    except ValueError:
        return None


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
    last_share_time: float = 0.0  # cgminer: of the last accepted share
    last_share_difficulty: float = 0.0  # cgminer: the work difficulty of the last accepted share

    def record(self, outcome: str, difficulty: float, when: float) -> None:
        if outcome == "accepted":
            self.accepted += 1
            self.diff_accepted += difficulty
            self.last_share_time = when
            self.last_share_difficulty = difficulty
        elif outcome == "stale":
            self.stale += 1
            self.diff_stale += difficulty
        else:
            self.rejected += 1
            self.diff_rejected += difficulty

    @property
    def diff1(self) -> float:
        """cgminer's Diff1 Work: the shares found, each counted as its work difficulty in diff-1 units."""
        return self.diff_accepted + self.diff_rejected + self.diff_stale


@dataclass
class DeviceStats:
    name: str
    kind: str = "CPU"
    meter: RateMeter = field(default_factory=RateMeter)
    shares: ShareCounts = field(default_factory=ShareCounts)
    hw_errors: int = 0
    enabled: bool = True
    last_valid_work: float = 0.0  # wall time of its last share (cgminer: of its start until then)
    last_share_pool: PoolStats | None = None  # the pool of its last accepted share


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
    current_height: int = 0  # cgminer: the chain tip's height, one below the coinbase's BIP 34 height
    current_version: int = 0  # the block version of the pool's newest job
    prevhash: str = ""  # the newest job's previous-block hash, as notified (word-swapped hex)
    nbits: int = 0  # the newest job's nBits


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
        self.last_getwork = 0.0  # wall time the engine last took new work
        self.network_blocks = 0  # cgminer's new_blocks: distinct previous-block hashes seen since start
        self._blocks_seen: OrderedDict[str, float] = OrderedDict()  # prevhash -> wall time first seen
        self.found_block_hashes: list[str] = []
        self.live_meter = RateMeter(clock)  # hashes on live work only
        self._live = True  # until a work source says otherwise, all work counts as live
        self._live_since = self.started
        self._live_before = 0.0  # seconds of live work before the current stretch

    # --- writers ----------------------------------------------------------------

    def device(self, name: str, kind: str = "CPU") -> DeviceStats:
        with self._lock:
            if name not in self.devices:
                self.devices[name] = DeviceStats(name, kind, RateMeter(self.clock), last_valid_work=self.wallclock())
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
            if self._live:
                self.live_meter.add(hashes, now)

    def set_live(self, live: bool) -> None:
        """Whether the work being hashed from now on can still earn: a pool (or node) holds it and takes shares.

        False while the miner keeps scanning a job no connected pool holds; those hashes count in
        ``hashes`` but not in ``live_hashes``, and that time not in ``live_seconds``.
        """
        with self._lock:
            if live == self._live:
                return
            now = self.clock()
            if self._live:
                self._live_before += now - self._live_since
            else:
                self._live_since = now
            self._live = live

    def _live_seconds(self, now: float) -> float:
        return self._live_before + (now - self._live_since if self._live else 0.0)

    def hardware_error(self, device: str) -> None:
        dev = self.device(device)
        with self._lock:
            dev.hw_errors += 1
            self.hw_errors += 1

    def new_work(self, pool: PoolStats | None = None) -> None:
        with self._lock:
            self.works += 1
            self.last_getwork = self.wallclock()
            if pool is not None:
                pool.works += 1

    def job_seen(self, pool: PoolStats, job) -> None:
        """A pool's job (a ``StratumJob``: the notify's hex ``prevhash``, ``coinb1``, ``version``, ``nbits``).

        Records the pool's block height and version, and, as cgminer's block_exists(), counts a
        previous-block hash not seen before in ``network_blocks`` (the first one too), whichever pool sent
        it. Calling this again for the same job changes nothing.
        """
        prevhash = str(getattr(job, "prevhash", "") or "").lower()
        coinb1 = str(getattr(job, "coinb1", "") or "")
        height = coinbase_height(coinb1) if coinb1 else None
        version, nbits = _hex32(getattr(job, "version", "")), _hex32(getattr(job, "nbits", ""))
        with self._lock:
            if prevhash and prevhash not in self._blocks_seen:
                self._blocks_seen[prevhash] = self.wallclock()
                while len(self._blocks_seen) > BLOCKS_REMEMBERED:
                    self._blocks_seen.popitem(last=False)
                self.network_blocks += 1
            pool.prevhash = prevhash
            if height is not None:
                # cgminer's pool->current_height: the coinbase's height less one, the block the job builds on
                pool.current_height = max(height - 1, 0)
            if version is not None:
                pool.current_version = version
            if nbits is not None:
                pool.nbits = nbits

    def share_found(self, share_difficulty: float, pool: PoolStats | None = None) -> None:
        """A share passed host verification; track the best one seen (its own difficulty, as cgminer's best_diff).

        Without ``pool`` the share is the only pool's when there is one; with several it counts in the total only.
        """
        with self._lock:
            self.best_share = max(self.best_share, share_difficulty)
            if pool is None and len(self.pools) == 1:
                pool = self.pools[0]
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
        """outcome: 'accepted', 'rejected' or 'stale'; ``difficulty`` is the share's work difficulty."""
        with self._lock:
            now = self.wallclock()
            self.shares.record(outcome, difficulty, now)
            # The share met its work difficulty, so the best share is at least that, whatever the verdict:
            # a floor for when the share's own difficulty was never reported for this pool.
            self.best_share = max(self.best_share, difficulty)
            if pool is not None:
                pool.shares.record(outcome, difficulty, now)
                pool.best_share = max(pool.best_share, difficulty)
                if reason:
                    pool.last_reason = reason
            dev = self.devices.get(device) if device else None
            if dev is not None:
                dev.shares.record(outcome, difficulty, now)
                dev.last_valid_work = now  # cgminer: any nonce meeting the target is valid work
                if outcome == "accepted" and pool is not None:
                    dev.last_share_pool = pool

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
                dev.last_share_pool = None
            for pool in self.pools:
                pool.shares = ShareCounts()
                pool.best_share = 0.0

    def zero_best_share(self) -> None:
        """cgminer's ``zero|bestshare``: the best share, in total and per pool."""
        with self._lock:
            self.best_share = 0.0
            for pool in self.pools:
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

    def live_seconds(self) -> float:
        """Seconds spent with live work (see :meth:`set_live`)."""
        with self._lock:
            return self._live_seconds(self.clock())

    def block_time(self, prevhash: str) -> float:
        """Wall time this block (a notify's prevhash) was first seen; 0 if never or long forgotten."""
        with self._lock:
            return self._blocks_seen.get(prevhash.lower(), 0.0)

    def pool_index(self, pool: PoolStats | None) -> int:
        """The pool's position in ``pools`` (cgminer's POOL number), -1 if none or removed."""
        with self._lock:
            for index, candidate in enumerate(self.pools):
                if candidate is pool:
                    return index
            return -1

    def snapshot(self) -> dict:
        """A plain dict for JSON output and status lines."""
        with self._lock:
            now = self.clock()
            live_seconds = self._live_seconds(now)
            live_hashes = self.live_meter.total
            return {
                "elapsed": now - self.started,
                "hashes": self.meter.total,
                "hashrate_5s": self.meter.rate(5.0),
                "hashrate_av": self.meter.average(),
                "live_hashes": live_hashes,
                "live_seconds": live_seconds,
                "live_hashrate_5s": self.live_meter.rate(5.0),
                "live_hashrate": live_hashes / live_seconds if live_seconds > 0 else 0.0,
                "accepted": self.shares.accepted,
                "rejected": self.shares.rejected,
                "stale": self.shares.stale,
                "hw_errors": self.hw_errors,
                "best_share": self.best_share,
                "blocks": self.found_blocks,
            }
