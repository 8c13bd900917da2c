"""The pool's logic: job sources, share validation and vardiff.

The wire side lives in :mod:`stratum.server`, which knows nothing of blocks;
it hands each connection's requests to a :class:`PoolSession` made here. A
share is checked by rebuilding the header with :func:`miner.work.job_header`,
the very function the miner uses, so the two cannot disagree on byte order.
"""

from __future__ import annotations

import itertools
import secrets
import ssl
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from miner.block import (
    DIFF1_TARGET,
    check_nbits,
    difficulty_to_target,
    hash_to_display_hex,
    hash_to_int,
    merkle_root_from_branches,
    nbits_to_target,
    sha256d,
)
from miner.coinbase import OP_TRUE_SCRIPT, build_coinbase, coinbase_txid, serialize_block
from miner.work import StratumJob, internal_prevhash_to_stratum, job_header, roll_version
from stratum.server import (
    DUPLICATE,
    JOB_NOT_FOUND,
    LOW_DIFFICULTY,
    NOT_SUBSCRIBED,
    OTHER,
    UNAUTHORIZED,
    RequestError,
    ServerThread,
    StratumServer,
)

EXTRANONCE1_SIZE = 4
EXTRANONCE2_SIZE = 4
DEFAULT_VERSION_MASK = 0x1FFFE000  # BIP 320's general-purpose bits
MAX_FUTURE_NTIME = 7200  # consensus: a block may be at most two hours ahead
#: about one share per 5 s at 10 MH/s (diff 1 = 2^32 hashes)
DEFAULT_DIFFICULTY = 0.01
MIN_DIFFICULTY = 2.0**-32
MAX_DIFFICULTY = 2.0**48
REGTEST_NBITS = 0x207FFFFF
REGTEST_GENESIS_DISPLAY = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
REGTEST_HALVING = 150
COIN = 100_000_000


@dataclass
class PoolJob:
    """One template the pool hands out as ``mining.notify``."""

    job_id: str
    prev_block_internal: bytes  # 32 bytes, header order
    coinb1: bytes  # coinbase tx (non-witness serialisation) before extranonce1+extranonce2
    coinb2: bytes  # ... and after
    merkle_branches: list[bytes]  # internal order, for the coinbase at index 0
    version: int
    nbits: int
    ntime: int
    height: int
    transactions: list[bytes]  # raw txs after the coinbase, for block assembly
    coinbase_witness: bool = False  # True if the block needs the segwit coinbase (witness commitment present)

    def stratum_job(self, clean: bool = False, job_id: str | None = None) -> StratumJob:
        """The notify fields, hex as on the wire (prevhash word-swapped)."""
        return StratumJob(
            job_id=self.job_id if job_id is None else job_id,
            prevhash=internal_prevhash_to_stratum(self.prev_block_internal),
            coinb1=self.coinb1.hex(),
            coinb2=self.coinb2.hex(),
            merkle_branch=tuple(b.hex() for b in self.merkle_branches),
            version=f"{self.version & 0xFFFFFFFF:08x}",
            nbits=f"{self.nbits:08x}",
            ntime=f"{self.ntime:08x}",
            clean_jobs=clean,
        )

    @property
    def network_target(self) -> int:
        return nbits_to_target(self.nbits)


