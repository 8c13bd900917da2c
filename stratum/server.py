"""Asyncio Stratum V1 server transport: sockets in, a pool-logic object decides.

This module only moves bytes: :class:`stratum.protocol.ServerConnection`
parses them into events, and a :class:`SessionHandler` (the pool's logic,
handed in from outside, so ``stratum`` imports nothing from ``miner``) answers
them. Bad input is answered with an error and skipped; one connection's
trouble never reaches another, nor the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any, Protocol

from stratum.protocol import (
    MAX_LINE,
    Authorize,
    Configure,
    ConnectionClosed,
    ExtranonceSubscribe,
    LocalProtocolError,
    ProtocolViolation,
    Reply,
    ServerConnection,
    ServerState,
    Submit,
    Subscribe,
    SuggestDifficulty,
    UnknownMethod,
)

# Stratum V1 error codes
OTHER = 20
JOB_NOT_FOUND = 21
DUPLICATE = 22
LOW_DIFFICULTY = 23
UNAUTHORIZED = 24
NOT_SUBSCRIBED = 25

log = logging.getLogger(__name__)


class RequestError(Exception):
    """A request the pool refuses: the Stratum error code and a reason."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class SessionHandler(Protocol):
    """The pool's answers for one connection. Raise :class:`RequestError` to refuse."""

    def subscribe(self, user_agent: str, session_id: str | None) -> tuple[str, bytes, int]: ...

    def subscribed(self) -> None: ...

    def authorize(self, user: str, password: str) -> bool: ...

    def configure(self, extensions: list, params: dict) -> int: ...

    def suggest_difficulty(self, difficulty: float) -> None: ...

    def submit(
        self, worker: str, job_id: str, extranonce2: str, ntime: str, nonce: str, version_bits: str | None
    ) -> Any: ...

    def violation(self, method: str | None, code: int, reason: str) -> None: ...

    def tick(self) -> None: ...

    def close(self) -> None: ...


class PoolHandler(Protocol):
    def open_session(self, outbox: Outbox, peer: str) -> SessionHandler: ...


class Outbox:
    """What the pool may push to one miner. Thread-safe: calls from other threads hop onto the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, writer: asyncio.StreamWriter, conn: ServerConnection) -> None:
        self._loop = loop
        self._writer = writer
        self._conn = conn
        self.closed = False

    def _send(self, build: Callable[[], bytes]) -> None:
        if self._in_loop():
            self._write(build)
        elif not self.closed:
            try:
                self._loop.call_soon_threadsafe(self._write, build)
            except RuntimeError:  # the loop is gone: the server has stopped
                self.closed = True

    def _in_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _write(self, build: Callable[[], bytes]) -> None:
        if self.closed or self._writer.is_closing():
            return
        try:
            self._writer.write(build())
        except LocalProtocolError as exc:  # our own malformed message: log it, keep the connection
            log.error("not sent: %s", exc)
        except (ConnectionError, RuntimeError):
            self.closed = True

    def write_raw(self, data: bytes) -> None:
        self._send(lambda: data)

    def notify(self, params: list) -> None:
        self._send(lambda: self._conn.notify(params))

    def set_difficulty(self, difficulty: float) -> None:
        self._send(lambda: self._conn.set_difficulty(difficulty))

    def set_version_mask(self, mask: int) -> None:
        self._send(lambda: self._conn.set_version_mask(mask))

    def set_extranonce(self, extranonce1: bytes, extranonce2_size: int) -> None:
        self._send(lambda: self._conn.set_extranonce(extranonce1, extranonce2_size))

    def reconnect(self, host: str | None = None, port: int | None = None, wait: float = 0) -> None:
        self._send(lambda: self._conn.reconnect(host, port, wait))

    def show_message(self, text: str) -> None:
        self._send(lambda: self._conn.show_message(text))

    def ping(self) -> None:
        self._send(lambda: self._conn.ping().data)

    def close(self) -> None:
        def shut() -> None:
            self.closed = True
            self._writer.close()

        if self._in_loop():
            shut()
        else:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(shut)


class Listener:
    """What the V1 and V2 servers share: the sessions' tasks, a periodic tick for vardiff, and closing.

    A subclass sets ``_server`` (the asyncio server), ``_ticker``, ``_sessions`` (task -> session) and
    ``tick_seconds``.
    """

    _server: asyncio.AbstractServer | None
    _ticker: asyncio.Task | None
    _sessions: dict
    tick_seconds: float

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.wait(list(self._sessions), timeout=2.0)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            for session in list(self._sessions.values()):
                try:
                    session.tick()
                except Exception:  # one session's bug must not stop the others' vardiff
                    log.exception("session tick failed")


def peer_name(writer: asyncio.StreamWriter) -> str:
    """HOST:PORT of a connection's other end, for logs."""
    peer_info = writer.get_extra_info("peername")
    return f"{peer_info[0]}:{peer_info[1]}" if isinstance(peer_info, tuple) else str(peer_info)


