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

A server that never gives a Stratum answer is told apart by what its bytes
looked like: TLS where plain Stratum was expected (``stratum+tcp://`` to a TLS
pool), plain text or silence where a TLS handshake was expected
(``stratum+ssl://`` to a plain pool), an HTTP server, or a close before any
answer. Such a first contact ends as :class:`ConnectFailed` with a reason
that says so and what to try, as a refused connection does.

A ``wire`` hook, when given, sees every Stratum line of every session as it
goes out and as it comes in (direction ``"out"`` or ``"in"``, the line without
its newline), before the protocol core acts on it: the one place a capture
or a protocol dump taps the conversation. It runs on the connection thread,
so it must be quick; an exception in it is swallowed, as a listener's is.
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
PLAIN_PROBE_AFTER = 2.0  # a TLS handshake unanswered this long: ask the port whether it speaks plain Stratum
PROBE_TIMEOUT = 3.0  # for each probe connection
FIRST_BYTES = 64  # how much of a server's first reply is kept to tell what it speaks
WIRE_LINE_LIMIT = 1 << 20  # the longest unfinished received line kept for the wire hook


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
    permanent: bool = False  # trying again cannot help: the server speaks another protocol, its certificate fails


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


class WrongProtocol(OSError):
    """The server at the address speaks something other than what the URL's scheme promised."""


def is_permanent(exc: BaseException) -> bool:
    """Whether a failed connection will fail the same way every time (a refused or silent one may not)."""
    return isinstance(exc, (WrongProtocol, ssl.SSLCertVerificationError))


def describe_error(exc: BaseException) -> str:
    """One line a user can act on."""
    if isinstance(exc, WrongProtocol):
        return str(exc)
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


def _is_tls_record(data: bytes) -> bool:
    """A TLS record header: content type (alert 21, handshake 22) and a 3.x version."""
    return len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 0x03


def _http_status(data: bytes) -> str | None:
    if not data.startswith(b"HTTP/"):
        return None
    return data.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("latin-1")


def not_stratum(first: bytes, url: PoolUrl) -> str | None:
    """What a server's first bytes say when they cannot start a Stratum answer; None when they may.

    ``first`` is what arrived on a plain connection before any Stratum message was understood.
    """
    if not first:
        return None
    if _is_tls_record(first):
        return f"this looks like TLS; try stratum+ssl://{_authority(url)}"
    status = _http_status(first)
    if status is not None:
        return f"this looks like an HTTP server (it answered {status!r}), not a Stratum pool"
    if first.lstrip()[:1] in (b"{", b"["):  # JSON: Stratum, or a half line of it
        return None
    return f"the server's reply is not Stratum (it began {first[:16]!r})"


def _authority(url: PoolUrl) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port}"


