"""A Stratum V1 client over TCP or TLS, with reconnect, backoff and a dead-pool timer.

One :class:`StratumClient` is one pool. It owns a background thread that
connects, negotiates (configure, subscribe with the previous session id,
authorize, extranonce.subscribe), answers the pool's housekeeping requests
(get_version, ping, reconnect) and hands every event to ``on_event`` from that
thread. All socket I/O happens on that one thread (TLS objects must not be
read and written concurrently), so :meth:`StratumClient.submit` only queues
a share and wakes the thread.

Besides the protocol's own events (see :mod:`stratum.protocol`) the listener
sees the connection's life: :class:`Connected`, :class:`Ready` (authorized,
may submit), :class:`ConnectFailed`, :class:`AuthFailed`,
:class:`Disconnected` and :class:`SubmitLost` for shares the connection
dropped (``sent`` says whether the pool may have seen them).
"""

from __future__ import annotations

import random
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from stratum.protocol import (
    BIP320_MASK,
    AuthorizeResult,
    ClientConnection,
    ConfigureResult,
    ConnectionClosed,
    Event,
    GetVersion,
    Ping,
    ProtocolViolation,
    Reconnect,
    RequestFailed,
    SetExtranonce,
    SetVersionMask,
    SubscribeResult,
    UnknownMethod,
)

SCHEMES = {"stratum+tcp": False, "stratum": False, "tcp": False, "stratum+ssl": True, "stratum+tcps": True, "ssl": True}
DEFAULT_SILENCE = 90.0


@dataclass(frozen=True)
class PoolUrl:
    """Where a pool listens; ``tls`` from the scheme (stratum+ssl / stratum+tcps)."""

    host: str
    port: int
    tls: bool
    url: str  # as shown to the user: never the credentials
    xnsub: bool = False  # cgminer's "#xnsub" suffix: send mining.extranonce.subscribe
    user: str | None = None  # from ``scheme://user:password@host:port``, as cpuminer and cgminer read it
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.url


def redact_url(url: str) -> str:
    """The URL without its ``user:password@``, for anything a person or a log may see."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, tail = rest.partition("/")
    return f"{scheme}{sep}{authority.rpartition('@')[2]}{slash}{tail}"


def parse_pool_url(url: str) -> PoolUrl:
    """``stratum+tcp://host:port[#xnsub]`` (also +ssl, +tcps, or a bare ``host:port``); ValueError with one line
    otherwise."""
    text = url.strip()
    if not text:
        raise ValueError("empty pool URL")
    if "://" not in text:
        text = "stratum+tcp://" + text
    url = redact_url(url)  # every message below quotes it
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        detail = str(exc)
        raise ValueError(f"bad pool URL {url!r}: {detail[:1].lower()}{detail[1:]}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"bad pool URL {url!r}: scheme must be stratum+tcp://, stratum+ssl:// or stratum+tcps://")
    if not parts.hostname:
        raise ValueError(f"bad pool URL {url!r}: no host")
    if port is None:
        raise ValueError(f"bad pool URL {url!r}: no port (e.g. {scheme}://{parts.hostname}:3333)")
    if port == 0:
        raise ValueError(f"bad pool URL {url!r}: port 0")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"bad pool URL {url!r}: unexpected path or query")
    if parts.fragment not in ("", "xnsub"):
        raise ValueError(f"bad pool URL {url!r}: the only suffix known is #xnsub")
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return PoolUrl(host, port, SCHEMES[scheme], f"{scheme}://{shown}:{port}", parts.fragment == "xnsub", user, password)


# --- connection-level events ----------------------------------------------------------------------------------------


@dataclass
class Connected(Event):
    host: str
    port: int
    tls: bool


@dataclass
class ConnectFailed(Event):
    reason: str
    retry_in: float


@dataclass
class Ready(Event):
    """Subscribed and authorized: jobs are coming, shares may be submitted."""

    extranonce1: bytes
    extranonce2_size: int
    resumed: bool  # same session (and extranonce1) as before the reconnect
    version_mask: int


@dataclass
class AuthFailed(Event):
    reason: str


@dataclass
class Disconnected(Event):
    reason: str
    retry_in: float


@dataclass
class SubmitLost(Event):
    """A share the connection dropped: never sent (``sent`` False) or sent without a reply."""

    context: Any
    sent: bool


def tls_context(verify: bool = True, ca_file: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def describe_error(exc: BaseException) -> str:
    """One line a user can act on."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed ({exc.verify_message}); --no-verify-tls accepts any certificate"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "cannot resolve host"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


