"""The Noise NX handshake, the pool certificate, the authority key form and transport sealing."""

import csv
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from stratum.v2 import ellswift, noise
from stratum.v2.framing import FrameError, Header, frame
from stratum.v2.noise import CertificateError, DecryptError, NoiseError

DATA = Path(__file__).resolve().parent / "data" / "sv2"
NOW = 1_800_000_000
AUTHORITY_SECRET = bytes.fromhex("65995eb19631f478a46ffa5cf1e545091efe950eaeac7482ffdc06eb6a89f697")
STATIC_SECRET = bytes.fromhex("8aa75b95a5921bab289fd436f63e6f669cd2e101210302c163ef1c38d73c6952")


def _certificate(valid_from=NOW - 60, not_valid_after=NOW + 3600, **kw):
    return noise.Certificate.issue(
        AUTHORITY_SECRET, noise.x_only_public_key(STATIC_SECRET), valid_from, not_valid_after, **kw
    )


def _handshake(certificate=None, now=NOW, authority_key=None):
    initiator = noise.Initiator(authority_key or noise.x_only_public_key(AUTHORITY_SECRET))
    responder = noise.Responder(STATIC_SECRET, certificate or _certificate())
    reply, server = responder.act2(initiator.act1())
    return initiator, reply, server, now


def _connected():
    initiator, reply, server, now = _handshake()
    return initiator.act2(reply, now), server


# --- primitives ------------------------------------------------------------------------------------------------------


def test_the_protocol_name_hash_is_the_one_the_reference_crates_and_esp_miner_hard_code():
    expected = bytes([46, 180, 120, 129, 32, 142, 158, 238, 31, 102, 159, 103, 198, 110, 231, 14])
    expected += bytes([169, 234, 136, 9, 13, 80, 63, 232, 48, 220, 75, 200, 62, 41, 191, 16])
    assert hashlib.sha256(noise.PROTOCOL_NAME).digest() == expected


def test_hkdf2_is_rfc5869_hkdf_with_the_chaining_key_as_salt_and_empty_info():
    ck, ikm = bytes(range(32)), bytes(range(50, 82))
    reference = HKDF(algorithm=hashes.SHA256(), length=64, salt=ck, info=b"").derive(ikm)
    assert b"".join(noise.hkdf2(ck, ikm)) == reference


def test_cipher_state_nonce_is_four_zero_bytes_then_a_little_endian_counter():
    key = bytes(range(32))
    state = noise.CipherState(key)
    state.n = 0x0102030405
    sealed = state.encrypt_with_ad(b"ad", b"hello")
    nonce = b"\x00" * 4 + bytes([5, 4, 3, 2, 1, 0, 0, 0])
    assert sealed == ChaCha20Poly1305(key).encrypt(nonce, b"hello", b"ad")
    assert state.n == 0x0102030406


def test_a_bad_mac_raises_and_leaves_the_counter_alone_so_the_genuine_message_still_opens():
    sender, receiver = noise.CipherState(b"\x07" * 32), noise.CipherState(b"\x07" * 32)
    sealed = sender.encrypt_with_ad(b"", b"payload")
    tampered = bytes([sealed[0] ^ 1]) + sealed[1:]
    with pytest.raises(DecryptError, match="MAC"):
        receiver.decrypt_with_ad(b"", tampered)
    assert receiver.n == 0
    assert receiver.decrypt_with_ad(b"", sealed) == b"payload"


def test_a_cipher_state_without_a_key_passes_data_through():
    state = noise.CipherState()
    assert not state.has_key
    assert state.encrypt_with_ad(b"h", b"abc") == b"abc" and state.decrypt_with_ad(b"h", b"abc") == b"abc"


def test_the_nonce_counter_refuses_the_reserved_last_value():
    state = noise.CipherState(bytes(32))
    state.n = (1 << 64) - 1
    with pytest.raises(NoiseError, match="exhausted"):
        state.encrypt_with_ad(b"", b"x")


# --- BIP 340 ---------------------------------------------------------------------------------------------------------


