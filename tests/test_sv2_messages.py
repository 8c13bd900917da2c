"""Stratum V2 field types, frame headers and message encodings, held to the spec's layouts and to ESP-Miner's bytes."""

import json
import struct
from pathlib import Path

import pytest

from stratum.v2 import codec
from stratum.v2 import messages as m
from stratum.v2.codec import DecodeError, EncodeError, Reader
from stratum.v2.framing import HEADER_SIZE, FrameError, Header, PlainFrameBuffer, frame

SESSION = Path(__file__).resolve().parent / "data" / "sv2" / "esp-miner-client-session.json"
DIFF1 = 0x00000000FFFF0000000000000000000000000000000000000000000000000000
HASH_A = bytes(range(32))
HASH_B = bytes(range(100, 132))

# Decrypted server payloads of the recorded ESP-Miner session (tests/test_sv2_session.py decrypts them itself).
ESP_SERVER_FRAMES = [
    ("000001060000", "020000000000"),
    (
        "000011350000",
        "0700000001000000" + "ff" * 31 + "00" + "080102030405060708" + "00000000",
    ),
    (
        "008015310000",
        "010000002a0000000100f15365000000207975edd9e7393c229e744913fe0d0bb86fb4cf46906e2e51152137e20ad15590",
    ),
    ("00801c140000", "0100000000000000010000000100000000000000"),
]

SAMPLES = [
    m.SetupConnection(m.PROTOCOL_MINING, 2, 2, m.REQUIRES_STANDARD_JOBS, "pool.example", 3336, "v", "hw", "fw", "id"),
    m.SetupConnectionSuccess(2, m.REQUIRES_FIXED_VERSION),
    m.SetupConnectionError(0b101, m.ERR_UNSUPPORTED_FEATURE_FLAGS),
    m.ChannelEndpointChanged(9),
    m.Reconnect("", 0),
    m.OpenStandardMiningChannel(1, "worker.1", 2.0**40, (1 << 256) - 1),
    m.OpenStandardMiningChannelSuccess(1, 7, DIFF1, b"\x01\x02", 0),
    m.OpenMiningChannelError(1, m.ERR_UNKNOWN_USER),
    m.OpenExtendedMiningChannel(2, "worker.2", 0.0, DIFF1, 4),
    m.OpenExtendedMiningChannelSuccess(2, 8, DIFF1 >> 4, 8, b"\xaa" * 24, 0),
    m.NewMiningJob(7, 3, None, 0x20000000, HASH_A),
    m.NewMiningJob(7, 4, 1700000000, 0x20000000, HASH_B),
    m.UpdateChannel(7, 2.0e9, DIFF1),
    m.UpdateChannelError(7, m.ERR_INVALID_CHANNEL_ID),
    m.CloseChannel(7, "shutdown"),
    m.SetExtranoncePrefix(7, b"\x00" * 32),
    m.SubmitSharesStandard(7, 0, 3, 0xDEADBEEF, 1700000001, 0x20002000),
    m.SubmitSharesExtended(8, 1, 3, 1, 2, 0x20000000, b"\x01\x02\x03\x04\x05\x06\x07\x08"),
    m.SubmitSharesSuccess(7, 5, 6, 1 << 40),
    m.SubmitSharesError(7, 5, m.ERR_STALE_SHARE),
    m.NewExtendedMiningJob(8, 5, None, 0x20000000, True, [HASH_A, HASH_B], b"\x01\x00" * 20, b"\xff" * 70),
    m.NewExtendedMiningJob(8, 6, 1700000000, 0x20000000, False, [], b"", b""),
    m.SetNewPrevHash(8, 5, HASH_B, 1700000000, 0x1D00FFFF),
    m.SetTarget(7, DIFF1),
    m.SetGroupChannel(100, [7, 8]),
]


def test_every_message_class_has_a_sample_here():
    assert {type(s) for s in SAMPLES} == set(m.MESSAGES.values())


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.NAME)
def test_each_message_encodes_and_decodes_back_to_itself(sample):
    data = sample.to_frame()
    header = Header.decode(data[:HEADER_SIZE])
    assert header.msg_type == sample.MSG_TYPE
    assert header.channel_msg is sample.CHANNEL_MSG
    assert header.msg_length == len(data) - HEADER_SIZE
    assert m.decode_message(header, data[HEADER_SIZE:]) == sample


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.NAME)
def test_each_message_refuses_a_truncated_payload_and_a_trailing_byte(sample):
    data = sample.to_frame()
    header, payload = Header.decode(data[:HEADER_SIZE]), data[HEADER_SIZE:]
    with pytest.raises(DecodeError, match=sample.NAME):
        m.decode_message(header, payload[:-1])
    with pytest.raises(DecodeError, match="left over"):
        m.decode_message(header, payload + b"\x00")


