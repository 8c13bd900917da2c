"""Stratum V1 without I/O: bytes in, typed events out, for both roles.

Shaped like h11: a connection object owns the framing and a small state
machine and never touches a socket. Feed it what arrived with
``receive_data(data)`` and act on the events it returns; call its methods to
get the bytes to send. Nothing a peer sends raises out of ``receive_data``:
bad JSON, wrong types, unknown methods and over-long lines become a
:class:`ProtocolViolation` event (with ``request_id`` and a suggested Stratum
error ``code`` when the peer asked something and deserves an error reply).
Calling a method in the wrong state (submitting before subscribing) is our
own bug and raises :class:`LocalProtocolError`.

Framing: newline-delimited JSON-RPC 1.0-style objects, one per line, at most
:data:`MAX_LINE` bytes. ``receive_data(b"")`` means the peer closed.

Client role, :class:`ClientConnection`::

    conn = ClientConnection()
    sock.sendall(conn.configure(version_mask=0x1FFFE000).data)   # optional, BIP 310
    sock.sendall(conn.subscribe("sha256d-miner/0.1", session_id=None).data)
    for event in conn.receive_data(sock.recv(4096)):
        ...  # SubscribeResult -> conn.authorize(user, password); Notify; SetDifficulty; SubmitResult ...
    out = conn.submit(worker, job_id, extranonce2_hex, ntime_hex, nonce_hex, version_bits_hex, context=share)

Requests return :class:`Outgoing` ``(request_id, data)``; their replies come
back as typed events (``SubscribeResult``, ``AuthorizeResult``,
``ConfigureResult``, ``SubmitResult`` carrying the ``context`` given to
``submit``, ``GenericResult`` for the rest, ``RequestFailed`` for an error
reply to subscribe/authorize/configure/...). Server-initiated messages arrive
as ``Notify``, ``SetDifficulty``, ``SetVersionMask``, ``SetExtranonce``,
``Reconnect``, ``ShowMessage``, ``GetVersion`` (answer with
``reply_version``) and ``Ping`` (answer with ``reply_pong``).

Server role, :class:`ServerConnection`::

    conn = ServerConnection()
    for event in conn.receive_data(data):
        if isinstance(event, Subscribe):   send(conn.reply_subscribe(event.request_id, extranonce1, 4))
        elif isinstance(event, Authorize): send(conn.reply_authorize(event.request_id, ok))
        elif isinstance(event, Configure): send(conn.reply_configure(event.request_id, version_mask=mask))
        elif isinstance(event, Submit):    send(conn.reply_submit(event.request_id)) or
                                           send(conn.reply_error(event.request_id, ERR_DUPLICATE, "duplicate"))
        elif isinstance(event, (SuggestDifficulty, ExtranonceSubscribe)):
            send(conn.reply_result(event.request_id, True))
        elif isinstance(event, ProtocolViolation) and event.request_id is not None:
            send(conn.reply_error(event.request_id, event.code, event.reason))
    send(conn.notify(job_params)); send(conn.set_difficulty(d)); send(conn.set_version_mask(m))
    send(conn.set_extranonce(en1, size)); send(conn.reconnect(host, port, wait)); send(conn.show_message(text))
    send(conn.get_version().data); send(conn.ping().data)   # replies arrive as Reply events

The server connection enforces the order rules itself: a submit before a
successful subscribe reply is a violation with code 25, a submit for a
worker never authorized (``reply_authorize(..., True)``) one with code 24.
After ``reply_configure(..., version_mask=m)`` a submit may carry a sixth
version-bits parameter; ``conn.version_mask`` holds the negotiated mask.
"""

from __future__ import annotations

import enum
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

MAX_LINE = 16 * 1024

ERR_OTHER = 20
ERR_JOB_NOT_FOUND = 21  # stale
ERR_DUPLICATE = 22
ERR_LOW_DIFFICULTY = 23
ERR_UNAUTHORIZED = 24
ERR_NOT_SUBSCRIBED = 25

ERROR_MESSAGES = {
    ERR_OTHER: "Other/Unknown",
    ERR_JOB_NOT_FOUND: "Job not found",
    ERR_DUPLICATE: "Duplicate share",
    ERR_LOW_DIFFICULTY: "Low difficulty share",
    ERR_UNAUTHORIZED: "Unauthorized worker",
    ERR_NOT_SUBSCRIBED: "Not subscribed",
}

