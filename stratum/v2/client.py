"""A Stratum V2 client over TCP: Noise handshake, one mining channel, reconnect with backoff.

One :class:`V2Client` is one pool, given as ``stratum2+tcp://HOST:PORT/AUTHORITY_KEY``
(:func:`parse_v2_url`). A background thread connects, runs the handshake
(checking the pool's certificate against the authority key), sends
SetupConnection, opens a standard or an extended channel and hands every
event to ``on_event`` from that thread. All socket I/O stays on that thread,
so :meth:`V2Client.submit` only queues a share and wakes it.

Besides the session's own events (:mod:`stratum.v2.protocol`) the listener
sees the connection's life, named as on V1: :class:`Connected`,
:class:`ChannelReady` (the channel is open: jobs follow, shares may go),
:class:`ConnectFailed`, :class:`Disconnected` (with the reason, e.g. the
certificate check that failed) and :class:`SubmitLost` for shares the
connection dropped (``sent`` says whether the pool may have seen them), so
the caller can resubmit what is still current.
"""

from __future__ import annotations

import contextlib
import logging
import random
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from stratum.v2 import messages as m
from stratum.v2.messages import Event
from stratum.v2.noise import decode_authority_key, encode_authority_key
from stratum.v2.protocol import (
    EXTENDED,
    STANDARD,
    Channel,
    ClientConnection,
    ConnectionClosed,
    HandshakeComplete,
    ProtocolViolation,
)

SCHEMES = ("stratum2+tcp",)
log = logging.getLogger(__name__)
DEFAULT_SILENCE = 120.0


@dataclass(frozen=True)
class V2PoolUrl:
    host: str
    port: int
    authority_key: bytes  # 32-byte x-only
    url: str  # as shown to the user

    def __str__(self) -> str:
        return self.url


def parse_v2_url(url: str) -> V2PoolUrl:
    """``stratum2+tcp://HOST:PORT/AUTHORITY_KEY``; ValueError with a line fit to show the user."""
    parts = urlsplit(url.strip())
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{url}: a Stratum V2 URL starts with stratum2+tcp://")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError(f"{url}: the port is not a number") from None
    if not host or port is None:
        raise ValueError(f"{url}: give HOST:PORT, as in stratum2+tcp://pool.example:3336/AUTHORITY_KEY")
    key_text = parts.path.strip("/")
    if not key_text:
        raise ValueError(f"{url}: the pool's authority key goes after the port, as in stratum2+tcp://HOST:PORT/KEY")
    try:
        key = decode_authority_key(key_text)
    except ValueError as exc:
        raise ValueError(f"{url}: {exc}") from None
    return V2PoolUrl(host, port, key, f"stratum2+tcp://{host}:{port}/{encode_authority_key(key)}")


# --- connection-life events ------------------------------------------------------------------------------------------


@dataclass
class Connected(Event):
    host: str
    port: int


@dataclass
class ChannelReady(Event):
    """The channel is open; its id, kind, target and extranonce prefix (and size, if extended) are here."""

    channel: Channel


@dataclass
class ConnectFailed(Event):
    reason: str
    retry_in: float


@dataclass
class Disconnected(Event):
    reason: str
    retry_in: float


@dataclass
class SubmitLost(Event):
    context: Any
    sent: bool


class _SessionEnd(Exception):
    pass