class _SessionEnd(Exception):
    def __init__(self, reason: str, auth_failed: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.auth_failed = auth_failed


class StratumClient:
    """One pool connection kept alive in a background thread."""

    def __init__(
        self,
        url: str | PoolUrl,
        user: str,
        password: str = "x",
        on_event: Callable[[StratumClient, Event], None] | None = None,
        *,
        user_agent: str = "sha256d-miner",
        version_rolling: bool = False,
        version_mask: int = BIP320_MASK,
        extranonce_subscribe: bool = False,
        suggest_difficulty: float | None = None,
        verify_tls: bool = True,
        ca_file: str | None = None,
        silence_timeout: float = DEFAULT_SILENCE,
        connect_timeout: float = 10.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        self.url = url if isinstance(url, PoolUrl) else parse_pool_url(url)
        self.host, self.port = self.url.host, self.url.port
        self.user = user
        self.password = password
        self.on_event = on_event
        self.user_agent = user_agent
        self.version_rolling = version_rolling
        self.requested_mask = version_mask
        self.want_extranonce = extranonce_subscribe or self.url.xnsub
        self.suggest = suggest_difficulty
        self.verify_tls = verify_tls
        self.ca_file = ca_file
        self.silence_timeout = silence_timeout
        self.connect_timeout = connect_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max

        self.ready = False
        self.connected = False
        self.ever_ready = False
        self.attempts = 0  # connection attempts so far
        self.failures = 0  # consecutive failed attempts
        self.last_error = ""
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.version_mask = 0
        self.session_id: str | None = None
        self._stop = threading.Event()
        self._kick = threading.Event()  # cuts a backoff wait short
        self._sent_session: str | None = None
        self._lock = threading.Lock()
        self._outbox: deque[tuple[tuple, Any]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None
        self._redirect: tuple[str, int, float] | None = None

    # --- control ------------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"stratum {self.url}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._kick.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        self.stop()
        for s in (self._wake_r, self._wake_w):
            s.close()

    def reconnect_now(self) -> None:
        """Drop the connection and connect again at once (cgminer's restart)."""
        self._redirect = (self.host, self.port, 0.0)
        self.failures = 0
        self._kick.set()
        self._wake()

    def submit(
        self,
        job_id: str,
        extranonce2_hex: str,
        ntime_hex: str,
        nonce_hex: str,
        version_bits_hex: str | None = None,
        context: Any = None,
    ) -> bool:
        """Queue a share for sending; False (nothing queued) when not connected and authorized."""
        with self._lock:
            if not self.ready:
                return False
            self._outbox.append(((self.user, job_id, extranonce2_hex, ntime_hex, nonce_hex, version_bits_hex), context))
        self._wake()
        return True

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            try:
                self.on_event(self, event)
            except Exception:  # a listener bug must not kill the connection
                pass

    # --- the connection thread ------------------------------------------------------------------------------------

    def _backoff(self) -> float:
        base = min(self.backoff_max, self.backoff_initial * (2 ** max(0, self.failures - 1)))
        return base * random.uniform(0.5, 1.0)  # jitter: pools are not stampeded by their miners at once

    def _run(self) -> None:
        while not self._stop.is_set():
            self.attempts += 1
            try:
                sock = self._connect()
            except OSError as exc:
                self.failures += 1
                self.last_error = describe_error(exc)
                delay = self._backoff()
                self._emit(ConnectFailed(self.last_error, delay))
                self._sleep(delay)
                continue
            self.connected = True
            self._emit(Connected(self.host, self.port, self.url.tls))
            try:
                reason, auth_failed = self._session(sock), False
            except _SessionEnd as end:
                reason, auth_failed = end.reason, end.auth_failed
            except (OSError, ssl.SSLError) as exc:
                reason, auth_failed = describe_error(exc), False
            finally:
                with self._lock:
                    self.ready = False
                    self.connected = False
                    unsent = list(self._outbox)
                    self._outbox.clear()
                try:
                    sock.close()
                except OSError:
                    pass
            for _, context in unsent:
                self._emit(SubmitLost(context, sent=False))
            self.last_error = reason
            if self._stop.is_set():
                self._emit(Disconnected(reason, 0.0))
                break
            redirect, self._redirect = self._redirect, None
            if redirect is not None:
                self.host, self.port, delay = redirect[0], redirect[1], redirect[2]
            else:
                self.failures += 1
                delay = self._backoff()
                if auth_failed:
                    delay = max(delay, min(self.backoff_max, 10 * self.backoff_initial))
            self._emit(Disconnected(reason, delay))
            self._sleep(delay)

    def _sleep(self, delay: float) -> None:
        self._kick.wait(delay)
        self._kick.clear()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        if self.url.tls:
            try:
                sock = tls_context(self.verify_tls, self.ca_file).wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return sock

    def _session(self, sock: socket.socket) -> str:
        conn = ClientConnection()
        self._sent_session = sent_session = self.session_id
        previous_en1 = self.extranonce1
        out = bytearray()
        if self.version_rolling:
            out += conn.configure(self.requested_mask).data
        out += conn.subscribe(self.user_agent, sent_session).data
        self._send(sock, out)
        last_rx = time.monotonic()
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while True:
                if self._stop.is_set():
                    return "stopped"
                if self._redirect is not None:
                    return "reconnecting"
                self._flush_outbox(conn, sock)
                pending_tls = isinstance(sock, ssl.SSLSocket) and sock.pending()
                ready = [] if pending_tls else selector.select(timeout=0.5)
                if any(key.fileobj is self._wake_r for key, _ in ready):
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                if pending_tls or any(key.fileobj is sock for key, _ in ready):
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        continue
                    last_rx = time.monotonic()
                    for event in conn.receive_data(data):
                        self._handle(conn, sock, event, previous_en1)
                elif time.monotonic() - last_rx > self.silence_timeout:
                    return f"pool silent for {self.silence_timeout:g} s"
        finally:
            selector.close()
            for method, context in conn.pending.values():
                if method == "mining.submit":
                    self._emit(SubmitLost(context, sent=True))

    def _flush_outbox(self, conn: ClientConnection, sock: socket.socket) -> None:
        while True:
            with self._lock:
                if not self._outbox or not self.ready:
                    return
                params, context = self._outbox.popleft()
                data = conn.submit(*params, context=context).data
            self._send(sock, data)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        view = memoryview(bytes(data))
        deadline = time.monotonic() + max(5.0, self.connect_timeout)
        while view:
            try:
                n = sock.send(view)
                view = view[n:]
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                if time.monotonic() > deadline:
                    raise _SessionEnd("send timed out") from None
                time.sleep(0.005)

    def _handle(self, conn: ClientConnection, sock, event: Event, previous_en1: bytes) -> None:
        if isinstance(event, SubscribeResult):
            self.extranonce1, self.extranonce2_size = event.extranonce1, event.extranonce2_size
            self.session_id = event.session_id
            out = conn.authorize(self.user, self.password).data
            if self.want_extranonce:
                out += conn.extranonce_subscribe().data
            if self.suggest:
                out += conn.suggest_difficulty(self.suggest).data
            self._send(sock, out)
        elif isinstance(event, RequestFailed) and event.method == "mining.subscribe":
            if self._sent_session is None:
                raise _SessionEnd(f"subscribe refused: {event.reason}")
            self._sent_session = None  # the pool forgot the session: start a fresh one
            self.session_id = None
            self._send(sock, conn.subscribe(self.user_agent).data)
        elif isinstance(event, ConfigureResult):
            self.version_mask = event.version_mask
        elif isinstance(event, SetVersionMask):
            self.version_mask = event.mask
        elif isinstance(event, SetExtranonce):
            self.extranonce1, self.extranonce2_size = event.extranonce1, event.extranonce2_size
        elif isinstance(event, AuthorizeResult):
            if not event.ok:
                self._emit(event)
                self._emit(AuthFailed(event.reason or "pool refused the worker's credentials"))
                raise _SessionEnd(f"authorization refused for {self.user!r}", auth_failed=True)
            sent = self._sent_session
            resumed = sent is not None and sent == conn.session_id and previous_en1 == self.extranonce1
            with self._lock:
                self.ready = True
            self.ever_ready = True
            self.failures = 0
            self._emit(event)
            self._emit(Ready(self.extranonce1, self.extranonce2_size, resumed, self.version_mask))
            return
        elif isinstance(event, GetVersion):
            self._send(sock, conn.reply_version(event.request_id, self.user_agent))
        elif isinstance(event, Ping):
            self._send(sock, conn.reply_pong(event.request_id))
        elif isinstance(event, UnknownMethod):
            if event.request_id is not None:
                self._send(sock, conn.reply_error(event.request_id, event.code, event.reason))
        elif isinstance(event, ProtocolViolation):
            if event.method == "mining.subscribe":
                self._emit(event)
                raise _SessionEnd(f"unusable subscribe reply: {event.reason}")
        elif isinstance(event, Reconnect):
            self._emit(event)
            host = event.host or self.host
            if host != self.host:  # as cgminer: a pool may move us to another port, not another host
                self._emit(ProtocolViolation(f"ignored client.reconnect to another host {host!r}"))
                return
            self._redirect = (host, event.port or self.port, min(event.wait, 600.0))
            return
        elif isinstance(event, ConnectionClosed):
            raise _SessionEnd("pool closed the connection")
        self._emit(event)
