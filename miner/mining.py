"""Pool mining: Stratum clients -> work for the engine -> shares back to the pool.

Every enabled pool keeps its own connection (:class:`stratum.client.StratumClient`);
the engine mines for the first pool in priority order that is authorized and
has a job, so failover and the return to a recovered first pool are the same
rule. While no pool is reachable the engine keeps scanning the last job:
shares found meanwhile wait for the reconnect and go out if their job can
still be valid (same session, job not cleaned). Those hashes are not counted
as live (:meth:`miner.stats.Stats.set_live`), so the rate reported is the rate
on work a pool holds.

Job handling follows the protocol: ``mining.set_difficulty`` applies from the
next ``mining.notify``; every notify becomes the engine's work at once (a
notify with ``clean_jobs`` also invalidates older jobs, and shares for them
are counted stale here instead of being sent). Each work unit takes a fresh
extranonce2 and, with version rolling, fresh version bits within the pool's
mask. A share is sent at most once, whatever happens to the connection.

:class:`Miner` also implements the control interface the cgminer-compatible
API drives (``switch_pool``, ``add_pool``, ``quit``, ...). Pool indexes are
stable positions in ``stats.pools`` (cgminer's ``POOL``); the order in which
pools are tried is their ``priority`` field.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from miner.block import nbits_to_target
from miner.mining_v2 import V2PoolClient, is_v2_url, url_credentials
from miner.stats import PoolStats, Stats
from miner.work import Share, StratumJob, Work, work_from_job
from stratum.client import (
    AuthFailed,
    ConnectFailed,
    Disconnected,
    Ready,
    StratumClient,
    SubmitLost,
    redact_url,
)
from stratum.protocol import (
    ConfigureResult,
    Event,
    Notify,
    ProtocolViolation,
    Reconnect,
    SetDifficulty,
    SetExtranonce,
    SetVersionMask,
    ShowMessage,
    SubmitResult,
    SubscribeResult,
)

DEFAULT_DIFFICULTY = 1.0
DEFAULT_USER = "miner"
MAX_JOBS = 64  # jobs kept per pool between clean_jobs notifies; a share for an older one counts stale


PROXY_SCHEMES = ("socks5://", "socks4://", "http://")


def check_proxy_url(url: str) -> None:
    """A proxy URL python-socks can use, or ValueError with one line (the password left out)."""
    from stratum.client import redact_url

    shown = redact_url(url)
    if not url.startswith(PROXY_SCHEMES):
        raise ValueError(f"bad proxy URL {shown!r}: scheme must be one of {', '.join(PROXY_SCHEMES)}")
    rest = url.split("://", 1)[1].rsplit("@", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad proxy URL {shown!r}: expected SCHEME://HOST:PORT")


STRATEGIES = ("failover", "round-robin", "load-balance")
BALANCE_SLICE = 1 << 22  # nonces per work unit under load-balance: ~0.4 s of a CPU core, so quotas hold over seconds

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolConfig:
    """A pool to mine on.

    Credentials written into the URL (``stratum+tcp://user:pass@host:port``, as cpuminer and cgminer
    users write them) are the worker and password unless given apart (``-u``/``-p`` win). The URL
    kept is the one without them, so no log line, status line or API reply can show the password.
    """

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    proxy: str | None = field(default=None, repr=False)  # socks5://HOST:PORT for this pool's connections

    def __post_init__(self) -> None:
        user, password = url_credentials(self.url)  # V1 or V2; ValueError with one line, the password left out
        if self.proxy is not None:
            check_proxy_url(self.proxy)
        object.__setattr__(self, "url", redact_url(self.url.strip()))
        if self.user is None:
            object.__setattr__(self, "user", user if user is not None else DEFAULT_USER)
        if self.password is None:
            object.__setattr__(self, "password", password if password is not None else "x")


def deposit_bits(value: int, mask: int) -> int:
    """Spread the low bits of ``value`` over the set bits of ``mask`` (PDEP)."""
    out, bit = 0, 0
    for i in range(32):
        if mask >> i & 1:
            if value >> bit & 1:
                out |= 1 << i
            bit += 1
    return out


def _same_job(a: StratumJob | None, b: StratumJob | None) -> bool:
    """The same work, whether or not it was re-sent with clean_jobs (a pool re-sends its job on reconnect)."""
    return a is not None and b is not None and a.to_params()[:8] == b.to_params()[:8]


@dataclass
class _Pool:
    """One configured pool and what its connection has told us."""

    config: PoolConfig
    stats: PoolStats
    client: StratumClient | None = None
    enabled: bool = True
    session: int = 0  # bumped whenever extranonce1 changes: older work can no longer be valid
    extranonce1: bytes = b""
    extranonce2_size: int = 4
    session_id: str | None = None
    version_mask: int = 0
    difficulty: float = DEFAULT_DIFFICULTY  # the latest set_difficulty, for the next job
    jobs: dict[str, tuple[StratumJob, float]] = field(default_factory=dict)  # job_id -> (job, its difficulty)
    job: StratumJob | None = None  # the newest job
    counter: int = 0  # work units handed out (extranonce2 and version bits derive from it)
    queued: list[Share] = field(default_factory=list)  # found while not connected
    seen: set = field(default_factory=set)  # shares already handled: never send one twice
    in_flight: int = 0
    auth_failed: str = ""
    first_failure: str = ""  # a first contact that failed in a way no retry fixes (another protocol, a bad cert)
    failures_in_a_row: int = 0  # connection tries since the last session that worked, for --retries
    gave_up: str = ""  # why this pool is no longer tried (--retries used up)
    retry_at: float | None = None  # monotonic time of the next connection try while it is down
    quota: int = 1  # load-balance: this pool's share of the work units, against the others' quotas


@dataclass(frozen=True)
class _Origin:
    """What a Work must carry back so its share reaches the right pool and job."""

    pool: _Pool
    session: int
    job: StratumJob


class Miner:
    """Runs Stratum clients and an engine together; the control object for the cgminer API."""

    def __init__(
        self,
        pools: list[PoolConfig],
        engine,
        stats: Stats | None = None,
        *,
        version_rolling: bool = False,
        verify_tls: bool = True,
        ca_file: str | None = None,
        silence_timeout: float = 90.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        user_agent: str = "sha256d-miner",
        suggest_difficulty: float | None = None,
        retries: int | None = None,
        retry_pause: float | None = None,
        strategy: str = "failover",
        quotas: list[int] | None = None,
        sv2_channel: str = "standard",
        log: Callable[[str], None] | None = None,
        wire: Callable[[str, str], None] | None = None,
    ) -> None:
        if not pools:
            raise ValueError("at least one pool is needed")
        for p in pools:
            url_credentials(p.url)  # ValueError with one line
        if sv2_channel not in ("standard", "extended"):
            raise ValueError(f"the Stratum V2 channel is standard or extended, not {sv2_channel!r}")
        self.sv2_channel = sv2_channel  # for stratum2+tcp:// pools
        self.engine = engine
        self.stats = stats or engine.stats
        self.started_wall = self.stats.started_wall
        self.backend_name = engine.devices[0].backend.name if engine.devices else "?"
        self.version_rolling = version_rolling
        # cpuminer's -r/-R: give a pool up after ``retries`` failed tries in a row (None: keep trying, as
        # cgminer does, with backoff), and wait ``retry_pause`` between tries instead of backing off
        self.retries = retries
        if strategy not in STRATEGIES:
            raise ValueError(f"pool strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        if quotas is not None and (len(quotas) != len(pools) or any(q < 1 for q in quotas)):
            raise ValueError("--quota: a whole number of 1 or more for each pool")
        self.strategy = strategy
        self._balanced: tuple = ()  # load-balance: the pools the engine's work is split across now
        self._moved_on = False  # round-robin: a pool failed and the miner moved on, so it stays where it is
        if retry_pause is not None:
            backoff_initial = backoff_max = retry_pause
        self.client_options = {
            "verify_tls": verify_tls,
            "ca_file": ca_file,
            "silence_timeout": silence_timeout,
            "backoff_initial": backoff_initial,
            "backoff_max": backoff_max,
            "user_agent": user_agent,
            "version_rolling": version_rolling,
            "suggest_difficulty": suggest_difficulty,
        }
        self._log_to = log  # a caller's own copy of each line (tests, embedders), beside the logger
        self.wire = wire  # every V1 client's raw lines, in and out (a capture, a protocol dump)
        self._lock = threading.RLock()
        self._switch_lock = threading.Lock()  # taken before _lock; never held inside the engine's lock
        self._pools: list[_Pool] = []  # index order == stats.pools order
        self._current: _Pool | None = None
        self._running = False
        self._quit = threading.Event()
        self.fatal: str | None = None
        self.got_job = False  # whether any pool ever sent a job: a run without one mined nothing
        engine.on_share = self._on_share
        for i, p in enumerate(pools):
            self._pools.append(_Pool(p, self.stats.add_pool(p.url, p.user), quota=quotas[i] if quotas else 1))
        self.stats.set_live(False)  # until a pool is authorized and has sent a job

    def log(self, line: str) -> None:
        logger.info(line)
        if self._log_to is not None:
            self._log_to(line)

    # --- life cycle -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        for pool in list(self._pools):
            if pool.enabled:
                self._start_client(pool)
        self.engine.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until quit() or a fatal error; True if that happened within ``timeout``."""
        return self._quit.wait(timeout)

    def stop(self, reply_wait: float = 2.0) -> None:
        """Stop scanning, give in-flight shares up to ``reply_wait`` s for their verdicts, then disconnect."""
        self.engine.stop()
        self.stats.set_live(False)
        deadline = time.monotonic() + reply_wait
        while time.monotonic() < deadline:
            with self._lock:
                if not any(p.in_flight for p in self._pools):
                    break
            time.sleep(0.02)
        with self._lock:
            self._running = False
            clients = [p.client for p in self._pools if p.client is not None]
        for client in clients:
            client.stop(1.0)

    def _start_client(self, pool: _Pool) -> None:
        config = pool.config
        if is_v2_url(config.url):  # the same events as a V1 client's, so failover and counts are shared
            options = dict(self.client_options, channel=self.sv2_channel)
            client = V2PoolClient(config.url, config.user, config.password, self._on_event, **options)
        else:
            client = StratumClient(
                config.url,
                config.user,
                config.password,
                self._on_event,
                **self.client_options,
                wire=self.wire,
                proxy=config.proxy,
            )
        pool.client = client
        pool.stats.status = "Dead"
        client.start()

    # --- events from the pool connections (each client's own thread) ------------------------------------------------

    def _pool_of(self, client: StratumClient) -> _Pool | None:
        for pool in self._pools:
            if pool.client is client:
                return pool
        return None

    def _on_event(self, client: StratumClient, event: Event) -> None:
        with self._switch_lock:
            with self._lock:
                pool = self._pool_of(client)
                if pool is None or not self._running:
                    return
                to_submit = self._handle(pool, event)
                source = self._reselect(force=isinstance(event, (Notify, SetExtranonce)) and pool is self._current)
                self.stats.set_live(self._live())
            if source is not None:
                self.engine.set_source(source, clean=True)
        for share in to_submit:
            self._submit(share)

    def _handle(self, pool: _Pool, event: Event) -> list[Share]:
        """Update the pool's state; returns shares that may now be sent."""
        url = pool.config.url
        st = pool.stats
        if isinstance(event, SubscribeResult):
            resumed = (
                event.session_id is not None
                and event.session_id == pool.session_id
                and event.extranonce1 == pool.extranonce1
            )
            if not resumed:
                self._new_session(pool, event.extranonce1, event.extranonce2_size)
            pool.session_id = event.session_id
        elif isinstance(event, Ready):
            pool.auth_failed = ""
            pool.failures_in_a_row = 0
            st.status, st.stratum_active = "Alive", True
            st.has_version_rolling = bool(event.version_mask)
            pool.version_mask = event.version_mask if self._rolls(pool) else 0
            rolling = f", version rolling mask {event.version_mask:08x}" if event.version_mask else ""
            self.log(f"pool {url}: authorized as {pool.config.user}{rolling}")
            queued, pool.queued = pool.queued, []
            return [s for s in queued if self._still_valid(s, count=True)]
        elif isinstance(event, Notify):
            try:
                job = getattr(event, "job", None) or StratumJob.from_params(event.params)  # V2: built already
                nbits_to_target(job.nbits_int)
            except ValueError as exc:
                self.log(f"pool {url}: ignored a malformed job: {exc}")
                return []
            if job.clean_jobs:
                pool.jobs.clear()
                pool.seen.clear()  # older shares now fail the job check, so duplicates cannot slip through
                st.discarded += 1
            pool.jobs[job.job_id] = (job, pool.difficulty)
            while len(pool.jobs) > MAX_JOBS:  # a pool that never cleans must not grow this without bound
                dropped = next(iter(pool.jobs))
                del pool.jobs[dropped]
                pool.seen = {key for key in pool.seen if key[0] != dropped}
            pool.job = job
            self.got_job = True
            self.stats.job_seen(st, job)  # network blocks, block height and version for the API
            st.difficulty = pool.difficulty
            if job.clean_jobs:
                self.log(f"pool {url}: new block, job {job.job_id} (difficulty {pool.difficulty:g})")
        elif isinstance(event, SetDifficulty):
            pool.difficulty = event.difficulty
        elif isinstance(event, (ConfigureResult, SetVersionMask)):
            mask = event.version_mask if isinstance(event, ConfigureResult) else event.mask
            pool.version_mask = mask if self._rolls(pool) else 0
            st.has_version_rolling = bool(mask)
        elif isinstance(event, SetExtranonce):
            job = pool.job
            self._new_session(pool, event.extranonce1, event.extranonce2_size)
            if job is not None:  # the newest job stays valid with the new extranonce1
                pool.jobs[job.job_id] = (job, pool.difficulty)
                pool.job = job
        elif isinstance(event, SubmitResult):
            self._verdict(pool, event)
        elif isinstance(event, SubmitLost):
            share = event.context
            pool.in_flight -= 1
            if event.sent:  # the pool may have it: sending it again could be a duplicate
                # As cgminer does: a share whose verdict was lost with the connection counts stale.
                reason = "connection lost before the pool replied"
                self.stats.share_result("stale", share.work.share_difficulty, st, share.device, reason)
                self.log(f"pool {url}: share for job {share.work.job_id} counted stale: {reason}")
            elif self._still_valid(share, count=True):
                pool.queued.append(share)
        elif isinstance(event, ConnectFailed):
            st.status, st.stratum_active = "Dead", False
            pool.retry_at = time.monotonic() + event.retry_in
            st.get_failures += 1
            pool.failures_in_a_row += 1
            if event.permanent and pool.client is not None and not pool.client.ever_ready and not pool.first_failure:
                pool.first_failure = event.reason
            given_up = self._used_up(pool, event.reason)
            self._check_fatal()
            if self.fatal is not None or given_up:  # the run or this pool ends here: no retry to promise
                self.log(f"pool {url}: {event.reason}" + (f"; {given_up}" if given_up else ""))
            else:
                self.log(f"pool {url}: {event.reason}; retrying in {event.retry_in:.1f} s")
        elif isinstance(event, AuthFailed):
            pool.auth_failed = event.reason
            st.status = "Rejecting"
            self.log(f"pool {url}: authorization failed for {pool.config.user!r}: {event.reason}")
            self._check_fatal()
        elif isinstance(event, Disconnected):
            st.status, st.stratum_active = "Dead", False
            pool.retry_at = time.monotonic() + event.retry_in
            if event.reason != "stopped":
                pool.failures_in_a_row += 1
                given_up = self._used_up(pool, event.reason)
                self._check_fatal()
                if given_up:
                    self.log(f"pool {url}: disconnected ({event.reason}); {given_up}")
                elif self.fatal is None:  # a fatal error ends the run: no reconnect
                    self.log(f"pool {url}: disconnected ({event.reason}); reconnecting in {event.retry_in:.1f} s")
        elif isinstance(event, ShowMessage):
            self.log(f"pool {url} says: {event.message}")
        elif isinstance(event, Reconnect):
            self.log(f"pool {url}: asked to reconnect")
        elif isinstance(event, ProtocolViolation):
            self.log(f"pool {url}: ignored a bad message: {event.reason}")
        return []

    def _rolls(self, pool: _Pool) -> bool:
        """Whether to roll the version bits a pool allows.

        On V1 only when asked for (BIP 310). On V2 unless the pool forbids it (REQUIRES_FIXED_VERSION): a
        standard channel's header-only job has no other search space beyond the nonce.
        """
        return self.version_rolling or is_v2_url(pool.config.url)

    def _new_session(self, pool: _Pool, extranonce1: bytes, extranonce2_size: int) -> None:
        pool.session += 1
        pool.extranonce1 = extranonce1
        pool.extranonce2_size = extranonce2_size
        pool.jobs.clear()
        pool.job = None

    def _used_up(self, pool: _Pool, reason: str) -> str:
        """With --retries N, stop trying a pool after N+1 failed tries in a row; what to log, or ''."""
        if self.retries is None or pool.gave_up or pool.failures_in_a_row <= self.retries:
            return ""
        pool.gave_up = f"{reason} ({pool.failures_in_a_row} tries in a row)"
        if pool.client is not None:  # from its own thread's callback: stop it from another
            threading.Thread(target=pool.client.stop, daemon=True).start()
        return f"giving up on it after {pool.failures_in_a_row} tries in a row (--retries {self.retries})"

    def _check_fatal(self) -> None:
        """Give up when every enabled pool is out: used up its --retries, or (while none ever worked) refused
        our credentials or failed its first contact in a way no retry fixes. A pool that is only down is
        waited for, at start-up too, as cgminer does."""
        enabled = [p for p in self._pools if p.enabled]
        worked = any(p.client is not None and p.client.ever_ready for p in self._pools)

        def out(p: _Pool) -> str:
            if p.gave_up or worked:  # once a pool worked, only --retries ends the run
                return p.gave_up
            return "authorization failed: " + p.auth_failed if p.auth_failed else p.first_failure

        if enabled and all(out(p) for p in enabled):
            reasons = "; ".join(f"{p.config.url}: {out(p)}" for p in enabled)
            self.fatal = f"no pool could be used ({reasons})"
            self._quit.set()

    def _verdict(self, pool: _Pool, event: SubmitResult) -> None:
        share: Share = event.context
        pool.in_flight -= 1
        diff = share.work.share_difficulty
        if event.accepted:
            self.stats.share_result("accepted", diff, pool.stats, share.device)
            if share.is_block:
                self.stats.block_found(share.hash_display)
                self.log(f"pool {pool.config.url}: BLOCK {share.hash_display} accepted")
            else:
                self.log(f"pool {pool.config.url}: share accepted (difficulty {share.difficulty:.4g})")
        else:
            outcome = "stale" if event.stale else "rejected"
            reason = event.reason or outcome
            self.stats.share_result(outcome, diff, pool.stats, share.device, reason)
            self.log(f"pool {pool.config.url}: share {outcome}: {reason}")

    # --- choosing what the engine mines ---------------------------------------------------------------------------

    def _ordered(self) -> list[_Pool]:
        return sorted(self._pools, key=lambda p: p.stats.priority)

    def _usable(self, pool: _Pool) -> bool:
        return pool.enabled and pool.client is not None and pool.client.ready and pool.job is not None

    def _reselect(self, force: bool = False) -> Callable[[], Work | None] | None:
        """The new work source if the engine should change what it mines, else None (call with _lock held).

        failover: the first usable pool by priority, back to a better one as soon as it returns.
        round-robin (cgminer's): stay on the current pool while it works; when it fails, the next one after it.
        load-balance: every usable pool at once, the work units split by --quota.
        """
        ordered = self._ordered()
        usable = [p for p in ordered if self._usable(p)]
        best = usable[0] if usable else None
        if self.strategy == "round-robin" and usable and self._current is not None:
            current = self._current
            if current in usable:
                best = current if self._moved_on else best  # until a pool fails, the -o order, as at start-up
            elif current in ordered:
                after = ordered[ordered.index(current) + 1 :] + ordered[: ordered.index(current)]
                best = next((p for p in after if p in usable), best)
                self._moved_on = True
        if self.strategy == "load-balance" and len(usable) > 1:
            balanced = tuple((p, p.session, p.job.job_id) for p in usable)  # type: ignore[union-attr]
            if balanced != self._balanced or force or self._current not in usable:
                if self._balanced and {p for p, _, _ in balanced} != {p for p, _, _ in self._balanced}:
                    self.log("load-balancing across " + ", ".join(f"{p.config.url} (quota {p.quota})" for p in usable))
                self._balanced = balanced
                self._current = usable[0]
                return self._split_source(usable)
            return None
        self._balanced = ()
        if best is None:
            current = self._current
            if current is not None and current.enabled and current in self._pools and current.job is not None:
                return self._source(current) if force else None  # keep scanning until some pool is back
            if current is not None:
                self._current = None
                return lambda: None
            return None
        if best is not self._current:
            if self._current is not None:
                self.log(f"switching to pool {best.config.url}")
            self._current = best
            return self._source(best)
        return self._source(best) if force else None

    def _split_source(self, pools: list[_Pool]) -> Callable[[], Work | None]:
        """Work units from each pool in turn, by quota (smooth weighted round robin), each a slice of the nonce
        range short enough that the split holds over seconds, not over the minutes a 2^32 range takes."""
        sources = [(pool, self._source(pool)) for pool in pools]
        total = sum(pool.quota for pool in pools)
        credit = [0] * len(sources)

        def next_work() -> Work | None:
            with self._lock:
                for i, (pool, _) in enumerate(sources):
                    credit[i] += pool.quota
                pick = max(range(len(sources)), key=lambda i: credit[i])
                credit[pick] -= total
            for k in range(len(sources)):  # the picked pool, else whichever still has its job
                work = sources[(pick + k) % len(sources)][1]()
                if work is not None:
                    return dataclasses.replace(work, nonce_end=min(work.nonce_end, work.nonce_start + BALANCE_SLICE))
            return None

        return next_work

    def _live(self) -> bool:
        """Whether the engine mines a job its pool still holds over a connection (call with _lock held)."""
        pool = self._current
        return (
            self._running
            and not getattr(self.engine, "paused", False)
            and pool is not None
            and pool.enabled
            and pool.client is not None
            and pool.client.ready
            and pool.job is not None
        )

    def _source(self, pool: _Pool) -> Callable[[], Work | None]:
        job = pool.job
        session = pool.session

        def next_work() -> Work | None:
            with self._lock:
                if pool.session != session or job is None or not _same_job(pool.jobs.get(job.job_id, (None,))[0], job):
                    return None
                difficulty = pool.jobs[job.job_id][1]
                pool.counter += 1
                size = pool.extranonce2_size
                extranonce2 = (pool.counter % (1 << (8 * size))).to_bytes(size, "little") if size else b""
                mask = pool.version_mask
                bits = deposit_bits(pool.counter, mask) if mask else None
                pool.stats.works += 1
                return work_from_job(
                    job,
                    pool.extranonce1,
                    extranonce2,
                    difficulty,
                    version_mask=mask,
                    version_bits=bits,
                    source=_Origin(pool, session, job),
                )

        return next_work

    # --- shares from the engine (worker threads) ------------------------------------------------------------------

    def _still_valid(self, share: Share, count: bool = False) -> bool:
        origin: _Origin = share.work.source
        pool = origin.pool
        valid = origin.session == pool.session and _same_job(pool.jobs.get(share.work.job_id, (None,))[0], origin.job)
        if not valid and count:
            reason = "its job is no longer valid"
            if origin.session != pool.session:
                reason = "the pool's session changed"
            self.stats.share_result("stale", share.work.share_difficulty, pool.stats, share.device, reason)
            self.log(f"pool {pool.config.url}: share for job {share.work.job_id} dropped as stale: {reason}")
        return valid

    def _on_share(self, share: Share) -> None:
        origin = share.work.source
        if not isinstance(origin, _Origin):
            return
        work = share.work
        key = (work.job_id, work.extranonce2, work.ntime, share.nonce, work.version_bits, origin.session)
        with self._lock:
            pool = origin.pool
            if key in pool.seen:
                return
            pool.seen.add(key)
            self.stats.share_found(share.difficulty, pool.stats)  # the pool's best share
            if not self._still_valid(share, count=True):
                return
        self._submit(share)

    def _submit(self, share: Share) -> None:
        origin: _Origin = share.work.source
        pool = origin.pool
        work = share.work
        bits = None if work.version_bits is None else f"{work.version_bits:08x}"
        with self._lock:
            client = pool.client
            pool.in_flight += 1
            sent = client is not None and client.submit(
                work.job_id, work.extranonce2.hex(), f"{work.ntime:08x}", f"{share.nonce:08x}", bits, context=share
            )
            if not sent:
                pool.in_flight -= 1
                pool.queued.append(share)

    # --- MinerControl (cgminer API) ---------------------------------------------------------------------------------

    def _index(self, index: int) -> _Pool:
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self._pools):
            raise ValueError(f"invalid pool index {index!r} (0..{len(self._pools) - 1})")
        return self._pools[index]

    def _apply(self) -> None:
        with self._switch_lock:
            with self._lock:
                source = self._reselect()
                self.stats.set_live(self._live())
            if source is not None:
                self.engine.set_source(source, clean=True)

    def current_pool(self) -> int:
        with self._lock:
            return self._pools.index(self._current) if self._current in self._pools else 0

    def switch_pool(self, index: int) -> None:
        """Make pool ``index`` the first choice (as cgminer's switchpool) and mine on it once it has work."""
        with self._lock:
            pool = self._index(index)
            order = [p for p in self._ordered() if p is not pool]
            self._set_order([pool] + order)
            if not pool.enabled:
                self._enable(pool)
        self._apply()

    def add_pool(self, url: str, user: str | None, password: str | None) -> int:
        config = PoolConfig(url, user or None, password or None)
        with self._lock:
            pool = _Pool(config, self.stats.add_pool(config.url, config.user))
            pool.stats.priority = len(self._pools)
            self._pools.append(pool)
            if self._running:
                self._start_client(pool)
            self.log(f"added pool {config.url}")
            return len(self._pools) - 1

    def reload_pools(self, configs: list[PoolConfig]) -> None:
        """Make the pool list ``configs``, in that priority order (SIGHUP after the config file changed).

        Pools kept keep their connection and counts. A pool that goes is mined no more at once, but keeps
        its connection until the verdicts of its shares in flight are in (they still count), then goes.
        """
        if not configs:
            raise ValueError("a reload needs at least one pool")
        key = lambda url, user: (url, user or "")  # noqa: E731
        with self._lock:
            have = {key(p.config.url, p.config.user): p for p in self._pools}
        for config in configs:
            if key(config.url, config.user) not in have:
                self.add_pool(config.url, config.user, config.password)
        with self._lock:
            by_key = {key(p.config.url, p.config.user): p for p in self._pools}
            wanted = [by_key[key(c.url, c.user)] for c in configs]
            gone = [p for p in self._pools if p not in wanted]
            self._set_order(wanted + gone)
            for pool in wanted:
                if not pool.enabled:
                    self._enable(pool)
        self._apply()
        with self._lock:
            for pool in gone:  # mined no more, but connected until the verdicts it owes us are in
                pool.enabled = False
                pool.stats.enabled, pool.stats.status, pool.stats.stratum_active = False, "Disabled", False
                if self._current is pool:
                    self._current = None
        self._apply()
        if gone:
            threading.Thread(target=self._retire, args=(gone,), name="retire-pools", daemon=True).start()
        self.log(f"pools reloaded: {', '.join(c.url for c in configs)}")

    def _retire(self, pools: list[_Pool], patience: float = 10.0) -> None:
        """Remove pools a reload dropped once no share awaits their verdict (or after ``patience`` s)."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline and any(p.in_flight > 0 for p in pools):
            time.sleep(0.05)
        for pool in pools:
            with self._lock:
                if pool not in self._pools or pool is self._current or pool.enabled:
                    continue
                index = self._pools.index(pool)
            try:
                self.remove_pool(index)
            except ValueError:  # the only pool left, or mined again meanwhile: it stays
                pass

    def remove_pool(self, index: int) -> None:
        with self._lock:
            pool = self._index(index)
            if len(self._pools) == 1:
                raise ValueError("cannot remove the only pool")
            if pool is self._current:
                raise ValueError(f"cannot remove the active pool {index}")
            self._pools.remove(pool)
            self.stats.pools.remove(pool.stats)
            self._set_order(self._ordered())
            client, pool.client = pool.client, None
        if client is not None:
            client.stop(1.0)

    def enable_pool(self, index: int) -> None:
        with self._lock:
            pool = self._index(index)
            if pool.enabled:
                return
            self._enable(pool)
        self._apply()

    def _enable(self, pool: _Pool) -> None:
        pool.enabled = True
        pool.stats.enabled = True
        pool.stats.status = "Dead"
        if self._running and pool.client is None:
            self._start_client(pool)

    def disable_pool(self, index: int) -> None:
        with self._lock:
            pool = self._index(index)
            if not pool.enabled:
                return
            if sum(p.enabled for p in self._pools) == 1:
                raise ValueError("cannot disable the last enabled pool")
            pool.enabled = False
            pool.stats.enabled = False
            pool.stats.status = "Disabled"
            pool.stats.stratum_active = False
            client, pool.client = pool.client, None
            if self._current is pool:
                self._current = None
        if client is not None:
            client.stop(1.0)
        self._apply()

    def set_pool_priority(self, order: list[int]) -> None:
        """Pools listed first are tried first; unlisted ones keep their order after them."""
        with self._lock:
            if len(set(order)) != len(order):
                raise ValueError("a pool is listed twice")
            listed = [self._index(i) for i in order]
            rest = [p for p in self._ordered() if p not in listed]
            self._set_order(listed + rest)
        self._apply()

    def _set_order(self, ordered: list[_Pool]) -> None:
        for priority, pool in enumerate(ordered):
            pool.stats.priority = priority

    def restart(self) -> None:
        """Reconnect every pool now (the process keeps running)."""
        with self._lock:
            clients = [p.client for p in self._pools if p.client is not None]
        for client in clients:
            client.reconnect_now()

    def quit(self) -> None:
        self._quit.set()

    def pause(self) -> None:
        """Stop hashing, keep the pool sessions and the jobs (the API's pause: curtailment)."""
        self.engine.pause()
        self.stats.set_live(False)
        self.log("paused: hashing stopped, pool sessions kept")

    def resume(self) -> None:
        self.engine.resume()
        with self._lock:
            self.stats.set_live(self._live())
        self.log("resumed hashing")

    def set_device_enabled(self, index: int, enabled: bool) -> None:
        """Let one worker (a CPU thread, a GPU) hash or not: the API's pgaenable|N / pgadisable|N."""
        self.engine.set_device_enabled(index, enabled)
        self.log(f"device {index} {'enabled' if enabled else 'disabled'}")

    # --- reading ----------------------------------------------------------------------------------------------------

    def last_errors(self) -> list[str]:
        """Each pool's latest connection failure, as 'URL: reason' (none for a pool that never failed)."""
        with self._lock:
            return [f"{p.config.url}: {p.client.last_error}" for p in self._pools if p.client and p.client.last_error]

    def pool_summary(self) -> tuple[str, float]:
        """The pool being mined (its URL, marked while offline; '-' when none) and its newest job's difficulty."""
        with self._lock:
            pool = self._current
            if pool is None:
                return "-", 0.0
            entry = pool.jobs.get(pool.job.job_id) if pool.job is not None else None
            shown = pool.config.url
            if pool.client is not None and not pool.client.ready:
                wait = None if pool.retry_at is None else pool.retry_at - time.monotonic()
                when = f"next try in {wait:.0f} s" if wait is not None and wait >= 0.5 else "connecting"
                shown += f" (offline, {when})"
            return shown, entry[1] if entry else pool.difficulty

    # --- reading for the cgminer API (read-only) --------------------------------------------------------------------

    def pool_jobs(self) -> list[tuple[PoolStats, StratumJob | None]]:
        """Each pool's stats with its newest job (None before its first notify), in ``stats.pools`` order."""
        with self._lock:
            return [(pool.stats, pool.job) for pool in self._pools]
