"""Block header, merkle and target math: the one tested home for byte order.

Naming carries byte order, as in Bitcoin Core's test framework:

* ``*_le`` / ``*_be``: how an integer is laid out in bytes.
* "display" hex: hashes as block explorers and RPC print them (most
  significant byte first). "internal" bytes: the order they are hashed and
  sent on the wire (the reverse).

A hash is compared with a target as the little-endian integer of its digest.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

DIFF1_TARGET = 0x00000000FFFF0000000000000000000000000000000000000000000000000000
MAX_TARGET = (1 << 256) - 1
HEADER_SIZE = 80


# --- hashing -----------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256d(data: bytes) -> bytes:
    """Bitcoin's double SHA-256 (the digest in internal byte order)."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def hash_to_int(digest_internal: bytes) -> int:
    """The number a digest stands for when compared with a target."""
    return int.from_bytes(digest_internal, "little")


def hash_to_display_hex(digest_internal: bytes) -> str:
    return digest_internal[::-1].hex()


def display_hex_to_internal(hex_display: str) -> bytes:
    return bytes.fromhex(hex_display)[::-1]


def int_to_display_hex(value: int) -> str:
    return f"{value:064x}"


# --- integer serialisation ---------------------------------------------------


def ser_uint32_le(n: int) -> bytes:
    return struct.pack("<I", n)


def deser_uint32_le(b: bytes) -> int:
    return struct.unpack("<I", b)[0]


def ser_uint256_le(n: int) -> bytes:
    return n.to_bytes(32, "little")


