"""Stratum V2 data types (sv2-spec 3.1): how each field type is laid out in bytes.

Every multi-byte integer is little-endian. The writers are plain functions
named after the spec's types (``u32(x)``, ``str0_255(s)``, ``seq0_255_u256(xs)``)
so a message's ``encode`` reads like its table in the spec; :class:`Reader`
has one method per type for the matching ``decode``.

Two readings of U256 are offered because the spec uses the one type for two
things. A *target* is a number: :func:`u256_int` / :meth:`Reader.u256_int`
convert it from and to a Python ``int`` (little-endian on the wire). A *hash*
(``prev_hash``, ``merkle_root``, merkle path entries) is 32 bytes in internal
order, exactly as they sit in the 80-byte block header: :func:`u256_bytes` /
:meth:`Reader.u256_bytes` pass them through untouched.

Strings (STR0_255) must be UTF-8 here; the spec recommends it and every
implementation we know of sends ASCII. Anything malformed raises
:class:`DecodeError`, which the session core turns into a protocol violation.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable


class DecodeError(ValueError):
    """The bytes do not hold a well-formed value of the expected type."""


class EncodeError(ValueError):
    """A value does not fit the field type it is being written as (our own bug)."""


# --- writers ---------------------------------------------------------------------------------------------------------


def _uint(value: int, size: int, name: str) -> bytes:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << (8 * size):
        raise EncodeError(f"{name} out of range: {value!r}")
    return value.to_bytes(size, "little")


def u8(value: int) -> bytes:
    return _uint(value, 1, "U8")


def u16(value: int) -> bytes:
    return _uint(value, 2, "U16")


def u24(value: int) -> bytes:
    return _uint(value, 3, "U24")


def u32(value: int) -> bytes:
    return _uint(value, 4, "U32")


def u64(value: int) -> bytes:
    return _uint(value, 8, "U64")


def boolean(value: bool) -> bytes:
    """BOOL: one byte, 1 or 0 (readers look only at the lowest bit)."""
    return b"\x01" if value else b"\x00"


def f32(value: float) -> bytes:
    """F32: an IEEE 754 single, little-endian (``nominal_hash_rate``)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise EncodeError(f"F32 must be finite: {value!r}")
    try:
        return struct.pack("<f", value)
    except (struct.error, OverflowError) as exc:
        raise EncodeError(f"F32 out of range: {value!r}") from exc


def u256_int(value: int) -> bytes:
    """U256 read as a number (a target): 32 bytes, little-endian."""
    return _uint(value, 32, "U256")


def u256_bytes(value: bytes) -> bytes:
    """U256 holding a hash: 32 bytes passed through in internal (header) order."""
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise EncodeError(f"U256 must be 32 bytes, got {value!r}")
    return bytes(value)


def _prefixed(data: bytes, prefix_size: int, limit: int, name: str) -> bytes:
    if not isinstance(data, (bytes, bytearray)):
        raise EncodeError(f"{name} must be bytes, got {type(data).__name__}")
    if len(data) > limit:
        raise EncodeError(f"{name} holds at most {limit} bytes, got {len(data)}")
    return len(data).to_bytes(prefix_size, "little") + bytes(data)


def b0_32(data: bytes) -> bytes:
    return _prefixed(data, 1, 32, "B0_32")


def b0_255(data: bytes) -> bytes:
    return _prefixed(data, 1, 255, "B0_255")


def b0_64k(data: bytes) -> bytes:
    return _prefixed(data, 2, 0xFFFF, "B0_64K")


def b0_16m(data: bytes) -> bytes:
    return _prefixed(data, 3, 0xFFFFFF, "B0_16M")


def str0_255(text: str) -> bytes:
    """STR0_255: a one-byte length, then that many bytes of UTF-8 (not NUL-terminated)."""
    if not isinstance(text, str):
        raise EncodeError(f"STR0_255 must be str, got {type(text).__name__}")
    return _prefixed(text.encode("utf-8"), 1, 255, "STR0_255")


def option_u32(value: int | None) -> bytes:
    """OPTION[U32] (SEQ0_1): a count of 0 or 1, then the value if present."""
    return b"\x00" if value is None else b"\x01" + u32(value)


def seq0_255_u256(items: Iterable[bytes]) -> bytes:
    """SEQ0_255[U256] of hashes (a merkle path): a one-byte count, then 32 bytes each."""
    items = list(items)
    if len(items) > 255:
        raise EncodeError(f"SEQ0_255 holds at most 255 items, got {len(items)}")
    return u8(len(items)) + b"".join(u256_bytes(item) for item in items)


def seq0_64k_u32(items: Iterable[int]) -> bytes:
    """SEQ0_64K[U32]: a two-byte count, then four bytes each."""
    items = list(items)
    if len(items) > 0xFFFF:
        raise EncodeError(f"SEQ0_64K holds at most 65535 items, got {len(items)}")
    return u16(len(items)) + b"".join(u32(item) for item in items)


# --- reader ----------------------------------------------------------------------------------------------------------


class Reader:
    """Reads spec types off the front of a payload; :meth:`finish` insists nothing is left over."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, size: int, what: str = "field") -> bytes:
        if size > self.remaining:
            raise DecodeError(f"{what} needs {size} bytes, only {self.remaining} left")
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def finish(self) -> None:
        if self.remaining:
            raise DecodeError(f"{self.remaining} bytes left over after the last field")

    def _uint(self, size: int, name: str) -> int:
        return int.from_bytes(self.take(size, name), "little")

    def u8(self) -> int:
        return self._uint(1, "U8")

    def u16(self) -> int:
        return self._uint(2, "U16")

    def u24(self) -> int:
        return self._uint(3, "U24")

    def u32(self) -> int:
        return self._uint(4, "U32")

    def u64(self) -> int:
        return self._uint(8, "U64")

    def boolean(self) -> bool:
        return bool(self.take(1, "BOOL")[0] & 1)

    def f32(self) -> float:
        return struct.unpack("<f", self.take(4, "F32"))[0]

    def u256_int(self) -> int:
        return self._uint(32, "U256")

    def u256_bytes(self) -> bytes:
        return self.take(32, "U256")

    def _prefixed(self, prefix_size: int, limit: int, name: str) -> bytes:
        size = self._uint(prefix_size, f"{name} length")
        if size > limit:
            raise DecodeError(f"{name} says {size} bytes, at most {limit} allowed")
        return self.take(size, name)

    def b0_32(self) -> bytes:
        return self._prefixed(1, 32, "B0_32")

    def b0_255(self) -> bytes:
        return self._prefixed(1, 255, "B0_255")

    def b0_64k(self) -> bytes:
        return self._prefixed(2, 0xFFFF, "B0_64K")

    def b0_16m(self) -> bytes:
        return self._prefixed(3, 0xFFFFFF, "B0_16M")

    def str0_255(self) -> str:
        raw = self._prefixed(1, 255, "STR0_255")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"STR0_255 is not UTF-8: {raw[:32]!r}") from exc

    def option_u32(self) -> int | None:
        count = self._uint(1, "OPTION length")
        if count > 1:
            raise DecodeError(f"OPTION holds 0 or 1 items, says {count}")
        return self.u32() if count else None

    def seq0_255_u256(self) -> list[bytes]:
        count = self._uint(1, "SEQ0_255 length")
        return [self.u256_bytes() for _ in range(count)]

    def seq0_64k_u32(self) -> list[int]:
        count = self._uint(2, "SEQ0_64K length")
        return [self.u32() for _ in range(count)]
