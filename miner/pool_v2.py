"""The pool's Stratum V2 face: the same :class:`miner.pool.Pool` behind :class:`stratum.v2.server.V2Server`.

Jobs, share checks, block submission and counts are the V1 pool's own (one job source, one
duplicate set, one ``summary()``), so a miner on V2 and one on V1 mine the same templates and are
counted alike. This module says them in V2's terms:

- a *standard* channel gets a fresh extranonce1 followed by zeros for the extranonce2 bytes as its
  whole extranonce prefix, so each of its jobs is header-only: NewMiningJob with the merkle root of
  ``coinb1 | prefix | coinb2`` already folded up the merkle path;
- an *extended* channel gets the extranonce1 as its prefix and the pool's extranonce2 size to roll,
  and NewExtendedMiningJob with the coinbase halves and the merkle path, what mining.notify carries;
- a new previous block is a future job then a SetNewPrevHash naming it (sv2-spec 5.3.15, 5.3.17);
  a fresh template on the same block is a job with ``min_ntime`` set, mined at once;
- vardiff retargets a channel with SetTarget followed by the current template under a new job id.
  A target applies to the jobs sent after it (sv2-spec 5.3.21), so each job keeps the difficulty
  it was sent at, as a V1 job does, and a share in flight across a retarget is credited at its job's.

Shares are checked by :meth:`miner.pool.Pool.verify_share`, the check V1 shares pass, and a refusal
is answered with the V2 error code for the V1 reason (``stale-share``, ``difficulty-too-low``, ...).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from miner.block import DIFF1_TARGET, difficulty_to_target
from miner.pool import DUPLICATE, JOB_NOT_FOUND, LOW_DIFFICULTY, OTHER, UNAUTHORIZED, Pool, PoolJob, _WorkerState
from miner.work import job_merkle_root
from stratum.server import RequestError
from stratum.v2 import messages as m
from stratum.v2.noise import generate_secret_key
from stratum.v2.protocol import STANDARD, Channel
from stratum.v2.server import (
    ExtendedGrant,
    Refused,
    ServerIdentity,
    StandardGrant,
    V2Outbox,
    V2Server,
    V2ServerThread,
    load_or_create_identity,
)

#: the version bits a V2 miner may roll unless the pool says REQUIRES_FIXED_VERSION (BIP 320's)
BIP320_MASK = 0x1FFFE000

_ERRORS = {
    DUPLICATE: m.ERR_DUPLICATE_SHARE,
    LOW_DIFFICULTY: m.ERR_DIFFICULTY_TOO_LOW,
    UNAUTHORIZED: m.ERR_UNKNOWN_USER,
}


def v2_error(code: int, message: str) -> str:
    """The V2 error code for a V1 refusal (:class:`stratum.server.RequestError`)."""
    if code == JOB_NOT_FOUND:
        return m.ERR_STALE_SHARE if message == "stale job" else m.ERR_INVALID_JOB_ID
    return _ERRORS.get(code, m.ERR_INVALID_SHARE)


@dataclass
class _SentJob:
    job: PoolJob
    difficulty: float  # the channel's difficulty when it was sent: what its shares are checked and credited at


@dataclass
class _ChannelState:
    channel_id: int
    kind: str
    user: str
    worker: _WorkerState  # its extranonce1 and vardiff, allocated as a V1 connection's are
    prefix: bytes
    min_difficulty: float  # what the miner's maximum target allows
    max_target: int
    jobs: OrderedDict[int, _SentJob] = field(default_factory=OrderedDict)
    next_job_id: int = 1
    prev_hash: bytes | None = None


class V2PoolSession:
    """One V2 connection's view of the pool (:class:`stratum.v2.server.V2SessionHandler`); any channels it opens."""

    def __init__(self, v2: V2Pool, outbox: V2Outbox, peer: str) -> None:
        self.v2 = v2
        self.pool: Pool = v2.pool
        self.outbox = outbox
        self.peer = peer
        self.vendor = ""
        self._channels: dict[int, _ChannelState] = {}
        self._granted: dict[bytes, tuple[_WorkerState, str, int]] = {}  # prefix -> until the channel is open
        self._lock = threading.RLock()

    # --- setup and channels ---

    def setup(self, request: m.SetupConnection) -> int:
        if request.protocol != m.PROTOCOL_MINING:
            raise Refused(m.ERR_UNSUPPORTED_PROTOCOL, f"protocol {request.protocol}; this pool serves mining (0)")
        if not request.min_version <= m.PROTOCOL_VERSION <= request.max_version:
            raise Refused(m.ERR_PROTOCOL_VERSION_MISMATCH)
        if request.flags & m.REQUIRES_WORK_SELECTION or (
            request.flags & m.REQUIRES_VERSION_ROLLING and not self.v2.version_rolling
        ):
            raise Refused(m.ERR_UNSUPPORTED_FEATURE_FLAGS)
        self.vendor = request.vendor
        self.pool.log(f"V2 setup {self.peer} {request.vendor!r}")
        return 0 if self.v2.version_rolling else m.REQUIRES_FIXED_VERSION

    def open_standard_channel(self, request: m.OpenStandardMiningChannel) -> StandardGrant:
        state, difficulty = self._grant(request.user_identity, request.nominal_hash_rate, request.max_target)
        prefix = state.extranonce1 + bytes(self.pool.extranonce2_size)
        self._remember_grant(prefix, state, request)
        return StandardGrant(_target(difficulty, request.max_target), prefix)

    def open_extended_channel(self, request: m.OpenExtendedMiningChannel) -> ExtendedGrant:
        size = self.pool.extranonce2_size
        if request.min_extranonce_size > size:
            raise Refused(m.ERR_UNSUPPORTED_EXTRANONCE_SIZE, f"at most {size} bytes")
        state, difficulty = self._grant(request.user_identity, request.nominal_hash_rate, request.max_target)
        self._remember_grant(state.extranonce1, state, request)
        return ExtendedGrant(_target(difficulty, request.max_target), size, state.extranonce1)

    def _grant(self, user: str, nominal_hash_rate: float, max_target: int) -> tuple[_WorkerState, float]:
        creds = self.pool.credentials
        if creds is not None and user not in creds:
            self.pool.log(f"V2 channel for {user!r} from {self.peer}: refused")
            raise Refused(m.ERR_UNKNOWN_USER)
        floor = _floor(max_target)
        if floor > self.pool.max_difficulty:
            raise Refused(m.ERR_MAX_TARGET_OUT_OF_RANGE)
        state = self.pool._allocate(None)
        difficulty = state.difficulty
        if state.vardiff is not None and nominal_hash_rate > 0:  # a start near one share per interval
            difficulty = nominal_hash_rate * self.pool.share_interval / 2**32
        self._set_difficulty(state, max(difficulty, floor))
        return state, state.difficulty

    def _remember_grant(self, prefix: bytes, state: _WorkerState, request: Any) -> None:
        with self._lock:
            self._granted[bytes(prefix)] = (state, request.user_identity, request.max_target)

    def _set_difficulty(self, state: _WorkerState, difficulty: float) -> float:
        if state.vardiff is not None:
            difficulty = state.vardiff.set(difficulty, self.pool.monotonic())
        else:
            difficulty = min(max(difficulty, self.pool.min_difficulty), self.pool.max_difficulty)
        state.difficulty = difficulty
        return difficulty

    def channel_opened(self, channel: Channel) -> None:
        """The first job goes now, as a future job activated by SetNewPrevHash (sv2-spec 5.3.15)."""
        with self._lock:
            state, user, max_target = self._granted.pop(bytes(channel.extranonce_prefix))
            ch = _ChannelState(
                channel.channel_id,
                channel.kind,
                user,
                state,
                bytes(channel.extranonce_prefix),
                _floor(max_target),
                max_target,
            )
            self._channels[channel.channel_id] = ch
            self._send_job(ch, self.pool.current_job(), clean=True)
        self.pool.log(
            f"V2 {channel.kind} channel {channel.channel_id} for {user!r} from {self.peer}: "
            f"extranonce prefix {ch.prefix.hex()}, difficulty {state.difficulty:.6g}"
        )

    def update_channel(self, channel: Channel, update: m.UpdateChannel) -> None:
        """A lower maximum target must be met at once with SetTarget (sv2-spec 5.3.7)."""
        floor = _floor(update.maximum_target)
        if floor > self.pool.max_difficulty:
            raise Refused(m.ERR_MAX_TARGET_OUT_OF_RANGE)
        with self._lock:
            ch = self._channels.get(channel.channel_id)
            if ch is None:
                raise Refused(m.ERR_INVALID_CHANNEL_ID)
            ch.min_difficulty, ch.max_target = floor, update.maximum_target
            if ch.worker.difficulty < floor:
                self._retarget(ch, self._set_difficulty(ch.worker, floor))

    def channel_closed(self, channel_id: int) -> None:
        with self._lock:
            ch = self._channels.pop(channel_id, None)
        if ch is not None:
            self.pool.release_state(ch.worker)
            self.pool.log(f"V2 channel {channel_id} from {self.peer} closed")

    # --- jobs and targets ---

    def send_job(self, job: PoolJob, clean: bool) -> None:
        """A new template from the pool: every channel of this connection gets it."""
        with self._lock:
            for ch in list(self._channels.values()):
                self._send_job(ch, job, clean)

    def _send_job(self, ch: _ChannelState, job: PoolJob, clean: bool) -> None:
        job_id = ch.next_job_id
        ch.next_job_id = job_id % 0xFFFFFFFF + 1
        ch.jobs[job_id] = _SentJob(job, ch.worker.difficulty)
        while len(ch.jobs) > self.pool.MAX_JOBS_PER_CONNECTION:
            ch.jobs.popitem(last=False)
        new_block = clean or ch.prev_hash != job.prev_block_internal
        min_ntime = None if new_block else job.ntime
        version = job.version & 0xFFFFFFFF
        if ch.kind == STANDARD:
            extranonce1, extranonce2 = self._extranonce(ch)
            root = job_merkle_root(job.stratum_job(), extranonce1, extranonce2)
            self.outbox.send(m.NewMiningJob(ch.channel_id, job_id, min_ntime, version, root))
        else:
            self.outbox.send(
                m.NewExtendedMiningJob(
                    ch.channel_id,
                    job_id,
                    min_ntime,
                    version,
                    self.v2.version_rolling,
                    list(job.merkle_branches),
                    job.coinb1,
                    job.coinb2,
                )
            )
        if new_block:
            ch.prev_hash = job.prev_block_internal
            self.outbox.send(m.SetNewPrevHash(ch.channel_id, job_id, job.prev_block_internal, job.ntime, job.nbits))

    def _extranonce(self, ch: _ChannelState, rolled: bytes = b"") -> tuple[bytes, bytes]:
        """(extranonce1, extranonce2) as the V1 check takes them: a standard channel's second part is the zeros."""
        e1 = ch.worker.extranonce1
        return e1, rolled if ch.kind != STANDARD else ch.prefix[len(e1) :]

    def _retarget(self, ch: _ChannelState, difficulty: float) -> None:
        """SetTarget, then the current template under a new id: a target applies to the jobs sent after it."""
        self.outbox.set_target(ch.channel_id, _target(difficulty, ch.max_target))
        self._send_job(ch, self.pool.current_job(), clean=False)

    def _maybe_retarget(self, ch: _ChannelState) -> None:
        with self._lock:
            vardiff = ch.worker.vardiff
            if vardiff is None or not ch.jobs or self._channels.get(ch.channel_id) is not ch:
                return
            old = ch.worker.difficulty
            new = vardiff.retarget(self.pool.monotonic())
            if new is None:
                return
            new = self._set_difficulty(ch.worker, max(new, ch.min_difficulty))
            if new == old:
                return
            self._retarget(ch, new)
        self.pool.log(f"vardiff {self.peer} channel {ch.channel_id}: {old:.6g} -> {new:.6g}")

    def tick(self) -> None:
        """Vardiff lowers the difficulty of a channel gone quiet."""
        with self._lock:
            channels = list(self._channels.values())
        for ch in channels:
            self._maybe_retarget(ch)

    # --- shares ---

    def submit_standard(self, channel: Channel, share: m.SubmitSharesStandard) -> float:
        return self._submit(channel.channel_id, share, b"")

    def submit_extended(self, channel: Channel, share: m.SubmitSharesExtended) -> float:
        return self._submit(channel.channel_id, share, share.extranonce)

    def _submit(self, channel_id: int, share: Any, rolled: bytes) -> float:
        """Check one share (on the server's worker thread); its credited difficulty, or :class:`Refused`."""
        with self._lock:
            ch = self._channels.get(channel_id)
            sent = ch.jobs.get(share.job_id) if ch is not None else None
            known = ch is not None and sent is None and _was_sent(ch, share.job_id)
        try:
            if ch is None:
                raise RequestError(OTHER, "channel not open")
            if sent is None or self.pool.job_state(sent.job.job_id) != "valid":
                raise RequestError(JOB_NOT_FOUND, "stale job" if sent is not None or known else "job not found")
            job = sent.job
            mask = BIP320_MASK if self.v2.version_rolling else 0
            if (share.version ^ job.version) & ~mask & 0xFFFFFFFF:
                raise RequestError(OTHER, "version bits outside the mask")
            extranonce1, extranonce2 = self._extranonce(ch, rolled)
            _, share_difficulty, block = self.pool.verify_share(
                job, sent.difficulty, extranonce1, extranonce2, share.ntime, share.nonce, share.version
            )
        except RequestError as exc:
            self.pool._count(False, exc.code, exc.message)
            self.pool.log(f"share rejected from {ch.user if ch else '?'!r} ({self.peer}, V2): {exc.code} {exc.message}")
            raise Refused(v2_error(exc.code, exc.message), exc.message) from None
        self.pool._count(True)
        with self._lock:
            if ch.worker.vardiff is not None:
                ch.worker.vardiff.record_share(sent.difficulty, self.pool.monotonic())
        self.pool.log(
            f"share accepted from {ch.user!r} diff {sent.difficulty:.6g} (hash {share_difficulty:.6g}, V2)"
            + (f", block: {block}" if block else "")
        )
        self._maybe_retarget(ch)
        return sent.difficulty

    # --- the connection's end ---

    def violation(self, reason: str, fatal: bool) -> None:
        self.pool.log(f"V2 {self.peer}: {reason}{'; closing' if fatal else ''}")

    def close(self) -> None:
        with self._lock:
            states = [ch.worker for ch in self._channels.values()] + [g[0] for g in self._granted.values()]
            self._channels.clear()
            self._granted.clear()
        for state in states:
            self.pool.release_state(state)
        self.pool._close_session(self)