def _bip340_rows():
    with open(DATA / "bip340" / "test-vectors.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("row", _bip340_rows(), ids=lambda r: r["index"])
def test_bip340_vectors(row):
    public, message = bytes.fromhex(row["public key"]), bytes.fromhex(row["message"])
    signature = bytes.fromhex(row["signature"])
    if row["secret key"] and len(message) == 32:
        secret = bytes.fromhex(row["secret key"])
        assert noise.x_only_public_key(secret) == public
        assert noise.schnorr_sign(secret, message, bytes.fromhex(row["aux_rand"])) == signature
    assert noise.schnorr_verify(public, message, signature) is (row["verification result"] == "TRUE")


# --- authority key ---------------------------------------------------------------------------------------------------

SPEC_KEY = bytes([118, 99, 112, 0, 151, 156, 28, 17, 175, 12, 48, 11, 205, 140, 127, 228])
SPEC_KEY += bytes([134, 16, 252, 233, 185, 193, 30, 61, 174, 227, 90, 224, 176, 138, 116, 85])
SPEC_TEXT = "9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh"


def test_authority_key_matches_the_sv2_spec_example_both_ways():
    assert noise.encode_authority_key(SPEC_KEY) == SPEC_TEXT
    assert noise.decode_authority_key(SPEC_TEXT) == SPEC_KEY
    assert noise.decode_authority_key(f"  {SPEC_TEXT}\n") == SPEC_KEY


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (SPEC_TEXT[:-1] + ("j" if SPEC_TEXT[-1] != "j" else "k"), "checksum"),
        (SPEC_TEXT[:10] + "0" + SPEC_TEXT[11:], "not a base58 character"),
        (SPEC_TEXT[:-3], "expected 38"),
    ],
)
def test_a_mistyped_authority_key_is_refused_with_the_reason(text, complaint):
    with pytest.raises(ValueError, match=complaint):
        noise.decode_authority_key(text)


def test_an_authority_key_of_another_version_or_off_the_curve_is_refused():
    payload = b"\x02\x00" + SPEC_KEY
    wrong_version = noise._b58encode(payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4])
    with pytest.raises(ValueError, match="version 2"):
        noise.decode_authority_key(wrong_version)
    off_curve = bytes.fromhex("eefdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34")
    with pytest.raises(ValueError, match="not a point"):
        noise.decode_authority_key(noise.encode_authority_key(off_curve))


# --- certificate -----------------------------------------------------------------------------------------------------


def test_certificate_layout_is_version_then_window_then_signature():
    cert = _certificate(valid_from=0x01020304, not_valid_after=0x0A0B0C0D)
    raw = cert.encode()
    assert len(raw) == noise.CERTIFICATE_SIZE
    assert raw[:10] == bytes.fromhex("0000040302010d0c0b0a")
    assert noise.Certificate.decode(raw) == cert


def test_a_certificate_holds_inside_its_window_and_the_clock_leeway():
    cert = _certificate()
    server, authority = noise.x_only_public_key(STATIC_SECRET), noise.x_only_public_key(AUTHORITY_SECRET)
    for now in (NOW - 60 - noise.CLOCK_LEEWAY, NOW, NOW + 3600 + noise.CLOCK_LEEWAY):
        cert.check(server, authority, now)
    with pytest.raises(CertificateError, match="expired"):
        cert.check(server, authority, NOW + 3600 + noise.CLOCK_LEEWAY + 1)
    with pytest.raises(CertificateError, match="not valid until"):
        cert.check(server, authority, NOW - 60 - noise.CLOCK_LEEWAY - 1)


def test_a_certificate_for_another_key_or_from_another_authority_or_version_is_refused():
    cert = _certificate()
    server, authority = noise.x_only_public_key(STATIC_SECRET), noise.x_only_public_key(AUTHORITY_SECRET)
    with pytest.raises(CertificateError, match="not signed by the expected authority"):
        cert.check(noise.x_only_public_key(b"\x05" * 32), authority, NOW)
    with pytest.raises(CertificateError, match="not signed by the expected authority"):
        cert.check(server, noise.x_only_public_key(b"\x06" * 32), NOW)
    with pytest.raises(CertificateError, match="version 1"):
        _certificate(version=1).check(server, authority, NOW)


# --- handshake -------------------------------------------------------------------------------------------------------


def test_our_initiator_and_responder_agree_and_each_direction_has_its_own_key():
    initiator, reply, server, now = _handshake()
    assert len(reply) == noise.ACT2_SIZE == 234
    client = initiator.act2(reply, now)
    assert initiator.server_key == noise.x_only_public_key(STATIC_SECRET)
    assert ellswift.decode(initiator.server_static_key) == initiator.server_key
    assert (initiator.certificate.valid_from, initiator.certificate.not_valid_after) == (NOW - 60, NOW + 3600)
    up = frame(0x00, b"client says hi")
    down = frame(0x01, b"pool says hi")
    assert server.feed(client.encrypt_frame(up)) == [(Header.decode(up[:6]), up[6:])]
    assert client.feed(server.encrypt_frame(down)) == [(Header.decode(down[:6]), down[6:])]
    assert client.encrypt_frame(up) != server.encrypt_frame(up)


def test_act1_is_64_bytes_and_only_once():
    initiator = noise.Initiator(noise.x_only_public_key(AUTHORITY_SECRET))
    assert len(initiator.act1()) == 64
    with pytest.raises(NoiseError):
        initiator.act1()


def test_the_handshake_refuses_a_wrong_authority_key():
    initiator, reply, _server, now = _handshake(authority_key=noise.x_only_public_key(b"\x09" * 32))
    with pytest.raises(CertificateError, match="authority"):
        initiator.act2(reply, now)


