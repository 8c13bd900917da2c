"""Asyncio Stratum V2 server transport: sockets in, a pool-logic object decides.

Like :mod:`stratum.server` for V1, this only moves bytes:
:class:`stratum.v2.protocol.ServerConnection` turns them into events and a
:class:`V2SessionHandler` (the pool's logic, handed in, so ``stratum`` imports
nothing from ``miner``) answers them. A connection that breaks the protocol
(a bad MAC, a frame over the limit, an unknown message, a handshake that goes
wrong) is logged in one line and closed; no other connection notices.

:class:`ServerIdentity` holds what a V2 pool is known by: the authority key
miners are told (base58check, :attr:`ServerIdentity.authority_key_text`), the
static key the handshake uses, and a certificate over the static key that is
reissued before it runs out. :func:`load_or_create_identity` keeps both
secrets in a file only its owner can read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stratum.server import Listener, ServerThread, peer_name
from stratum.v2 import ellswift
from stratum.v2 import messages as m
from stratum.v2.noise import Certificate, encode_authority_key, generate_secret_key, x_only_public_key
from stratum.v2.protocol import (
    DEFAULT_MAX_PAYLOAD,
    Channel,
    ConnectionClosed,
    ExtensionMessage,
    HandshakeRequested,
    LocalProtocolError,
    ProtocolViolation,
    ServerConnection,
    State,
)

log = logging.getLogger(__name__)

DEFAULT_CERTIFICATE_LIFETIME = 24 * 3600
DEFAULT_RENEW_BEFORE = 3600


class Refused(Exception):
    """The pool says no; ``error_code`` is sent back (SetupConnection.Error, OpenMiningChannel.Error, ...)."""

    def __init__(self, error_code: str, detail: str = "") -> None:
        super().__init__(f"{error_code}: {detail}" if detail else error_code)
        self.error_code = error_code


@dataclass
class StandardGrant:
    target: int
    extranonce_prefix: bytes
    group_channel_id: int = 0


@dataclass
class ExtendedGrant:
    target: int
    extranonce_size: int
    extranonce_prefix: bytes
    group_channel_id: int = 0


class V2SessionHandler(Protocol):
    """The pool's answers for one V2 connection. Raise :class:`Refused` to say no with an error code."""

    def setup(self, request: m.SetupConnection) -> int: ...  # SetupConnection.Success flags

    def open_standard_channel(self, request: m.OpenStandardMiningChannel) -> StandardGrant: ...

    def open_extended_channel(self, request: m.OpenExtendedMiningChannel) -> ExtendedGrant: ...

    def channel_opened(self, channel: Channel) -> None: ...  # send the first job and prev hash now

    def submit_standard(self, channel: Channel, share: m.SubmitSharesStandard) -> int: ...  # the share's difficulty

    def submit_extended(self, channel: Channel, share: m.SubmitSharesExtended) -> int: ...

    def update_channel(self, channel: Channel, update: m.UpdateChannel) -> None: ...

    def channel_closed(self, channel_id: int) -> None: ...

    def violation(self, reason: str, fatal: bool) -> None: ...

    def tick(self) -> None: ...

    def close(self) -> None: ...


class V2PoolHandler(Protocol):
    def open_session(self, outbox: V2Outbox, peer: str) -> V2SessionHandler: ...


