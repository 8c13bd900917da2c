"""The pure-Python backend: the reference SHA-256, for teaching and checking."""

from __future__ import annotations

from kernels import reference
from kernels.base import Backend, Prepared, check_range


class ReferenceBackend(Backend):
    name = "reference"
    default_chunk = 256

    def scan(self, prepared: Prepared, start: int, count: int) -> list[int]:
        check_range(start, count)
        found = []
        for nonce in range(start, start + count):
            header = prepared.header76 + nonce.to_bytes(4, "little")
            digest = reference.sha256d(header)
            if int.from_bytes(digest[28:32], "little") <= prepared.target_top:
                found.append(nonce)
        return found