class StratumServer(Listener):
    """Listens, and runs one reader task per miner; see :class:`ServerThread` to run it in the background."""

    def __init__(
        self,
        handler: PoolHandler,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        max_line: int = MAX_LINE,
        idle_timeout: float = 3600.0,
        handshake_timeout: float = 60.0,
        write_timeout: float = 30.0,
        tick_seconds: float = 1.0,
        max_violations: int = 100,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.max_line = max_line
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.write_timeout = write_timeout
        self.tick_seconds = tick_seconds
        self.max_violations = max_violations
        self._server: asyncio.base_events.Server | None = None
        self._sessions: dict[asyncio.Task, SessionHandler] = {}
        self._ticker: asyncio.Task | None = None

    async def start(self) -> None:
        """Bind and listen; ``self.port`` is the real port afterwards (when 0 was asked)."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, ssl=self.ssl_context, limit=self.max_line * 4
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ticker = asyncio.create_task(self._tick_loop())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_name(writer)
        conn = ServerConnection(self.max_line)
        outbox = Outbox(asyncio.get_running_loop(), writer, conn)
        task = asyncio.current_task()
        try:
            session = self.handler.open_session(outbox, peer)
        except Exception:
            log.exception("could not open a session for %s", peer)
            writer.close()
            return
        assert task is not None
        self._sessions[task] = session
        violations = 0
        cancelled = False
        try:
            while not outbox.closed:
                subscribed = conn.state is ServerState.SUBSCRIBED
                timeout = self.idle_timeout if subscribed else min(self.idle_timeout, self.handshake_timeout)
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout)
                except asyncio.TimeoutError:
                    log.info("%s silent for %.0f s: closing", peer, timeout)
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, ConnectionClosed):
                        outbox.closed = True
                        break
                    if isinstance(event, ProtocolViolation):
                        violations += 1
                    elif not isinstance(event, Reply):
                        violations = 0
                    await self._answer(conn, session, outbox, event)
                if violations > self.max_violations:
                    log.info("%s sent %d unusable messages in a row: closing", peer, violations)
                    break
                await asyncio.wait_for(writer.drain(), self.write_timeout)
        except (ConnectionError, ssl.SSLError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            cancelled = True
        finally:
            self._sessions.pop(task, None)
            try:
                session.close()
            except Exception:
                log.exception("session close failed")
            outbox.closed = True
            writer.close()
            if not cancelled:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, conn: ServerConnection, session: SessionHandler, outbox: Outbox, event: Any) -> None:
        """One event in, its reply out. Handler errors become error replies, never a dead connection."""
        request_id = getattr(event, "request_id", None)
        try:
            if isinstance(event, Submit):
                await asyncio.get_running_loop().run_in_executor(
                    None,
                    session.submit,
                    event.worker,
                    event.job_id,
                    event.extranonce2,
                    event.ntime,
                    event.nonce,
                    event.version_bits,
                )
                outbox.write_raw(conn.reply_submit(request_id))
            elif isinstance(event, Subscribe):
                session_id, extranonce1, size = session.subscribe(event.user_agent, event.session_id)
                outbox.write_raw(conn.reply_subscribe(request_id, extranonce1, size, session_id))
                session.subscribed()
            elif isinstance(event, Authorize):
                ok = session.authorize(event.user, event.password)
                outbox.write_raw(conn.reply_authorize(request_id, ok))
            elif isinstance(event, Configure):
                mask = session.configure(event.extensions, event.params)
                outbox.write_raw(conn.reply_configure(request_id, mask))
            elif isinstance(event, SuggestDifficulty):
                session.suggest_difficulty(event.difficulty)
                outbox.write_raw(conn.reply_result(request_id, True))
            elif isinstance(event, ExtranonceSubscribe):
                outbox.write_raw(conn.reply_result(request_id, True))
            elif isinstance(event, UnknownMethod) and event.method == "mining.ping" and request_id is not None:
                outbox.write_raw(conn.reply_result(request_id, "pong"))
            elif isinstance(event, ProtocolViolation):
                session.violation(event.method, event.code, event.reason)
                if request_id is not None:
                    outbox.write_raw(conn.reply_error(request_id, event.code, event.reason))
        except RequestError as exc:
            if request_id is not None:
                outbox.write_raw(conn.reply_error(request_id, exc.code, exc.message))
        except Exception as exc:
            log.exception("handler failed on %s", type(event).__name__)
            if request_id is not None:
                outbox.write_raw(conn.reply_error(request_id, OTHER, f"internal error: {exc}"))


class ServerThread:
    """A server (:class:`StratumServer`, the V2 one) on its own event loop in a daemon thread."""

    name = "stratum-server"

    def __init__(self, server: Any) -> None:
        self.server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def port(self) -> int:
        return self.server.port

    def start(self, timeout: float = 10.0) -> None:
        """Returns once the server listens; re-raises a bind error (e.g. the port is taken)."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the {self.name} thread did not start in time")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.run(self._main())  # also cancels and awaits any task still pending at the end

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stopped.wait()
        await self.server.close()

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._stopped is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout)
