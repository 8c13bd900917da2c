"""Our V2 client code against a whole session recorded from ESP-Miner's C client (tests/data/sv2).

The recording (bitaxeorg/ESP-Miner 5c27713, ``components/stratum_v2/``, built for the host, against a small test
pool) holds every byte on the wire, the client's random draws (context seed, ephemeral secret, ElligatorSwift aux
randomness), the plaintext of its three frames, the pool's static and authority secrets (test keys) and the time.
Replaying the draws makes our client say exactly what ESP-Miner said, so every check below is byte for byte.
"""

import json
from pathlib import Path

import pytest

from stratum.v2 import ellswift, noise
from stratum.v2 import messages as m
from stratum.v2.framing import Header
from stratum.v2.protocol import ClientConnection, HandshakeComplete, ProtocolViolation, SharesAccepted, State

SESSION = json.loads((Path(__file__).resolve().parent / "data" / "sv2" / "esp-miner-client-session.json").read_text())
WIRE = [(direction, bytes.fromhex(data)) for direction, data in SESSION["wire"]]
C2S = [data for direction, data in WIRE[2:] if direction == "c2s"]
S2C = [data for direction, data in WIRE[2:] if direction == "s2c"]
PLAIN = [bytes.fromhex(p) for p in SESSION["c2s_plain"]]
_SEED, EPHEMERAL, AUX = (bytes.fromhex(d) for d in SESSION["c_client_random_draws"])
AUTHORITY_KEY = noise.x_only_public_key(bytes.fromhex(SESSION["authority_priv"]))
STATIC_KEY = noise.x_only_public_key(bytes.fromhex(SESSION["responder_static_priv"]))
CAPTURED_AT = SESSION["captured_at"]


def _client(clock=CAPTURED_AT, authority_key=AUTHORITY_KEY) -> ClientConnection:
    return ClientConnection(authority_key, clock=lambda: clock, ephemeral_secret=EPHEMERAL, aux_rand=AUX)


def test_the_recording_has_the_shape_the_readme_describes():
    assert [d for d, _ in WIRE] == ["c2s", "s2c", "c2s", "s2c", "c2s", "s2c", "s2c", "c2s", "s2c"]
    assert (len(WIRE[0][1]), len(WIRE[1][1])) == (noise.ACT1_SIZE, noise.ACT2_SIZE)
    assert (len(C2S), len(S2C), len(PLAIN)) == (3, 4, 3)


def test_act_1_is_recomputed_from_the_recorded_draws():
    assert _client().initiate() == WIRE[0][1]


def test_act_2_is_accepted_under_the_authority_key_and_names_the_pools_static_key():
    client = _client()
    client.initiate()
    [done] = client.receive_data(WIRE[1][1])
    assert isinstance(done, HandshakeComplete)
    assert done.server_key == STATIC_KEY
    cert = done.certificate
    assert cert.version == 0 and cert.valid_from <= CAPTURED_AT <= cert.not_valid_after
    assert client.state is State.SETUP


def test_the_whole_session_replays_byte_for_byte_through_the_client_core():
    client = _client()
    client.initiate()
    client.receive_data(WIRE[1][1])

    setup = client.setup_connection(
        "127.0.0.1",
        34254,
        flags=0,
        vendor="host-harness",
        hardware_version="x86",
        firmware="esp-miner-src",
        device_id="dev-1",
    )
    assert setup == C2S[0]
    assert client.receive_data(S2C[0]) == [m.SetupConnectionSuccess(used_version=2, flags=0)]

    opened = client.open_standard_channel("tb1qtest.worker", 1.0e6, (1 << 256) - 1, request_id=7)
    assert opened.data == C2S[1]
    [success] = client.receive_data(S2C[1])
    assert isinstance(success, m.OpenStandardMiningChannelSuccess)
    assert (success.request_id, success.channel_id, success.extranonce_prefix) == (7, 1, bytes(range(1, 9)))
    assert client.channels[1].target == (1 << 248) - 1

    [job] = client.receive_data(S2C[2])
    assert isinstance(job, m.NewMiningJob) and (job.channel_id, job.job_id, job.min_ntime) == (1, 42, 0x6553F100)

    share = client.submit_standard(1, 42, 12345, 0x6553F100, 0x20000000, context="the one share")
    assert (share.request_id, share.data) == (0, C2S[2])
    [accepted] = client.receive_data(S2C[3])
    assert isinstance(accepted, SharesAccepted) and accepted.contexts == ["the one share"]
    assert accepted.message == m.SubmitSharesSuccess(1, 0, 1, 1)


