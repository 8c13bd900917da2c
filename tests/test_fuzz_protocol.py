"""Property-based fuzzing of the sans-I/O Stratum core, both roles.

Whatever a peer sends (random bytes, mutated JSON, wrong types, huge
numbers, over-long lines, unknown methods), ``receive_data`` returns events
and never raises, framing does not depend on how the stream is chunked, and a
reply can only ever settle a request we actually sent, once.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratum.protocol import (
    MAX_LINE,
    ClientConnection,
    Event,
    Notify,
    ProtocolViolation,
    ServerConnection,
    Submit,
    SubmitResult,
)

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CLIENT_METHODS = [
    "mining.notify",
    "mining.set_difficulty",
    "mining.set_version_mask",
    "mining.set_extranonce",
    "client.reconnect",
    "client.show_message",
    "client.get_version",
    "mining.ping",
]
SERVER_METHODS = [
    "mining.subscribe",
    "mining.authorize",
    "mining.configure",
    "mining.submit",
    "mining.suggest_difficulty",
    "mining.extranonce.subscribe",
]
ODD_METHODS = ["", "mining.", "MINING.NOTIFY", "mining.submit\x00", "x" * 300, "mining.notify.extra"]

huge_ints = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**300, -1, 0, 2**32, 2**32 - 1])
odd_hex = st.sampled_from(["", "0", "zz", "0x12", "ffffffff", "FFFFFFFF", "1" * 9, "12 34", "é", "00" * 40])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | odd_hex
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=10) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
ids = st.none() | st.integers(-5, 50) | st.text(max_size=5) | st.booleans() | st.floats(allow_nan=False)


def _dump(obj: object) -> bytes:
    """JSON text, including the non-standard NaN/Infinity some peers emit."""
    return json.dumps(obj, allow_nan=True).encode()


@st.composite
def messages(draw, methods: list[str]) -> bytes:
    """A request, notification, reply or garbage object, mostly well formed enough to reach the dispatcher."""
    kind = draw(st.sampled_from(["request", "reply", "object", "array"]))
    if kind == "request":
        msg: dict = {"id": draw(ids), "method": draw(st.sampled_from(methods + ODD_METHODS) | st.text(max_size=20))}
        if draw(st.booleans()):
            msg["params"] = draw(st.lists(json_values, max_size=10) | json_values)
    elif kind == "reply":
        msg = {"id": draw(ids), "result": draw(json_values), "error": draw(json_values)}
    elif kind == "object":
        msg = draw(st.dictionaries(st.sampled_from(["id", "method", "params", "result", "error", "x"]), json_values))
    else:
        return _dump(draw(st.lists(json_values, max_size=5)))
    return _dump(msg)


@st.composite
def streams(draw, methods: list[str]) -> bytes:
    """Newline-joined lines: structured messages, their mutations, and raw bytes."""
    lines = []
    for _ in range(draw(st.integers(1, 8))):
        choice = draw(st.integers(0, 4))
        if choice <= 1:
            lines.append(draw(messages(methods)))
        elif choice == 2:  # a structured message with bytes flipped, cut or inserted
            line = bytearray(draw(messages(methods)))
            for _ in range(draw(st.integers(1, 4))):
                pos = draw(st.integers(0, max(0, len(line) - 1)))
                op = draw(st.integers(0, 2))
                if op == 0 and line:
                    line[pos] = draw(st.integers(0, 255))
                elif op == 1:
                    del line[pos:]
                else:
                    line[pos:pos] = draw(st.binary(min_size=1, max_size=4))
            lines.append(bytes(line))
        elif choice == 3:
            lines.append(draw(st.binary(max_size=200)))
        else:
            lines.append(b"x" * draw(st.integers(MAX_LINE - 2, MAX_LINE + 100)))
    return b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\r\n"]))


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(data)]:
        if p > last:
            pieces.append(data[last:p])
            last = p
    return pieces


def _subscribed_client() -> ClientConnection:
    conn = ClientConnection()
    sub = conn.subscribe("fuzz/1")
    auth = conn.authorize("w", "x")
    conn.receive_data(
        _dump({"id": sub.request_id, "result": [[["mining.notify", "ab"]], "01020304", 4], "error": None}) + b"\n"
    )
    conn.receive_data(_dump({"id": auth.request_id, "result": True, "error": None}) + b"\n")
    assert conn.state.value == "authorized"
    return conn


def _subscribed_server() -> ServerConnection:
    conn = ServerConnection()
    [sub] = conn.receive_data(b'{"id":1,"method":"mining.subscribe","params":["x"]}\n')
    conn.reply_subscribe(sub.request_id, b"\x01\x02\x03\x04", 4)
    [auth] = conn.receive_data(b'{"id":2,"method":"mining.authorize","params":["w","x"]}\n')
    conn.reply_authorize(auth.request_id, True)
    return conn


def _events(conn, pieces: list[bytes]) -> list[Event]:
    """Feed a stream in pieces. An empty stream is no piece at all: ``receive_data(b"")`` is the
    end-of-stream signal (as in h11), which a stream of zero bytes cut into pieces never sends."""
    out: list[Event] = []
    for piece in pieces:
        if piece:
            out.extend(conn.receive_data(piece))
    return out


def test_an_empty_stream_is_no_events_and_end_of_stream_is_closed() -> None:
    for make in (ClientConnection, ServerConnection, _subscribed_client, _subscribed_server):
        assert _events(make(), [b""]) == _events(make(), _chunks(b"", [0, 5])) == []
        assert [type(e).__name__ for e in make().receive_data(b"")] == ["ConnectionClosed"]


def _shape(events: list[Event]) -> list[tuple]:
    """A comparable summary of events (reasons may quote a chunk-dependent excerpt)."""
    return [(type(e).__name__, getattr(e, "request_id", None), getattr(e, "method", None)) for e in events]


@FUZZ
@given(data=streams(CLIENT_METHODS), cuts=st.lists(st.integers(0, 10**6), max_size=6), fresh=st.booleans())
def test_client_never_raises_and_chunking_does_not_matter(data: bytes, cuts: list[int], fresh: bool) -> None:
    make = ClientConnection if fresh else _subscribed_client
    whole = _events(make(), [data])
    pieces = _events(make(), _chunks(data, cuts))
    assert all(isinstance(e, Event) for e in whole)
    assert _shape(whole) == _shape(pieces)


@FUZZ
@given(data=streams(SERVER_METHODS), cuts=st.lists(st.integers(0, 10**6), max_size=6), fresh=st.booleans())
def test_server_never_raises_and_chunking_does_not_matter(data: bytes, cuts: list[int], fresh: bool) -> None:
    make = ServerConnection if fresh else _subscribed_server
    whole = _events(make(), [data])
    pieces = _events(make(), _chunks(data, cuts))
    assert all(isinstance(e, Event) for e in whole)
    assert _shape(whole) == _shape(pieces)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_both_roles(data: bytes) -> None:
    for conn in (ClientConnection(), ServerConnection(), _subscribed_client(), _subscribed_server()):
        events = conn.receive_data(data)
        events += conn.receive_data(b"\n")
        assert all(isinstance(e, Event) for e in events)


@FUZZ
@given(params=st.lists(json_values, max_size=8), rid=ids)
def test_server_submit_events_are_well_formed(params: list, rid: object) -> None:
    """Whatever reaches the pool as a Submit has string fields with valid hex of the right sizes."""
    conn = _subscribed_server()
    for event in conn.receive_data(_dump({"id": rid, "method": "mining.submit", "params": params}) + b"\n"):
        if isinstance(event, Submit):
            assert event.worker == "w"
            assert len(event.extranonce2_bytes) == 4
            assert 0 <= event.ntime_int < 2**32 and 0 <= event.nonce_int < 2**32
            assert event.version_bits is None or 0 <= event.version_bits_int < 2**32
        else:
            assert isinstance(event, ProtocolViolation)


@FUZZ
@given(params=st.lists(json_values, min_size=5, max_size=7))
def test_submit_before_subscribe_or_authorize_is_refused(params: list) -> None:
    fresh = ServerConnection()
    events = fresh.receive_data(_dump({"id": 9, "method": "mining.submit", "params": params}) + b"\n")
    assert not any(isinstance(e, Submit) for e in events)
    subscribed = ServerConnection()
    [sub] = subscribed.receive_data(b'{"id":1,"method":"mining.subscribe","params":[]}\n')
    subscribed.reply_subscribe(sub.request_id, b"\x00\x00\x00\x01", 4)
    events = subscribed.receive_data(_dump({"id": 9, "method": "mining.submit", "params": params}) + b"\n")
    assert not any(isinstance(e, Submit) for e in events)


@FUZZ
@given(replies=st.lists(st.tuples(ids, json_values, json_values), max_size=12), n=st.integers(1, 5))
def test_each_submit_settles_at_most_once(replies: list, n: int) -> None:
    """Random replies (ids, results, errors) settle only pending submits, each once; accepted only on result true."""
    conn = _subscribed_client()
    sent = {conn.submit("w", "j", "00000000", "00000000", f"{i:08x}", context=i).request_id: i for i in range(n)}
    settled: list[int] = []
    for rid, result, error in replies:
        for event in conn.receive_data(_dump({"id": rid, "result": result, "error": error}) + b"\n"):
            if isinstance(event, SubmitResult):
                assert event.context == sent[event.request_id]
                assert event.accepted == (result is True and error is None)
                settled.append(event.context)
    assert len(settled) == len(set(settled))
    still = {ctx for method, ctx in conn.pending.values() if method == "mining.submit"}
    assert still | set(settled) == set(sent.values())


def test_bool_reply_id_does_not_settle_request_one() -> None:
    """JSON ``true`` equals 1 in Python; a reply with id true must not be taken as the reply to request 1."""
    conn = ClientConnection()
    first = conn.subscribe("x")
    assert first.request_id == 1
    events = conn.receive_data(b'{"id":true,"result":[[],"01020304",4],"error":null}\n')
    assert not any(type(e).__name__ == "SubscribeResult" for e in events)
    assert 1 in conn.pending


def test_over_long_line_then_valid_line() -> None:
    """A line over the limit is one violation; the next line parses normally, however it is split."""
    notify = [
        "j1",
        "00" * 32,
        "01",
        "02",
        [],
        "20000000",
        "207fffff",
        "5f5e1000",
        True,
    ]
    good = _dump({"id": None, "method": "mining.notify", "params": notify}) + b"\n"
    data = b"{" + b"a" * (3 * MAX_LINE) + b"\n" + good
    for step in (1, 7, 4096, len(data)):
        conn = ClientConnection()
        events = _events(conn, [data[i : i + step] for i in range(0, len(data), step)]) if step > 1 else None
        if events is None:  # byte by byte is slow for 48 KiB: use a shorter over-long line
            short = b"z" * (MAX_LINE + 5) + b"\n" + good
            events = _events(conn, [short[:10], short[10 : MAX_LINE + 3], short[MAX_LINE + 3 :]])
        violations = [e for e in events if isinstance(e, ProtocolViolation)]
        notifies = [e for e in events if isinstance(e, Notify)]
        assert len(violations) == 1 and "longer" in violations[0].reason
        assert len(notifies) == 1 and notifies[0].job_id == "j1"


@FUZZ
@given(value=st.one_of(huge_ints, st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5), st.none()))
def test_set_difficulty_keeps_a_positive_finite_value(value: object) -> None:
    conn = _subscribed_client()
    line = _dump({"id": None, "method": "mining.set_difficulty", "params": [value]}) + b"\n"
    for event in conn.receive_data(line):
        if type(event).__name__ == "SetDifficulty":
            assert event.difficulty > 0 and event.difficulty != float("inf")
    assert conn.difficulty is None or 0 < conn.difficulty < float("inf")
