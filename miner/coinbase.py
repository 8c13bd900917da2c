"""The coinbase transaction: built once per template, split where the extranonce goes.

A pool (or a solo miner) varies extranonce1+extranonce2 inside the coinbase's
scriptSig to get fresh merkle roots, so the transaction is built as two byte
strings around that gap: ``coinb1 + extranonce + coinb2`` is the complete
non-witness serialisation, exactly what Stratum's ``mining.notify`` carries.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from miner.block import merkle_root, ser_compact_size, sha256d

OP_TRUE_SCRIPT = b"\x51"  # anyone-can-spend: the embedded chain's default payout
OP_RETURN = 0x6A
WITNESS_RESERVED_VALUE = b"\x00" * 32  # BIP 141: the coinbase witness the commitment assumes
MAX_COINBASE_SCRIPT_SIG = 100  # consensus: scriptSig of a coinbase is 2..100 bytes
COINBASE_SEQUENCE = 0xFFFFFFFF


def script_num(n: int) -> bytes:
    """CScriptNum encoding: minimal little-endian, sign bit in the top byte."""
    if n == 0:
        return b""
    negative = n < 0
    value = abs(n)
    out = bytearray()
    while value:
        out.append(value & 0xFF)
        value >>= 8
    if out[-1] & 0x80:
        out.append(0x80 if negative else 0x00)
    elif negative:
        out[-1] |= 0x80
    return bytes(out)


def push_data(data: bytes) -> bytes:
    """A script push of ``data`` (direct push or PUSHDATA1/2)."""
    n = len(data)
    if n < 0x4C:
        return bytes([n]) + data
    if n <= 0xFF:
        return b"\x4c" + bytes([n]) + data
    if n <= 0xFFFF:
        return b"\x4d" + struct.pack("<H", n) + data
    return b"\x4e" + struct.pack("<I", n) + data


def bip34_height_push(height: int) -> bytes:
    """The scriptSig prefix BIP 34 requires: the height as a CScriptNum push.

    Heights 1..16 use OP_1..OP_16 as Bitcoin Core's miner does (``CScript() <<
    nHeight``); 0 is OP_0. Either form passes the BIP 34 check, which compares
    against exactly this serialisation.
    """
    if height < 0:
        raise ValueError("block height cannot be negative")
    if height == 0:
        return b"\x00"
    if height <= 16:
        return bytes([0x50 + height])
    return push_data(script_num(height))


@dataclass(frozen=True)
class CoinbaseParts:
    """The non-witness coinbase split around the extranonce gap."""

    coinb1: bytes
    coinb2: bytes

    def assemble(self, extranonce: bytes) -> bytes:
        return self.coinb1 + extranonce + self.coinb2


def make_witness_commitment_script(commitment: bytes) -> bytes:
    """BIP 141 output script: OP_RETURN, push 36 bytes, aa21a9ed + commitment hash."""
    if len(commitment) != 32:
        raise ValueError("a witness commitment is 32 bytes")
    return bytes([OP_RETURN, 0x24]) + bytes.fromhex("aa21a9ed") + commitment


def witness_commitment(wtxids_internal: list[bytes]) -> bytes:
    """The commitment hash for a block's non-coinbase wtxids (coinbase's wtxid is zero)."""
    root = merkle_root([b"\x00" * 32] + list(wtxids_internal))
    return sha256d(root + WITNESS_RESERVED_VALUE)


def _tx_out(value_sats: int, script: bytes) -> bytes:
    if value_sats < 0:
        raise ValueError("an output value cannot be negative")
    return struct.pack("<q", value_sats) + ser_compact_size(len(script)) + script


def build_coinbase(
    height: int,
    value_sats: int,
    payout_script: bytes,
    extranonce_size: int = 8,
    tag: bytes = b"/sha256d-miner/",
    witness_commitment_script: bytes | None = None,
) -> CoinbaseParts:
    """A version-1 coinbase paying ``value_sats`` to ``payout_script``.

    The scriptSig is: BIP 34 height push, a push opcode of ``extranonce_size``
    bytes (the gap itself), then the tag. The extranonce sits inside a push so
    any bytes there keep the script parseable. A witness commitment output is
    appended (with zero value) when given.
    """
    if not 0 < extranonce_size < 0x4C:
        raise ValueError("extranonce_size must be 1..75 bytes")
    height_push = bip34_height_push(height)
    tag_push = push_data(tag) if tag else b""
    script_sig_len = len(height_push) + 1 + extranonce_size + len(tag_push)
    if script_sig_len > MAX_COINBASE_SCRIPT_SIG:
        raise ValueError(f"coinbase scriptSig would be {script_sig_len} bytes; the limit is 100 (shorten the tag)")
    if script_sig_len < 2:
        raise ValueError("coinbase scriptSig must be at least 2 bytes")
    outputs = [_tx_out(value_sats, payout_script)]
    if witness_commitment_script is not None:
        outputs.append(_tx_out(0, witness_commitment_script))
    coinb1 = (
        struct.pack("<i", 1)  # version
        + b"\x01"  # one input
        + b"\x00" * 32
        + b"\xff\xff\xff\xff"  # null prevout
        + ser_compact_size(script_sig_len)
        + height_push
        + bytes([extranonce_size])  # push opcode covering the extranonce gap
    )
    coinb2 = (
        tag_push
        + struct.pack("<I", COINBASE_SEQUENCE)
        + ser_compact_size(len(outputs))
        + b"".join(outputs)
        + b"\x00\x00\x00\x00"  # lock time
    )
    return CoinbaseParts(coinb1, coinb2)


def coinbase_txid(coinbase_tx: bytes) -> bytes:
    """The txid in internal order: sha256d of the non-witness serialisation."""
    if _is_segwit_serialisation(coinbase_tx):
        coinbase_tx = strip_witness(coinbase_tx)
    return sha256d(coinbase_tx)


def _is_segwit_serialisation(tx: bytes) -> bool:
    return len(tx) > 6 and tx[4] == 0x00 and tx[5] == 0x01


def add_coinbase_witness(coinbase_tx: bytes) -> bytes:
    """Segwit serialisation of a one-input coinbase whose witness is the reserved value.

    Needed in a block that carries a witness commitment (BIP 141).
    """
    if _is_segwit_serialisation(coinbase_tx):
        return coinbase_tx
    witness = b"\x01" + ser_compact_size(len(WITNESS_RESERVED_VALUE)) + WITNESS_RESERVED_VALUE
    return coinbase_tx[:4] + b"\x00\x01" + coinbase_tx[4:-4] + witness + coinbase_tx[-4:]


def strip_witness(coinbase_tx: bytes) -> bytes:
    """The non-witness serialisation of a coinbase written by :func:`add_coinbase_witness`."""
    if not _is_segwit_serialisation(coinbase_tx):
        return coinbase_tx
    body = coinbase_tx[6:-4]
    witness = b"\x01" + ser_compact_size(len(WITNESS_RESERVED_VALUE)) + WITNESS_RESERVED_VALUE
    if not body.endswith(witness):
        raise ValueError("only a coinbase with the single reserved-value witness can be stripped")
    return coinbase_tx[:4] + body[: -len(witness)] + coinbase_tx[-4:]


def serialize_block(header80: bytes, coinbase_tx: bytes, transactions: list[bytes]) -> bytes:
    """Header, transaction count, coinbase, then the raw transactions as given."""
    if len(header80) != 80:
        raise ValueError("a block header is 80 bytes")
    return header80 + ser_compact_size(1 + len(transactions)) + coinbase_tx + b"".join(transactions)
