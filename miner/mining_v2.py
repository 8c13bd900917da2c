"""A Stratum V2 pool with the V1 client's face, so :class:`miner.mining.Miner` mines on either.

:class:`V2PoolClient` runs a :class:`stratum.v2.client.V2Client` and tells the Miner what happens
in the events :class:`stratum.client.StratumClient` uses, so failover between V1 and V2 pools, the
counts, the status line, the hashlib re-check of every share and the resubmission rules are the
Miner's own, unchanged:

- an open channel is a subscribe (its extranonce prefix is extranonce1; a standard channel rolls no
  extranonce2, an extended one rolls ``extranonce_size`` bytes) followed by an authorization;
- its target is a ``mining.set_difficulty``, which applies from the next job, as a V2 target does
  (sv2-spec 5.3.21);
- a job that is mined (a NewMiningJob / NewExtendedMiningJob with ``min_ntime``, or a future job
  that a SetNewPrevHash activates) is a ``mining.notify``; SetNewPrevHash invalidates every other
  job, so its notify has ``clean_jobs``. A standard channel's job is header-only: the notify's
  :class:`miner.work.StratumJob` carries the merkle root the pool fixed;
- SubmitShares.Success and .Error are the submits' verdicts (``stale-share`` counted stale);
- a handshake that fails (a wrong authority key, an expired certificate) or a refused setup is a
  permanent connection failure, as a V1 pool speaking another protocol is: a run whose every pool
  fails so ends in one line, while a pool that is only down is retried.

V2 has no session resumption: a new connection is a new channel with new job ids, so a share
found while the connection was down is counted stale, never sent on a channel that cannot know its job.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import unquote, urlsplit

from miner.block import DIFF1_TARGET
from miner.work import StratumJob, internal_prevhash_to_stratum
from stratum.client import (
    AuthFailed,
    Connected,
    ConnectFailed,
    Disconnected,
    Ready,
    SubmitLost,
    parse_pool_url,
)
from stratum.protocol import (
    ERR_DUPLICATE,
    ERR_JOB_NOT_FOUND,
    ERR_LOW_DIFFICULTY,
    ERR_OTHER,
    Event,
    Notify,
    ProtocolViolation,
    Reconnect,
    SetDifficulty,
    SetVersionMask,
    SubmitResult,
    SubscribeResult,
)
from stratum.v2 import client as v2c
from stratum.v2 import messages as m
from stratum.v2 import protocol as v2p
from stratum.v2.client import V2Client, parse_v2_url

V2_SCHEMES = ("stratum2+tcp",)
STANDARD = "standard"
EXTENDED = "extended"
BIP320_MASK = 0x1FFFE000
MAX_JOBS = 64  # a channel's jobs remembered for SetNewPrevHash and for the version of a share's job

_REJECT_CODES = {
    "stale-share": ERR_JOB_NOT_FOUND,
    "invalid-job-id": ERR_JOB_NOT_FOUND,
    "duplicate-share": ERR_DUPLICATE,
    "difficulty-too-low": ERR_LOW_DIFFICULTY,
}


def is_v2_url(url: str) -> bool:
    return url.strip().lower().partition("://")[0] in V2_SCHEMES


def url_credentials(url: str) -> tuple[str | None, str | None]:
    """Check a pool URL of either protocol (ValueError, one line) and return the worker and password in it.

    A V2 URL may name the worker (``stratum2+tcp://worker@HOST:PORT/KEY``); V2 has no password.
    """
    if not is_v2_url(url):
        parsed = parse_pool_url(url)
        return parsed.user, parsed.password
    parse_v2_url(url)
    user = urlsplit(url.strip()).username
    return (unquote(user) if user is not None else None), None


def target_to_difficulty(target: int) -> float:
    return DIFF1_TARGET / target if target > 0 else float("inf")


class JobNotify(Notify):
    """A notify that carries its job already built: a V2 standard job has no coinbase to put in params."""

    def __init__(self, job: StratumJob) -> None:
        super().__init__(job.to_params(), job.job_id, job.clean_jobs)
        self.job = job


class V2PoolClient:
    """One V2 pool, driven like a :class:`stratum.client.StratumClient` (``ready``, ``submit``, events)."""

    def __init__(
        self,
        url: str,
        user: str,
        password: str = "x",
        on_event=None,
        *,
        channel: str = STANDARD,
        user_agent: str = "sha256d-miner",
        silence_timeout: float = 90.0,
        connect_timeout: float = 10.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        nominal_hash_rate: float = 0.0,
        # V1 options that mean nothing on V2: the session is authenticated by the pool's authority key, not
        # TLS; version rolling is the pool's to allow (BIP 320's bits); V2 has no suggest_difficulty
        verify_tls: bool = True,
        ca_file: str | None = None,
        version_rolling: bool = False,
        suggest_difficulty: float | None = None,
    ) -> None:
        if channel not in (STANDARD, EXTENDED):
            raise ValueError(f"the V2 channel is {STANDARD!r} or {EXTENDED!r}, not {channel!r}")
        self.url = parse_v2_url(url)
        self.host, self.port = self.url.host, self.url.port
        self.user = user
        self.on_event = on_event
        self.channel_kind = channel
        self.options = {
            "channel": channel,
            "nominal_hash_rate": nominal_hash_rate,
            "vendor": user_agent,
            "connect_timeout": connect_timeout,
            "silence": silence_timeout,
            "backoff": (backoff_initial, backoff_max),
        }
        self.ready = False
        self.connected = False
        self.ever_ready = False
        self.last_error = ""
        self.version_mask = 0
        self._lock = threading.Lock()
        self._client = None
        self._reset_session()

    # --- control ---

    def _make_client(self):
        holder: list = []
        client = V2Client(self.url, self.user, lambda event: self._on_v2(holder[0], event), **self.options)
        holder.append(client)
        return client

    def start(self) -> None:
        self._client = self._make_client()
        self._client.start()

    def stop(self, timeout: float = 2.0) -> None:
        client = self._client
        if client is not None:
            client.stop(timeout)
        with self._lock:
            self.ready = self.connected = False

    def close(self) -> None:
        self.stop()

    def reconnect_now(self) -> None:
        """Drop the connection and connect again at once (cgminer's restart)."""
        old = self._client
        with self._lock:
            self.ready = False
        self._client = self._make_client()
        if old is not None:
            old.stop(1.0)
            self._emit(Disconnected("restarting the connection", 0.0))
        self._client.start()

    def submit(
        self,
        job_id: str,
        extranonce2_hex: str,
        ntime_hex: str,
        nonce_hex: str,
        version_bits_hex: str | None = None,
        context: Any = None,
    ) -> bool:
        """Queue a share for the open channel; False (nothing queued) when no channel is open."""
        with self._lock:
            client, job = self._client, self._jobs.get(_job_number(job_id))
            if not self.ready or client is None or job is None:
                return False
            version = job.version
            if version_bits_hex is not None:
                version = (version & ~self.version_mask | int(version_bits_hex, 16) & self.version_mask) & 0xFFFFFFFF
            extranonce = bytes.fromhex(extranonce2_hex) if self.channel_kind == EXTENDED else b""
            client.submit(job.job_id, int(nonce_hex, 16), int(ntime_hex, 16), version, extranonce, context=context)
        return True

    # --- events from the V2 client's thread ---

    def _reset_session(self) -> None:
        self.channel = None
        self._handshake_done = False
        self._refused = ""  # why this connection never became usable (handshake, setup), for a failed connect
        self._server_flags = 0
        self._prev = None  # the latest SetNewPrevHash
        self._jobs: OrderedDict[int, Any] = OrderedDict()

    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            try:
                self.on_event(self, event)
            except Exception:  # a listener bug must not kill the connection
                pass

    def _on_v2(self, client, event) -> None:
        if client is not self._client:  # a connection replaced by reconnect_now: only its lost shares matter
            if isinstance(event, v2c.SubmitLost):
                self._emit(SubmitLost(event.context, event.sent))
            return
        if isinstance(event, v2c.Connected):
            with self._lock:
                self.connected = True
                self._reset_session()
            self._emit(Connected(event.host, event.port, False))
        elif isinstance(event, v2p.HandshakeComplete):
            self._handshake_done = True
        elif isinstance(event, v2p.ProtocolViolation):
            if not event.fatal:
                self._emit(ProtocolViolation(event.reason))
            elif not self._handshake_done:
                self._refused = event.reason  # the Disconnected that follows says it
        elif isinstance(event, v2c.ChannelReady):
            self._channel_ready(event.channel)
        elif isinstance(event, v2c.ConnectFailed):
            self.last_error = event.reason
            self._emit(ConnectFailed(event.reason, event.retry_in))
        elif isinstance(event, v2c.Disconnected):
            with self._lock:
                self.ready = self.connected = False
            reason = self._refused or event.reason
            self.last_error = reason
            if self._refused:  # a failed handshake or a refused setup: no pool session, and retrying cannot help
                self._emit(ConnectFailed(reason, event.retry_in, permanent=True))
            else:
                self._emit(Disconnected(reason, event.retry_in))
        elif isinstance(event, v2c.SubmitLost):
            self._emit(SubmitLost(event.context, event.sent))
        elif isinstance(event, v2p.SharesAccepted):
            for context in event.contexts:
                self._emit(SubmitResult(None, True, context=context))
        elif isinstance(event, v2p.ShareRejected):
            if event.context is not None:
                code = event.message.error_code
                self._emit(SubmitResult(None, False, _REJECT_CODES.get(code, ERR_OTHER), code, event.context))
        else:
            self._message(event)

    def _message(self, event) -> None:
        if isinstance(event, m.SetupConnectionSuccess):
            self._server_flags = event.flags
        elif isinstance(event, m.SetupConnectionError):
            self._refused = f"the pool refused the connection: {event.error_code}"
        elif isinstance(event, m.OpenMiningChannelError):
            self._emit(AuthFailed(f"the pool refused the channel: {event.error_code}"))
        elif isinstance(event, m.Reconnect):
            self._emit(Reconnect(event.new_host or None, event.new_port or None, 0.0))
        elif self.channel is None or getattr(event, "channel_id", None) not in self._addresses():
            return
        elif isinstance(event, m.SetTarget):
            self._emit(SetDifficulty(target_to_difficulty(event.maximum_target)))
        elif isinstance(event, (m.NewMiningJob, m.NewExtendedMiningJob)):
            self._new_job(event)
        elif isinstance(event, m.SetNewPrevHash):
            self._new_prev_hash(event)

    def _addresses(self) -> tuple[int, ...]:
        """The ids a message for our channel may carry: its own, and its group's."""
        return (self.channel.channel_id, self.channel.group_channel_id)

    def _channel_ready(self, channel) -> None:
        extended = channel.kind == EXTENDED
        extranonce1 = bytes(channel.extranonce_prefix) if extended else b""
        size = channel.extranonce_size if extended else 0
        mask = 0 if self._server_flags & m.REQUIRES_FIXED_VERSION else BIP320_MASK
        with self._lock:
            self.channel = channel
            self._jobs.clear()
            self._prev = None
            self.version_mask = mask
        self._emit(SubscribeResult(None, extranonce1, size, None))
        self._emit(SetDifficulty(target_to_difficulty(channel.target)))
        with self._lock:
            self.ready = True
        self.ever_ready = True
        self.last_error = ""
        self._emit(Ready(extranonce1, size, False, mask))

    def _new_job(self, job) -> None:
        with self._lock:
            self._jobs[job.job_id] = job
            self._jobs.move_to_end(job.job_id)
            while len(self._jobs) > MAX_JOBS:
                self._jobs.popitem(last=False)
        if job.is_future:
            return
        if self._prev is None:
            self._emit(ProtocolViolation(f"job {job.job_id} arrived before any SetNewPrevHash: not mined"))
            return
        self._notify(job, job.min_ntime, clean=False)

    def _new_prev_hash(self, prev) -> None:
        job = self._jobs.get(prev.job_id)
        if job is None:
            self._emit(ProtocolViolation(f"SetNewPrevHash names job {prev.job_id}, which was never sent"))
            return
        self._prev = prev
        self._notify(job, prev.min_ntime, clean=True)

    def _notify(self, job, ntime: int, clean: bool) -> None:
        if isinstance(job, m.NewExtendedMiningJob) and self.version_mask:
            self._emit(SetVersionMask(BIP320_MASK if job.version_rolling_allowed else 0))
        standard = isinstance(job, m.NewMiningJob)
        stratum_job = StratumJob(
            job_id=str(job.job_id),
            prevhash=internal_prevhash_to_stratum(self._prev.prev_hash),
            coinb1="" if standard else job.coinbase_tx_prefix.hex(),
            coinb2="" if standard else job.coinbase_tx_suffix.hex(),
            merkle_branch=() if standard else tuple(h.hex() for h in job.merkle_path),
            version=f"{job.version:08x}",
            nbits=f"{self._prev.nbits:08x}",
            ntime=f"{ntime:08x}",
            clean_jobs=clean,
            merkle_root=job.merkle_root.hex() if standard else "",
        )
        self._emit(JobNotify(stratum_job))


def _job_number(job_id: str) -> int:
    try:
        return int(job_id)
    except ValueError:
        return -1
