"""How a Stratum V2 job becomes the 80-byte block header that gets hashed (sv2-spec 5.1, 5.3.15 - 5.3.17).

A *standard* job is header-only: the pool already fixed the merkle root, so
the header is ``version | prev_hash | merkle_root | ntime | nbits | nonce``
with ``prev_hash`` and ``nbits`` from the channel's latest SetNewPrevHash.
An *extended* job sends the coinbase in two halves around the extranonce and
the merkle path; the miner builds the coinbase, hashes it to its txid and
folds the path in to get the root, exactly as V1's mining.notify does.

Byte order: ``prev_hash``, ``merkle_root`` and the merkle path are 32 bytes in
internal order (as in the header, reversed from how explorers display them);
the integers are written little-endian. A share's hash is the header's
double SHA-256 read as a little-endian number, and it is good when that
number is at most the channel's target.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from stratum.v2.messages import NewExtendedMiningJob, NewMiningJob


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def header_le(version: int, prev_hash: bytes, merkle_root: bytes, ntime: int, nbits: int, nonce: int) -> bytes:
    """The 80-byte block header, as hashed and as sent to a node."""
    if len(prev_hash) != 32 or len(merkle_root) != 32:
        raise ValueError("prev_hash and merkle_root are 32 bytes each")
    return (
        version.to_bytes(4, "little")
        + prev_hash
        + merkle_root
        + ntime.to_bytes(4, "little")
        + nbits.to_bytes(4, "little")
        + nonce.to_bytes(4, "little")
    )


def coinbase_tx(prefix: bytes, extranonce_prefix: bytes, extranonce: bytes, suffix: bytes) -> bytes:
    """The coinbase without BIP 141 fields: ``coinbase_tx_prefix | extranonce_prefix | extranonce | suffix``."""
    return prefix + extranonce_prefix + extranonce + suffix


def merkle_root(coinbase_txid: bytes, merkle_path: Iterable[bytes]) -> bytes:
    """Fold the path, deepest first, onto the coinbase's txid (all internal order)."""
    root = coinbase_txid
    for branch in merkle_path:
        root = sha256d(root + branch)
    return root


def extended_merkle_root(job: NewExtendedMiningJob, extranonce_prefix: bytes, extranonce: bytes) -> bytes:
    coinbase = coinbase_tx(job.coinbase_tx_prefix, extranonce_prefix, extranonce, job.coinbase_tx_suffix)
    return merkle_root(sha256d(coinbase), job.merkle_path)


def standard_job(job: NewExtendedMiningJob, channel_id: int, extranonce_prefix: bytes) -> NewMiningJob:
    """An extended job turned into a standard channel's header-only job (the channel's prefix fills the gap)."""
    root = extended_merkle_root(job, extranonce_prefix, b"")
    return NewMiningJob(channel_id, job.job_id, job.min_ntime, job.version, root)


def hash_value(header80: bytes) -> int:
    """The header's double SHA-256 as the number compared with targets (little-endian)."""
    return int.from_bytes(sha256d(header80), "little")


def meets_target(header80: bytes, target: int) -> bool:
    return hash_value(header80) <= target


def nbits_to_target(nbits: int) -> int:
    """The network target a header's compact ``nbits`` stands for."""
    exponent, mantissa = nbits >> 24, nbits & 0x007FFFFF
    if nbits & 0x00800000:
        return 0  # negative targets are never met
    return mantissa >> (8 * (3 - exponent)) if exponent <= 3 else mantissa << (8 * (exponent - 3))