def _tls_probe_context() -> ssl.SSLContext:
    """For asking whether a port speaks TLS at all: the certificate does not matter here."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


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
        wire: Callable[[str, str], None] | None = None,
        proxy: str | None = None,
    ) -> None:
        self.url = url if isinstance(url, PoolUrl) else parse_pool_url(url)
        self.proxy = proxy  # socks5://[USER:PASS@]HOST:PORT (also socks4://, http://): every connection goes through it
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
        self.wire = wire

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
        self._first = bytearray()  # the start of what this connection received
        self._answered = False  # whether this connection brought one Stratum message
        self._went_silent = False
        self._wire_in = bytearray()  # the start of a received line the wire hook has not seen yet

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

    def _tap(self, direction: str, data: bytes) -> None:
        """Hand each complete line of ``data`` to the wire hook; a received line split across reads waits."""
        if self.wire is None:
            return
        if direction == "in":
            self._wire_in += data
            *lines, rest = self._wire_in.split(b"\n")
            # a line past the protocol's limit is dropped by the protocol core too: it must not grow here forever
            self._wire_in = bytearray(rest) if len(rest) <= WIRE_LINE_LIMIT else bytearray()
        else:
            lines = bytes(data).split(b"\n")[:-1] if data.endswith(b"\n") else bytes(data).split(b"\n")
        for line in lines:
            try:
                self.wire(direction, line.decode("utf-8", "replace"))
            except Exception:  # a capture that fails must not take the connection down
                pass

    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            try:
                self.on_event(self, event)
            except Exception:  # a listener bug must not kill the connection
                pass

    # --- the connection thread ------------------------------------------------------------------------------------

    def _backoff(self) -> float:
        if self.backoff_initial >= self.backoff_max:  # a fixed pause (--retry-pause): the one the user gave
            return self.backoff_max
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
                self._emit(ConnectFailed(self.last_error, delay, permanent=is_permanent(exc)))
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
            mismatch = None
            if not self._answered and not self._went_silent and not self._stop.is_set() and self._redirect is None:
                # Only a first contact is asked what it speaks: a pool that once answered is restarting.
                mismatch = None if self.ever_ready else self._mismatch()
                if mismatch is None and not self._first:  # maybe a pool restarting: say so, and try again
                    reason = "the server closed the connection before answering"
                reason = mismatch or reason
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
            # A server that answered in another protocol was never a pool session: a failed first contact.
            self._emit(ConnectFailed(reason, delay, permanent=True) if mismatch else Disconnected(reason, delay))
            self._sleep(delay)

    def _sleep(self, delay: float) -> None:
        self._kick.wait(delay)
        self._kick.clear()

    def _open(self, timeout: float) -> socket.socket:
        """A TCP connection to the pool: direct, or through --proxy (python-socks speaks SOCKS4/5 and HTTP
        CONNECT, and the pool's host name is resolved by the proxy, as a firewalled farm needs)."""
        if self.proxy is None:
            return socket.create_connection((self.host, self.port), timeout=timeout)
        from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError
        from python_socks.sync import Proxy

        where = f"proxy {redact_url(self.proxy)}"
        try:
            sock = Proxy.from_url(self.proxy, rdns=True).connect(self.host, self.port, timeout=timeout)
        except ProxyTimeoutError:
            raise OSError(f"{where} timed out") from None
        except ProxyConnectionError as exc:
            raise OSError(f"cannot reach {where}: {exc}") from None
        except ProxyError as exc:
            raise OSError(f"{where} refused the connection to {self.host}:{self.port}: {exc}") from None
        sock.settimeout(timeout)
        return sock

    def _connect(self) -> socket.socket:
        sock = self._open(self.connect_timeout)
        if self.url.tls:
            try:
                sock = self._handshake(sock)
            except BaseException:
                sock.close()
                raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return sock

    def _handshake(self, sock: socket.socket) -> ssl.SSLSocket:
        """The TLS handshake, watching the server's first bytes so that a plain server is named as one.

        A plain Stratum pool given as stratum+ssl:// waits silently for a line the ClientHello never
        ends; after PLAIN_PROBE_AFTER seconds a second connection asks it in plain Stratum.
        """
        raw = sock.dup()  # reads the bytes the handshake is about to consume, without taking them
        tls = tls_context(self.verify_tls, self.ca_file).wrap_socket(
            sock, server_hostname=self.host, do_handshake_on_connect=False
        )
        try:
            tls.setblocking(False)
            started = time.monotonic()
            deadline = started + self.connect_timeout
            first = b""
            probed = False
            raw.setblocking(False)
            with selectors.DefaultSelector() as selector:
                while True:
                    if not first:  # before the handshake reads them
                        try:
                            first = raw.recv(FIRST_BYTES, socket.MSG_PEEK)
                        except OSError:  # nothing yet (BlockingIOError), or a reset the handshake will report
                            pass
                    try:
                        tls.do_handshake()
                        return tls
                    except ssl.SSLWantReadError:
                        want = selectors.EVENT_READ
                    except ssl.SSLWantWriteError:
                        want = selectors.EVENT_WRITE
                    except ssl.SSLCertVerificationError:
                        raise
                    except OSError as exc:  # SSLError, a reset, an EOF
                        raise self._not_tls(first, exc) from None
                    now = time.monotonic()
                    if now >= deadline:
                        raise WrongProtocol(
                            f"no answer to the TLS handshake within {self.connect_timeout:g} s "
                            f"(if this is a plain pool, try stratum+tcp://{_authority(self.url)})"
                        )
                    wake = deadline if probed else min(deadline, started + PLAIN_PROBE_AFTER)
                    selector.register(tls, want)
                    ready = selector.select(max(0.0, wake - now))
                    selector.unregister(tls)
                    if not ready and not probed and time.monotonic() >= started + PLAIN_PROBE_AFTER:
                        probed = True
                        if self._speaks_plain_stratum():
                            raise WrongProtocol(
                                f"this is a plain Stratum pool: it answered plain Stratum but no TLS handshake; "
                                f"try stratum+tcp://{_authority(self.url)}"
                            )
        except BaseException:
            tls.close()
            raise
        finally:
            raw.close()

    def _not_tls(self, first: bytes, exc: OSError) -> OSError:
        """What a failed handshake means, from the bytes the server sent instead of TLS.

        On loopback the reply often arrives within the handshake call that sent the ClientHello, before
        it can be looked at; then a plain mining.subscribe on a second connection shows what it speaks.
        """
        if _is_tls_record(first):
            return exc  # the server does speak TLS: its own error says more
        if not first:
            first = self._plain_reply() or b""
        if not first:
            if isinstance(exc, ssl.SSLEOFError) or not isinstance(exc, ssl.SSLError):
                return WrongProtocol("the server closed the connection before answering the TLS handshake")
            return WrongProtocol(f"{describe_error(exc)}: the server does not answer in TLS")
        status = _http_status(first)
        if status is not None:
            return WrongProtocol(f"this looks like an HTTP server (it answered {status!r}), not a Stratum pool")
        if first.lstrip()[:1] in (b"{", b"["):
            return WrongProtocol(
                f"the server answered in plain text, not TLS: this looks like a plain Stratum pool; "
                f"try stratum+tcp://{_authority(self.url)}"
            )
        return WrongProtocol(f"the server did not answer in TLS (its reply began {first[:16]!r})")

    def _plain_reply(self) -> bytes | None:
        """The first bytes this address sends back to a plain mining.subscribe (None if it sends none)."""
        try:
            with self._open(PROBE_TIMEOUT) as probe:
                probe.sendall(ClientConnection().subscribe(self.user_agent).data)
                return probe.recv(FIRST_BYTES) or None
        except OSError:
            return None

    def _speaks_plain_stratum(self) -> bool:
        """Whether this address answers a plain mining.subscribe with a JSON line."""
        reply = self._plain_reply()
        return reply is not None and reply.lstrip()[:1] == b"{"

    def _speaks_tls(self) -> bool:
        """Whether a TLS handshake completes at this address (or the server answers it with a TLS alert)."""
        try:
            with self._open(PROBE_TIMEOUT) as probe:
                with _tls_probe_context().wrap_socket(probe, server_hostname=self.host):
                    return True
        except ssl.SSLError as exc:
            return not isinstance(exc, ssl.SSLEOFError) and "ALERT" in str(exc).upper()
        except OSError:
            return False

    def _mismatch(self) -> str | None:
        """Which other protocol a connection that ended before any Stratum answer spoke; None if none is known.

        Nothing at all came back: a TLS server drops a connection that does not start with a ClientHello
        like that, so a TLS handshake on a second connection tells it from a server that simply closed.
        """
        first = bytes(self._first)
        reason = not_stratum(first, self.url)
        if reason is None and not first and not self.url.tls and self._speaks_tls():
            reason = f"this looks like TLS; try stratum+ssl://{_authority(self.url)}"
        return reason

    def _session(self, sock: socket.socket) -> str:
        conn = ClientConnection()
        self._wire_in = bytearray()
        self._first = bytearray()
        self._answered = False
        self._went_silent = False
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
                    self._tap("in", data)
                    if len(self._first) < FIRST_BYTES:
                        self._first += data[: FIRST_BYTES - len(self._first)]
                    for event in conn.receive_data(data):
                        if not isinstance(event, (ProtocolViolation, ConnectionClosed)):
                            self._answered = True
                        elif isinstance(event, ProtocolViolation) and not self._answered:
                            if not_stratum(bytes(self._first), self.url):
                                continue  # an HTTP or TLS reply's lines: the mismatch is the news, not each line
                        self._handle(conn, sock, event, previous_en1)
                elif time.monotonic() - last_rx > self.silence_timeout:
                    self._went_silent = True
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
        self._tap("out", data)
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
