"""The sans-I/O Stratum V2 session: both roles driven against each other in memory, bytes in, events out."""

import pytest

from stratum.v2 import messages as m
from stratum.v2 import noise
from stratum.v2.framing import Header, frame
from stratum.v2.protocol import (
    EXTENDED,
    STANDARD,
    ClientConnection,
    ConnectionClosed,
    ExtensionMessage,
    HandshakeComplete,
    HandshakeRequested,
    LocalProtocolError,
    ProtocolViolation,
    ServerConnection,
    ShareRejected,
    SharesAccepted,
    State,
)

NOW = 1_800_000_000
AUTHORITY_SECRET = b"\x11" * 32
STATIC_SECRET = b"\x22" * 32
AUTHORITY_KEY = noise.x_only_public_key(AUTHORITY_SECRET)
DIFF1 = 0x00000000FFFF0000000000000000000000000000000000000000000000000000
ROOT = bytes(range(32))


def _certificate(valid_from=NOW - 60, not_valid_after=NOW + 3600):
    return noise.Certificate.issue(
        AUTHORITY_SECRET, noise.x_only_public_key(STATIC_SECRET), valid_from, not_valid_after
    )


def _pair(authority_key=AUTHORITY_KEY, certificate=None, now=NOW):
    client = ClientConnection(authority_key, clock=lambda: now)
    server = ServerConnection(STATIC_SECRET, certificate or _certificate())
    return client, server


def _connected():
    client, server = _pair()
    assert server.receive_data(client.initiate()) == [HandshakeRequested()]
    [done] = client.receive_data(server.accept_handshake())
    assert isinstance(done, HandshakeComplete) and done.server_key == noise.x_only_public_key(STATIC_SECRET)
    assert client.state is server.state is State.SETUP
    return client, server


def _ready(flags=m.REQUIRES_STANDARD_JOBS):
    client, server = _connected()
    [setup] = server.receive_data(client.setup_connection("127.0.0.1", 3336, flags=flags, device_id="rig-1"))
    assert isinstance(setup, m.SetupConnection) and (setup.flags, setup.device_id) == (flags, "rig-1")
    [ok] = client.receive_data(server.setup_connection_success(flags=0))
    assert ok == m.SetupConnectionSuccess(2, 0)
    assert client.state is server.state is State.READY
    return client, server


def _standard_channel():
    client, server = _ready()
    out = client.open_standard_channel("worker.1", 1.0e9, max_target=DIFF1)
    [request] = server.receive_data(out.data)
    assert request == m.OpenStandardMiningChannel(out.request_id, "worker.1", 1.0e9, DIFF1)
    [opened] = client.receive_data(server.open_standard_channel_success(request, 5, DIFF1 >> 8, b"\x00\x01"))
    assert isinstance(opened, m.OpenStandardMiningChannelSuccess) and opened.channel_id == 5
    assert client.channels[5].kind == server.channels[5].kind == STANDARD
    return client, server


def _extended_channel(size=8):
    client, server = _ready(flags=0)
    out = client.open_extended_channel("worker.x", 2.0e9, min_extranonce_size=4)
    [request] = server.receive_data(out.data)
    assert request.min_extranonce_size == 4
    [opened] = client.receive_data(server.open_extended_channel_success(request, 9, DIFF1, size, b"\xee" * 4))
    assert opened.extranonce_size == size and client.channels[9].extranonce_size == size
    assert client.channels[9].kind == server.channels[9].kind == EXTENDED
    return client, server


def _inject(sender, message_frame: bytes) -> bytes:
    """Seal a hand-made plaintext frame with the sender's transport keys (for frames its API would refuse)."""
    return sender.transport.encrypt_frame(message_frame)


# --- happy paths -----------------------------------------------------------------------------------------------------