def _floor(max_target: int) -> float:
    """The least difficulty a miner's maximum target lets us set."""
    return DIFF1_TARGET / max_target if max_target > 0 else float("inf")


def _target(difficulty: float, max_target: int) -> int:
    return min(difficulty_to_target(difficulty), max_target)


def _was_sent(ch: _ChannelState, job_id: int) -> bool:
    """Whether ``job_id`` is one this channel handed out (and has since forgotten), not one it never used."""
    return 0 < job_id < ch.next_job_id


class V2Pool:
    """The handler :class:`stratum.v2.server.V2Server` takes: one :class:`V2PoolSession` per connection."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        # V2 rolls BIP 320's bits or none at all (REQUIRES_FIXED_VERSION), so a narrower pool mask means none
        self.version_rolling = pool.version_mask & BIP320_MASK == BIP320_MASK

    def open_session(self, outbox: V2Outbox, peer: str) -> V2PoolSession:
        return self.pool.register_session(V2PoolSession(self, outbox, peer))


class V2Listener:
    """A V2 listener in a background thread for a :class:`Pool` that runs on its own (beside its V1 one)."""

    def __init__(
        self, pool: Pool, identity: ServerIdentity, host: str = "127.0.0.1", port: int = 0, **server_options: Any
    ) -> None:
        self.identity = identity
        self.host = host
        self.handler = V2Pool(pool)
        self.server = V2Server(self.handler, identity, host, port, **server_options)
        self._thread = V2ServerThread(self.server)
        self._running = False

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def authority_key(self) -> str:
        """The base58check key miners put after the port."""
        return self.identity.authority_key_text

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"stratum2+tcp://{host}:{self.port}/{self.authority_key}"

    def start(self) -> None:
        """Returns once listening; OSError (e.g. the port is taken) propagates."""
        self._thread.start()
        self._running = True

    def stop(self) -> None:
        if self._running:
            self._thread.stop()
            self._running = False

    def __enter__(self) -> V2Listener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def identity_from(key_file: str | None) -> tuple[ServerIdentity, str]:
    """The pool's V2 keys and where they came from, for the log.

    From ``key_file`` (created mode 0600 when absent; OSError, PermissionError or ValueError when it
    cannot be used), else new keys for this run only: miners must then be told a new authority key
    after every restart.
    """
    if key_file is None:
        return ServerIdentity(generate_secret_key(), generate_secret_key()), (
            "new for this run only; keep one with --sv2-key-file FILE"
        )
    identity, created = load_or_create_identity(key_file)
    return identity, f"{'generated and written to' if created else 'loaded from'} {key_file}"