class JobSource(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def current(self) -> PoolJob: ...

    def add_listener(self, callback: Callable[[PoolJob, bool], None]) -> None: ...

    def submit_block(self, job: PoolJob, header80: bytes, coinbase_tx: bytes) -> str: ...


def check_block(job: PoolJob, header80: bytes, coinbase_tx: bytes) -> str:
    """The checks any job source can make locally: 'ok' or a node-style reason."""
    if len(header80) != 80:
        return "bad-header-size"
    if header80[4:36] != job.prev_block_internal:
        return "bad-prevblk"
    if hash_to_int(sha256d(header80)) > job.network_target:
        return "high-hash"
    root = merkle_root_from_branches(coinbase_txid(coinbase_tx), job.merkle_branches)
    if header80[36:68] != root:
        return "bad-txnmrklroot"
    if not coinbase_tx.startswith(job.coinb1) or not coinbase_tx.endswith(job.coinb2):
        return "bad-cb-prefix"
    return "ok"


class EmbeddedChain:
    """A regtest-like chain in memory: found blocks extend it, and a clean job follows.

    No transactions besides the coinbase; the coinbase carries the BIP 34
    height and pays ``payout_script`` the regtest subsidy.
    """

    def __init__(
        self,
        payout_script: bytes = OP_TRUE_SCRIPT,
        nbits: int = REGTEST_NBITS,
        start_height: int = 1,
        prev_block_display: str = REGTEST_GENESIS_DISPLAY,
        extranonce_size: int = EXTRANONCE1_SIZE + EXTRANONCE2_SIZE,
        version: int = 0x20000000,
        refresh_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_nbits(nbits)  # an nBits no hash can meet fails here (ValueError naming nBits), not mid-run
        self.payout_script = payout_script
        self.nbits = nbits
        self.extranonce_size = extranonce_size
        self.version = version
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self.blocks: list[bytes] = []  # serialised blocks found, oldest first
        self.block_hashes: list[bytes] = []  # internal order
        self._lock = threading.RLock()
        self._listeners: list[Callable[[PoolJob, bool], None]] = []
        self._ids = itertools.count(1)
        self._tip = bytes.fromhex(prev_block_display)[::-1]
        self._height = start_height
        self._last_time = 0
        self._job = self._make_job()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def height(self) -> int:
        """The height of the block being mined."""
        return self._height

    @property
    def tip_internal(self) -> bytes:
        return self._tip

    def _make_job(self) -> PoolJob:
        ntime = max(int(self.clock()), self._last_time + 1)
        subsidy = (50 * COIN) >> (self._height // REGTEST_HALVING) if self._height // REGTEST_HALVING < 64 else 0
        parts = build_coinbase(self._height, subsidy, self.payout_script, extranonce_size=self.extranonce_size)
        return PoolJob(
            job_id=f"{next(self._ids):x}",
            prev_block_internal=self._tip,
            coinb1=parts.coinb1,
            coinb2=parts.coinb2,
            merkle_branches=[],
            version=self.version,
            nbits=self.nbits,
            ntime=ntime,
            height=self._height,
            transactions=[],
        )

    def start(self) -> None:
        if self.refresh_seconds and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._refresh_loop, name="embedded-chain", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def _refresh_loop(self) -> None:
        """A fresh ntime now and then, as a node's template refresh would give."""
        while not self._stop.wait(self.refresh_seconds):
            with self._lock:
                self._job = self._make_job()
                job = self._job
            self._announce(job, False)

    def current(self) -> PoolJob:
        with self._lock:
            return self._job

    def add_listener(self, callback: Callable[[PoolJob, bool], None]) -> None:
        self._listeners.append(callback)

    def _announce(self, job: PoolJob, clean: bool) -> None:
        for callback in list(self._listeners):
            callback(job, clean)

    def submit_block(self, job: PoolJob, header80: bytes, coinbase_tx: bytes) -> str:
        with self._lock:
            if job.prev_block_internal != self._tip:
                return "stale-prevblk"
            verdict = check_block(job, header80, coinbase_tx)
            if verdict != "ok":
                return verdict
            block_hash = sha256d(header80)
            self.blocks.append(serialize_block(header80, coinbase_tx, job.transactions))
            self.block_hashes.append(block_hash)
            self._tip = block_hash
            self._height += 1
            self._last_time = max(self._last_time, int.from_bytes(header80[68:72], "little"))
            self._job = self._make_job()
            new_job = self._job
        self._announce(new_job, True)
        return "accepted"


# --- vardiff ----------------------------------------------------------------------


class Vardiff:
    """Retargets one connection's share difficulty toward one share per ``interval`` s.

    The estimate is the accepted work (sum of share difficulties) over the
    window, so shares at an old difficulty still count for what they were.
    A step changes difficulty by at most ``max_step``; small changes are
    ignored so miners are not pestered with set_difficulty.

    A flood, a full window of shares at ``flood_pace`` times the wanted pace or
    more, is met with one jump to the estimate (at most ``max_flood_step``), as
    ckpool jumps to its optimum, instead of a crawl of ``max_step`` a window.
    Where every share is also a block (a regtest-like target) each share
    replaces every miner's job and turns the work the miner has in flight
    stale, so a miner far faster than its start difficulty would otherwise
    spend a dozen blocks at several a second, a third or more of its shares
    stale. A window that fast comes about once in a thousand at the wanted
    pace. The first window is timed from its first share, so a miner that took
    a while to start hashing (compiling its kernel) is still seen as fast.
    """

    def __init__(
        self,
        difficulty: float,
        interval: float = 5.0,
        min_difficulty: float = MIN_DIFFICULTY,
        max_difficulty: float = MAX_DIFFICULTY,
        retarget_shares: int = 4,
        retarget_seconds: float | None = None,
        max_step: float = 4.0,
        now: float | None = None,
        flood_pace: float = 10.0,
        max_flood_step: float = 256.0,
    ) -> None:
        if interval <= 0:
            raise ValueError("vardiff interval must be positive")
        self.difficulty = min(max(difficulty, min_difficulty), max_difficulty)
        self.interval = interval
        self.min_difficulty = min_difficulty
        self.max_difficulty = max_difficulty
        self.retarget_shares = retarget_shares
        self.retarget_seconds = retarget_seconds if retarget_seconds is not None else 4 * interval
        self.max_step = max_step
        self.flood_pace = flood_pace
        self.max_flood_step = max(max_flood_step, max_step)
        self._lead_in = True  # the first window: it may start long before the miner hashes
        self.reset(time.monotonic() if now is None else now)

    def reset(self, now: float) -> None:
        self._window_start = now
        self._shares = 0
        self._work = 0.0
        self._first_at: float | None = None  # when the window's first share came, where the caller said
        self._first_work = 0.0

    def record_share(self, difficulty: float, now: float | None = None) -> None:
        if self._shares == 0 and now is not None:
            self._first_at, self._first_work = now, difficulty
        self._shares += 1
        self._work += difficulty

    def retarget(self, now: float) -> float | None:
        """The new difficulty when it should change now, else None."""
        elapsed = now - self._window_start
        if self._shares < self.retarget_shares and elapsed < self.retarget_seconds:
            return None
        if elapsed <= 0:
            return None
        if self._shares == 0:
            wanted = self.difficulty / self.max_step
        else:
            wanted = self._work * self.interval / elapsed
        rise = self.max_step
        if self._shares >= self.retarget_shares:
            pace = wanted
            since_first = now - self._first_at if self._first_at is not None else 0.0
            if self._lead_in and since_first > 0:  # the pace between shares, not the wait for a miner to start
                pace = max(pace, (self._work - self._first_work) * self.interval / since_first)
            self._lead_in = False
            if pace >= self.flood_pace * self.difficulty:
                wanted, rise = pace, self.max_flood_step
        wanted = min(max(wanted, self.difficulty / self.max_step), self.difficulty * rise)
        wanted = min(max(wanted, self.min_difficulty), self.max_difficulty)
        self.reset(now)
        if 0.8 <= wanted / self.difficulty <= 1.25:
            return None
        self.difficulty = wanted
        return wanted

    def set(self, difficulty: float, now: float) -> float:
        self.difficulty = min(max(difficulty, self.min_difficulty), self.max_difficulty)
        self.reset(now)
        return self.difficulty


# --- the pool -----------------------------------------------------------------------


class Outbox(Protocol):
    """What the transport lets the pool push to one connection (thread-safe)."""

    def notify(self, params: list) -> None: ...

    def set_difficulty(self, difficulty: float) -> None: ...

    def set_version_mask(self, mask: int) -> None: ...

    def show_message(self, text: str) -> None: ...

    def close(self) -> None: ...


_REJECT_NAMES = {
    OTHER: "other",
    JOB_NOT_FOUND: "job not found",
    DUPLICATE: "duplicate share",
    LOW_DIFFICULTY: "low difficulty share",
    UNAUTHORIZED: "unauthorized worker",
    NOT_SUBSCRIBED: "not subscribed",
}
_JOB_REASONS = ("stale job", "job not found")


@dataclass
class ShareResult:
    """An accepted share, for logs and tests."""

    worker: str
    job_id: str
    difficulty: float  # the difficulty it was credited at
    share_difficulty: float  # what its hash would meet
    hash_internal: bytes
    block: str | None = None  # the job source's verdict when it met the network target


@dataclass
class _SentJob:
    job: PoolJob
    difficulty: float


@dataclass
class _WorkerState:
    """Per-extranonce1 state that survives a reconnect with the same session id."""

    extranonce1: bytes
    jobs: OrderedDict[str, _SentJob] = field(default_factory=OrderedDict)
    vardiff: Vardiff | None = None
    difficulty: float = DEFAULT_DIFFICULTY
    version_mask: int = 0
    authorized: set[str] = field(default_factory=set)
    live: bool = False


class Pool:
    """Shared pool state: jobs, counters, extranonce1 allocation, vardiff settings."""

    MAX_JOBS_PER_CONNECTION = 32
    MAX_VALID_JOBS = 32  # templates still accepted without a clean job
    MAX_RESUMABLE = 1024

    def __init__(
        self,
        job_source: JobSource | None = None,
        difficulty: float | None = None,
        vardiff: bool = True,
        share_interval: float = 5.0,
        version_mask: int = DEFAULT_VERSION_MASK,
        extranonce2_size: int = EXTRANONCE2_SIZE,
        min_difficulty: float = MIN_DIFFICULTY,
        max_difficulty: float = MAX_DIFFICULTY,
        credentials: dict[str, str] | None = None,
        on_event: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_source: JobSource = job_source or EmbeddedChain(extranonce_size=EXTRANONCE1_SIZE + extranonce2_size)
        self.difficulty = DEFAULT_DIFFICULTY if difficulty is None else difficulty
        if not self.difficulty > 0:
            raise ValueError("share difficulty must be positive")
        self.vardiff = vardiff
        self.share_interval = share_interval
        self.version_mask = version_mask & 0xFFFFFFFF
        self.extranonce2_size = extranonce2_size
        self.min_difficulty = min_difficulty
        self.max_difficulty = max_difficulty
        self.credentials = credentials
        self.on_event = on_event
        self.clock = clock
        self.monotonic = monotonic
        self._lock = threading.RLock()
        self._sessions: set[PoolSession] = set()
        self._states: OrderedDict[bytes, _WorkerState] = OrderedDict()
        self._next_e1 = secrets.randbits(32)
        self._valid: OrderedDict[str, PoolJob] = OrderedDict()  # job id -> job, still mineable
        self._stale: OrderedDict[str, PoolJob] = OrderedDict()
        self._seen: set[tuple] = set()
        self._started = monotonic()
        self._stopped_at: float | None = None
        self.connections = 0
        self.accepted = 0
        self.rejected = 0
        self.blocks = 0
        self.block_hashes: list[str] = []
        self.rejections: Counter[str] = Counter()  # refused shares by reason, for rejection_reasons()
        self.job_source.add_listener(self._on_job)

    # --- lifecycle ---

    def start(self) -> None:
        self._started = self.monotonic()
        self._stopped_at = None
        self.job_source.start()
        self.current_job()

    def stop(self) -> None:
        if self._stopped_at is None:
            self._stopped_at = self.monotonic()  # the run's length, not the job source's shutdown
        self.job_source.stop()

    def summary(self) -> dict:
        with self._lock:
            return {
                "connections": self.connections,
                "accepted": self.accepted,
                "rejected": self.rejected,
                "blocks": self.blocks,
                "seconds": round((self._stopped_at or self.monotonic()) - self._started, 3),
            }

    def log(self, text: str) -> None:
        if self.on_event is not None:
            self.on_event(text)

    # --- jobs ---

    def current_job(self) -> PoolJob:
        with self._lock:
            if not self._valid:
                self._remember(self.job_source.current(), clean=True)
            return next(reversed(self._valid.values()))

    def _remember(self, job: PoolJob, clean: bool) -> None:
        if clean:
            for old_id, old in self._valid.items():
                self._stale[old_id] = old
            self._valid.clear()
        self._valid[job.job_id] = job
        while len(self._valid) > self.MAX_VALID_JOBS:
            old_id, old = self._valid.popitem(last=False)
            self._stale[old_id] = old
        self._seen = {key for key in self._seen if key[0] in self._valid}
        while len(self._stale) > 4 * self.MAX_VALID_JOBS:
            self._stale.popitem(last=False)

    def _on_job(self, job: PoolJob, clean: bool) -> None:
        """A new template from the job source: every connection gets it now."""
        with self._lock:
            self._remember(job, clean)
            sessions = list(self._sessions)
        self.log(f"new job {job.job_id} height {job.height}{' (clean)' if clean else ''}")
        for session in sessions:
            session.send_job(job, clean)

    def job_state(self, job_id: str) -> str:
        with self._lock:
            if job_id in self._valid:
                return "valid"
            return "stale" if job_id in self._stale else "unknown"

    # --- sessions ---

    def open_session(self, outbox: Outbox, peer: str = "") -> PoolSession:
        return self.register_session(PoolSession(self, outbox, peer))

    def register_session(self, session: Any) -> Any:
        """Count a connection and send it every new job (``session.send_job(job, clean)``) until it closes.

        Any protocol's session may register: the V2 side (:mod:`miner.pool_v2`) does, so both share one
        job stream, one set of counts and one duplicate check.
        """
        with self._lock:
            self._sessions.add(session)
            self.connections += 1
        self.log(f"connect {session.peer}")
        return session

    def _close_session(self, session: Any) -> None:
        with self._lock:
            self._sessions.discard(session)
            if getattr(session, "state", None) is not None:
                session.state.live = False
        self.log(f"disconnect {session.peer}")

    def release_state(self, state: _WorkerState) -> None:
        """A worker state (extranonce1) no connection uses any more; it stays resumable while remembered."""
        with self._lock:
            state.live = False

    def verify_share(
        self,
        job: PoolJob,
        difficulty: float,
        extranonce1: bytes,
        extranonce2: bytes,
        ntime: int,
        nonce: int,
        version: int,
    ) -> tuple[bytes, float, str | None]:
        """The checks every share passes, whichever protocol brought it: ntime window, target, duplicate, block.

        The header is rebuilt with :func:`miner.work.job_header`, as the miner builds it. Returns the hash
        (internal order), the share's own difficulty and the job source's verdict when it is a block; raises
        :class:`RequestError` (Stratum V1's codes, which the V2 side maps to its own) when it is refused.
        """
        if ntime < job.ntime or ntime > max(job.ntime, int(self.clock())) + MAX_FUTURE_NTIME:
            raise RequestError(OTHER, "ntime out of range")
        key = (job.job_id, extranonce1, extranonce2, ntime, nonce, version)
        header = job_header(job.stratum_job(), extranonce1, extranonce2, ntime=ntime, version=version, nonce=nonce)
        digest = sha256d(header)
        value = hash_to_int(digest)
        is_block = value <= job.network_target
        if not is_block and value > difficulty_to_target(difficulty):
            raise RequestError(LOW_DIFFICULTY, "low difficulty share")
        if not self._first_submit(key):
            raise RequestError(DUPLICATE, "duplicate share")
        block = None
        if is_block:
            block = self._block_found(job, header, job.coinb1 + extranonce1 + extranonce2 + job.coinb2)
        share_diff = DIFF1_TARGET / value if value else float("inf")
        return digest, share_diff, block

    def _allocate(self, resume: str | None) -> _WorkerState:
        with self._lock:
            if resume:
                try:
                    e1 = bytes.fromhex(resume)
                except ValueError:
                    e1 = b""
                state = self._states.get(e1)
                if state is not None and not state.live:
                    state.live = True
                    self._states.move_to_end(e1)
                    return state
            while True:
                e1 = self._next_e1.to_bytes(EXTRANONCE1_SIZE, "big")
                self._next_e1 = (self._next_e1 + 1) & 0xFFFFFFFF
                if e1 not in self._states:
                    break
            state = _WorkerState(e1, difficulty=self.difficulty, live=True)
            if self.vardiff:
                state.vardiff = Vardiff(
                    self.difficulty,
                    self.share_interval,
                    self.min_difficulty,
                    self.max_difficulty,
                    now=self.monotonic(),
                )
            self._states[e1] = state
            while len(self._states) > self.MAX_RESUMABLE:
                oldest = next(iter(self._states))
                if self._states[oldest].live:
                    break
                del self._states[oldest]
            return state

    def _count(self, accepted: bool, code: int = OTHER, message: str = "") -> None:
        with self._lock:
            if accepted:
                self.accepted += 1
            else:
                self.rejected += 1
                # a bounded set of keys: the code's name, but 21 tells a replaced job from an unknown one
                reason = message if code == JOB_NOT_FOUND and message in _JOB_REASONS else _REJECT_NAMES.get(code)
                self.rejections[reason or "other"] += 1

    def rejection_reasons(self) -> dict[str, int]:
        """Refused shares by reason ("stale job": its job was replaced by a block; "job not found", ...)."""
        with self._lock:
            return dict(self.rejections)

    def _first_submit(self, key: tuple) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True

    def _block_found(self, job: PoolJob, header80: bytes, coinbase_tx: bytes) -> str:
        try:
            verdict = self.job_source.submit_block(job, header80, coinbase_tx)
        except Exception as exc:  # a node that is down must not take the pool with it
            verdict = f"submit failed: {exc}"
        block_hash = hash_to_display_hex(sha256d(header80))
        if verdict == "accepted":
            with self._lock:
                self.blocks += 1
                self.block_hashes.append(block_hash)
        self.log(f"block {block_hash} height {job.height}: {verdict}")
        return verdict


class PoolSession:
    """One connection's view of the pool; the transport calls these per request."""

    def __init__(self, pool: Pool, outbox: Outbox, peer: str) -> None:
        self.pool = pool
        self.outbox = outbox
        self.peer = peer
        self.state: _WorkerState | None = None
        self.user_agent = ""
        self.version_mask = 0
        self._suggested: float | None = None
        self._authorized_early: set[str] = set()
        self._wire_ids = itertools.count(1)
        self._lock = threading.RLock()

    # --- requests ---

    def subscribe(self, user_agent: str = "", session_id: str | None = None) -> tuple[str, bytes, int]:
        """(session id, extranonce1, extranonce2_size); a known session id resumes its extranonce1."""
        with self._lock:
            if self.state is None:
                self.state = self.pool._allocate(session_id)
                self.state.authorized = set(self._authorized_early)  # a resumed session authorizes afresh
                if self._suggested is not None:
                    self._apply_difficulty(self._suggested, announce=False)
            self.user_agent = user_agent
            self.state.version_mask = self.version_mask
            e1 = self.state.extranonce1
        self.pool.log(f"subscribe {self.peer} {user_agent!r} extranonce1 {e1.hex()}")
        return e1.hex(), e1, self.pool.extranonce2_size

    def subscribed(self) -> None:
        """After the subscribe reply: the difficulty, then the current job."""
        with self._lock:
            if self.state is None:
                return
            self.outbox.set_difficulty(self.state.difficulty)
        self.send_job(self.pool.current_job(), True)

    def authorize(self, user: str, password: str = "") -> bool:
        creds = self.pool.credentials
        ok = creds is None or creds.get(user) == password
        if ok:
            with self._lock:
                self._authorized.add(user)
        self.pool.log(f"authorize {user!r} from {self.peer}: {'ok' if ok else 'refused'}")
        return ok

    @property
    def _authorized(self) -> set[str]:
        return self.state.authorized if self.state is not None else self._authorized_early

    def configure(self, extensions: list, params: dict) -> int:
        """BIP 310: the version-rolling mask agreed (the pool's, narrowed by the miner's); 0 if none."""
        if "version-rolling" not in extensions:
            return 0
        try:
            offered = int(str(params.get("version-rolling.mask", "ffffffff")), 16) & 0xFFFFFFFF
        except ValueError:
            offered = 0
        mask = self.pool.version_mask & offered
        with self._lock:
            self.version_mask = mask
            if self.state is not None:
                self.state.version_mask = mask
        self.pool.log(f"configure {self.peer}: version rolling mask {mask:08x}")
        return mask

    def violation(self, method: str | None, code: int, reason: str) -> None:
        """A request the protocol layer refused before it reached us (e.g. submit before subscribe)."""
        if method == "mining.submit":
            self.pool._count(False, code, reason)
        self.pool.log(f"refused {method or 'message'} from {self.peer}: {code} {reason}")

    def suggest_difficulty(self, difficulty: float) -> None:
        if not isinstance(difficulty, (int, float)) or not difficulty > 0:
            raise RequestError(OTHER, "suggested difficulty must be a positive number")
        with self._lock:
            if self.state is None:
                self._suggested = float(difficulty)
                return
            self._apply_difficulty(float(difficulty), announce=True)

    def tick(self) -> None:
        """Periodic housekeeping: vardiff lowers difficulty for a silent miner."""
        self._maybe_retarget()

    def close(self) -> None:
        self.pool._close_session(self)

    # --- pushes ---

    def send_job(self, job: PoolJob, clean: bool) -> None:
        """Notify ``job`` at the current difficulty under a wire id this connection remembers."""
        with self._lock:
            state = self.state
            if state is None:
                return
            wire_id = job.job_id
            sent = state.jobs.get(wire_id)
            if sent is not None and sent.difficulty != state.difficulty:  # a retarget: a new id, the new difficulty
                wire_id = f"{job.job_id}.{next(self._wire_ids)}"
            state.jobs[wire_id] = _SentJob(job, state.difficulty)
            state.jobs.move_to_end(wire_id)
            while len(state.jobs) > self.pool.MAX_JOBS_PER_CONNECTION:
                state.jobs.popitem(last=False)
            self.outbox.notify(job.stratum_job(clean, wire_id).to_params())

    def _apply_difficulty(self, difficulty: float, announce: bool) -> None:
        state = self.state
        assert state is not None
        if state.vardiff is not None:
            difficulty = state.vardiff.set(difficulty, self.pool.monotonic())
        else:
            difficulty = min(max(difficulty, self.pool.min_difficulty), self.pool.max_difficulty)
        state.difficulty = difficulty
        if announce:
            self._announce_difficulty(difficulty)

    def _announce_difficulty(self, difficulty: float) -> None:
        """set_difficulty applies from the next notify, so the current job follows at once."""
        self.outbox.set_difficulty(difficulty)
        self.send_job(self.pool.current_job(), False)

    def _maybe_retarget(self) -> None:
        with self._lock:
            state = self.state
            if state is None or state.vardiff is None or not state.jobs:
                return
            old = state.difficulty
            new = state.vardiff.retarget(self.pool.monotonic())
            if new is None:
                return
            state.difficulty = new
            self._announce_difficulty(new)
        self.pool.log(f"vardiff {self.peer}: {old:.6g} -> {new:.6g}")

    # --- shares ---

    def submit(
        self,
        worker: str,
        job_id: str,
        extranonce2_hex: str,
        ntime_hex: str,
        nonce_hex: str,
        version_bits_hex: str | None = None,
    ) -> ShareResult:
        """Validate one share; raise :class:`RequestError` with the Stratum code if it is refused."""
        try:
            result = self._check(worker, job_id, extranonce2_hex, ntime_hex, nonce_hex, version_bits_hex)
        except RequestError as exc:
            self.pool._count(False, exc.code, exc.message)
            self.pool.log(f"share rejected from {worker!r} ({self.peer}): {exc.code} {exc.message}")
            raise
        self.pool._count(True)
        self.pool.log(
            f"share accepted from {worker!r} diff {result.difficulty:.6g} (hash {result.share_difficulty:.6g})"
        )
        self._maybe_retarget()
        return result

    def _check(
        self,
        worker: str,
        job_id: str,
        extranonce2_hex: str,
        ntime_hex: str,
        nonce_hex: str,
        version_bits_hex: str | None,
    ) -> ShareResult:
        with self._lock:
            state = self.state
            if state is None:
                raise RequestError(NOT_SUBSCRIBED, "not subscribed")
            if worker not in state.authorized:
                raise RequestError(UNAUTHORIZED, "unauthorized worker")
            sent = state.jobs.get(job_id)
            mask = state.version_mask
            e1 = state.extranonce1
            if sent is None and self.pool.job_state(job_id) == "valid":  # e.g. sent before a resume
                sent = _SentJob(self.pool._valid[job_id], state.difficulty)
        if sent is None or self.pool.job_state(sent.job.job_id) != "valid":
            known = sent is not None or self.pool.job_state(job_id) != "unknown"
            raise RequestError(JOB_NOT_FOUND, "stale job" if known else "job not found")
        job = sent.job
        e2 = _hex_field(extranonce2_hex, "extranonce2")
        if len(e2) != self.pool.extranonce2_size:
            raise RequestError(OTHER, f"extranonce2 must be {self.pool.extranonce2_size} bytes, got {len(e2)}")
        ntime = int.from_bytes(_hex_field(ntime_hex, "ntime", 4), "big")
        nonce = int.from_bytes(_hex_field(nonce_hex, "nonce", 4), "big")
        version = job.version & 0xFFFFFFFF
        if version_bits_hex is not None:
            bits = int.from_bytes(_hex_field(version_bits_hex, "version bits", 4), "big")
            if bits & ~mask:
                raise RequestError(OTHER, "version bits outside the mask")
            version = roll_version(version, mask, bits)
        digest, share_diff, block = self.pool.verify_share(job, sent.difficulty, e1, e2, ntime, nonce, version)
        with self._lock:
            if state.vardiff is not None:
                state.vardiff.record_share(sent.difficulty, self.pool.monotonic())
        return ShareResult(worker, job_id, sent.difficulty, share_diff, digest, block)


def _hex_field(text: Any, name: str, size: int | None = None) -> bytes:
    if not isinstance(text, str):
        raise RequestError(OTHER, f"{name} must be a hex string")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise RequestError(OTHER, f"{name} is not valid hex") from None
    if size is not None and len(raw) != size:
        raise RequestError(OTHER, f"{name} must be {size} bytes")
    return raw


class EmbeddedPool:
    """The pool in a background thread: for ``miner mine`` with no ``-o``, and for tests."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        difficulty: float | None = None,
        vardiff: bool = True,
        job_source: JobSource | None = None,
        version_mask: int = DEFAULT_VERSION_MASK,
        tls_context: ssl.SSLContext | None = None,
        **pool_options: Any,
    ) -> None:
        self.pool = Pool(job_source, difficulty=difficulty, vardiff=vardiff, version_mask=version_mask, **pool_options)
        self.host = host
        self.tls = tls_context is not None
        self.server = StratumServer(self.pool, host, port, ssl_context=tls_context)
        self._thread = ServerThread(self.server)
        self._running = False

    @property
    def job_source(self) -> JobSource:
        return self.pool.job_source

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        scheme = "stratum+ssl" if self.tls else "stratum+tcp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> None:
        """Returns once listening; OSError (e.g. the port is taken) propagates."""
        self.pool.start()
        try:
            self._thread.start()
        except BaseException:
            self.pool.stop()
            raise
        self._running = True

    def stop(self) -> None:
        if self._running:
            self.pool._stopped_at = self.pool.monotonic()
            self._thread.stop()
            self.pool.stop()
            self._running = False

    def summary(self) -> dict:
        return self.pool.summary()

    def rejection_reasons(self) -> dict[str, int]:
        return self.pool.rejection_reasons()

    def __enter__(self) -> EmbeddedPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