def test_a_standard_channel_session_from_handshake_to_accepted_shares():
    client, server = _standard_channel()
    job = m.NewMiningJob(5, 1, None, 0x20000000, ROOT)
    prev = m.SetNewPrevHash(5, 1, bytes(32), NOW, 0x1D00FFFF)
    assert client.receive_data(server.send(job) + server.send(prev) + server.set_target(5, DIFF1)) == [
        job,
        prev,
        m.SetTarget(5, DIFF1),
    ]
    assert client.channels[5].target == server.channels[5].target == DIFF1

    first = client.submit_standard(5, 1, 0x11, NOW, 0x20000000, context="share-a")
    second = client.submit_standard(5, 1, 0x22, NOW, 0x20000000, context="share-b")
    assert (first.request_id, second.request_id) == (0, 1)
    submits = server.receive_data(first.data + second.data)
    assert [s.nonce for s in submits] == [0x11, 0x22] and [s.sequence_number for s in submits] == [0, 1]

    [accepted] = client.receive_data(server.send(m.SubmitSharesSuccess(5, 1, 2, 2)))
    assert isinstance(accepted, SharesAccepted) and accepted.contexts == ["share-a", "share-b"]
    third = client.submit_standard(5, 1, 0x33, NOW, 0x20000000, context="share-c")
    server.receive_data(third.data)
    [rejected] = client.receive_data(server.send(m.SubmitSharesError(5, third.request_id, m.ERR_DIFFICULTY_TOO_LOW)))
    assert isinstance(rejected, ShareRejected) and rejected.context == "share-c"
    assert client.pending_submits[5] == {}


def test_a_batched_success_acknowledges_only_up_to_its_sequence_number():
    client, server = _standard_channel()
    outs = [client.submit_standard(5, 1, n, NOW, 0x20000000, context=n) for n in range(3)]
    server.receive_data(b"".join(o.data for o in outs))
    [accepted] = client.receive_data(server.send(m.SubmitSharesSuccess(5, 1, 2, 2)))
    assert accepted.contexts == [0, 1] and list(client.pending_submits[5]) == [2]


def test_an_extended_channel_takes_extended_jobs_and_shares_of_the_negotiated_extranonce_size():
    client, server = _extended_channel(size=8)
    job = m.NewExtendedMiningJob(9, 3, None, 0x20000000, True, [ROOT], b"\x01" * 40, b"\x02" * 60)
    assert client.receive_data(server.send(job)) == [job]
    out = client.submit_extended(9, 3, 7, NOW, 0x20000000, b"\x00" * 8, context="x")
    [share] = server.receive_data(out.data)
    assert isinstance(share, m.SubmitSharesExtended) and share.extranonce == b"\x00" * 8
    with pytest.raises(LocalProtocolError, match="8 extranonce bytes"):
        client.submit_extended(9, 3, 7, NOW, 0x20000000, b"\x00" * 4)


def test_a_plain_session_skips_the_handshake_and_speaks_the_same_frames():
    client = ClientConnection(None, encrypted=False)
    server = ServerConnection(None, None, encrypted=False)
    assert client.initiate() == b""
    data = client.setup_connection("localhost", 3336)
    assert (
        data
        == m.SetupConnection(
            0, 2, 2, m.REQUIRES_STANDARD_JOBS, "localhost", 3336, "sha256d-miner", "", "", ""
        ).to_frame()
    )
    [setup] = server.receive_data(data)
    assert client.receive_data(server.setup_connection_success()) == [m.SetupConnectionSuccess(2, 0)]
    assert setup.endpoint_port == 3336


def test_the_client_accepts_the_authority_key_in_its_published_form():
    client = ClientConnection(noise.encode_authority_key(AUTHORITY_KEY), clock=lambda: NOW)
    server = ServerConnection(STATIC_SECRET, _certificate())
    server.receive_data(client.initiate())
    assert isinstance(client.receive_data(server.accept_handshake())[0], HandshakeComplete)


def test_close_channel_from_either_side_forgets_the_channel():
    client, server = _standard_channel()
    assert server.receive_data(client.close_channel(5, "bye")) == [m.CloseChannel(5, "bye")]
    assert 5 not in client.channels and 5 not in server.channels
    client, server = _standard_channel()
    assert client.receive_data(server.close_channel(5, "maintenance")) == [m.CloseChannel(5, "maintenance")]
    assert 5 not in client.channels


def test_peer_close_is_an_event_and_ends_the_session():
    client, server = _ready()
    assert server.receive_data(b"") == [ConnectionClosed()]
    assert server.state is State.CLOSED and server.receive_data(b"\x00" * 30) == []


def test_reconnect_and_set_extranonce_prefix_reach_the_client():
    client, server = _standard_channel()
    events = client.receive_data(server.send(m.Reconnect("", 0)) + server.send(m.SetExtranoncePrefix(5, b"\x09")))
    assert events == [m.Reconnect("", 0), m.SetExtranoncePrefix(5, b"\x09")]
    assert client.channels[5].extranonce_prefix == b"\x09"