class V2Client:
    def __init__(
        self,
        url: V2PoolUrl | str,
        user: str,
        on_event: Callable[[Event], None],
        *,
        channel: str = STANDARD,
        nominal_hash_rate: float = 0.0,
        min_extranonce_size: int = 4,
        vendor: str = "sha256d-miner",
        clock: Callable[[], float] = time.time,
        connect_timeout: float = 10.0,
        silence: float = DEFAULT_SILENCE,
        backoff: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        if channel not in (STANDARD, EXTENDED):
            raise ValueError(f"channel must be {STANDARD!r} or {EXTENDED!r}")
        self.url = parse_v2_url(url) if isinstance(url, str) else url
        self.user = user
        self.on_event = on_event
        self.channel_kind = channel
        self.nominal_hash_rate = nominal_hash_rate
        self.min_extranonce_size = min_extranonce_size
        self.vendor = vendor
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.silence = silence
        self.backoff = backoff
        self._failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue: deque[tuple[Any, ...]] = deque()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.channel: Channel | None = None
        self.connection: ClientConnection | None = None
        self._address = (self.url.host, self.url.port)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"sv2-{self.url.host}:{self.url.port}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(
        self, job_id: int, nonce: int, ntime: int, version: int, extranonce: bytes = b"", context: Any = None
    ) -> None:
        """Queue a share for the open channel; its answer arrives as SharesAccepted / ShareRejected / SubmitLost."""
        with self._lock:
            self._queue.append((job_id, nonce, ntime, version, extranonce, context))
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\x00")
        except (BlockingIOError, OSError):
            pass

    def _emit(self, event: Event) -> None:
        try:
            self.on_event(event)
        except Exception:  # a listener's bug must not kill the connection thread
            log.exception("V2 event listener failed on %s", type(event).__name__)

    def _retry_in(self) -> float:
        low, high = self.backoff
        delay = min(high, low * 2 ** min(self._failures, 10))
        return delay * random.uniform(0.8, 1.2)

    def _run(self) -> None:
        while not self._stop.is_set():
            host, port = self._address
            try:
                sock = socket.create_connection((host, port), timeout=self.connect_timeout)
            except OSError as exc:
                self._failures += 1
                delay = self._retry_in()
                self._emit(ConnectFailed(f"{host}:{port}: {exc.strerror or exc}", delay))
                self._drop_queue()
                self._address = (self.url.host, self.url.port)
                self._stop.wait(delay)
                continue
            self._emit(Connected(host, port))
            try:
                reason = self._session(sock)
            finally:
                sock.close()
            self._lose_pending()
            if self._stop.is_set():
                break
            self._failures += 1
            delay = self._retry_in()
            self._emit(Disconnected(reason, delay))
            self._stop.wait(delay)

    def _drop_queue(self) -> None:
        with self._lock:
            queued, self._queue = list(self._queue), deque()
        for item in queued:
            self._emit(SubmitLost(item[-1], sent=False))

    def _lose_pending(self) -> None:
        conn = self.connection
        if conn is not None:
            for pending in conn.pending_submits.values():
                for context in pending.values():
                    self._emit(SubmitLost(context, sent=True))
                pending.clear()
        self._drop_queue()
        self.channel = None

    def _session(self, sock: socket.socket) -> str:
        # A share queued while the last session was ending names that channel's job: never send it on this one.
        self._drop_queue()
        conn = ClientConnection(self.url.authority_key, clock=self.clock)
        self.connection = conn
        self.channel = None
        sock.settimeout(None)
        sock.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            self._send(sock, conn.initiate())
            last_heard = time.monotonic()
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=1.0):
                    if key.fileobj is self._wake_r:
                        with contextlib.suppress(BlockingIOError, InterruptedError):
                            self._wake_r.recv(4096)
                        continue
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as exc:
                        return f"connection lost: {exc.strerror or exc}"
                    last_heard = time.monotonic()
                    for event in conn.receive_data(data):
                        self._handle(conn, sock, event)
                if self.channel is not None:
                    self._flush(conn, sock)
                if time.monotonic() - last_heard > self.silence:
                    return f"pool silent for {self.silence:.0f} s"
            return "stopped"
        except _SessionEnd as end:
            return str(end)
        finally:
            selector.close()

    def _send(self, sock: socket.socket, data: bytes) -> None:
        sock.setblocking(True)
        try:
            sock.sendall(data)
        except OSError as exc:
            raise _SessionEnd(f"connection lost: {exc.strerror or exc}") from None
        finally:
            sock.setblocking(False)

    def _flush(self, conn: ClientConnection, sock: socket.socket) -> None:
        assert self.channel is not None
        while True:
            with self._lock:
                if not self._queue:
                    return
                job_id, nonce, ntime, version, extranonce, context = self._queue.popleft()
            channel_id = self.channel.channel_id
            if self.channel.kind == STANDARD:
                out = conn.submit_standard(channel_id, job_id, nonce, ntime, version, context=context)
            else:
                out = conn.submit_extended(channel_id, job_id, nonce, ntime, version, extranonce, context=context)
            self._send(sock, out.data)

    def _handle(self, conn: ClientConnection, sock: socket.socket, event: Event) -> None:
        if isinstance(event, ConnectionClosed):
            raise _SessionEnd("the pool closed the connection")
        if isinstance(event, ProtocolViolation):
            self._emit(event)
            if event.fatal:
                raise _SessionEnd(event.reason)
            return
        self._emit(event)
        if isinstance(event, HandshakeComplete):
            host, port = self._address
            self._send(sock, conn.setup_connection(host, port, flags=self._setup_flags(), vendor=self.vendor))
            return
        if isinstance(event, m.SetupConnectionError):
            raise _SessionEnd(f"the pool refused the connection: {event.error_code}")
        if isinstance(event, m.SetupConnectionSuccess):
            if self.channel_kind == STANDARD:
                out = conn.open_standard_channel(self.user, self.nominal_hash_rate)
            else:
                out = conn.open_extended_channel(self.user, self.nominal_hash_rate, self.min_extranonce_size)
            self._send(sock, out.data)
        elif isinstance(event, (m.OpenStandardMiningChannelSuccess, m.OpenExtendedMiningChannelSuccess)):
            self.channel = conn.channels[event.channel_id]
            self._failures = 0
            self._emit(ChannelReady(self.channel))
        elif isinstance(event, m.OpenMiningChannelError):
            raise _SessionEnd(f"the pool refused the channel: {event.error_code}")
        elif (
            isinstance(event, m.CloseChannel)
            and self.channel is not None
            and event.channel_id == self.channel.channel_id
        ):
            raise _SessionEnd(f"the pool closed the channel: {event.reason_code or 'no reason given'}")
        elif isinstance(event, m.Reconnect):
            # sv2-spec 3.3: same authority key, possibly another host; empty host / port 0 keep the present one
            host, port = self._address
            self._address = (event.new_host or host, event.new_port or port)
            raise _SessionEnd(f"the pool asked for a reconnect to {self._address[0]}:{self._address[1]}")

    def _setup_flags(self) -> int:
        return m.REQUIRES_STANDARD_JOBS if self.channel_kind == STANDARD else 0
