"""The interface every scanning backend implements.

A backend scans nonces of one 80-byte header against a target. Work that does
not depend on the nonce is done once, in :func:`prepare`: the midstate of the
first 64 bytes and the three tail words of the second block. A backend then
returns *candidates*: every nonce whose hash has its top 32 bits at or below
the target's top 32 bits. That is a superset of the exact hits (the host
finishes the comparison with hashlib), which lets kernels compare one word.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from kernels import reference

NONCE_LIMIT = 1 << 32


class BackendUnavailable(RuntimeError):
    """A backend cannot run here; the message names the cause in one line."""


@dataclass(frozen=True)
class Prepared:
    """Nonce-independent inputs of a scan."""

    header76: bytes
    target: int
    midstate: tuple[int, ...]  # SHA-256 state after header bytes 0..63
    tail_be: tuple[int, int, int]  # header bytes 64..75 as big-endian words
    target_top: int  # target >> 224: the kernel's one-word filter


def prepare(header: bytes, target: int) -> Prepared:
    if len(header) < 76:
        raise ValueError("header must have at least 76 bytes")
    if not 0 <= target < 1 << 256:
        raise ValueError("target out of range")
    h76 = bytes(header[:76])
    tail = tuple(int.from_bytes(h76[64 + 4 * i : 68 + 4 * i], "big") for i in range(3))
    return Prepared(h76, target, reference.midstate(h76[:64]), tail, target >> 224)  # type: ignore[arg-type]


def check_range(start: int, count: int) -> None:
    if start < 0 or count < 0:
        raise ValueError("nonce range must not be negative")
    if start + count > NONCE_LIMIT:
        raise ValueError(f"nonce range [{start}, {start + count}) runs past 2^32")


class Backend(ABC):
    """One kind of scanner. Instances are safe to share between threads."""

    name: str = "?"
    #: nonces per call that take roughly 50-200 ms on one thread/device
    default_chunk: int = 1 << 20

    def prepare(self, header: bytes, target: int) -> Prepared:
        return prepare(header, target)

    @abstractmethod
    def scan(self, prepared: Prepared, start: int, count: int) -> list[int]:
        """Candidate nonces in [start, start+count), ascending, each once."""

    def describe(self) -> str:
        return self.name