def test_message_type_numbers_and_channel_bits_follow_the_spec_table():
    table = {
        0x00: ("SetupConnection", False),
        0x01: ("SetupConnection.Success", False),
        0x02: ("SetupConnection.Error", False),
        0x03: ("ChannelEndpointChanged", True),
        0x04: ("Reconnect", False),
        0x10: ("OpenStandardMiningChannel", False),
        0x11: ("OpenStandardMiningChannel.Success", False),
        0x12: ("OpenMiningChannel.Error", False),
        0x13: ("OpenExtendedMiningChannel", False),
        0x14: ("OpenExtendedMiningChannel.Success", False),
        0x15: ("NewMiningJob", True),
        0x16: ("UpdateChannel", True),
        0x17: ("UpdateChannel.Error", True),
        0x18: ("CloseChannel", True),
        0x19: ("SetExtranoncePrefix", True),
        0x1A: ("SubmitSharesStandard", True),
        0x1B: ("SubmitSharesExtended", True),
        0x1C: ("SubmitShares.Success", True),
        0x1D: ("SubmitShares.Error", True),
        0x1F: ("NewExtendedMiningJob", True),
        0x20: ("SetNewPrevHash", True),
        0x21: ("SetTarget", True),
        0x25: ("SetGroupChannel", False),
    }
    assert {t: (c.NAME, c.CHANNEL_MSG) for t, c in m.MESSAGES.items()} == table


def test_the_esp_miner_client_frames_decode_to_their_fields_and_re_encode_byte_for_byte():
    plains = [bytes.fromhex(h) for h in json.loads(SESSION.read_text())["c2s_plain"]]
    decoded = [m.decode_message(Header.decode(p[:6]), p[6:]) for p in plains]
    assert decoded == [
        m.SetupConnection(0, 2, 2, 0, "127.0.0.1", 34254, "host-harness", "x86", "esp-miner-src", "dev-1"),
        m.OpenStandardMiningChannel(7, "tb1qtest.worker", 1.0e6, (1 << 256) - 1),
        m.SubmitSharesStandard(1, 0, 42, 12345, 0x6553F100, 0x20000000),
    ]
    assert [d.to_frame() for d in decoded] == plains


def test_the_esp_miner_server_frames_decode_to_their_fields_and_re_encode_byte_for_byte():
    decoded = [m.decode_message(Header.decode(bytes.fromhex(h)), bytes.fromhex(p)) for h, p in ESP_SERVER_FRAMES]
    assert decoded == [
        m.SetupConnectionSuccess(2, 0),
        m.OpenStandardMiningChannelSuccess(7, 1, (1 << 248) - 1, bytes(range(1, 9)), 0),
        m.NewMiningJob(
            1,
            42,
            0x6553F100,
            0x20000000,
            bytes.fromhex("7975edd9e7393c229e744913fe0d0bb86fb4cf46906e2e51152137e20ad15590"),
        ),
        m.SubmitSharesSuccess(1, 0, 1, 1),
    ]
    assert [d.to_frame().hex() for d in decoded] == [h + p for h, p in ESP_SERVER_FRAMES]


def test_set_new_prev_hash_lays_out_its_fields_in_spec_order():
    payload = m.SetNewPrevHash(0x01020304, 0x0A0B0C0D, HASH_A, 0x11223344, 0x1D00FFFF).encode()
    assert payload == (
        bytes.fromhex("04030201")
        + bytes.fromhex("0d0c0b0a")
        + HASH_A
        + bytes.fromhex("44332211")
        + bytes.fromhex("ffff001d")
    )


def test_a_target_is_a_little_endian_number_and_a_hash_is_passed_through():
    payload = m.SetTarget(1, DIFF1).encode()
    assert payload[4:] == DIFF1.to_bytes(32, "little")
    assert payload[4:][-4:] == b"\x00\x00\x00\x00" and payload[4:][-6:-4] == b"\xff\xff"
    job = m.NewMiningJob(1, 2, None, 3, HASH_A).encode()
    assert job.endswith(HASH_A)


def test_new_extended_mining_job_carries_its_merkle_path_count_and_two_byte_coinbase_lengths():
    payload = m.NewExtendedMiningJob(1, 2, None, 3, True, [HASH_A], b"\xaa" * 300, b"\xbb").encode()
    r = Reader(payload)
    assert (r.u32(), r.u32(), r.take(1), r.u32(), r.take(1)) == (1, 2, b"\x00", 3, b"\x01")
    assert r.take(1) == b"\x01" and r.take(32) == HASH_A
    assert r.take(2) == (300).to_bytes(2, "little") and r.take(300) == b"\xaa" * 300
    assert r.take(2) == b"\x01\x00" and r.take(1) == b"\xbb"
    r.finish()