#: BIP 320: the version bits miners may roll
BIP320_MASK = 0x1FFFE000


class LocalProtocolError(RuntimeError):
    """We tried to do something the protocol state does not allow (a bug here)."""


class Outgoing(NamedTuple):
    """A request to send, and the id its reply will carry."""

    request_id: int
    data: bytes


# --- events ----------------------------------------------------------------------------------------------------------


class Event:
    """Base of everything ``receive_data`` returns."""


@dataclass
class ProtocolViolation(Event):
    """Something unusable arrived. If the peer asked (``request_id`` set), answer with ``code``."""

    reason: str
    request_id: Any = None
    method: str | None = None
    code: int = ERR_OTHER
    line: str = ""  # the offending text, shortened, for logs


@dataclass
class UnknownMethod(ProtocolViolation):
    """A well-formed request or notification for a method this role does not know."""

    params: Any = None


@dataclass
class ConnectionClosed(Event):
    """The peer closed the stream (``receive_data(b"")``)."""


# client-side events: replies


@dataclass
class SubscribeResult(Event):
    request_id: Any
    extranonce1: bytes
    extranonce2_size: int
    session_id: str | None
    subscriptions: list = field(default_factory=list)


@dataclass
class AuthorizeResult(Event):
    request_id: Any
    worker: str
    ok: bool
    reason: str = ""


@dataclass
class ConfigureResult(Event):
    request_id: Any
    version_rolling: bool
    version_mask: int  # 0 when version rolling is refused
    result: dict = field(default_factory=dict)


@dataclass
class SubmitResult(Event):
    request_id: Any
    accepted: bool
    code: int | None = None
    reason: str = ""
    context: Any = None  # whatever was handed to ``submit``

    @property
    def stale(self) -> bool:
        return self.code == ERR_JOB_NOT_FOUND


@dataclass
class GenericResult(Event):
    """The reply to extranonce.subscribe, suggest_difficulty or another simple request."""

    request_id: Any
    method: str
    result: Any


@dataclass
class RequestFailed(Event):
    """An error reply to a request other than submit."""

    request_id: Any
    method: str
    code: int | None
    reason: str


# client-side events: messages from the server


@dataclass
class Notify(Event):
    """``mining.notify``; ``params`` is the checked 9-item list (hex strings as sent)."""

    params: list
    job_id: str
    clean_jobs: bool


@dataclass
class SetDifficulty(Event):
    difficulty: float


@dataclass
class SetVersionMask(Event):
    mask: int


@dataclass
class SetExtranonce(Event):
    extranonce1: bytes
    extranonce2_size: int


@dataclass
class Reconnect(Event):
    host: str | None
    port: int | None
    wait: float


@dataclass
class ShowMessage(Event):
    message: str


@dataclass
class GetVersion(Event):
    request_id: Any


@dataclass
class Ping(Event):
    request_id: Any


# server-side events: requests from the miner


@dataclass
class Subscribe(Event):
    request_id: Any
    user_agent: str
    session_id: str | None


@dataclass
class Authorize(Event):
    request_id: Any
    user: str
    password: str


@dataclass
class Configure(Event):
    request_id: Any
    extensions: list[str]
    params: dict

    @property
    def version_mask(self) -> int | None:
        """The mask the miner offers for version rolling, or None if it did not ask."""
        if "version-rolling" not in self.extensions:
            return None
        return _hex_u32(self.params.get("version-rolling.mask", "ffffffff"))

    @property
    def min_bit_count(self) -> int:
        value = self.params.get("version-rolling.min-bit-count", 0)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass
class Submit(Event):
    request_id: Any
    worker: str
    job_id: str
    extranonce2: str  # hex as sent
    ntime: str  # 8 hex digits, big-endian number
    nonce: str  # 8 hex digits, big-endian number
    version_bits: str | None = None  # 8 hex digits when version rolling

    @property
    def extranonce2_bytes(self) -> bytes:
        return bytes.fromhex(self.extranonce2)

    @property
    def ntime_int(self) -> int:
        return int(self.ntime, 16)

    @property
    def nonce_int(self) -> int:
        return int(self.nonce, 16)

    @property
    def version_bits_int(self) -> int | None:
        return None if self.version_bits is None else int(self.version_bits, 16)


@dataclass
class SuggestDifficulty(Event):
    request_id: Any
    difficulty: float


