"""Walking a recorded V2 session: ESP-Miner's recording, and one of ours that mines the genesis block's header."""

import json
from pathlib import Path

import pytest

from stratum.v2 import explain, noise
from stratum.v2 import messages as m
from stratum.v2.protocol import ClientConnection, ServerConnection

ESP = json.loads((Path(__file__).resolve().parent / "data" / "sv2" / "esp-miner-client-session.json").read_text())
AUTHORITY_SECRET, STATIC_SECRET, EPHEMERAL = b"\x51" * 32, b"\x52" * 32, b"\x53" * 32
NOW = 1_800_000_000


def test_the_esp_miner_recording_is_walked_act_by_act_and_frame_by_frame():
    lines = explain.walk(ESP)
    text = "\n".join(lines)
    assert "recomputed from the client's secret and aux randomness: identical" in text
    assert "inside the window" in text
    names = [line.strip() for line in lines if line.strip() in {c.NAME for c in m.MESSAGES.values()}]
    assert names == [
        "SetupConnection",
        "SetupConnection.Success",
        "OpenStandardMiningChannel",
        "OpenStandardMiningChannel.Success",
        "NewMiningJob",
        "SubmitSharesStandard",
        "SubmitShares.Success",
    ]
    assert "extension_type 0x8000 (channel_msg 1), msg_type 0x1a, msg_length 24" in text
    assert "prev_hash   (from SetNewPrevHash, none in this capture)" in text
    assert "nonce       39300000   (12345)" in text


def _record_genesis_session(header_vectors) -> dict:
    """Our client and pool, in memory, serving the genesis block as a standard job; every byte kept."""
    genesis = next(v for v in header_vectors if v["name"] == "mainnet genesis (height 0)")
    authority = noise.x_only_public_key(AUTHORITY_SECRET)
    cert = noise.Certificate.issue(AUTHORITY_SECRET, noise.x_only_public_key(STATIC_SECRET), NOW - 60, NOW + 600)
    client = ClientConnection(authority, clock=lambda: NOW, ephemeral_secret=EPHEMERAL)
    server = ServerConnection(STATIC_SECRET, cert)
    wire = []

    def c2s(data):
        wire.append(["c2s", data.hex()])
        return server.receive_data(data)

    def s2c(data):
        wire.append(["s2c", data.hex()])
        return client.receive_data(data)

    c2s(client.initiate())
    s2c(server.accept_handshake())
    c2s(client.setup_connection("127.0.0.1", 3336))
    s2c(server.setup_connection_success())
    [request] = c2s(client.open_standard_channel("w", 1.0).data)
    s2c(server.open_standard_channel_success(request, 1, 1 << 255, b""))
    root = bytes.fromhex(genesis["merkle_root"])[::-1]
    s2c(server.send(m.NewMiningJob(1, 1, None, genesis["version"], root)))
    s2c(server.send(m.SetNewPrevHash(1, 1, bytes(32), genesis["time"], int(genesis["bits"], 16))))
    c2s(client.submit_standard(1, 1, genesis["nonce"], genesis["time"], genesis["version"]).data)
    return {
        "wire": wire,
        "client_ephemeral_secret": EPHEMERAL.hex(),
        "authority_key": noise.encode_authority_key(authority),
        "captured_at": NOW,
    }, genesis


def test_a_standard_job_and_its_share_are_shown_as_the_real_80_byte_header(header_vectors):
    capture, genesis = _record_genesis_session(header_vectors)
    text = "\n".join(explain.walk(json.loads(json.dumps(capture))))
    assert "matches the client's secret (its aux randomness is not in the capture)" in text
    assert f"= {genesis['header_hex']}" in text
    assert f"hash (display order) {genesis['block_hash']}" in text


def test_a_capture_without_the_clients_secret_or_with_a_bad_byte_is_refused_with_the_reason(header_vectors):
    capture, _ = _record_genesis_session(header_vectors)
    no_secret = {k: v for k, v in capture.items() if k != "client_ephemeral_secret"}
    with pytest.raises(explain.CaptureError, match="client_ephemeral_secret"):
        explain.walk(no_secret)
    tampered = json.loads(json.dumps(capture))
    entry = bytearray.fromhex(tampered["wire"][4][1])
    entry[0] ^= 1
    tampered["wire"][4][1] = entry.hex()
    with pytest.raises(explain.CaptureError, match="wire entry 4: MAC"):
        explain.walk(tampered)
    other_secret = dict(capture, client_ephemeral_secret=(b"\x54" * 32).hex())
    with pytest.raises(explain.CaptureError, match="not the client's ephemeral key"):
        explain.walk(other_secret)
    wrong_authority = dict(capture, authority_key=noise.encode_authority_key(noise.x_only_public_key(b"\x01" * 32)))
    with pytest.raises(explain.CaptureError, match="not signed by the expected authority"):
        explain.walk(wrong_authority)