class V2Outbox:
    """What the pool may push to one miner. Thread-safe: calls from other threads hop onto the loop.

    Messages leave in the order they were handed over, whichever threads handed them: a job sent
    from the loop never overtakes a SetNewPrevHash another thread queued just before it, which
    would have the miner hash that job on the wrong previous block.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, writer: asyncio.StreamWriter, conn: ServerConnection) -> None:
        self._loop = loop
        self._writer = writer
        self._conn = conn
        self.closed = False
        self._order = threading.Lock()
        self._queued = 0  # writes handed to the loop and not yet run

    def _in_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _submit(self, build: Callable[[], bytes]) -> None:
        with self._order:
            if self._in_loop() and not self._queued:
                self._write(build)
                return
            if self.closed:
                return
            try:
                self._loop.call_soon_threadsafe(self._write_queued, build)
            except RuntimeError:  # the loop is gone: the server has stopped
                self.closed = True
                return
            self._queued += 1

    def _write_queued(self, build: Callable[[], bytes]) -> None:
        with self._order:
            self._queued -= 1
            self._write(build)

    def _write(self, build: Callable[[], bytes]) -> None:
        if self.closed or self._writer.is_closing() or self._conn.state is not State.READY:
            return
        try:
            self._writer.write(build())
        except LocalProtocolError as exc:  # our own malformed message: log it, keep the connection
            log.error("not sent: %s", exc)
        except (ConnectionError, RuntimeError):
            self.closed = True

    def write_raw(self, data: bytes) -> None:
        """Bytes the session core already built (handshake and setup replies); loop thread only."""
        if not self.closed and not self._writer.is_closing():
            self._writer.write(data)

    def send(self, message: m.Message) -> None:
        """Any pool-to-miner message (NewMiningJob, SetNewPrevHash, NewExtendedMiningJob, Reconnect, ...)."""
        self._submit(lambda: self._conn.send(message))

    def set_target(self, channel_id: int, maximum_target: int) -> None:
        self._submit(lambda: self._conn.set_target(channel_id, maximum_target))

    def channels(self) -> dict[int, Channel]:
        return dict(self._conn.channels)

    def close(self) -> None:
        def shut() -> None:
            self.closed = True
            self._writer.close()

        if self._in_loop():
            shut()
        else:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(shut)


class ServerIdentity:
    """The pool's authority and static keys, and a certificate renewed before it expires."""

    def __init__(
        self,
        authority_secret: bytes,
        static_secret: bytes,
        *,
        lifetime: int = DEFAULT_CERTIFICATE_LIFETIME,
        renew_before: int = DEFAULT_RENEW_BEFORE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if renew_before >= lifetime:
            raise ValueError("renew_before must be shorter than the certificate lifetime")
        self.authority_secret = authority_secret
        self.static_secret = static_secret
        self.authority_key = x_only_public_key(authority_secret)
        self.static_key = x_only_public_key(static_secret)
        self.static_encoding = ellswift.create(static_secret)
        self.lifetime = lifetime
        self.renew_before = renew_before
        self.clock = clock
        self._certificate: Certificate | None = None
        self._lock = threading.Lock()

    @property
    def authority_key_text(self) -> str:
        """What miners put after the port in ``stratum2+tcp://HOST:PORT/``."""
        return encode_authority_key(self.authority_key)

    def certificate(self) -> Certificate:
        """The current certificate; a new one once less than ``renew_before`` seconds of the old are left."""
        now = int(self.clock())
        with self._lock:
            cert = self._certificate
            if cert is None or cert.not_valid_after - now < self.renew_before or cert.valid_from > now:
                valid_from = max(0, now - 60)  # a little slack for miners whose clocks lag
                cert = Certificate.issue(self.authority_secret, self.static_key, valid_from, now + self.lifetime)
                self._certificate = cert
            return cert


def load_or_create_identity(path: str | Path, **kwargs: Any) -> tuple[ServerIdentity, bool]:
    """The identity kept in ``path`` (JSON, hex secrets), creating the file mode 0600 if missing.

    Returns ``(identity, created)``. A file others may read is refused: whoever
    holds the authority secret can impersonate the pool to every miner.
    """
    path = Path(path)
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
        try:
            data = json.loads(path.read_text())
            authority, static = bytes.fromhex(data["authority_secret"]), bytes.fromhex(data["static_secret"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a V2 key file: {exc}") from exc
        return ServerIdentity(authority, static, **kwargs), False
    authority, static = generate_secret_key(), generate_secret_key()
    body = json.dumps({"authority_secret": authority.hex(), "static_secret": static.hex()}, indent=1) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
    return ServerIdentity(authority, static, **kwargs), True


class V2Server(Listener):
    """Listens for V2 miners and runs one reader task each; :class:`V2ServerThread` runs it in the background."""

    def __init__(
        self,
        handler: V2PoolHandler,
        identity: ServerIdentity,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        handshake_timeout: float = 30.0,
        idle_timeout: float = 3600.0,
        write_timeout: float = 30.0,
        tick_seconds: float = 1.0,
        max_violations: int = 100,
        backlog: int = 1024,
    ) -> None:
        self.handler = handler
        self.identity = identity
        self.host = host
        self.port = port
        self.max_payload = max_payload
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.tick_seconds = tick_seconds
        self.max_violations = max_violations
        self.backlog = backlog
        self._server: asyncio.base_events.Server | None = None
        self._sessions: dict[asyncio.Task, V2SessionHandler] = {}
        self._ticker: asyncio.Task | None = None
        self.closed_for: dict[str, int] = {}  # fatal reasons, counted, for summaries and tests

    @property
    def connections(self) -> int:
        return len(self._sessions)

    async def start(self) -> None:
        """Bind and listen; ``self.port`` is the real port afterwards (when 0 was asked)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=self.backlog)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ticker = asyncio.create_task(self._tick_loop())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_name(writer)
        identity = self.identity
        conn = ServerConnection(
            identity.static_secret,
            identity.certificate(),
            static_encoding=identity.static_encoding,
            max_payload=self.max_payload,
        )
        outbox = V2Outbox(asyncio.get_running_loop(), writer, conn)
        task = asyncio.current_task()
        try:
            session = self.handler.open_session(outbox, peer)
        except Exception:
            log.exception("could not open a V2 session for %s", peer)
            writer.close()
            return
        assert task is not None
        self._sessions[task] = session
        violations = 0
        cancelled = False
        try:
            while not outbox.closed:
                ready = conn.state is State.READY
                timeout = self.idle_timeout if ready else min(self.idle_timeout, self.handshake_timeout)
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout)
                except asyncio.TimeoutError:
                    self._closing(peer, f"silent for {timeout:.0f} s")
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, ConnectionClosed):
                        outbox.closed = True
                        break
                    if isinstance(event, ProtocolViolation):
                        violations += 1
                        self._violation(peer, session, event)
                        if event.fatal:
                            break
                    else:
                        violations = 0
                    await self._answer(conn, session, outbox, event)
                if conn.failed:
                    break
                if violations > self.max_violations:
                    self._closing(peer, f"{violations} unusable messages in a row")
                    break
                await asyncio.wait_for(writer.drain(), self.write_timeout)
        except (ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            cancelled = True
        finally:
            self._sessions.pop(task, None)
            try:
                session.close()
            except Exception:
                log.exception("V2 session close failed")
            outbox.closed = True
            writer.close()
            if not cancelled:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _closing(self, peer: str, reason: str) -> None:
        log.info("V2 %s: %s: closing", peer, reason)
        key = reason.split(" (")[0]
        self.closed_for[key] = self.closed_for.get(key, 0) + 1

    def _violation(self, peer: str, session: V2SessionHandler, event: ProtocolViolation) -> None:
        if event.fatal:
            self._closing(peer, event.reason)
        else:
            log.info("V2 %s: %s", peer, event.reason)
        try:
            session.violation(event.reason, event.fatal)
        except Exception:
            log.exception("session violation hook failed")

    async def _answer(self, conn: ServerConnection, session: V2SessionHandler, outbox: V2Outbox, event: Any) -> None:
        """One event in, its reply out. Handler errors become the spec's error replies, never a dead connection."""
        try:
            if isinstance(event, HandshakeRequested):
                outbox.write_raw(conn.accept_handshake())
            elif isinstance(event, m.SetupConnection):
                try:
                    flags = session.setup(event)
                except Refused as exc:
                    outbox.write_raw(conn.setup_connection_error(exc.error_code))
                else:
                    outbox.write_raw(conn.setup_connection_success(flags=flags))
            elif isinstance(event, (m.OpenStandardMiningChannel, m.OpenExtendedMiningChannel)):
                self._open_channel(conn, session, outbox, event)
            elif isinstance(event, (m.SubmitSharesStandard, m.SubmitSharesExtended)):
                await self._submit(conn, session, outbox, event)
            elif isinstance(event, m.UpdateChannel):
                try:
                    session.update_channel(conn.channels[event.channel_id], event)
                except Refused as exc:
                    outbox.send(m.UpdateChannelError(event.channel_id, exc.error_code))
            elif isinstance(event, m.CloseChannel):
                session.channel_closed(event.channel_id)
            elif isinstance(event, ProtocolViolation) and not event.fatal and event.error_code:
                self._answer_violation(outbox, event)
            elif isinstance(event, ExtensionMessage):
                pass  # sv2-spec 3.4.1: an extension that was not negotiated is dropped
        except Exception:
            log.exception("V2 handler failed on %s", type(event).__name__)

    def _open_channel(self, conn: ServerConnection, session: V2SessionHandler, outbox: V2Outbox, request) -> None:
        channel_id = _next_channel_id(conn)
        try:
            if isinstance(request, m.OpenStandardMiningChannel):
                grant = session.open_standard_channel(request)
                data = conn.open_standard_channel_success(
                    request, channel_id, grant.target, grant.extranonce_prefix, grant.group_channel_id
                )
            else:
                grant = session.open_extended_channel(request)
                data = conn.open_extended_channel_success(
                    request,
                    channel_id,
                    grant.target,
                    grant.extranonce_size,
                    grant.extranonce_prefix,
                    grant.group_channel_id,
                )
        except Refused as exc:
            outbox.write_raw(conn.open_channel_error(request.request_id, exc.error_code))
            return
        outbox.write_raw(data)
        session.channel_opened(conn.channels[channel_id])

    async def _submit(self, conn: ServerConnection, session: V2SessionHandler, outbox: V2Outbox, share) -> None:
        channel = conn.channels[share.channel_id]
        check = session.submit_standard if isinstance(share, m.SubmitSharesStandard) else session.submit_extended
        try:
            difficulty = await asyncio.get_running_loop().run_in_executor(None, check, channel, share)
        except Refused as exc:
            outbox.send(m.SubmitSharesError(share.channel_id, share.sequence_number, exc.error_code))
            return
        outbox.send(m.SubmitSharesSuccess(share.channel_id, share.sequence_number, 1, max(0, int(difficulty))))

    @staticmethod
    def _answer_violation(outbox: V2Outbox, event: ProtocolViolation) -> None:
        message = event.message
        if isinstance(message, (m.SubmitSharesStandard, m.SubmitSharesExtended)):
            outbox.send(m.SubmitSharesError(message.channel_id, message.sequence_number, event.error_code))
        elif isinstance(message, m.UpdateChannel):
            outbox.send(m.UpdateChannelError(message.channel_id, event.error_code))


def _next_channel_id(conn: ServerConnection) -> int:
    used = set(conn.channels) | conn.group_channels
    channel_id = 1
    while channel_id in used:
        channel_id += 1
    return channel_id


class V2ServerThread(ServerThread):
    """A :class:`V2Server` on its own event loop in a daemon thread."""

    name = "stratum-v2-server"

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run ``fn`` on the server's loop and wait for its result (for reading state from another thread)."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(_call(fn), self._loop)
        return future.result(timeout)


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()