def ser_compact_size(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack("<I", n)
    return b"\xff" + struct.pack("<Q", n)


# --- header ------------------------------------------------------------------


@dataclass(frozen=True)
class BlockHeader:
    """The 80 hashed bytes; hashes kept in internal order."""

    version: int
    prev_block_internal: bytes
    merkle_root_internal: bytes
    time: int
    bits: int
    nonce: int

    def serialize(self) -> bytes:
        return (
            struct.pack("<i", _signed32(self.version))
            + self.prev_block_internal
            + self.merkle_root_internal
            + struct.pack("<III", self.time, self.bits, self.nonce)
        )

    @classmethod
    def deserialize(cls, data: bytes) -> BlockHeader:
        if len(data) != HEADER_SIZE:
            raise ValueError(f"a block header is {HEADER_SIZE} bytes, got {len(data)}")
        version = struct.unpack_from("<I", data, 0)[0]
        time, bits, nonce = struct.unpack_from("<III", data, 68)
        return cls(version, data[4:36], data[36:68], time, bits, nonce)

    @classmethod
    def from_hex(cls, header_hex: str) -> BlockHeader:
        return cls.deserialize(parse_header_hex(header_hex))

    @property
    def prev_block_display(self) -> str:
        return self.prev_block_internal[::-1].hex()

    @property
    def merkle_root_display(self) -> str:
        return self.merkle_root_internal[::-1].hex()

    def hash_internal(self) -> bytes:
        return sha256d(self.serialize())

    def hash_display(self) -> str:
        return hash_to_display_hex(self.hash_internal())


def _signed32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def parse_header_hex(header_hex: str) -> bytes:
    """80 header bytes from hex; a ValueError with a one-line reason otherwise."""
    text = header_hex.strip()
    if text.startswith(("0x", "0X")):
        text = text[2:]
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError("header is not valid hex") from None
    if len(raw) != HEADER_SIZE:
        raise ValueError(f"header must be {HEADER_SIZE} bytes ({2 * HEADER_SIZE} hex digits), got {len(raw)} bytes")
    return raw


def header_with_nonce(header: bytes, nonce: int) -> bytes:
    return header[:76] + ser_uint32_le(nonce)


def header_hash_int(header: bytes, nonce: int | None = None) -> int:
    if nonce is not None:
        header = header_with_nonce(header, nonce)
    return hash_to_int(sha256d(header))


def header_bits(header: bytes) -> int:
    return deser_uint32_le(header[72:76])


# --- targets -----------------------------------------------------------------


def nbits_to_target(bits: int) -> int:
    """Decode compact nBits (as Bitcoin Core's arith_uint256::SetCompact)."""
    exponent = bits >> 24
    mantissa = bits & 0x007FFFFF
    if bits & 0x00800000:  # sign bit: a negative target is no target at all
        raise ValueError(f"nBits {bits:08x} encodes a negative target")
    if exponent <= 3:
        target = mantissa >> (8 * (3 - exponent))
    else:
        target = mantissa << (8 * (exponent - 3))
    if target > MAX_TARGET:
        raise ValueError(f"nBits {bits:08x} overflows 256 bits")
    return target


def check_nbits(bits: int) -> int:
    """The target of an nBits some hash can meet; ValueError (one line, naming nBits) otherwise.

    :func:`nbits_to_target` decodes whatever a header carries (zero included);
    this is for a chain's own network target, where a zero target would mean
    no block is ever found. Any representable target is fine, even one above
    regtest's 207fffff.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= 0xFFFFFFFF:
        shown = f"{bits:x}" if isinstance(bits, int) and not isinstance(bits, bool) else repr(bits)
        raise ValueError(f"nBits must be 8 hex digits (a 32-bit compact target like 207fffff), got {shown}")
    if bits & 0x007FFFFF == 0:
        raise ValueError(
            f"nBits {bits:08x} has a zero mantissa, so its target is 0 and no hash can meet it; "
            "expected a nonzero mantissa in the low 23 bits, like 207fffff"
        )
    if bits & 0x00800000:
        raise ValueError(
            f"nBits {bits:08x} has the sign bit (00800000) set: a negative target, which no hash can meet; "
            "expected a mantissa below 800000, like 207fffff"
        )
    mantissa = bits & 0x007FFFFF
    # the largest exponent that keeps mantissa * 256^(exponent - 3) within 256 bits
    max_exponent = 3 + (256 - mantissa.bit_length()) // 8
    if bits >> 24 > max_exponent:
        raise ValueError(
            f"nBits {bits:08x} overflows 256 bits; expected an exponent of at most {max_exponent:02x} "
            f"for mantissa {mantissa:06x}, like 207fffff"
        )
    target = nbits_to_target(bits)
    if target == 0:
        raise ValueError(
            f"nBits {bits:08x} encodes a target of 0 (exponent {bits >> 24:02x} shifts the whole mantissa out), "
            "so no hash can meet it; expected a larger exponent, like 207fffff"
        )
    return target


def parse_nbits_hex(text: str) -> int:
    """nBits from 8 hex digits (an optional 0x), checked with :func:`check_nbits`; ValueError with one line."""
    digits = text.lower().removeprefix("0x") if isinstance(text, str) else ""
    if len(digits) != 8 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"nBits must be 8 hex digits (like 207fffff), got {text!r}")
    bits = int(digits, 16)
    check_nbits(bits)
    return bits


def target_to_nbits(target: int) -> int:
    """Encode a target as compact nBits (as arith_uint256::GetCompact)."""
    size = (target.bit_length() + 7) // 8
    if size <= 3:
        mantissa = target << (8 * (3 - size))
    else:
        mantissa = target >> (8 * (size - 3))
    if mantissa & 0x00800000:
        mantissa >>= 8
        size += 1
    return (size << 24) | mantissa


def target_to_difficulty(target: int) -> float:
    if target <= 0:
        return float("inf")
    return DIFF1_TARGET / target


def difficulty_to_target(difficulty: float) -> int:
    """Share difficulty -> target (pool convention: diff 1 = DIFF1_TARGET)."""
    if not difficulty > 0:
        raise ValueError("difficulty must be positive")
    if isinstance(difficulty, int) or float(difficulty).is_integer():
        target = DIFF1_TARGET // int(difficulty)
    else:
        # Exact rational arithmetic on the float's binary value.
        num, den = float(difficulty).as_integer_ratio()
        target = DIFF1_TARGET * den // num
    return min(target, MAX_TARGET)


def bits_to_difficulty(bits: int) -> float:
    return target_to_difficulty(nbits_to_target(bits))


def parse_target_hex(text: str) -> int:
    """A target written as a number: 64 hex digits, most significant first."""
    t = text.strip().lower()
    if t.startswith("0x"):
        t = t[2:]
    if len(t) != 64:
        raise ValueError(f"target must be 64 hex digits, got {len(t)}")
    try:
        return int(t, 16)
    except ValueError:
        raise ValueError("target is not valid hex") from None


def leading_zero_bits(value: int) -> int:
    return 256 - value.bit_length()


# --- merkle ------------------------------------------------------------------


def merkle_root_from_branches(coinbase_hash_internal: bytes, branches_internal: list[bytes]) -> bytes:
    """Climb from the coinbase's txid to the root, as a Stratum miner does."""
    h = coinbase_hash_internal
    for branch in branches_internal:
        h = sha256d(h + branch)
    return h


def merkle_root(txids_internal: list[bytes]) -> bytes:
    """Root of the full tree (odd levels duplicate their last hash)."""
    if not txids_internal:
        raise ValueError("a merkle tree needs at least one transaction")
    level = list(txids_internal)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def merkle_branches(txids_internal: list[bytes]) -> list[bytes]:
    """The branches a Stratum job sends for the coinbase at index 0.

    ``txids_internal`` are the transactions after the coinbase.
    """
    branches: list[bytes] = []
    level = [b""] + list(txids_internal)  # placeholder for the coinbase
    while len(level) > 1:
        branches.append(level[1])
        if len(level) % 2:
            level.append(level[-1])
        level = [b""] + [sha256d(level[i] + level[i + 1]) for i in range(2, len(level), 2)]
    return branches
