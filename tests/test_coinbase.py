"""Coinbase construction: BIP 34 heights, the extranonce gap, witness serialisation, blocks."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miner.block import display_hex_to_internal, merkle_root
from miner.coinbase import (
    OP_TRUE_SCRIPT,
    WITNESS_RESERVED_VALUE,
    add_coinbase_witness,
    bip34_height_push,
    build_coinbase,
    coinbase_txid,
    make_witness_commitment_script,
    script_num,
    serialize_block,
    strip_witness,
    witness_commitment,
)

# The genesis block's coinbase, as every node stores it; its txid is the genesis merkle root.
GENESIS_COINBASE = bytes.fromhex(
    "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d0104455468"
    "652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e642062"
    "61696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b7105cd6a8"
    "28e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000"
)


def _sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def _compact(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0xFD:
        return first, pos + 1
    size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "little"), pos + 1 + size


def parse_tx(tx: bytes) -> dict:
    """An independent parser for the transactions these tests build."""
    pos = 4
    segwit = tx[4:6] == b"\x00\x01"
    if segwit:
        pos = 6
    n_in, pos = _compact(tx, pos)
    inputs = []
    for _ in range(n_in):
        prevout = tx[pos : pos + 36]
        pos += 36
        n, pos = _compact(tx, pos)
        script_sig = tx[pos : pos + n]
        pos += n
        sequence = struct.unpack_from("<I", tx, pos)[0]
        pos += 4
        inputs.append({"prevout": prevout, "script_sig": script_sig, "sequence": sequence})
    n_out, pos = _compact(tx, pos)
    outputs = []
    for _ in range(n_out):
        value = struct.unpack_from("<q", tx, pos)[0]
        pos += 8
        n, pos = _compact(tx, pos)
        outputs.append({"value": value, "script": tx[pos : pos + n]})
        pos += n
    witnesses = []
    if segwit:
        for _ in range(n_in):
            items, pos = _compact(tx, pos)
            stack = []
            for _ in range(items):
                n, pos = _compact(tx, pos)
                stack.append(tx[pos : pos + n])
                pos += n
            witnesses.append(stack)
    locktime = struct.unpack_from("<I", tx, pos)[0]
    pos += 4
    assert pos == len(tx), "trailing bytes after the transaction"
    return {
        "version": struct.unpack_from("<i", tx, 0)[0],
        "inputs": inputs,
        "outputs": outputs,
        "witnesses": witnesses,
        "locktime": locktime,
    }


def test_genesis_coinbase_txid_is_the_genesis_merkle_root(header_vectors: list[dict]) -> None:
    genesis = header_vectors[0]
    assert coinbase_txid(GENESIS_COINBASE) == display_hex_to_internal(genesis["merkle_root"])
    block = serialize_block(bytes.fromhex(genesis["header_hex"]), GENESIS_COINBASE, [])
    assert block[80] == 1 and block[81:] == GENESIS_COINBASE
    assert len(block) == 285  # the genesis block's well-known size


@pytest.mark.parametrize(
    "height, expected",
    [
        (1, "51"),
        (16, "60"),
        (17, "0111"),
        (127, "017f"),
        (128, "028000"),
        (255, "02ff00"),
        (256, "020001"),
        (32767, "02ff7f"),
        (32768, "03008000"),
        (227931, "035b7a03"),  # the first mainnet block under BIP 34
        (840000, "0340d10c"),
    ],
)
def test_bip34_height_push_matches_cscript_serialisation(height: int, expected: str) -> None:
    assert bip34_height_push(height).hex() == expected


def test_script_num_sign_handling() -> None:
    assert script_num(0) == b""
    assert script_num(-1) == b"\x81"
    assert script_num(0x80) == b"\x80\x00"
    assert script_num(-0x80) == b"\x80\x80"


def test_bip34_rejects_negative_heights() -> None:
    with pytest.raises(ValueError):
        bip34_height_push(-1)


def test_coinbase_layout() -> None:
    script = bytes.fromhex("76a914243f1394f44554f4ce3fd68649c19adc483ce92488ac")
    parts = build_coinbase(500_123, 625_000_000, script, extranonce_size=8, tag=b"/t/")
    extranonce = bytes(range(1, 9))
    tx = parse_tx(parts.assemble(extranonce))
    assert tx["version"] == 1 and tx["locktime"] == 0
    (txin,) = tx["inputs"]
    assert txin["prevout"] == b"\x00" * 32 + b"\xff" * 4
    script_sig = txin["script_sig"]
    assert script_sig.startswith(bip34_height_push(500_123))
    assert extranonce in script_sig
    assert script_sig.endswith(b"/t/")
    assert 2 <= len(script_sig) <= 100
    assert tx["outputs"] == [{"value": 625_000_000, "script": script}]
    # coinb1 ends exactly where the extranonce begins.
    assert parts.assemble(extranonce).index(extranonce) == len(parts.coinb1)


def test_coinbase_with_witness_commitment() -> None:
    commitment_script = make_witness_commitment_script(bytes(range(32)))
    parts = build_coinbase(5, 50 * 10**8, OP_TRUE_SCRIPT, witness_commitment_script=commitment_script)
    tx = parse_tx(parts.assemble(b"\xee" * 8))
    assert tx["outputs"][1] == {"value": 0, "script": commitment_script}
    assert commitment_script[:6].hex() == "6a24aa21a9ed"


def test_scriptsig_limit_is_enforced() -> None:
    with pytest.raises(ValueError, match="100"):
        build_coinbase(1, 1, OP_TRUE_SCRIPT, extranonce_size=8, tag=b"x" * 95)
    with pytest.raises(ValueError):
        build_coinbase(1, 1, OP_TRUE_SCRIPT, extranonce_size=0)


def test_witness_serialisation_keeps_the_txid() -> None:
    plain = build_coinbase(300, 1, OP_TRUE_SCRIPT).assemble(b"\x00" * 8)
    segwit = add_coinbase_witness(plain)
    parsed = parse_tx(segwit)
    assert parsed["witnesses"] == [[WITNESS_RESERVED_VALUE]]
    assert parse_tx(plain)["outputs"] == parsed["outputs"]
    assert coinbase_txid(segwit) == coinbase_txid(plain) == _sha256d(plain)
    assert strip_witness(segwit) == plain
    assert add_coinbase_witness(segwit) == segwit


def test_witness_commitment_formula() -> None:
    wtxids = [_sha256d(bytes([i])) for i in range(3)]
    root = merkle_root([b"\x00" * 32] + wtxids)
    assert witness_commitment(wtxids) == _sha256d(root + b"\x00" * 32)


def test_serialize_block_counts_transactions() -> None:
    header = bytes(80)
    cb = build_coinbase(1, 1, OP_TRUE_SCRIPT).assemble(b"\x01" * 8)
    others = [b"\xaa" * 60, b"\xbb" * 70]
    block = serialize_block(header, cb, others)
    assert block[:80] == header and block[80] == 3
    assert block[81:] == cb + others[0] + others[1]
    with pytest.raises(ValueError):
        serialize_block(b"\x00" * 79, cb, [])


@given(
    height=st.integers(min_value=0, max_value=2**31 - 1),
    value=st.integers(min_value=0, max_value=21 * 10**14),
    extranonce=st.binary(min_size=1, max_size=16),
    script=st.binary(min_size=0, max_size=80),
)
def test_any_coinbase_parses_and_carries_its_fields(height: int, value: int, extranonce: bytes, script: bytes) -> None:
    parts = build_coinbase(height, value, script, extranonce_size=len(extranonce))
    tx = parse_tx(parts.assemble(extranonce))
    script_sig = tx["inputs"][0]["script_sig"]
    assert script_sig.startswith(bip34_height_push(height))
    assert script_sig[len(bip34_height_push(height)) + 1 :].startswith(extranonce)
    assert tx["outputs"][0] == {"value": value, "script": script}
