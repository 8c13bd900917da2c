"""Addresses -> scripts, against BIP 173/350 vectors and well-known addresses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miner.address import (
    address_to_script,
    b58check_encode,
    decode_address,
    p2pkh_script,
    p2sh_script,
    segwit_encode,
    witness_script,
)


@pytest.mark.parametrize(
    "address, kind, network, script_hex",
    [
        # BIP 173 / BIP 350 test vectors
        (
            "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
            "p2wpkh",
            "mainnet",
            "0014751e76e8199196d454941c45d1b3a323f1433bd6",
        ),
        (
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
            "p2wsh",
            "testnet/signet",
            "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262",
        ),
        (
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
            "p2tr",
            "mainnet",
            "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        ),
        (
            "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
            "p2tr",
            "testnet/signet",
            "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
        ),
        ("BC1SW50QGDZ25J", "witness_v16", "mainnet", "6002751e"),
        # the genesis block's payout and a well-known P2SH
        (
            "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
            "p2pkh",
            "mainnet",
            "76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac",
        ),
        ("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "p2sh", "mainnet", "a914b472a266d0bd89c13706a4132ccfb16f7c3b9fcb87"),
    ],
)
def test_known_addresses(address: str, kind: str, network: str, script_hex: str) -> None:
    decoded = decode_address(address)
    assert (decoded.kind, decoded.network, decoded.script.hex()) == (kind, network, script_hex)
    assert address_to_script(address).hex() == script_hex


@pytest.mark.parametrize(
    "address",
    [
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5",  # bad checksum
        "BC1QW508d6QEJxTDG4y5R3ZArVARY0C5XW7KV8F3T4",  # mixed case
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",  # taproot with a bech32 checksum
        "bc1zw508d6qejxtdg4y5r3zarvaryvqyzf3du",  # v2 with a bech32 checksum
        "bc1qr508d6qejxtdg4y5r3zarvarypj3mqu",  # v0 program of 16 bytes
        "bc1gmk9yu",  # empty data
        "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb",  # base58 checksum
        "0A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",  # '0' is not base58
        "",
        "hello",
    ],
)
def test_invalid_addresses_are_one_line_value_errors(address: str) -> None:
    with pytest.raises(ValueError) as info:
        address_to_script(address)
    assert "\n" not in str(info.value) and str(info.value)


def test_unknown_base58_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version byte"):
        address_to_script(b58check_encode(0x30, bytes(20)))  # a Litecoin P2PKH


def test_regtest_prefixes() -> None:
    program = bytes(range(20))
    assert decode_address(segwit_encode("bcrt", 0, program)).network == "regtest"
    assert decode_address(b58check_encode(0x6F, program)).script == p2pkh_script(program)
    assert decode_address(b58check_encode(0xC4, program)).script == p2sh_script(program)


@given(version=st.sampled_from([0x00, 0x05, 0x6F, 0xC4]), payload=st.binary(min_size=20, max_size=20))
def test_base58_round_trip(version: int, payload: bytes) -> None:
    script = address_to_script(b58check_encode(version, payload))
    assert payload in script


@given(
    hrp=st.sampled_from(["bc", "tb", "bcrt"]),
    version=st.integers(min_value=0, max_value=16),
    program=st.binary(min_size=2, max_size=40),
)
def test_segwit_round_trip(hrp: str, version: int, program: bytes) -> None:
    if version == 0 and len(program) not in (20, 32):
        program = program[:20].ljust(20, b"\x00")
    assert address_to_script(segwit_encode(hrp, version, program)) == witness_script(version, program)
    assert address_to_script(segwit_encode(hrp, version, program).upper()) == witness_script(version, program)