def test_the_handshake_refuses_an_expired_certificate():
    initiator, reply, _server, _ = _handshake(certificate=_certificate(NOW - 7200, NOW - 3600))
    with pytest.raises(CertificateError, match="expired"):
        initiator.act2(reply, NOW)


@pytest.mark.parametrize(("where", "what"), [(70, "static key"), (200, "certificate")])
def test_the_handshake_refuses_a_tampered_reply(where, what):
    initiator, reply, _server, now = _handshake()
    tampered = reply[:where] + bytes([reply[where] ^ 0x80]) + reply[where + 1 :]
    with pytest.raises(DecryptError, match=what):
        initiator.act2(tampered, now)


def test_a_tampered_ephemeral_key_breaks_the_static_key_mac():
    initiator, reply, _server, now = _handshake()
    with pytest.raises(DecryptError, match="static key"):
        initiator.act2(bytes([reply[0] ^ 1]) + reply[1:], now)


def test_the_handshake_refuses_wrong_sizes():
    initiator, reply, _server, now = _handshake()
    with pytest.raises(NoiseError, match="234"):
        initiator.act2(reply[:-1], now)
    with pytest.raises(NoiseError, match="64"):
        noise.Responder(STATIC_SECRET, _certificate()).act2(b"\x00" * 63)


# --- transport -------------------------------------------------------------------------------------------------------


def test_ciphertext_length_follows_the_spec_formula():
    assert noise.ciphertext_length(0) == 0
    assert noise.ciphertext_length(1) == 17
    assert noise.ciphertext_length(65519) == 65535
    assert noise.ciphertext_length(65520) == 65535 + 17
    assert noise.ciphertext_length(3 * 65519 + 5) == 3 * 65535 + 21


def test_a_big_payload_is_sealed_in_chunks_of_at_most_65519_bytes_and_reassembled():
    client, server = _connected()
    payload = bytes(i % 251 for i in range(2 * 65519 + 1000))
    sealed = client.encrypt_frame(frame(0x1F, payload, channel_msg=True))
    assert len(sealed) == 22 + 2 * 65535 + 1016
    start = server.receive.n
    [(header, got)] = server.feed(sealed)
    assert (header.msg_type, header.msg_length, got) == (0x1F, len(payload), payload)
    assert server.receive.n == start + 4  # header, then three chunks, each with its own nonce


def test_an_empty_payload_sends_only_the_sealed_header():
    client, server = _connected()
    sealed = client.encrypt_frame(frame(0x01, b""))
    assert len(sealed) == 22
    assert server.feed(sealed) == [(Header(0, 1, 0), b"")]


def test_frames_fed_a_byte_at_a_time_come_out_whole_and_in_order():
    client, server = _connected()
    frames = [frame(t, bytes([t]) * t) for t in (1, 5, 40)]
    stream = b"".join(client.encrypt_frame(f) for f in frames)
    got = []
    for i in range(len(stream)):
        got += server.feed(stream[i : i + 1])
    assert [h.msg_type for h, _ in got] == [1, 5, 40] and [p for _, p in got] == [f[6:] for f in frames]
    assert server.buffered == 0


def test_a_tampered_transport_byte_fails_its_mac():
    client, server = _connected()
    sealed = bytearray(client.encrypt_frame(frame(0x15, b"\x00" * 40, channel_msg=True)))
    sealed[30] ^= 1
    with pytest.raises(DecryptError, match="MAC"):
        server.feed(bytes(sealed))


def test_a_frame_longer_than_its_header_says_breaks_the_next_mac():
    client, server = _connected()
    honest = client.encrypt_frame(frame(0x15, b"\x00" * 10, channel_msg=True))
    header_only = honest[:22]
    long_payload = client.send.encrypt_with_ad(b"", b"\x00" * 30)  # says 10, sends 30
    with pytest.raises(DecryptError):
        server.feed(header_only + long_payload)


def test_a_header_claiming_more_than_the_limit_is_refused_before_its_payload_arrives():
    client, server = _connected()
    server.max_payload = 1000
    with pytest.raises(FrameError, match="1001"):
        server.feed(client.encrypt_frame(frame(0x1F, b"\x00" * 1001))[:22])


def test_encrypt_frame_refuses_a_frame_whose_length_field_lies():
    client, _server = _connected()
    with pytest.raises(ValueError):
        client.encrypt_frame(Header(0, 1, 5).encode() + b"abc")


def test_a_recorded_act_1_can_be_taken_as_is_but_only_for_its_own_secret():
    secret = b"\x0a" * 32
    recorded = ellswift.create(secret)
    initiator = noise.Initiator(
        noise.x_only_public_key(AUTHORITY_SECRET), ephemeral_secret=secret, ephemeral_encoding=recorded
    )
    assert initiator.act1() == recorded
    with pytest.raises(ValueError, match="not an encoding"):
        noise.Initiator(
            noise.x_only_public_key(AUTHORITY_SECRET), ephemeral_secret=b"\x0b" * 32, ephemeral_encoding=recorded
        )