# --- security: each of these ends the connection with one clear reason ------------------------------------------------


def _assert_fatal(events, fragment):
    assert len(events) >= 1
    violation = events[-1]
    assert isinstance(violation, ProtocolViolation) and violation.fatal, events
    assert fragment in violation.reason, violation.reason
    return violation


def test_a_wrong_authority_key_fails_the_handshake():
    client, server = _pair(authority_key=noise.x_only_public_key(b"\x33" * 32))
    server.receive_data(client.initiate())
    _assert_fatal(client.receive_data(server.accept_handshake()), "not signed by the expected authority")
    assert client.failed and client.receive_data(b"\x00" * 22) == []
    with pytest.raises(LocalProtocolError):
        client.setup_connection("h", 1)


def test_an_expired_certificate_fails_the_handshake():
    client, server = _pair(certificate=_certificate(NOW - 7200, NOW - 3600))
    server.receive_data(client.initiate())
    _assert_fatal(client.receive_data(server.accept_handshake()), "expired")


def test_a_tampered_ciphertext_fails_its_mac_on_either_side():
    client, server = _ready()
    sealed = bytearray(client.open_standard_channel("w", 1.0).data)
    sealed[-3] ^= 0x01
    _assert_fatal(server.receive_data(bytes(sealed)), "MAC")
    assert server.failed and server.receive_data(b"\x00" * 100) == []

    client, server = _ready()
    sealed = bytearray(server.send(m.Reconnect("", 0)))
    sealed[2] ^= 0x40
    _assert_fatal(client.receive_data(bytes(sealed)), "MAC")


def test_a_frame_longer_than_it_says_is_refused():
    client, server = _ready()
    payload = m.OpenStandardMiningChannel(1, "w", 1.0, DIFF1).encode() + b"\x00\x00"
    _assert_fatal(server.receive_data(_inject(client, frame(0x10, payload))), "left over")


def test_a_frame_claiming_more_than_the_limit_is_refused_from_its_header():
    client, server = _ready()
    server.max_payload = server.transport.max_payload = 4096
    sealed = _inject(client, frame(0x1B, b"\x00" * 5000, channel_msg=True))
    _assert_fatal(server.receive_data(sealed[:22]), "5000")


def test_an_unknown_message_type_is_refused():
    client, server = _ready()
    _assert_fatal(server.receive_data(_inject(client, frame(0x7E, b"\x01\x02"))), "0x7e")


def test_a_message_from_the_wrong_side_is_refused():
    client, server = _standard_channel()
    job = m.NewMiningJob(5, 1, None, 2, ROOT)
    _assert_fatal(server.receive_data(_inject(client, job.to_frame())), "sent by the server")
    with pytest.raises(LocalProtocolError, match="does not send NewMiningJob"):
        _standard_channel()[0].send(job)


def test_order_rules_before_the_setup_is_done():
    client, server = _connected()
    open_frame = m.OpenStandardMiningChannel(1, "w", 1.0, DIFF1).to_frame()
    _assert_fatal(server.receive_data(_inject(client, open_frame)), "before SetupConnection")

    client, server = _connected()
    server.receive_data(client.setup_connection("h", 1))
    _assert_fatal(server.receive_data(_inject(client, open_frame)), "before SetupConnection.Success")

    client, server = _ready()
    again = m.SetupConnection(0, 2, 2, 0, "h", 1, "", "", "", "").to_frame()
    _assert_fatal(server.receive_data(_inject(client, again)), "second SetupConnection")

    client, server = _connected()
    client.setup_connection("h", 1)
    _assert_fatal(client.receive_data(server.send(m.SetTarget(1, DIFF1))), "before SetupConnection was answered")


def test_the_pool_refuses_bytes_past_the_handshake_opening():
    client, server = _pair()
    _assert_fatal(server.receive_data(client.initiate() + b"\x00" * 22), "more than the 64-byte")


def test_a_short_handshake_reply_waits_and_a_wrong_one_fails():
    client, server = _pair()
    server.receive_data(client.initiate())
    reply = server.accept_handshake()
    assert client.receive_data(reply[:100]) == []
    corrupt = reply[100:150] + bytes([reply[150] ^ 1]) + reply[151:]
    _assert_fatal(client.receive_data(corrupt), "certificate does not decrypt")