@dataclass
class ExtranonceSubscribe(Event):
    request_id: Any


@dataclass
class Reply(Event):
    """The miner's answer to a server request (client.get_version, mining.ping)."""

    request_id: Any
    method: str
    result: Any
    error: Any


# --- framing and helpers ---------------------------------------------------------------------------------------------


def encode_message(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def _shorten(text: str | bytes | bytearray, limit: int = 200) -> str:
    if not isinstance(text, str):
        text = bytes(text[: 4 * limit]).decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


def _is_hex(value: Any, size: int | None = None) -> bool:
    if not isinstance(value, str) or len(value) % 2:
        return False
    if size is not None and len(value) != 2 * size:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def _hex_u32(value: Any) -> int:
    if not isinstance(value, str) or not 1 <= len(value) <= 8:
        raise ValueError("expected up to 8 hex digits")
    return int(value, 16)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_error(error: Any) -> tuple[int | None, str]:
    """Pools send errors as [code, message, traceback], {code, message} or a bare string."""
    if error is None:
        return None, ""
    if isinstance(error, list) and error:
        code = error[0] if isinstance(error[0], int) and not isinstance(error[0], bool) else None
        message = str(error[1]) if len(error) > 1 and error[1] is not None else ""
        return code, message or ERROR_MESSAGES.get(code, "error")  # type: ignore[arg-type]
    if isinstance(error, dict):
        code = error.get("code")
        code = code if isinstance(code, int) and not isinstance(code, bool) else None
        return code, str(error.get("message") or ERROR_MESSAGES.get(code, "error"))  # type: ignore[arg-type]
    return None, str(error)


class LineBuffer:
    """Splits a byte stream into lines, dropping (and reporting) lines over the limit."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | ProtocolViolation]:
        out: list[bytes | ProtocolViolation] = []
        self._buf += data
        while True:
            newline = self._buf.find(b"\n")
            if newline < 0:
                if len(self._buf) > self.limit:
                    if not self._discarding:
                        out.append(ProtocolViolation(f"line longer than {self.limit} bytes", line=_shorten(self._buf)))
                    self._discarding = True
                    self._buf.clear()
                return out
            line = bytes(self._buf[:newline])
            del self._buf[: newline + 1]
            if self._discarding:
                self._discarding = False  # the tail of an over-long line
                continue
            if len(line) > self.limit:
                out.append(ProtocolViolation(f"line longer than {self.limit} bytes", line=_shorten(line)))
                continue
            line = line.strip()
            if line:
                out.append(line)


def _decode(line: bytes) -> dict | ProtocolViolation:
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return ProtocolViolation("not valid JSON", line=_shorten(line))
    if not isinstance(message, dict):
        return ProtocolViolation("a message must be a JSON object", line=_shorten(line))
    return message


class _Connection:
    """Framing, request ids and pending requests shared by both roles."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._lines = LineBuffer(max_line)
        self._ids = itertools.count(1)
        self._pending: dict[Any, tuple[str, Any]] = {}
        self.closed = False

    @property
    def pending(self) -> dict[Any, tuple[str, Any]]:
        """request id -> (method, context) of requests still waiting for a reply."""
        return dict(self._pending)

    def _request(self, method: str, params: list, context: Any = None) -> Outgoing:
        request_id = next(self._ids)
        self._pending[request_id] = (method, context)
        return Outgoing(request_id, encode_message({"id": request_id, "method": method, "params": params}))

    def _notification(self, method: str, params: list) -> bytes:
        return encode_message({"id": None, "method": method, "params": params})

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; returns the events they complete. Never raises on bad input."""
        if not data:
            self.closed = True
            return [ConnectionClosed()]
        events: list[Event] = []
        for item in self._lines.feed(data):
            if isinstance(item, ProtocolViolation):
                events.append(item)
                continue
            message = _decode(item)
            if isinstance(message, ProtocolViolation):
                events.append(message)
                continue
            try:
                event = self._dispatch(message, _shorten(item))
            except Exception as exc:  # a checker missed a shape: still never raise at the caller
                event = ProtocolViolation(f"unusable message: {exc}", message.get("id"), line=_shorten(item))
            events.append(event)
        return events

    def _dispatch(self, message: dict, line: str) -> Event:
        method = message.get("method")
        if method is not None:
            if not isinstance(method, str):
                return ProtocolViolation("method must be a string", message.get("id"), line=line)
            params = message.get("params", [])
            if params is None:
                params = []
            return self._on_request(message.get("id"), method, params, line)
        if "id" not in message or ("result" not in message and "error" not in message):
            return ProtocolViolation("neither a request nor a reply", message.get("id"), line=line)
        request_id = message["id"]
        if isinstance(request_id, (bool, float)):  # JSON true == 1 in Python: our ids are ints, never these
            return ProtocolViolation(f"reply to unknown request id {request_id!r}", line=line)
        try:
            method, context = self._pending.pop(request_id)
        except (KeyError, TypeError):
            return ProtocolViolation(f"reply to unknown request id {request_id!r}", line=line)
        return self._on_reply(request_id, method, context, message.get("result"), message.get("error"), line)

    def _on_request(self, request_id: Any, method: str, params: Any, line: str) -> Event:
        raise NotImplementedError

    def _on_reply(self, request_id: Any, method: str, context: Any, result: Any, error: Any, line: str) -> Event:
        raise NotImplementedError

    def reply_result(self, request_id: Any, result: Any) -> bytes:
        return encode_message({"id": request_id, "result": result, "error": None})

    def reply_error(self, request_id: Any, code: int, message: str = "") -> bytes:
        """An error reply: ``[code, message, null]`` as pools send it."""
        return encode_message(
            {"id": request_id, "result": None, "error": [code, message or ERROR_MESSAGES.get(code, "error"), None]}
        )


# --- client role -----------------------------------------------------------------------------------------------------


class ClientState(enum.Enum):
    CONNECTED = "connected"  # nothing negotiated yet
    SUBSCRIBED = "subscribed"  # extranonce1 known
    AUTHORIZED = "authorized"  # at least one worker authorized: may submit


class ClientConnection(_Connection):
    """The miner's side of one Stratum connection."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        super().__init__(max_line)
        self.state = ClientState.CONNECTED
        self.extranonce1: bytes = b""
        self.extranonce2_size: int = 0
        self.session_id: str | None = None
        self.version_mask: int = 0  # negotiated with mining.configure / set_version_mask
        self.difficulty: float | None = None
        self.workers: set[str] = set()

    # requests out

    def subscribe(self, user_agent: str = "", session_id: str | None = None) -> Outgoing:
        params = [user_agent] if session_id is None else [user_agent, session_id]
        return self._request("mining.subscribe", params)

    def authorize(self, user: str, password: str = "") -> Outgoing:
        return self._request("mining.authorize", [user, password], context=user)

    def configure(self, version_mask: int = BIP320_MASK, min_bit_count: int = 2) -> Outgoing:
        """BIP 310 ``mining.configure`` asking for version rolling within ``version_mask``."""
        params = {"version-rolling.mask": f"{version_mask:08x}", "version-rolling.min-bit-count": min_bit_count}
        return self._request("mining.configure", [["version-rolling"], params])

    def extranonce_subscribe(self) -> Outgoing:
        return self._request("mining.extranonce.subscribe", [])

    def suggest_difficulty(self, difficulty: float) -> Outgoing:
        return self._request("mining.suggest_difficulty", [difficulty])

    def submit(
        self,
        worker: str,
        job_id: str,
        extranonce2_hex: str,
        ntime_hex: str,
        nonce_hex: str,
        version_bits_hex: str | None = None,
        context: Any = None,
    ) -> Outgoing:
        """``mining.submit``; the reply comes back as a SubmitResult carrying ``context``."""
        if self.state is not ClientState.AUTHORIZED:
            raise LocalProtocolError(f"cannot submit while {self.state.value}")
        params = [worker, job_id, extranonce2_hex, ntime_hex, nonce_hex]
        if version_bits_hex is not None:
            params.append(version_bits_hex)
        return self._request("mining.submit", params, context=context)

    # answers to the server's requests

    def reply_version(self, request_id: Any, user_agent: str) -> bytes:
        return self.reply_result(request_id, user_agent)

    def reply_pong(self, request_id: Any) -> bytes:
        return self.reply_result(request_id, "pong")

    # incoming

    def _on_reply(self, request_id: Any, method: str, context: Any, result: Any, error: Any, line: str) -> Event:
        code, reason = parse_error(error)
        if method == "mining.submit":
            accepted = result is True and error is None
            if not accepted and not reason:
                reason = "rejected"
            return SubmitResult(request_id, accepted, code, reason, context)
        if method == "mining.authorize":
            ok = result is True and error is None
            if ok:
                self.workers.add(context)
                self.state = ClientState.AUTHORIZED
            return AuthorizeResult(request_id, context, ok, reason if not ok else "")
        if error is not None:
            return RequestFailed(request_id, method, code, reason)
        if method == "mining.subscribe":
            return self._subscribe_result(request_id, result, line)
        if method == "mining.configure":
            if not isinstance(result, dict):
                return ProtocolViolation("mining.configure result must be an object", method=method, line=line)
            rolling = result.get("version-rolling") is True
            mask = 0
            if rolling:
                try:
                    mask = _hex_u32(result.get("version-rolling.mask"))
                except ValueError:
                    return ProtocolViolation("version-rolling.mask must be hex", method=method, line=line)
            self.version_mask = mask
            return ConfigureResult(request_id, rolling and mask != 0, mask, result)
        return GenericResult(request_id, method, result)

    def _subscribe_result(self, request_id: Any, result: Any, line: str) -> Event:
        bad = ProtocolViolation("mining.subscribe result must be [subscriptions, extranonce1, size]", line=line)
        bad.method = "mining.subscribe"
        if not isinstance(result, list) or len(result) < 3:
            return bad
        subscriptions, extranonce1, size = result[0], result[1], result[2]
        if not _is_hex(extranonce1) or not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 32:
            return bad
        session_id = None
        if isinstance(subscriptions, list):
            for item in subscriptions:
                # [["mining.set_difficulty", id], ["mining.notify", id]] or a bare pair
                pair = item if isinstance(item, list) else subscriptions
                if len(pair) >= 2 and pair[0] == "mining.notify" and isinstance(pair[1], str):
                    session_id = pair[1]
                    break
        else:
            subscriptions = []
        self.extranonce1 = bytes.fromhex(extranonce1)
        self.extranonce2_size = size
        self.session_id = session_id
        if self.state is ClientState.CONNECTED:
            self.state = ClientState.SUBSCRIBED
        return SubscribeResult(request_id, self.extranonce1, size, session_id, subscriptions)

    def _on_request(self, request_id: Any, method: str, params: Any, line: str) -> Event:
        def bad(reason: str) -> ProtocolViolation:
            return ProtocolViolation(f"{method}: {reason}", request_id, method, ERR_OTHER, line)

        if not isinstance(params, list):
            return bad("params must be a list")
        if method == "mining.notify":
            reason = check_notify_params(params)
            if reason:
                return bad(reason)
            return Notify(list(params[:9]), str(params[0]), bool(params[8]))
        if method == "mining.set_difficulty":
            if not params or not _is_number(params[0]) or params[0] <= 0:
                return bad("difficulty must be a positive number")
            self.difficulty = float(params[0])
            return SetDifficulty(float(params[0]))
        if method == "mining.set_version_mask":
            try:
                mask = _hex_u32(params[0] if params else None)
            except ValueError:
                return bad("mask must be 8 hex digits")
            self.version_mask = mask
            return SetVersionMask(mask)
        if method == "mining.set_extranonce":
            if len(params) < 2 or not _is_hex(params[0]) or not isinstance(params[1], int) or not 0 <= params[1] <= 32:
                return bad("params must be [extranonce1 hex, extranonce2_size]")
            self.extranonce1 = bytes.fromhex(params[0])
            self.extranonce2_size = params[1]
            return SetExtranonce(self.extranonce1, params[1])
        if method == "client.reconnect":
            host = params[0] if len(params) > 0 and isinstance(params[0], str) and params[0] else None
            port: int | None = None
            if len(params) > 1 and params[1] not in (None, ""):
                try:
                    port = int(params[1])
                except (TypeError, ValueError):
                    return bad("port must be a number")
                if not 0 < port < 65536:
                    return bad("port out of range")
            wait = params[2] if len(params) > 2 and _is_number(params[2]) and params[2] >= 0 else 0
            return Reconnect(host, port, float(wait))
        if method == "client.show_message":
            return ShowMessage(str(params[0]) if params else "")
        if method == "client.get_version":
            return GetVersion(request_id)
        if method == "mining.ping":
            return Ping(request_id)
        return UnknownMethod(f"unknown method {method}", request_id, method, ERR_OTHER, line, params)


def check_notify_params(params: Any) -> str:
    """'' if ``params`` has mining.notify's shape, else the reason it does not."""
    if not isinstance(params, list) or len(params) < 9:
        return "needs 9 params"
    job_id, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean = params[:9]
    if not isinstance(job_id, str) or not job_id:
        return "job_id must be a non-empty string"
    for name, value, size in (
        ("prevhash", prevhash, 32),
        ("version", version, 4),
        ("nbits", nbits, 4),
        ("ntime", ntime, 4),
    ):
        if not _is_hex(value, size):
            return f"{name} must be {size} bytes of hex"
    if not _is_hex(coinb1) or not _is_hex(coinb2):
        return "coinb1 and coinb2 must be hex"
    if not isinstance(branch, list) or not all(_is_hex(b, 32) for b in branch):
        return "merkle branch must be a list of 32-byte hex hashes"
    if not isinstance(clean, bool):
        return "clean_jobs must be true or false"
    return ""


# --- server role -----------------------------------------------------------------------------------------------------


class ServerState(enum.Enum):
    CONNECTED = "connected"
    SUBSCRIBED = "subscribed"


class ServerConnection(_Connection):
    """The pool's side of one Stratum connection."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        super().__init__(max_line)
        self.state = ServerState.CONNECTED
        self.extranonce1: bytes = b""
        self.extranonce2_size: int = 0
        self.version_mask: int = 0  # 0 until version rolling is agreed
        self.extranonce_subscribed = False
        self.user_agent = ""
        self.authorized: set[str] = set()
        self._asked: dict[Any, tuple[str, Any]] = {}  # request id -> (method, params) awaiting our reply

    # incoming

    def _on_request(self, request_id: Any, method: str, params: Any, line: str) -> Event:
        def bad(reason: str, code: int = ERR_OTHER) -> ProtocolViolation:
            return ProtocolViolation(f"{method}: {reason}", request_id, method, code, line)

        if not isinstance(params, list):
            return bad("params must be a list")
        if method == "mining.subscribe":
            agent = params[0] if params and isinstance(params[0], str) else ""
            session = params[1] if len(params) > 1 and isinstance(params[1], str) and params[1] else None
            self._asked[request_id] = (method, None)
            self.user_agent = agent
            return Subscribe(request_id, agent, session)
        if method == "mining.authorize":
            if not params or not isinstance(params[0], str):
                return bad("params must be [user, password]")
            password = params[1] if len(params) > 1 and isinstance(params[1], str) else ""
            self._asked[request_id] = (method, params[0])
            return Authorize(request_id, params[0], password)
        if method == "mining.configure":
            if len(params) < 2 or not isinstance(params[0], list) or not isinstance(params[1], dict):
                return bad("params must be [extensions, parameters]")
            if not all(isinstance(e, str) for e in params[0]):
                return bad("extensions must be strings")
            event = Configure(request_id, list(params[0]), dict(params[1]))
            try:
                offered = event.version_mask
            except ValueError:
                return bad("version-rolling.mask must be hex")
            self._asked[request_id] = (method, (event.extensions, offered))
            return event
        if method == "mining.submit":
            return self._submit(request_id, params, bad)
        if method == "mining.suggest_difficulty":
            if not params or not _is_number(params[0]) or params[0] <= 0:
                return bad("difficulty must be a positive number")
            return SuggestDifficulty(request_id, float(params[0]))
        if method == "mining.extranonce.subscribe":
            self.extranonce_subscribed = True
            return ExtranonceSubscribe(request_id)
        return UnknownMethod(f"unknown method {method}", request_id, method, ERR_OTHER, line, params)

    def _submit(self, request_id: Any, params: list, bad) -> Event:
        if len(params) < 5 or not all(isinstance(p, str) for p in params[:5]):
            return bad("params must be [worker, job_id, extranonce2, ntime, nonce(, version_bits)]")
        worker, job_id, extranonce2, ntime, nonce = params[:5]
        if self.state is not ServerState.SUBSCRIBED:
            return bad("not subscribed", ERR_NOT_SUBSCRIBED)
        if worker not in self.authorized:
            return bad(f"unauthorized worker {worker!r}", ERR_UNAUTHORIZED)
        if not _is_hex(extranonce2):
            return bad("extranonce2 must be hex")
        if self.extranonce2_size and len(extranonce2) != 2 * self.extranonce2_size:
            return bad(f"extranonce2 must be {self.extranonce2_size} bytes")
        if not _is_hex(ntime, 4) or not _is_hex(nonce, 4):
            return bad("ntime and nonce must be 8 hex digits")
        version_bits = None
        if len(params) > 5 and params[5] is not None:
            if not _is_hex(params[5], 4):
                return bad("version bits must be 8 hex digits")
            version_bits = params[5].lower()
        return Submit(request_id, worker, job_id, extranonce2.lower(), ntime.lower(), nonce.lower(), version_bits)

    def _on_reply(self, request_id: Any, method: str, context: Any, result: Any, error: Any, line: str) -> Event:
        return Reply(request_id, method, result, error)

    # replies to the miner's requests

    def reply_subscribe(
        self, request_id: Any, extranonce1: bytes, extranonce2_size: int, session_id: str | None = None
    ) -> bytes:
        """Accept a subscribe: from now on the miner may submit (once authorized)."""
        self._asked.pop(request_id, None)
        self.extranonce1 = bytes(extranonce1)
        self.extranonce2_size = extranonce2_size
        self.state = ServerState.SUBSCRIBED
        sid = session_id if session_id is not None else extranonce1.hex()
        subscriptions = [["mining.set_difficulty", sid], ["mining.notify", sid]]
        return self.reply_result(request_id, [subscriptions, extranonce1.hex(), extranonce2_size])

    def reply_authorize(self, request_id: Any, ok: bool, reason: str = "") -> bytes:
        method, user = self._asked.pop(request_id, (None, None))
        if ok:
            if method == "mining.authorize":
                self.authorized.add(user)
            return self.reply_result(request_id, True)
        return encode_message(
            {"id": request_id, "result": False, "error": [ERR_UNAUTHORIZED, reason or "Unauthorized worker", None]}
        )

    def reply_configure(self, request_id: Any, version_mask: int | None) -> bytes:
        """Answer mining.configure: version rolling within ``version_mask`` (None or 0: refused).

        The agreed mask is the pool's mask intersected with the miner's offer;
        other requested extensions are answered ``false``.
        """
        method, asked = self._asked.pop(request_id, (None, None))
        extensions, offered = asked if method == "mining.configure" else (["version-rolling"], 0xFFFFFFFF)
        result: dict[str, Any] = {e: False for e in extensions if e != "version-rolling"}
        if "version-rolling" in extensions:
            mask = (version_mask or 0) & (0xFFFFFFFF if offered is None else offered)
            if mask:
                result["version-rolling"] = True
                result["version-rolling.mask"] = f"{mask:08x}"
                self.version_mask = mask
            else:
                result["version-rolling"] = False
        return self.reply_result(request_id, result)

    def reply_submit(self, request_id: Any) -> bytes:
        """The share is accepted (errors go through ``reply_error`` with codes 20-25)."""
        return self.reply_result(request_id, True)

    # messages to the miner

    def notify(self, params: list) -> bytes:
        """``mining.notify`` with the 9 params (job_id, prevhash, coinb1, coinb2, branches, version, nbits, ntime,
        clean_jobs)."""
        reason = check_notify_params(params)
        if reason:
            raise LocalProtocolError(f"mining.notify {reason}")
        return self._notification("mining.notify", list(params))

    def set_difficulty(self, difficulty: float) -> bytes:
        if not difficulty > 0:
            raise LocalProtocolError("difficulty must be positive")
        value: float | int = int(difficulty) if float(difficulty).is_integer() else difficulty
        return self._notification("mining.set_difficulty", [value])

    def set_version_mask(self, mask: int) -> bytes:
        self.version_mask = mask
        return self._notification("mining.set_version_mask", [f"{mask:08x}"])

    def set_extranonce(self, extranonce1: bytes, extranonce2_size: int) -> bytes:
        self.extranonce1 = bytes(extranonce1)
        self.extranonce2_size = extranonce2_size
        return self._notification("mining.set_extranonce", [extranonce1.hex(), extranonce2_size])

    def reconnect(self, host: str | None = None, port: int | None = None, wait: float = 0) -> bytes:
        params: list = []
        if host is not None or port is not None or wait:
            params = [host or "", port if port is not None else "", wait]
        return self._notification("client.reconnect", params)

    def show_message(self, message: str) -> bytes:
        return self._notification("client.show_message", [message])

    def get_version(self) -> Outgoing:
        return self._request("client.get_version", [])

    def ping(self) -> Outgoing:
        return self._request("mining.ping", [])
