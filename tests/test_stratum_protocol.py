"""Transcript tests of the sans-I/O Stratum core: every method, both roles, every error path."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratum.protocol import (
    ERR_DUPLICATE,
    ERR_JOB_NOT_FOUND,
    ERR_NOT_SUBSCRIBED,
    ERR_OTHER,
    ERR_UNAUTHORIZED,
    MAX_LINE,
    Authorize,
    AuthorizeResult,
    ClientConnection,
    ClientState,
    Configure,
    ConfigureResult,
    ConnectionClosed,
    ExtranonceSubscribe,
    GenericResult,
    GetVersion,
    LocalProtocolError,
    Notify,
    Ping,
    ProtocolViolation,
    Reconnect,
    Reply,
    RequestFailed,
    ServerConnection,
    SetDifficulty,
    SetExtranonce,
    SetVersionMask,
    ShowMessage,
    Submit,
    SubmitResult,
    Subscribe,
    SubscribeResult,
    SuggestDifficulty,
    UnknownMethod,
)

NOTIFY = [
    "job1",
    "00" * 32,
    "01000000" + "00" * 10,
    "ffffffff" + "00" * 4,
    ["11" * 32, "22" * 32],
    "20000000",
    "207fffff",
    "5f5e1000",
    True,
]


def lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


def one(events):
    assert len(events) == 1, events
    return events[0]


def handshake() -> tuple[ClientConnection, ServerConnection]:
    """Client and server wired together through a subscribe + authorize transcript."""
    client, server = ClientConnection(), ServerConnection()
    sub = one(server.receive_data(client.subscribe("test/1.0").data))
    assert isinstance(sub, Subscribe)
    result = one(client.receive_data(server.reply_subscribe(sub.request_id, bytes.fromhex("deadbeef"), 4)))
    assert isinstance(result, SubscribeResult)
    auth = one(server.receive_data(client.authorize("alice.1", "x").data))
    assert isinstance(auth, Authorize)
    ok = one(client.receive_data(server.reply_authorize(auth.request_id, True)))
    assert isinstance(ok, AuthorizeResult) and ok.ok
    return client, server


# --- framing ----------------------------------------------------------------------------------------------------------


def test_lines_split_across_reads_and_crlf():
    client = ClientConnection()
    data = ServerConnection().set_difficulty(8).replace(b"\n", b"\r\n") * 2
    events = []
    for i in range(len(data)):
        events += client.receive_data(data[i : i + 1])
    assert [e.difficulty for e in events] == [8.0, 8.0]


def test_bad_json_and_non_object_are_reported_and_skipped():
    client = ClientConnection()
    events = client.receive_data(
        b'{not json\n[1,2]\n\xff\xfe\n{"id":null,"method":"mining.set_difficulty","params":[2]}\n'
    )
    assert [type(e) for e in events] == [ProtocolViolation, ProtocolViolation, ProtocolViolation, SetDifficulty]
    assert "JSON" in events[0].reason and "object" in events[1].reason


def test_over_long_line_is_dropped_once_and_stream_recovers():
    client = ClientConnection()
    events = client.receive_data(b"x" * (MAX_LINE + 10))
    events += client.receive_data(b"y" * 100 + b"\n")
    events += client.receive_data(ServerConnection().set_difficulty(3))
    assert isinstance(events[0], ProtocolViolation) and "longer" in events[0].reason
    assert len(events) == 2 and events[1] == SetDifficulty(3.0)


def test_over_long_complete_line_in_one_read():
    server = ServerConnection()
    events = server.receive_data(b'{"a":"' + b"z" * MAX_LINE + b'"}\n' + ClientConnection().subscribe("x").data)
    assert isinstance(events[0], ProtocolViolation) and isinstance(events[1], Subscribe)


def test_eof_is_an_event():
    assert isinstance(one(ClientConnection().receive_data(b"")), ConnectionClosed)


def test_neither_request_nor_reply():
    ev = one(ClientConnection().receive_data(b'{"foo": 1}\n'))
    assert isinstance(ev, ProtocolViolation)


def test_reply_to_unknown_id():
    ev = one(ClientConnection().receive_data(b'{"id": 99, "result": true, "error": null}\n'))
    assert isinstance(ev, ProtocolViolation) and "99" in ev.reason


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data):
    for conn in (ClientConnection(), ServerConnection()):
        for event in conn.receive_data(data + b"\n"):
            assert isinstance(
                event,
                (
                    ProtocolViolation,
                    Notify,
                    SetDifficulty,
                    Subscribe,
                    Reconnect,
                    ShowMessage,
                    GetVersion,
                    Ping,
                    Authorize,
                    Configure,
                    ExtranonceSubscribe,
                    SuggestDifficulty,
                    SetVersionMask,
                    SetExtranonce,
                ),
            )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            "mining.notify",
            "mining.set_difficulty",
            "mining.set_version_mask",
            "mining.set_extranonce",
            "client.reconnect",
            "client.show_message",
            "mining.subscribe",
            "mining.authorize",
            "mining.configure",
            "mining.submit",
            "mining.suggest_difficulty",
            "x.y",
        ]
    ),
    json_values,
    st.one_of(st.none(), st.integers(), st.text(max_size=4)),
)
def test_any_params_shape_never_raises(method, params, request_id):
    data = json.dumps({"id": request_id, "method": method, "params": params}).encode() + b"\n"
    client, server = handshake()
    for conn in (client, server, ClientConnection(), ServerConnection()):
        conn.receive_data(data)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_reply_shape_never_raises(result):
    client = ClientConnection()
    for out in (client.subscribe("a"), client.configure(), client.extranonce_subscribe()):
        client.receive_data(json.dumps({"id": out.request_id, "result": result, "error": None}).encode() + b"\n")


# --- client role: requests and replies --------------------------------------------------------------------------------


def test_subscribe_wire_format_and_resume():
    client = ClientConnection()
    first = client.subscribe("miner/1")
    assert lines(first.data) == [{"id": first.request_id, "method": "mining.subscribe", "params": ["miner/1"]}]
    again = client.subscribe("miner/1", session_id="abcd")
    assert lines(again.data)[0]["params"] == ["miner/1", "abcd"]
    assert again.request_id != first.request_id


def test_subscribe_result_sets_extranonce_and_session():
    client, server = ClientConnection(), ServerConnection()
    sub = one(server.receive_data(client.subscribe("m", "cafe").data))
    assert sub.user_agent == "m" and sub.session_id == "cafe"
    ev = one(client.receive_data(server.reply_subscribe(sub.request_id, b"\x01\x02\x03\x04", 8, session_id="s1")))
    assert ev.extranonce1 == b"\x01\x02\x03\x04" and ev.extranonce2_size == 8 and ev.session_id == "s1"
    assert client.state is ClientState.SUBSCRIBED and client.extranonce1 == b"\x01\x02\x03\x04"


def test_subscribe_result_flat_subscription_pair():
    client = ClientConnection()
    out = client.subscribe("m")
    reply = {"id": out.request_id, "result": [["mining.notify", "ae6812eb4cd7735a"], "08000002", 4], "error": None}
    ev = one(client.receive_data(json.dumps(reply).encode() + b"\n"))
    assert ev.session_id == "ae6812eb4cd7735a" and ev.extranonce2_size == 4


@pytest.mark.parametrize("result", [None, [], [[], "zz", 4], [[], "00", -1], [[], "00", "4"], "x"])
def test_malformed_subscribe_result(result):
    client = ClientConnection()
    out = client.subscribe("m")
    ev = one(client.receive_data(json.dumps({"id": out.request_id, "result": result, "error": None}).encode() + b"\n"))
    assert isinstance(ev, ProtocolViolation) and ev.method == "mining.subscribe"
    assert client.state is ClientState.CONNECTED


def test_subscribe_error_reply():
    client, server = ClientConnection(), ServerConnection()
    out = client.subscribe("m", "old")
    ev = one(client.receive_data(server.reply_error(out.request_id, ERR_OTHER, "unknown session")))
    assert isinstance(ev, RequestFailed) and ev.method == "mining.subscribe" and ev.code == 20
    assert ev.reason == "unknown session"


def test_authorize_ok_and_refused():
    client, server = ClientConnection(), ServerConnection()
    auth = one(server.receive_data(client.authorize("bob", "pw").data))
    assert (auth.user, auth.password) == ("bob", "pw")
    ev = one(client.receive_data(server.reply_authorize(auth.request_id, False, "bad password")))
    assert isinstance(ev, AuthorizeResult) and not ev.ok and ev.reason == "bad password" and ev.worker == "bob"
    assert client.state is not ClientState.AUTHORIZED
    auth = one(server.receive_data(client.authorize("bob", "right").data))
    ev = one(client.receive_data(server.reply_authorize(auth.request_id, True)))
    assert ev.ok and client.state is ClientState.AUTHORIZED and "bob" in server.authorized


def test_authorize_false_without_error():
    client = ClientConnection()
    out = client.authorize("u", "p")
    ev = one(client.receive_data(json.dumps({"id": out.request_id, "result": False, "error": None}).encode() + b"\n"))
    assert not ev.ok


def test_configure_version_rolling_negotiates_intersection():
    client, server = ClientConnection(), ServerConnection()
    req = one(server.receive_data(client.configure(version_mask=0x1FFFE000, min_bit_count=2).data))
    assert isinstance(req, Configure) and req.version_mask == 0x1FFFE000 and req.min_bit_count == 2
    ev = one(client.receive_data(server.reply_configure(req.request_id, version_mask=0x00FFF000)))
    assert isinstance(ev, ConfigureResult) and ev.version_rolling
    assert ev.version_mask == 0x00FFE000 == client.version_mask == server.version_mask


def test_configure_refused_and_unknown_extensions():
    client, server = ClientConnection(), ServerConnection()
    data = json.dumps(
        {
            "id": 7,
            "method": "mining.configure",
            "params": [["version-rolling", "minimum-difficulty"], {"version-rolling.mask": "1fffe000"}],
        }
    )
    req = one(server.receive_data(data.encode() + b"\n"))
    reply = lines(server.reply_configure(req.request_id, version_mask=None))[0]
    assert reply["result"] == {"version-rolling": False, "minimum-difficulty": False}
    out = client.configure()
    ev = one(
        client.receive_data(
            json.dumps({"id": out.request_id, "result": {"version-rolling": False}, "error": None}).encode() + b"\n"
        )
    )
    assert not ev.version_rolling and client.version_mask == 0


def test_configure_error_reply_and_bad_mask():
    client = ClientConnection()
    out = client.configure()
    ev = one(client.receive_data(ServerConnection().reply_error(out.request_id, 20, "unknown method")))
    assert isinstance(ev, RequestFailed) and ev.method == "mining.configure"
    out = client.configure()
    bad = {"id": out.request_id, "result": {"version-rolling": True, "version-rolling.mask": "xyz"}, "error": None}
    assert isinstance(one(client.receive_data(json.dumps(bad).encode() + b"\n")), ProtocolViolation)


def test_extranonce_subscribe_and_suggest_difficulty():
    client, server = ClientConnection(), ServerConnection()
    req = one(server.receive_data(client.extranonce_subscribe().data))
    assert isinstance(req, ExtranonceSubscribe) and server.extranonce_subscribed
    ev = one(client.receive_data(server.reply_result(req.request_id, True)))
    assert isinstance(ev, GenericResult) and ev.method == "mining.extranonce.subscribe" and ev.result is True
    req = one(server.receive_data(client.suggest_difficulty(0.5).data))
    assert isinstance(req, SuggestDifficulty) and req.difficulty == 0.5
    bad = json.dumps({"id": 3, "method": "mining.suggest_difficulty", "params": ["big"]}).encode() + b"\n"
    assert one(server.receive_data(bad)).code == ERR_OTHER


def test_submit_round_trip_with_version_bits_and_context():
    client, server = handshake()
    out = client.submit("alice.1", "job1", "00000001", "5f5e1000", "deadbeef", "00002000", context="share-1")
    assert lines(out.data)[0]["params"] == ["alice.1", "job1", "00000001", "5f5e1000", "deadbeef", "00002000"]
    sub = one(server.receive_data(out.data))
    assert isinstance(sub, Submit)
    assert (sub.job_id, sub.extranonce2_bytes, sub.ntime_int, sub.nonce_int, sub.version_bits_int) == (
        "job1",
        b"\x00\x00\x00\x01",
        0x5F5E1000,
        0xDEADBEEF,
        0x2000,
    )
    ev = one(client.receive_data(server.reply_submit(sub.request_id)))
    assert isinstance(ev, SubmitResult) and ev.accepted and ev.context == "share-1"
    assert client.pending == {}


@pytest.mark.parametrize("code,stale", [(21, True), (22, False), (23, False), (20, False)])
def test_submit_error_codes(code, stale):
    client, server = handshake()
    sub = one(server.receive_data(client.submit("alice.1", "j", "00000000", "00000000", "00000000").data))
    ev = one(client.receive_data(server.reply_error(sub.request_id, code)))
    assert not ev.accepted and ev.code == code and ev.stale is stale and ev.reason


@pytest.mark.parametrize(
    "error,code,reason",
    [
        ([21, "Stale share", None], 21, "Stale share"),
        ({"code": 23, "message": "low diff"}, 23, "low diff"),
        ("weird", None, "weird"),
        (None, None, "rejected"),
    ],
)
def test_submit_error_shapes(error, code, reason):
    client, _ = handshake()
    out = client.submit("alice.1", "j", "00000000", "00000000", "00000000")
    ev = one(client.receive_data(json.dumps({"id": out.request_id, "result": False, "error": error}).encode() + b"\n"))
    assert (ev.accepted, ev.code, ev.reason) == (False, code, reason)


def test_submit_before_authorize_is_a_local_error():
    with pytest.raises(LocalProtocolError):
        ClientConnection().submit("w", "j", "00", "00000000", "00000000")


# --- client role: messages from the pool ------------------------------------------------------------------------------


def test_notify_and_its_violations():
    client, server = handshake()
    ev = one(client.receive_data(server.notify(NOTIFY)))
    assert isinstance(ev, Notify) and ev.job_id == "job1" and ev.clean_jobs and ev.params == NOTIFY
    for i, bad_value in [(1, "00" * 31), (4, ["zz"]), (5, 1), (8, "yes"), (0, "")]:
        params = list(NOTIFY)
        params[i] = bad_value
        data = json.dumps({"id": None, "method": "mining.notify", "params": params}).encode() + b"\n"
        ev = one(client.receive_data(data))
        assert isinstance(ev, ProtocolViolation) and ev.method == "mining.notify"
    with pytest.raises(LocalProtocolError):
        server.notify(NOTIFY[:8])


def test_set_difficulty_and_bad_values():
    client, server = ClientConnection(), ServerConnection()
    assert one(client.receive_data(server.set_difficulty(0.001))) == SetDifficulty(0.001)
    assert client.difficulty == 0.001
    assert lines(server.set_difficulty(16)) == [{"id": None, "method": "mining.set_difficulty", "params": [16]}]
    for bad in ([0], [-1], ["1"], [], [True]):
        data = json.dumps({"id": None, "method": "mining.set_difficulty", "params": bad}).encode() + b"\n"
        assert isinstance(one(client.receive_data(data)), ProtocolViolation)
    assert client.difficulty == 0.001


def test_set_version_mask():
    client, server = ClientConnection(), ServerConnection()
    assert one(client.receive_data(server.set_version_mask(0x1FFF0000))) == SetVersionMask(0x1FFF0000)
    assert client.version_mask == 0x1FFF0000
    data = b'{"id":null,"method":"mining.set_version_mask","params":["nothex"]}\n'
    assert isinstance(one(client.receive_data(data)), ProtocolViolation)


def test_set_extranonce():
    client, server = handshake()
    assert one(client.receive_data(server.set_extranonce(b"\xaa\xbb", 6))) == SetExtranonce(b"\xaa\xbb", 6)
    assert (client.extranonce1, client.extranonce2_size) == (b"\xaa\xbb", 6)
    data = b'{"id":null,"method":"mining.set_extranonce","params":["aa"]}\n'
    assert isinstance(one(client.receive_data(data)), ProtocolViolation)


def test_reconnect_variants():
    client, server = ClientConnection(), ServerConnection()
    assert one(client.receive_data(server.reconnect())) == Reconnect(None, None, 0.0)
    assert one(client.receive_data(server.reconnect("pool.example", 3334, 5))) == Reconnect("pool.example", 3334, 5.0)
    data = b'{"id":null,"method":"client.reconnect","params":["h","3335"]}\n'
    assert one(client.receive_data(data)) == Reconnect("h", 3335, 0.0)
    data = b'{"id":null,"method":"client.reconnect","params":["h","http"]}\n'
    assert isinstance(one(client.receive_data(data)), ProtocolViolation)
    data = b'{"id":null,"method":"client.reconnect","params":["h",70000]}\n'
    assert isinstance(one(client.receive_data(data)), ProtocolViolation)


def test_show_message_get_version_and_ping_replies():
    client, server = ClientConnection(), ServerConnection()
    assert one(client.receive_data(server.show_message("hello miners"))) == ShowMessage("hello miners")
    ask = server.get_version()
    ev = one(client.receive_data(ask.data))
    assert isinstance(ev, GetVersion) and ev.request_id == ask.request_id
    reply = one(server.receive_data(client.reply_version(ev.request_id, "miner/0.1")))
    assert reply == Reply(ask.request_id, "client.get_version", "miner/0.1", None)
    ping = server.ping()
    ev = one(client.receive_data(ping.data))
    assert isinstance(ev, Ping)
    reply = one(server.receive_data(client.reply_pong(ev.request_id)))
    assert reply.method == "mining.ping" and reply.result == "pong"


def test_unknown_method_from_pool_can_be_answered():
    client = ClientConnection()
    ev = one(client.receive_data(b'{"id":5,"method":"mining.fancy","params":[1]}\n'))
    assert isinstance(ev, UnknownMethod) and ev.request_id == 5 and ev.params == [1]
    assert lines(client.reply_error(ev.request_id, ev.code, ev.reason))[0]["error"][0] == ERR_OTHER


def test_params_must_be_a_list():
    ev = one(ClientConnection().receive_data(b'{"id":null,"method":"mining.notify","params":{"a":1}}\n'))
    assert isinstance(ev, ProtocolViolation)
    ev = one(ServerConnection().receive_data(b'{"id":4,"method":"mining.subscribe","params":"x"}\n'))
    assert isinstance(ev, ProtocolViolation) and ev.request_id == 4
    ev = one(ServerConnection().receive_data(b'{"id":4,"method":7,"params":[]}\n'))
    assert isinstance(ev, ProtocolViolation)


# --- server role: order rules and submit checks -----------------------------------------------------------------------


def submit_line(params, request_id=9):
    return json.dumps({"id": request_id, "method": "mining.submit", "params": params}).encode() + b"\n"


def test_submit_before_subscribe_is_code_25():
    server = ServerConnection()
    ev = one(server.receive_data(submit_line(["w", "j", "00000000", "00000000", "00000000"])))
    assert isinstance(ev, ProtocolViolation) and ev.code == ERR_NOT_SUBSCRIBED and ev.request_id == 9
    assert lines(server.reply_error(ev.request_id, ev.code, ev.reason))[0]["error"][0] == 25


def test_submit_by_unauthorized_worker_is_code_24():
    client, server = handshake()
    ev = one(server.receive_data(submit_line(["mallory", "j", "00000000", "00000000", "00000000"])))
    assert ev.code == ERR_UNAUTHORIZED


def test_refused_authorize_does_not_authorize():
    client, server = ClientConnection(), ServerConnection()
    sub = one(server.receive_data(client.subscribe("m").data))
    server.reply_subscribe(sub.request_id, b"\x00" * 4, 4)
    auth = one(server.receive_data(client.authorize("eve", "no").data))
    assert lines(server.reply_authorize(auth.request_id, False))[0]["error"][0] == ERR_UNAUTHORIZED
    ev = one(server.receive_data(submit_line(["eve", "j", "00000000", "00000000", "00000000"])))
    assert ev.code == ERR_UNAUTHORIZED


@pytest.mark.parametrize(
    "params",
    [
        ["alice.1", "j", "0000", "00000000", "00000000"],  # extranonce2 of the wrong size
        ["alice.1", "j", "zzzzzzzz", "00000000", "00000000"],
        ["alice.1", "j", "00000000", "0000", "00000000"],
        ["alice.1", "j", "00000000", "00000000", "0000000g"],
        ["alice.1", "j", "00000000", "00000000", "00000000", "12"],
        ["alice.1", "j", "00000000", "00000000"],
        ["alice.1", 5, "00000000", "00000000", "00000000"],
    ],
)
def test_malformed_submit_is_code_20(params):
    _, server = handshake()
    ev = one(server.receive_data(submit_line(params)))
    assert isinstance(ev, ProtocolViolation) and ev.code == ERR_OTHER and ev.request_id == 9


def test_submit_hex_is_normalised_to_lower_case():
    _, server = handshake()
    ev = one(server.receive_data(submit_line(["alice.1", "j", "ABCDEF01", "5F5E1000", "DEADBEEF", "1FFFE000"])))
    assert (ev.extranonce2, ev.ntime, ev.nonce, ev.version_bits) == ("abcdef01", "5f5e1000", "deadbeef", "1fffe000")


def test_server_error_replies_carry_codes():
    server = ServerConnection()
    for code in (20, 21, 22, 23, 24, 25):
        reply = lines(server.reply_error(1, code))[0]
        assert reply["result"] is None and reply["error"][0] == code and reply["error"][1]
    assert lines(server.reply_error(2, ERR_DUPLICATE, "dup"))[0]["error"][1] == "dup"
    assert lines(server.reply_error(2, ERR_JOB_NOT_FOUND))[0]["error"][1] == "Job not found"


def test_unknown_method_at_server():
    ev = one(ServerConnection().receive_data(b'{"id":3,"method":"mining.get_transactions","params":["j"]}\n'))
    assert isinstance(ev, UnknownMethod) and ev.code == ERR_OTHER and ev.request_id == 3


def test_server_subscribe_without_params_and_default_session():
    server = ServerConnection()
    ev = one(server.receive_data(b'{"id":1,"method":"mining.subscribe","params":[]}\n'))
    assert ev.user_agent == "" and ev.session_id is None
    reply = lines(server.reply_subscribe(1, b"\x0a\x0b", 4))[0]
    assert reply["result"][1] == "0a0b" and reply["result"][0][1] == ["mining.notify", "0a0b"]


def test_classic_pool_transcript():
    """The subscribe reply and notify as printed in the original Stratum mining documentation."""
    client = ClientConnection()
    sub = client.subscribe("cgminer/4.11.1")
    coinb1 = "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f50"
    coinb1 += "3253482f04b8864e5008"
    coinb2 = "072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000"
    transcript = (
        f'{{"id": {sub.request_id}, "result": [[["mining.set_difficulty", "b4b6693b72a50c7116db18d6497cac52"], '
        '["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"]], "08000002", 4], "error": null}\n'
        '{"id": null, "method": "mining.set_difficulty", "params": [1]}\n'
        '{"params": ["bf", "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000", '
        f'"{coinb1}", "{coinb2}", [], "00000002", "1c2ac4af", "504e86b9", false], "id": null, '
        '"method": "mining.notify"}\n'
    )
    result, difficulty, notify = client.receive_data(transcript.encode())
    assert result.session_id == "ae6812eb4cd7735a302a8a9dd95cf71f"
    assert result.extranonce1 == bytes.fromhex("08000002") and result.extranonce2_size == 4
    assert difficulty == SetDifficulty(1.0)
    assert isinstance(notify, Notify) and notify.job_id == "bf" and not notify.clean_jobs
    assert notify.params[6] == "1c2ac4af" and notify.params[4] == []