def test_the_client_frames_are_the_recorded_plaintexts_sealed_with_the_derived_keys():
    initiator = noise.Initiator(AUTHORITY_KEY, ephemeral_secret=EPHEMERAL, aux_rand=AUX)
    initiator.act1()
    transport = initiator.act2(WIRE[1][1], CAPTURED_AT)
    assert [transport.encrypt_frame(p) for p in PLAIN] == C2S
    assert transport.send.n == 6  # header and payload each take a nonce


def test_the_four_server_frames_decrypt_to_the_expected_message_types():
    initiator = noise.Initiator(AUTHORITY_KEY, ephemeral_secret=EPHEMERAL, aux_rand=AUX)
    initiator.act1()
    transport = initiator.act2(WIRE[1][1], CAPTURED_AT)
    frames = transport.feed(b"".join(S2C))
    assert [h.msg_type for h, _ in frames] == [0x01, 0x11, 0x15, 0x1C]
    assert [h.channel_msg for h, _ in frames] == [False, False, True, True]
    assert [type(m.decode_message(h, p)).NAME for h, p in frames] == [
        "SetupConnection.Success",
        "OpenStandardMiningChannel.Success",
        "NewMiningJob",
        "SubmitShares.Success",
    ]


def test_every_recorded_frame_decodes_in_both_directions():
    initiator = noise.Initiator(AUTHORITY_KEY, ephemeral_secret=EPHEMERAL, aux_rand=AUX)
    initiator.act1()
    ours = initiator.act2(WIRE[1][1], CAPTURED_AT)
    pools_view = noise.Transport(send=noise.CipherState(), receive=ours.send)  # the initiator-to-responder key
    frames = pools_view.feed(b"".join(C2S))
    decoded = [m.decode_message(h, p) for h, p in frames]
    assert [type(d).NAME for d in decoded] == ["SetupConnection", "OpenStandardMiningChannel", "SubmitSharesStandard"]
    assert [Header.decode(p[:6]) for p in PLAIN] == [h for h, _ in frames]


def test_the_pools_static_key_decodes_from_its_elligatorswift_form_in_act_2():
    initiator = noise.Initiator(AUTHORITY_KEY, ephemeral_secret=EPHEMERAL, aux_rand=AUX)
    initiator.act1()
    initiator.act2(WIRE[1][1], CAPTURED_AT)
    assert ellswift.decode(initiator.server_static_key) == STATIC_KEY


@pytest.mark.parametrize(
    ("clock", "fragment"),
    [(CAPTURED_AT + 7 * 24 * 3600, "expired"), (CAPTURED_AT - 7 * 24 * 3600, "not valid until")],
)
def test_the_same_act_2_is_refused_outside_the_certificate_window(clock, fragment):
    client = _client(clock=clock)
    client.initiate()
    [violation] = client.receive_data(WIRE[1][1])
    assert isinstance(violation, ProtocolViolation) and violation.fatal and fragment in violation.reason


def test_the_same_act_2_is_refused_under_another_authority_key():
    client = _client(authority_key=noise.x_only_public_key(b"\x01" * 32))
    client.initiate()
    [violation] = client.receive_data(WIRE[1][1])
    assert violation.fatal and "not signed by the expected authority" in violation.reason


def test_a_recorded_server_frame_with_one_bit_flipped_fails_the_session():
    client = _client()
    client.initiate()
    client.receive_data(WIRE[1][1])
    client.setup_connection("127.0.0.1", 34254, flags=0)
    tampered = bytearray(S2C[0])
    tampered[25] ^= 0x04
    [violation] = client.receive_data(bytes(tampered))
    assert violation.fatal and "MAC" in violation.reason and client.failed
