"""Job -> Work: everything done once per work unit, before any nonce.

A :class:`StratumJob` is what ``mining.notify`` carries; a :class:`Work` is a
finished 80-byte header template plus the share target, ready for a kernel.
The same functions rebuild a header from a ``mining.submit`` on the pool side,
so miner and pool cannot disagree about byte order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from miner.block import (
    DIFF1_TARGET,
    difficulty_to_target,
    hash_to_int,
    merkle_root_from_branches,
    nbits_to_target,
    ser_uint32_le,
    sha256d,
)


def swap_words(data: bytes) -> bytes:
    """Reverse the bytes inside each 4-byte word (Stratum's prevhash order)."""
    if len(data) % 4:
        raise ValueError("length must be a multiple of 4")
    return b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))


def stratum_prevhash_to_internal(prevhash_hex: str) -> bytes:
    """``mining.notify``'s prevhash -> the 32 bytes placed in the header."""
    raw = bytes.fromhex(prevhash_hex)
    if len(raw) != 32:
        raise ValueError("prevhash must be 32 bytes")
    return swap_words(raw)


def internal_prevhash_to_stratum(prev_internal: bytes) -> str:
    return swap_words(prev_internal).hex()


def roll_version(job_version: int, mask: int, bits: int) -> int:
    """BIP 310: only bits inside the pool's mask may change."""
    return (job_version & ~mask & 0xFFFFFFFF) | (bits & mask)


@dataclass(frozen=True)
class StratumJob:
    """The fields of one ``mining.notify`` (hex strings as sent on the wire)."""

    job_id: str
    prevhash: str
    coinb1: str
    coinb2: str
    merkle_branch: tuple[str, ...]
    version: str
    nbits: str
    ntime: str
    clean_jobs: bool = False
    #: a header-only job (a Stratum V2 standard channel): the pool fixed the merkle root (hex, internal order),
    #: so there is no coinbase to build and no extranonce to roll; never part of a V1 notify
    merkle_root: str = ""

    @classmethod
    def from_params(cls, params: list) -> StratumJob:
        """Validate and build from the notify's params; ValueError if malformed."""
        if not isinstance(params, list) or len(params) < 9:
            raise ValueError("mining.notify needs 9 params")
        job_id, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean = params[:9]
        for name, value, size in (
            ("prevhash", prevhash, 32),
            ("version", version, 4),
            ("nbits", nbits, 4),
            ("ntime", ntime, 4),
        ):
            if not isinstance(value, str) or not _is_hex(value, size):
                raise ValueError(f"mining.notify: {name} must be {size} bytes of hex")
        for name, value in (("coinb1", coinb1), ("coinb2", coinb2)):
            if not isinstance(value, str) or not _is_hex(value):
                raise ValueError(f"mining.notify: {name} must be hex")
        if not isinstance(branch, list) or not all(isinstance(b, str) and _is_hex(b, 32) for b in branch):
            raise ValueError("mining.notify: merkle branch must be a list of 32-byte hex hashes")
        if not isinstance(job_id, (str, int)):
            raise ValueError("mining.notify: job_id must be a string")
        return cls(str(job_id), prevhash, coinb1, coinb2, tuple(branch), version, nbits, ntime, bool(clean))

    def to_params(self) -> list:
        return [
            self.job_id,
            self.prevhash,
            self.coinb1,
            self.coinb2,
            list(self.merkle_branch),
            self.version,
            self.nbits,
            self.ntime,
            self.clean_jobs,
        ]

    @property
    def version_int(self) -> int:
        return int(self.version, 16)

    @property
    def nbits_int(self) -> int:
        return int(self.nbits, 16)

    @property
    def ntime_int(self) -> int:
        return int(self.ntime, 16)