def test_a_violation_stops_the_batch_so_nothing_after_it_is_believed():
    client, server = _standard_channel()
    good = server.send(m.SetTarget(5, DIFF1))
    bad = bytearray(server.send(m.SetTarget(5, 1)))
    bad[0] ^= 1
    after = server.send(m.SetTarget(5, 2))
    events = client.receive_data(good + bytes(bad) + after)
    assert events[0] == m.SetTarget(5, DIFF1)
    _assert_fatal(events[1:], "MAC")
    assert len(events) == 2 and client.channels[5].target == DIFF1


# --- non-fatal: answered with the spec's error code ------------------------------------------------------------------


def test_a_share_for_a_channel_that_is_not_open_carries_the_error_to_send_back():
    client, server = _standard_channel()
    submit = m.SubmitSharesStandard(77, 0, 1, 2, 3, 4)
    [violation] = server.receive_data(_inject(client, submit.to_frame()))
    assert not violation.fatal and violation.error_code == m.ERR_INVALID_CHANNEL_ID and violation.message == submit
    assert server.state is State.READY


def test_a_share_of_the_wrong_kind_or_extranonce_size_is_answered_not_fatal():
    client, server = _extended_channel(size=8)
    [violation] = server.receive_data(_inject(client, m.SubmitSharesStandard(9, 0, 1, 2, 3, 4).to_frame()))
    assert not violation.fatal and violation.error_code == m.ERR_INVALID_CHANNEL_ID
    short = m.SubmitSharesExtended(9, 1, 1, 2, 3, 4, b"\x00" * 3)
    [violation] = server.receive_data(_inject(client, short.to_frame()))
    assert not violation.fatal and violation.error_code == m.ERR_BAD_EXTRANONCE_SIZE


def test_replies_to_requests_never_made_and_jobs_for_unknown_channels_are_reported_and_ignored():
    client, server = _ready()
    [violation] = client.receive_data(server.send(m.OpenStandardMiningChannelSuccess(99, 1, DIFF1, b"", 0)))
    assert not violation.fatal and "never made" in violation.reason and 1 not in client.channels
    [violation] = client.receive_data(server.send(m.NewMiningJob(4, 1, None, 2, ROOT)))
    assert not violation.fatal and "not open" in violation.reason
    assert client.state is State.READY


def test_an_extension_frame_is_handed_over_for_the_caller_to_drop():
    client, server = _ready()
    ext = frame(0x00, b"\x01", extension=0x4001)
    [event] = server.receive_data(_inject(client, ext))
    assert isinstance(event, ExtensionMessage) and event.header == Header(0x4001, 0, 1) and event.payload == b"\x01"
    assert server.state is State.READY


# --- our own mistakes raise ------------------------------------------------------------------------------------------


def test_calls_the_state_does_not_allow_raise_local_protocol_errors():
    client, server = _connected()
    with pytest.raises(LocalProtocolError, match="SetupConnection.Success first"):
        client.open_standard_channel("w", 1.0)
    client, server = _ready()
    with pytest.raises(LocalProtocolError, match="not open"):
        client.submit_standard(1, 1, 1, 1, 1)
    with pytest.raises(LocalProtocolError):
        client.setup_connection("h", 1)
    client, server = _standard_channel()
    with pytest.raises(LocalProtocolError, match="standard, not extended"):
        client.submit_extended(5, 1, 1, 1, 1, b"")
    with pytest.raises(LocalProtocolError, match="already in use"):
        server.open_standard_channel_success(m.OpenStandardMiningChannel(2, "w", 1.0, DIFF1), 5, DIFF1, b"")
    with pytest.raises(LocalProtocolError, match="out of range"):
        server.send(m.SetTarget(5, 1 << 256))
    with pytest.raises(LocalProtocolError):
        ServerConnection(STATIC_SECRET, _certificate()).accept_handshake()


def test_a_pool_that_answers_before_being_asked_is_refused():
    client, server = _connected()
    early = server.transport.encrypt_frame(m.SetupConnectionSuccess(2, 0).to_frame())
    _assert_fatal(client.receive_data(early), "before SetupConnection was sent")