def test_header_is_little_endian_with_the_channel_bit_in_bit_15():
    data = frame(0x1A, b"\x00" * 0x010203, channel_msg=True)
    assert data[:6] == bytes.fromhex("00801a030201")
    header = Header.decode(data[:6])
    assert header == Header(0x8000, 0x1A, 0x010203)
    assert header.channel_msg and header.extension == 0
    assert not Header(0x4001, 0, 0).channel_msg and Header(0xC001, 0, 0).extension == 0x4001
    with pytest.raises(FrameError):
        Header.decode(b"\x00" * 5)
    with pytest.raises(ValueError, match="U24"):
        frame(0x1F, b"\x00" * (1 << 24))


def test_unknown_and_unsupported_message_types_are_named_in_the_error():
    with pytest.raises(m.UnknownMessageType, match="0x7f: unknown"):
        m.decode_message(Header(0, 0x7F, 0), b"")
    with pytest.raises(m.UnknownMessageType, match="SetCustomMiningJob"):
        m.decode_message(Header(0x8000, 0x22, 0), b"")


def test_bool_reads_only_the_lowest_bit():
    assert Reader(b"\x03").boolean() is True
    assert Reader(b"\xfe").boolean() is False
    assert codec.boolean(True) == b"\x01" and codec.boolean(False) == b"\x00"


def test_option_holds_zero_or_one_item():
    assert codec.option_u32(None) == b"\x00"
    assert codec.option_u32(5) == b"\x01\x05\x00\x00\x00"
    assert Reader(b"\x01\x05\x00\x00\x00").option_u32() == 5
    with pytest.raises(DecodeError, match="0 or 1"):
        Reader(b"\x02\x05\x00\x00\x00\x06\x00\x00\x00").option_u32()


def test_integer_widths_and_ranges():
    assert codec.u24(0x010203) == b"\x03\x02\x01"
    assert Reader(b"\x03\x02\x01").u24() == 0x010203
    assert codec.u64(1 << 63) == b"\x00" * 7 + b"\x80"
    for writer, too_big in [(codec.u8, 256), (codec.u16, 1 << 16), (codec.u24, 1 << 24), (codec.u32, 1 << 32)]:
        with pytest.raises(EncodeError):
            writer(too_big)
        with pytest.raises(EncodeError):
            writer(-1)
    with pytest.raises(EncodeError):
        codec.u32(True)
    with pytest.raises(EncodeError):
        codec.u256_int(1 << 256)


def test_f32_is_an_ieee_single():
    assert codec.f32(1.0e6) == bytes.fromhex("00247449")
    assert Reader(struct.pack("<f", 2.5)).f32() == 2.5
    with pytest.raises(EncodeError):
        codec.f32(float("nan"))
    with pytest.raises(EncodeError):
        codec.f32(1e39)


def test_byte_arrays_and_strings_respect_their_limits():
    assert codec.b0_32(b"\x01" * 32)[0] == 32
    with pytest.raises(EncodeError):
        codec.b0_32(b"\x01" * 33)
    with pytest.raises(DecodeError, match="at most 32"):
        Reader(b"\x21" + b"\x00" * 33).b0_32()
    assert codec.b0_64k(b"\x01" * 300)[:2] == b"\x2c\x01"
    assert codec.b0_16m(b"\x01" * 3)[:3] == b"\x03\x00\x00"
    assert Reader(b"\x03\x00\x00abc").b0_16m() == b"abc"
    assert Reader(b"\x02\x00ab").b0_64k() == b"ab"
    assert Reader(b"\x02ab").b0_255() == b"ab"
    assert codec.str0_255("héllo") == b"\x06h\xc3\xa9llo"
    with pytest.raises(EncodeError):
        codec.str0_255("x" * 256)
    with pytest.raises(DecodeError, match="UTF-8"):
        Reader(b"\x02\xff\xfe").str0_255()
    with pytest.raises(DecodeError, match="needs 5 bytes"):
        Reader(b"\x05abc").str0_255()


def test_sequences():
    assert codec.seq0_64k_u32([1, 2]) == b"\x02\x00\x01\x00\x00\x00\x02\x00\x00\x00"
    assert Reader(b"\x02\x00\x01\x00\x00\x00\x02\x00\x00\x00").seq0_64k_u32() == [1, 2]
    assert Reader(b"\x01" + HASH_A).seq0_255_u256() == [HASH_A]
    with pytest.raises(EncodeError):
        codec.seq0_255_u256([HASH_A] * 256)
    with pytest.raises(EncodeError):
        codec.seq0_255_u256([b"short"])


def test_plain_frame_buffer_splits_a_stream_fed_a_byte_at_a_time():
    stream = b"".join(s.to_frame() for s in SAMPLES[:5])
    buffer = PlainFrameBuffer()
    frames = []
    for i in range(len(stream)):
        frames += buffer.feed(stream[i : i + 1])
    assert [m.decode_message(h, p) for h, p in frames] == SAMPLES[:5]
    assert buffer.buffered == 0


def test_plain_frame_buffer_refuses_a_header_claiming_more_than_it_accepts():
    buffer = PlainFrameBuffer(max_payload=100)
    with pytest.raises(FrameError, match="101"):
        buffer.feed(Header(0, 0x1F, 101).encode())
