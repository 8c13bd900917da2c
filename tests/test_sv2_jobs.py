"""V2 jobs to block headers, held to real blocks (the genesis block and block 125552, tests/data/vectors)."""

import pytest

from stratum.v2 import jobs
from stratum.v2 import messages as m

# The genesis block's only transaction (public data); its txid is the genesis merkle root.
GENESIS_COINBASE = bytes.fromhex(
    "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d0104455468"
    "652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e6420"
    "6261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b7105cd6"
    "a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000"
)
# Block 125552's four txids (display order); the first is its coinbase.
TXIDS_125552 = [
    "51d37bdd871c9e1f4d5541be67a6ab625e32028744d7d4609d0c37747b40cd2d",
    "60c25dda8d41f8d3d7d5c6249e2ea1b05a25bf7ae2ad6d904b512b31f997e1a1",
    "01f314cdd8566d3e5dbdd97de2d9fbfbfd6873e916a00d48758282cbb81a45b9",
    "b519286a1040da6ad83c783eb2872659eaf57b1bec088e614776ffe7dc8f6d01",
]


def _internal(display_hex: str) -> bytes:
    return bytes.fromhex(display_hex)[::-1]


def _by_name(header_vectors, name):
    return next(v for v in header_vectors if v["name"] == name)


@pytest.mark.parametrize("name", ["mainnet genesis (height 0)", "mainnet block 125552"])
def test_a_standard_job_and_prev_hash_give_the_real_header_and_its_hash(header_vectors, name):
    v = _by_name(header_vectors, name)
    job = m.NewMiningJob(1, 1, v["time"], v["version"], _internal(v["merkle_root"]))
    prev = m.SetNewPrevHash(1, 1, _internal(v["prev_block_hash"]), v["time"], int(v["bits"], 16))
    header = jobs.header_le(job.version, prev.prev_hash, job.merkle_root, v["time"], prev.nbits, v["nonce"])
    assert header.hex() == v["header_hex"]
    assert jobs.sha256d(header)[::-1].hex() == v["block_hash"]
    assert jobs.meets_target(header, jobs.nbits_to_target(prev.nbits))
    assert not jobs.meets_target(header, jobs.hash_value(header) - 1)


def test_a_new_mining_job_from_the_wire_carries_the_root_in_header_order(header_vectors):
    v = _by_name(header_vectors, "mainnet block 125552")
    frame = m.NewMiningJob(3, 9, None, v["version"], _internal(v["merkle_root"])).to_frame()
    assert frame.endswith(bytes.fromhex(v["header_hex"])[36:68])


def test_an_extended_job_folds_block_125552s_merkle_path(header_vectors):
    v = _by_name(header_vectors, "mainnet block 125552")
    tx = [_internal(t) for t in TXIDS_125552]
    path = [tx[1], jobs.sha256d(tx[2] + tx[3])]
    assert jobs.merkle_root(tx[0], path) == _internal(v["merkle_root"])


def test_an_extended_job_rebuilds_the_genesis_coinbase_around_the_extranonce(header_vectors):
    v = _by_name(header_vectors, "mainnet genesis (height 0)")
    # split the scriptSig's first push (04ffff001d) into pool prefix, channel prefix and miner extranonce
    at = GENESIS_COINBASE.index(bytes.fromhex("04ffff001d")) + 1
    prefix, ext_prefix, extranonce, suffix = (
        GENESIS_COINBASE[:at],
        GENESIS_COINBASE[at : at + 2],
        GENESIS_COINBASE[at + 2 : at + 4],
        GENESIS_COINBASE[at + 4 :],
    )
    job = m.NewExtendedMiningJob(1, 7, None, 1, True, [], prefix, suffix)
    assert jobs.extended_merkle_root(job, ext_prefix, extranonce) == _internal(v["merkle_root"])
    header = jobs.header_le(
        1, bytes(32), jobs.extended_merkle_root(job, ext_prefix, extranonce), v["time"], 0x1D00FFFF, v["nonce"]
    )
    assert header.hex() == v["header_hex"]
    assert jobs.extended_merkle_root(job, ext_prefix, b"\x00\x00") != _internal(v["merkle_root"])


def test_a_standard_channel_job_made_from_an_extended_job_uses_the_channels_prefix(header_vectors):
    v = _by_name(header_vectors, "mainnet genesis (height 0)")
    at = GENESIS_COINBASE.index(bytes.fromhex("04ffff001d")) + 1
    job = m.NewExtendedMiningJob(100, 7, 5, 1, True, [], GENESIS_COINBASE[:at], GENESIS_COINBASE[at + 4 :])
    standard = jobs.standard_job(job, 12, GENESIS_COINBASE[at : at + 4])
    assert standard == m.NewMiningJob(12, 7, 5, 1, _internal(v["merkle_root"]))


def test_nbits_to_target():
    assert jobs.nbits_to_target(0x1D00FFFF) == 0xFFFF << 208
    assert jobs.nbits_to_target(0x207FFFFF) == 0x7FFFFF << 232
    assert jobs.nbits_to_target(0x03123456) == 0x123456
    assert jobs.nbits_to_target(0x01123456) == 0x12
    assert jobs.nbits_to_target(0x04923456) == 0
