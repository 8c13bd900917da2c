"""Header, target and merkle math against real blocks."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miner.block import (
    DIFF1_TARGET,
    BlockHeader,
    bits_to_difficulty,
    check_nbits,
    difficulty_to_target,
    display_hex_to_internal,
    hash_to_int,
    merkle_branches,
    merkle_root,
    merkle_root_from_branches,
    nbits_to_target,
    parse_header_hex,
    parse_nbits_hex,
    parse_target_hex,
    sha256d,
    target_to_difficulty,
    target_to_nbits,
)


def test_real_headers_serialise_and_hash(header_vectors):
    for v in header_vectors:
        header = BlockHeader(
            version=v["version"],
            prev_block_internal=display_hex_to_internal(v["prev_block_hash"]),
            merkle_root_internal=display_hex_to_internal(v["merkle_root"]),
            time=v["time"],
            bits=int(v["bits"], 16),
            nonce=v["nonce"],
        )
        assert header.serialize().hex() == v["header_hex"], v["name"]
        assert header.hash_display() == v["block_hash"], v["name"]
        parsed = BlockHeader.from_hex(v["header_hex"])
        assert parsed == header
        assert parsed.prev_block_display == v["prev_block_hash"]
        # A real block's hash meets the target its own nBits encode.
        assert hash_to_int(header.hash_internal()) <= nbits_to_target(header.bits)


def test_nbits_known_values():
    assert nbits_to_target(0x1D00FFFF) == DIFF1_TARGET
    assert bits_to_difficulty(0x1D00FFFF) == 1.0
    assert nbits_to_target(0x207FFFFF) == 0x7FFFFF << (8 * 29)
    # Block 125552's difficulty, as block explorers print it.
    assert bits_to_difficulty(0x1A44B9F2) == pytest.approx(244112.48777434)
    assert nbits_to_target(0x1A44B9F2) == 0x44B9F2 << (8 * 23)


def test_nbits_rejects_negative_and_overflow():
    with pytest.raises(ValueError):
        nbits_to_target(0x04923456)  # sign bit set
    with pytest.raises(ValueError):
        nbits_to_target(0xFF123456)


@pytest.mark.parametrize(
    "bits, expected",
    [
        (0x00000000, "zero mantissa"),
        (0x1D000000, "zero mantissa"),
        (0x20800000, "zero mantissa"),  # sign bit on a zero mantissa: Core's zero, not negative
        (0x01003456, "target of 0"),  # the exponent shifts the whole mantissa out
        (0x04923456, "sign bit"),
        (0x207FFFFF | 0x00800000, "sign bit"),
        (0xFF123456, "overflows 256 bits"),
        (0x21010000, "overflows 256 bits"),
        (0x23000001, "overflows 256 bits"),
        (1 << 32, "8 hex digits"),
        (0x1D00FFFF00, "8 hex digits"),
        (-1, "8 hex digits"),
    ],
)
def test_check_nbits_refuses_targets_no_hash_can_meet(bits, expected):
    with pytest.raises(ValueError, match=expected) as info:
        check_nbits(bits)
    message = str(info.value)
    # one line that names the field and what would do
    assert "\n" not in message and message.startswith("nBits") and "like 207fffff" in message


@pytest.mark.parametrize("bits", [0x207FFFFF, 0x1D00FFFF, 0x1A44B9F2, 0x2100FFFF, 0x22000001, 0x03000001, 0x01010000])
def test_check_nbits_takes_every_representable_nonzero_target(bits):
    # above regtest's maximum is fine while it fits in 256 bits; so is the smallest target, 1
    assert check_nbits(bits) == nbits_to_target(bits) > 0


@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_check_nbits_agrees_with_decoding(bits):
    try:
        target = nbits_to_target(bits)
    except ValueError:
        target = 0
    if target > 0:
        assert check_nbits(bits) == target
    else:
        with pytest.raises(ValueError):
            check_nbits(bits)


def test_parse_nbits_hex_wants_8_hex_digits_as_scan_does():
    assert parse_nbits_hex("207fffff") == parse_nbits_hex("0x207FFFFF") == 0x207FFFFF
    for text in ("1d00ffff00", "207fff", "", "207f_fff", "zzzzzzzz", " 207fffff"):
        with pytest.raises(ValueError, match="8 hex digits"):
            parse_nbits_hex(text)
    with pytest.raises(ValueError, match="zero mantissa"):
        parse_nbits_hex("00000000")


@given(st.integers(min_value=1, max_value=(1 << 255) - 1))
def test_nbits_round_trip_is_canonical(target):
    bits = target_to_nbits(target)
    decoded = nbits_to_target(bits)
    assert decoded <= target  # compact encoding truncates, never rounds up
    assert target_to_nbits(decoded) == bits


def test_difficulty_target_conversions():
    assert difficulty_to_target(1) == DIFF1_TARGET
    assert difficulty_to_target(2) == DIFF1_TARGET // 2
    assert difficulty_to_target(0.5) == DIFF1_TARGET * 2
    assert target_to_difficulty(DIFF1_TARGET // 1000) == pytest.approx(1000)
    with pytest.raises(ValueError):
        difficulty_to_target(0)


@given(st.floats(min_value=1e-6, max_value=1e12))
def test_difficulty_round_trip(d):
    assert target_to_difficulty(difficulty_to_target(d)) == pytest.approx(d, rel=1e-9)


def test_parse_errors_are_one_line():
    with pytest.raises(ValueError, match="not valid hex"):
        parse_header_hex("zz" * 80)
    with pytest.raises(ValueError, match="80 bytes"):
        parse_header_hex("00" * 79)
    with pytest.raises(ValueError, match="64 hex digits"):
        parse_target_hex("ff")


def test_merkle_root_of_block_with_four_txs():
    # Mainnet block 100000: four transactions, root known from the chain.
    txids = [
        "8c14f0db3df150123e6f3dbbf30f8b955a8249b62ac1d1ff16284aefa3d06d87",
        "fff2525b8931402dd09222c50775608f75787bd2b87e56995a7bdd30f79702c4",
        "6359f0868171b1d194cbee1af2f16ea598ae8fad666d9b012c8ed2b79a236ec4",
        "e9a66845e05d5abc0ad04ec80f774a7e585c6e8db975962d069a522137b80c1d",
    ]
    root = merkle_root([display_hex_to_internal(t) for t in txids])
    assert root[::-1].hex() == "f3e94742aca4b5ef85488dc37c06c3282295ffec960994b2c0d5ac2a25a95766"


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=20))
def test_branches_rebuild_the_full_tree(txids):
    coinbase = sha256d(b"coinbase")
    branches = merkle_branches(txids)
    assert merkle_root_from_branches(coinbase, branches) == merkle_root([coinbase] + txids)
