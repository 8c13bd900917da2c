"""Stratum V2 without I/O: bytes in, typed events out, for both roles.

The same shape as :mod:`stratum.protocol` for V1: a connection object owns
the handshake, the framing and a small state machine and never touches a
socket. Feed it what arrived with ``receive_data(data)`` and act on the
events; call its methods to get the bytes to send. ``receive_data(b"")``
means the peer closed.

Nothing a peer sends raises out of ``receive_data``. What cannot be used
becomes a :class:`ProtocolViolation` event. A *fatal* one (a MAC that does
not verify, a frame longer than accepted, a message that does not decode, an
unknown core message type, a message from the wrong side or out of order, a
certificate that does not check) leaves the connection ``FAILED``: later
data is ignored and the caller should close. A non-fatal one (a share for a
channel that is not open, a reply to a request never made) carries the
decoded ``message`` and, where the spec has an answer for it, the
``error_code`` to send back. Messages of a non-zero extension type arrive as
:class:`ExtensionMessage` and may be dropped: sv2-spec 3.4.1 says an
endpoint discards extensions it did not negotiate. Calling a method the
state does not allow (opening a channel before SetupConnection.Success) is
our own bug and raises :class:`LocalProtocolError`.

Client role::

    conn = ClientConnection(authority_key)          # 32-byte x-only key, or the base58check text
    sock.sendall(conn.initiate())                   # act 1
    events = conn.receive_data(sock.recv(4096))     # -> HandshakeComplete, then messages
    sock.sendall(conn.setup_connection("host", 3336, vendor="sha256d-miner"))
    # SetupConnectionSuccess -> conn.open_standard_channel(user, hash_rate).data
    # OpenStandardMiningChannelSuccess, NewMiningJob, SetNewPrevHash, SetTarget ...
    out = conn.submit_standard(channel_id, job_id, nonce, ntime, version, context=share)
    # SharesAccepted(contexts=[share, ...]) / ShareRejected(context=share)

Server role::

    conn = ServerConnection(static_secret, certificate)
    for event in conn.receive_data(data):
        HandshakeRequested        -> send(conn.accept_handshake())
        SetupConnection           -> send(conn.setup_connection_success(flags=...)) or setup_connection_error(...)
        OpenStandardMiningChannel -> send(conn.open_standard_channel_success(...)), then jobs via conn.send(msg)
        SubmitSharesStandard      -> validate, send(conn.send(SubmitSharesSuccess(...)))
        ProtocolViolation         -> if event.fatal: close; elif event.error_code: answer it

Every decoded message is its own event type (:mod:`stratum.v2.messages`),
except the answers to submits, which the client side pairs with what was
submitted (``SharesAccepted`` / ``ShareRejected``).
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from stratum.v2 import messages as m
from stratum.v2.codec import DecodeError, EncodeError
from stratum.v2.framing import FrameError, Header, PlainFrameBuffer
from stratum.v2.messages import Event, Message
from stratum.v2.noise import (
    ACT1_SIZE,
    ACT2_SIZE,
    Certificate,
    Initiator,
    NoiseError,
    Responder,
    Transport,
    decode_authority_key,
)

#: the largest payload we accept; NewExtendedMiningJob at its spec maximum is about 139 KB
DEFAULT_MAX_PAYLOAD = 1 << 18

STANDARD = "standard"
EXTENDED = "extended"


class LocalProtocolError(RuntimeError):
    """We tried to do something the protocol state does not allow (a bug here)."""


class Outgoing(NamedTuple):
    """A message to send and the number its answer will carry (request_id, or a submit's sequence_number)."""

    request_id: int
    data: bytes


class State(enum.Enum):
    HANDSHAKE = "handshake"  # Noise acts not yet done
    SETUP = "setup"  # encrypted, SetupConnection not yet answered with Success
    READY = "ready"  # SetupConnection.Success exchanged: channels may open
    CLOSED = "closed"  # the peer closed
    FAILED = "failed"  # a fatal violation; nothing more is read


# --- events ----------------------------------------------------------------------------------------------------------


@dataclass
class HandshakeRequested(Event):
    """Server side: act 1 arrived. Answer with ``accept_handshake()``."""


@dataclass
class HandshakeComplete(Event):
    """The session is encrypted. On the client, the pool's key and certificate checked out."""

    server_key: bytes | None = None  # x-only, client side
    certificate: Certificate | None = None  # client side


@dataclass
class ProtocolViolation(Event):
    reason: str
    fatal: bool = True
    error_code: str | None = None  # the spec's answer, when there is one (SubmitShares.Error, ...)
    message: Message | None = None  # the decoded message, for non-fatal ones
    header: Header | None = None


@dataclass
class ExtensionMessage(Event):
    """A frame of a non-zero extension type; not negotiated here, so it is the caller's to drop."""

    header: Header
    payload: bytes


@dataclass
class ConnectionClosed(Event):
    """The peer closed the stream (``receive_data(b"")``)."""


@dataclass
class SharesAccepted(Event):
    """SubmitShares.Success with the contexts of every submit it acknowledges, oldest first."""

    message: m.SubmitSharesSuccess
    contexts: list = field(default_factory=list)


@dataclass
class ShareRejected(Event):
    """SubmitShares.Error with the context handed to the submit it refuses."""

    message: m.SubmitSharesError
    context: Any = None


@dataclass
class Channel:
    """What both ends remember about an open channel."""

    channel_id: int
    kind: str  # STANDARD or EXTENDED
    target: int
    extranonce_prefix: bytes
    group_channel_id: int
    extranonce_size: int = 0  # extended channels: bytes the miner rolls
    user_identity: str = ""


# --- shared machinery ------------------------------------------------------------------------------------------------


class _Connection:
    ROLE: str
    PEER: str

    def __init__(self, *, encrypted: bool, max_payload: int) -> None:
        self.encrypted = encrypted
        self.max_payload = max_payload
        self.state = State.HANDSHAKE
        self.transport: Transport | None = None
        self._plain: PlainFrameBuffer | None = None
        self.channels: dict[int, Channel] = {}
        self.group_channels: set[int] = set()
        self.setup: m.SetupConnection | None = None
        self.failure: str | None = None

    @property
    def failed(self) -> bool:
        return self.state is State.FAILED

    def _start_transport(self, transport: Transport | None, leftover: bytes = b"") -> list[Event]:
        if transport is None:
            self._plain = PlainFrameBuffer(self.max_payload)
        else:
            transport.max_payload = self.max_payload
            self.transport = transport
        self.state = State.SETUP
        return self._frames(leftover) if leftover else []

    def _fail(self, reason: str, header: Header | None = None) -> ProtocolViolation:
        self.state = State.FAILED
        self.failure = reason
        return ProtocolViolation(reason, fatal=True, header=header)

    def receive_data(self, data: bytes) -> list[Event]:
        if self.state in (State.CLOSED, State.FAILED):
            return []
        if not data:
            self.state = State.CLOSED
            return [ConnectionClosed()]
        if self.state is State.HANDSHAKE:
            return self._handshake_data(bytes(data))
        return self._frames(bytes(data))

    def _handshake_data(self, data: bytes) -> list[Event]:
        raise NotImplementedError

    def _frames(self, data: bytes) -> list[Event]:
        error = None
        try:
            frames = self.transport.feed(data) if self.transport is not None else self._plain.feed(data)
        except (NoiseError, FrameError) as exc:
            frames, error = getattr(exc, "frames_before", []), exc
        events: list[Event] = []
        for header, payload in frames:
            events.extend(self._on_frame(header, payload))
            if self.state is State.FAILED:
                return events
        if error is not None:
            events.append(self._fail(str(error)))
        return events

    def _on_frame(self, header: Header, payload: bytes) -> list[Event]:
        if header.extension != 0:
            return [ExtensionMessage(header, payload)]
        try:
            message = m.decode_message(header, payload)
        except DecodeError as exc:
            return [self._fail(str(exc), header)]
        if message.SENDER not in (self.PEER, m.EITHER):
            return [self._fail(f"{message.NAME} is sent by the {message.SENDER}, not the {self.PEER}", header)]
        return self._on_message(message, header)

    def _on_message(self, message: Message, header: Header) -> list[Event]:
        raise NotImplementedError

    def _not_open(self, message: Message, channel_id: int) -> ProtocolViolation:
        return ProtocolViolation(
            f"{message.NAME} for channel {channel_id}, which is not open",
            fatal=False,
            error_code=m.ERR_INVALID_CHANNEL_ID,
            message=message,
        )

    def send(self, message: Message) -> bytes:
        """The bytes for any message this role may send, sealed when the session is encrypted."""
        if message.SENDER not in (self.ROLE, m.EITHER):
            raise LocalProtocolError(f"a {self.ROLE} does not send {message.NAME}")
        if self.state in (State.HANDSHAKE, State.CLOSED, State.FAILED):
            raise LocalProtocolError(f"cannot send {message.NAME} in state {self.state.value}")
        try:
            plain = message.to_frame()
        except (EncodeError, ValueError) as exc:
            raise LocalProtocolError(f"{message.NAME}: {exc}") from exc
        return self.transport.encrypt_frame(plain) if self.transport is not None else plain

    def close_channel(self, channel_id: int, reason_code: str = "") -> bytes:
        self.channels.pop(channel_id, None)
        return self.send(m.CloseChannel(channel_id, reason_code))


# --- client ----------------------------------------------------------------------------------------------------------


class ClientConnection(_Connection):
    """The miner's end. ``authority_key``: the pool's 32-byte x-only key or its base58check text."""

    ROLE, PEER = m.CLIENT, m.SERVER

    def __init__(
        self,
        authority_key: bytes | str | None,
        *,
        clock: Callable[[], float] = time.time,
        encrypted: bool = True,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        ephemeral_secret: bytes | None = None,
        aux_rand: bytes | None = None,
    ) -> None:
        super().__init__(encrypted=encrypted, max_payload=max_payload)
        if isinstance(authority_key, str):
            authority_key = decode_authority_key(authority_key)
        if encrypted and authority_key is None:
            raise ValueError("an encrypted session needs the pool's authority key")
        self.clock = clock
        self._initiator = (
            Initiator(authority_key, ephemeral_secret=ephemeral_secret, aux_rand=aux_rand) if encrypted else None
        )
        self._handshake_buffer = bytearray()
        self._initiated = False
        self._next_request_id = 1
        self.pending_opens: dict[int, tuple[str, Message]] = {}
        self._sequence: dict[int, int] = {}
        self.pending_submits: dict[int, OrderedDict[int, Any]] = {}
        self.server_flags: int | None = None

    # handshake

    def initiate(self) -> bytes:
        """Act 1 (64 bytes) for an encrypted session; nothing for a plain one, which is ready at once."""
        if self._initiated:
            raise LocalProtocolError("initiate() was already called")
        self._initiated = True
        if self._initiator is None:
            self._start_transport(None)
            return b""
        return self._initiator.act1()

    def _handshake_data(self, data: bytes) -> list[Event]:
        if not self._initiated:
            return [self._fail("the pool sent data before the handshake began")]
        self._handshake_buffer += data
        if len(self._handshake_buffer) < ACT2_SIZE:
            return []
        act2, leftover = bytes(self._handshake_buffer[:ACT2_SIZE]), bytes(self._handshake_buffer[ACT2_SIZE:])
        self._handshake_buffer.clear()
        try:
            transport = self._initiator.act2(act2, self.clock())
        except NoiseError as exc:
            return [self._fail(f"handshake failed: {exc}")]
        done = HandshakeComplete(self._initiator.server_key, self._initiator.certificate)
        return [done, *self._start_transport(transport, leftover)]

    # requests

    def setup_connection(
        self,
        endpoint_host: str,
        endpoint_port: int,
        *,
        flags: int = m.REQUIRES_STANDARD_JOBS,
        vendor: str = "sha256d-miner",
        hardware_version: str = "",
        firmware: str = "",
        device_id: str = "",
        protocol: int = m.PROTOCOL_MINING,
    ) -> bytes:
        if self.state is not State.SETUP or self.setup is not None:
            raise LocalProtocolError("SetupConnection goes first, once, after the handshake")
        setup = m.SetupConnection(
            protocol,
            m.PROTOCOL_VERSION,
            m.PROTOCOL_VERSION,
            flags,
            endpoint_host,
            endpoint_port,
            vendor,
            hardware_version,
            firmware,
            device_id,
        )
        data = self.send(setup)
        self.setup = setup
        return data

    def _request_id(self, chosen: int | None) -> int:
        """The next free id, or ``chosen`` (as long as no open request holds it)."""
        if chosen is not None:
            if chosen in self.pending_opens:
                raise LocalProtocolError(f"request id {chosen} is still waiting for its answer")
            return chosen
        while self._next_request_id in self.pending_opens:
            self._next_request_id = (self._next_request_id + 1) & 0xFFFFFFFF
        request_id = self._next_request_id
        self._next_request_id = (self._next_request_id + 1) & 0xFFFFFFFF
        return request_id

    def _require_ready(self, what: str) -> None:
        if self.state is not State.READY:
            raise LocalProtocolError(f"{what} needs SetupConnection.Success first (state {self.state.value})")

    def open_standard_channel(
        self,
        user_identity: str,
        nominal_hash_rate: float,
        max_target: int = (1 << 256) - 1,
        *,
        request_id: int | None = None,
    ) -> Outgoing:
        self._require_ready("OpenStandardMiningChannel")
        request_id = self._request_id(request_id)
        message = m.OpenStandardMiningChannel(request_id, user_identity, nominal_hash_rate, max_target)
        data = self.send(message)
        self.pending_opens[request_id] = (STANDARD, message)
        return Outgoing(request_id, data)

    def open_extended_channel(
        self,
        user_identity: str,
        nominal_hash_rate: float,
        min_extranonce_size: int,
        max_target: int = (1 << 256) - 1,
        *,
        request_id: int | None = None,
    ) -> Outgoing:
        self._require_ready("OpenExtendedMiningChannel")
        request_id = self._request_id(request_id)
        message = m.OpenExtendedMiningChannel(
            request_id, user_identity, nominal_hash_rate, max_target, min_extranonce_size
        )
        data = self.send(message)
        self.pending_opens[request_id] = (EXTENDED, message)
        return Outgoing(request_id, data)

    def _next_sequence(self, channel_id: int, kind: str) -> int:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise LocalProtocolError(f"channel {channel_id} is not open")
        if channel.kind != kind:
            raise LocalProtocolError(f"channel {channel_id} is {channel.kind}, not {kind}")
        sequence = self._sequence.get(channel_id, 0)
        self._sequence[channel_id] = (sequence + 1) & 0xFFFFFFFF
        return sequence

    def submit_standard(
        self, channel_id: int, job_id: int, nonce: int, ntime: int, version: int, context: Any = None
    ) -> Outgoing:
        sequence = self._next_sequence(channel_id, STANDARD)
        data = self.send(m.SubmitSharesStandard(channel_id, sequence, job_id, nonce, ntime, version))
        self.pending_submits.setdefault(channel_id, OrderedDict())[sequence] = context
        return Outgoing(sequence, data)

    def submit_extended(
        self,
        channel_id: int,
        job_id: int,
        nonce: int,
        ntime: int,
        version: int,
        extranonce: bytes,
        context: Any = None,
    ) -> Outgoing:
        size = self.channels[channel_id].extranonce_size if channel_id in self.channels else None
        if size is not None and len(extranonce) != size:
            raise LocalProtocolError(f"channel {channel_id} takes {size} extranonce bytes, not {len(extranonce)}")
        sequence = self._next_sequence(channel_id, EXTENDED)
        data = self.send(m.SubmitSharesExtended(channel_id, sequence, job_id, nonce, ntime, version, extranonce))
        self.pending_submits.setdefault(channel_id, OrderedDict())[sequence] = context
        return Outgoing(sequence, data)

    def update_channel(self, channel_id: int, nominal_hash_rate: float, maximum_target: int) -> bytes:
        if channel_id not in self.channels:
            raise LocalProtocolError(f"channel {channel_id} is not open")
        return self.send(m.UpdateChannel(channel_id, nominal_hash_rate, maximum_target))

    # incoming

    def _known_channel(self, channel_id: int) -> bool:
        return channel_id in self.channels or channel_id in self.group_channels

    def _on_message(self, message: Message, header: Header) -> list[Event]:
        if self.state is State.SETUP:
            if isinstance(message, m.SetupConnectionSuccess) and self.setup is not None:
                self.state = State.READY
                self.server_flags = message.flags
                return [message]
            if isinstance(message, m.SetupConnectionError) and self.setup is not None:
                return [message]
            when = "was answered" if self.setup is not None else "was sent"
            return [self._fail(f"{message.NAME} arrived before SetupConnection {when}", header)]
        if isinstance(message, (m.SetupConnectionSuccess, m.SetupConnectionError)):
            return [self._fail(f"a second {message.NAME}", header)]

        if isinstance(message, (m.OpenStandardMiningChannelSuccess, m.OpenExtendedMiningChannelSuccess)):
            return self._channel_opened(message)
        if isinstance(message, m.OpenMiningChannelError):
            if self.pending_opens.pop(message.request_id, None) is None:
                return [self._unasked(message)]
            return [message]
        if isinstance(message, m.SetGroupChannel):
            self.group_channels.add(message.group_channel_id)
            for channel_id in message.channel_ids:
                if channel_id in self.channels:
                    self.channels[channel_id].group_channel_id = message.group_channel_id
            return [message]
        if isinstance(message, m.Reconnect):
            return [message]

        channel_id = getattr(message, "channel_id", None)
        if channel_id is None or not self._known_channel(channel_id):
            return [self._not_open(message, channel_id)]
        channel = self.channels.get(channel_id)
        if isinstance(message, m.NewMiningJob) and (channel is None or channel.kind != STANDARD):
            return [ProtocolViolation(f"NewMiningJob for channel {channel_id}, not a standard channel", False)]
        if isinstance(message, m.SetTarget):
            for member in self._members(channel_id):
                member.target = message.maximum_target
        elif isinstance(message, m.SetExtranoncePrefix) and channel is not None:
            channel.extranonce_prefix = message.extranonce_prefix
        elif isinstance(message, m.CloseChannel):
            for member in self._members(channel_id):
                self.channels.pop(member.channel_id, None)
            self.group_channels.discard(channel_id)
        elif isinstance(message, m.SubmitSharesSuccess):
            pending = self.pending_submits.get(channel_id, OrderedDict())
            acked = [s for s in pending if s <= message.last_sequence_number]
            return [SharesAccepted(message, [pending.pop(s) for s in acked])]
        elif isinstance(message, m.SubmitSharesError):
            pending = self.pending_submits.get(channel_id, OrderedDict())
            return [ShareRejected(message, pending.pop(message.sequence_number, None))]
        return [message]

    def _members(self, channel_id: int) -> list[Channel]:
        """The channel itself, or every channel of a group."""
        if channel_id in self.channels:
            return [self.channels[channel_id]]
        return [c for c in self.channels.values() if c.group_channel_id == channel_id]

    def _unasked(self, message: Message) -> ProtocolViolation:
        return ProtocolViolation(
            f"{message.NAME} answers request {message.request_id}, which was never made", fatal=False, message=message
        )

    def _channel_opened(self, message) -> list[Event]:
        kind = STANDARD if isinstance(message, m.OpenStandardMiningChannelSuccess) else EXTENDED
        pending = self.pending_opens.get(message.request_id)
        if pending is None or pending[0] != kind:
            return [self._unasked(message)]
        del self.pending_opens[message.request_id]
        self.channels[message.channel_id] = Channel(
            message.channel_id,
            kind,
            message.target,
            message.extranonce_prefix,
            message.group_channel_id,
            getattr(message, "extranonce_size", 0),
            pending[1].user_identity,
        )
        if message.group_channel_id:
            self.group_channels.add(message.group_channel_id)
        return [message]


# --- server ----------------------------------------------------------------------------------------------------------


class ServerConnection(_Connection):
    """The pool's end of one connection, holding the pool's static key and its current certificate."""

    ROLE, PEER = m.SERVER, m.CLIENT

    def __init__(
        self,
        static_secret: bytes | None,
        certificate: Certificate | None,
        *,
        static_encoding: bytes | None = None,
        encrypted: bool = True,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        ephemeral_secret: bytes | None = None,
        aux_rand: bytes | None = None,
    ) -> None:
        super().__init__(encrypted=encrypted, max_payload=max_payload)
        self._responder = (
            Responder(
                static_secret,
                certificate,
                static_encoding=static_encoding,
                ephemeral_secret=ephemeral_secret,
                aux_rand=aux_rand,
            )
            if encrypted
            else None
        )
        self._act1: bytes | None = None
        self._handshake_buffer = bytearray()
        self.setup_answered = False
        if not encrypted:
            self._start_transport(None)

    def _handshake_data(self, data: bytes) -> list[Event]:
        if self._act1 is not None:
            return [self._fail("the miner sent data before the handshake finished")]
        self._handshake_buffer += data
        if len(self._handshake_buffer) < ACT1_SIZE:
            return []
        if len(self._handshake_buffer) > ACT1_SIZE:
            return [self._fail("the miner sent more than the 64-byte handshake opening")]
        self._act1 = bytes(self._handshake_buffer)
        self._handshake_buffer.clear()
        return [HandshakeRequested()]

    def accept_handshake(self) -> bytes:
        """Act 2 (234 bytes); from here on the session is encrypted."""
        if self._act1 is None or self.state is not State.HANDSHAKE:
            raise LocalProtocolError("no handshake opening to answer")
        reply, transport = self._responder.act2(self._act1)
        self._start_transport(transport)
        return reply

    # answers

    def setup_connection_success(self, flags: int = 0, used_version: int = m.PROTOCOL_VERSION) -> bytes:
        self._require_setup()
        data = self.send(m.SetupConnectionSuccess(used_version, flags))
        self.setup_answered = True
        self.state = State.READY
        return data

    def setup_connection_error(self, error_code: str, flags: int = 0) -> bytes:
        self._require_setup()
        data = self.send(m.SetupConnectionError(flags, error_code))
        self.setup_answered = True
        return data

    def _require_setup(self) -> None:
        if self.setup is None or self.setup_answered:
            raise LocalProtocolError("no SetupConnection waiting for an answer")

    def open_standard_channel_success(
        self,
        request: m.OpenStandardMiningChannel,
        channel_id: int,
        target: int,
        extranonce_prefix: bytes,
        group_channel_id: int = 0,
    ) -> bytes:
        data = self.send(
            m.OpenStandardMiningChannelSuccess(
                request.request_id, channel_id, target, extranonce_prefix, group_channel_id
            )
        )
        self._record_channel(
            Channel(channel_id, STANDARD, target, extranonce_prefix, group_channel_id, 0, request.user_identity)
        )
        return data

    def open_extended_channel_success(
        self,
        request: m.OpenExtendedMiningChannel,
        channel_id: int,
        target: int,
        extranonce_size: int,
        extranonce_prefix: bytes,
        group_channel_id: int = 0,
    ) -> bytes:
        data = self.send(
            m.OpenExtendedMiningChannelSuccess(
                request.request_id, channel_id, target, extranonce_size, extranonce_prefix, group_channel_id
            )
        )
        self._record_channel(
            Channel(
                channel_id,
                EXTENDED,
                target,
                extranonce_prefix,
                group_channel_id,
                extranonce_size,
                request.user_identity,
            )
        )
        return data

    def _record_channel(self, channel: Channel) -> None:
        if channel.channel_id in self.channels or channel.channel_id in self.group_channels:
            raise LocalProtocolError(f"channel id {channel.channel_id} is already in use on this connection")
        self.channels[channel.channel_id] = channel
        if channel.group_channel_id:
            self.group_channels.add(channel.group_channel_id)

    def open_channel_error(self, request_id: int, error_code: str) -> bytes:
        return self.send(m.OpenMiningChannelError(request_id, error_code))

    def set_target(self, channel_id: int, maximum_target: int) -> bytes:
        data = self.send(m.SetTarget(channel_id, maximum_target))
        if channel_id in self.channels:
            self.channels[channel_id].target = maximum_target
        return data

    # incoming

    def _on_message(self, message: Message, header: Header) -> list[Event]:
        if isinstance(message, m.SetupConnection):
            if self.setup is not None:
                return [self._fail("a second SetupConnection", header)]
            self.setup = message
            return [message]
        if self.setup is None:
            return [self._fail(f"{message.NAME} before SetupConnection", header)]
        if self.state is not State.READY:
            return [self._fail(f"{message.NAME} before SetupConnection.Success", header)]
        if isinstance(message, (m.OpenStandardMiningChannel, m.OpenExtendedMiningChannel)):
            return [message]
        channel = self.channels.get(message.channel_id)
        if channel is None:
            return [self._not_open(message, message.channel_id)]
        if isinstance(message, m.SubmitSharesStandard) and channel.kind != STANDARD:
            return [self._wrong_kind(message, channel)]
        if isinstance(message, m.SubmitSharesExtended):
            if channel.kind != EXTENDED:
                return [self._wrong_kind(message, channel)]
            if len(message.extranonce) != channel.extranonce_size:
                return [
                    ProtocolViolation(
                        f"extranonce of {len(message.extranonce)} bytes on a channel of {channel.extranonce_size}",
                        fatal=False,
                        error_code=m.ERR_BAD_EXTRANONCE_SIZE,
                        message=message,
                    )
                ]
        if isinstance(message, m.CloseChannel):
            del self.channels[message.channel_id]
        return [message]

    def _wrong_kind(self, message: Message, channel: Channel) -> ProtocolViolation:
        return ProtocolViolation(
            f"{message.NAME} on {channel.kind} channel {channel.channel_id}",
            fatal=False,
            error_code=m.ERR_INVALID_CHANNEL_ID,
            message=message,
        )