def _is_hex(value: str, size: int | None = None) -> bool:
    if size is not None and len(value) != 2 * size:
        return False
    if len(value) % 2:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def coinbase_bytes(job: StratumJob, extranonce1: bytes, extranonce2: bytes) -> bytes:
    return bytes.fromhex(job.coinb1) + extranonce1 + extranonce2 + bytes.fromhex(job.coinb2)


def job_merkle_root(job: StratumJob, extranonce1: bytes, extranonce2: bytes) -> bytes:
    if job.merkle_root:
        return bytes.fromhex(job.merkle_root)
    coinbase_hash = sha256d(coinbase_bytes(job, extranonce1, extranonce2))
    return merkle_root_from_branches(coinbase_hash, [bytes.fromhex(b) for b in job.merkle_branch])


def job_header(
    job: StratumJob,
    extranonce1: bytes,
    extranonce2: bytes,
    ntime: int | None = None,
    version: int | None = None,
    nonce: int = 0,
) -> bytes:
    """The 80 header bytes a share for this job hashes."""
    return (
        ser_uint32_le(job.version_int if version is None else version)
        + stratum_prevhash_to_internal(job.prevhash)
        + job_merkle_root(job, extranonce1, extranonce2)
        + ser_uint32_le(job.ntime_int if ntime is None else ntime)
        + ser_uint32_le(job.nbits_int)
        + ser_uint32_le(nonce)
    )


@dataclass(frozen=True)
class Work:
    """One header template and its share target: what the engine scans."""

    header: bytes  # 80 bytes; the nonce field is ignored
    target: int
    job_id: str = ""
    extranonce2: bytes = b""
    version_bits: int | None = None  # the rolled bits to send, when rolling
    network_target: int | None = None
    source: Any = field(default=None, compare=False)  # whatever the work source needs back
    nonce_start: int = 0
    nonce_end: int = 1 << 32

    @property
    def version(self) -> int:
        return struct.unpack_from("<I", self.header, 0)[0]

    @property
    def ntime(self) -> int:
        return struct.unpack_from("<I", self.header, 68)[0]

    @property
    def bits(self) -> int:
        return struct.unpack_from("<I", self.header, 72)[0]

    @property
    def share_difficulty(self) -> float:
        return DIFF1_TARGET / self.target if self.target else float("inf")

    def header_with_nonce(self, nonce: int) -> bytes:
        return self.header[:76] + ser_uint32_le(nonce)


def work_from_job(
    job: StratumJob,
    extranonce1: bytes,
    extranonce2: bytes,
    difficulty: float,
    *,
    version_mask: int = 0,
    version_bits: int | None = None,
    source: Any = None,
) -> Work:
    """Job + extranonce2 (+ rolled version bits) -> Work with the share target."""
    version = job.version_int
    if version_mask and version_bits is not None:
        version = roll_version(version, version_mask, version_bits)
        sent_bits: int | None = version & version_mask
    else:
        sent_bits = None
    header = job_header(job, extranonce1, extranonce2, version=version)
    return Work(
        header=header,
        target=difficulty_to_target(difficulty),
        job_id=job.job_id,
        extranonce2=extranonce2,
        version_bits=sent_bits,
        network_target=nbits_to_target(job.nbits_int),
        source=source,
    )


@dataclass(frozen=True)
class Share:
    """A nonce whose header hash meets the work's target, verified by hashlib."""

    work: Work
    nonce: int
    hash_internal: bytes
    device: str = ""

    @property
    def hash_int(self) -> int:
        return hash_to_int(self.hash_internal)

    @property
    def difficulty(self) -> float:
        """The share's own difficulty (what its hash would meet)."""
        value = self.hash_int
        return DIFF1_TARGET / value if value else float("inf")

    @property
    def is_block(self) -> bool:
        return self.work.network_target is not None and self.hash_int <= self.work.network_target

    @property
    def header(self) -> bytes:
        return self.work.header_with_nonce(self.nonce)

    @property
    def hash_display(self) -> str:
        return self.hash_internal[::-1].hex()
