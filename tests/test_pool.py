"""Pool logic without sockets: jobs, share validation, blocks, vardiff."""

from __future__ import annotations

import dataclasses
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miner.block import (
    BlockHeader,
    difficulty_to_target,
    hash_to_int,
    merkle_branches,
    merkle_root,
    nbits_to_target,
    sha256d,
)
from miner.coinbase import bip34_height_push, coinbase_txid
from miner.pool import REGTEST_NBITS, EmbeddedChain, Pool, PoolJob, Vardiff
from miner.work import StratumJob, job_header, roll_version
from stratum.server import RequestError

SHARE_DIFF = 2.0**-24  # ~256 hashes a share (diff 1 = 2^32 hashes): hashlib finds one at once
HARD_NBITS = 0x1D00FFFF  # difficulty 1: no share here is ever a block


class FakeOutbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    def notify(self, params: list) -> None:
        self.sent.append(("notify", params))

    def set_difficulty(self, difficulty: float) -> None:
        self.sent.append(("set_difficulty", difficulty))

    def set_version_mask(self, mask: int) -> None:
        self.sent.append(("set_version_mask", mask))

    def show_message(self, text: str) -> None:
        self.sent.append(("show_message", text))

    def close(self) -> None:
        self.sent.append(("close", None))

    def notifies(self) -> list[StratumJob]:
        return [StratumJob.from_params(p) for kind, p in self.sent if kind == "notify"]

    def difficulties(self) -> list[float]:
        return [d for kind, d in self.sent if kind == "set_difficulty"]


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_pool(nbits: int = HARD_NBITS, **kwargs) -> Pool:
    kwargs.setdefault("difficulty", SHARE_DIFF)
    kwargs.setdefault("vardiff", False)
    pool = Pool(EmbeddedChain(nbits=nbits), **kwargs)
    pool.start()
    return pool


def connect(pool: Pool, worker: str = "alice", version_mask: int | None = None):
    outbox = FakeOutbox()
    session = pool.open_session(outbox, "127.0.0.1:1")
    if version_mask is not None:
        session.configure(["version-rolling"], {"version-rolling.mask": f"{version_mask:08x}"})
    _, e1, size = session.subscribe("test/1", None)
    session.subscribed()
    assert session.authorize(worker, "x")
    return session, outbox, e1, size


def find_nonce(job: StratumJob, e1: bytes, e2: bytes, want, ntime: int | None = None, version: int | None = None):
    """The first nonce whose hash satisfies ``want(hash_int)``."""
    base = job_header(job, e1, e2, ntime=ntime, version=version)
    for nonce in range(1 << 20):
        value = hash_to_int(sha256d(base[:76] + nonce.to_bytes(4, "little")))
        if want(value):
            return nonce
    raise AssertionError("no nonce found")


def share_nonce(job: StratumJob, e1: bytes, e2: bytes, difficulty: float = SHARE_DIFF, **kw) -> int:
    target = difficulty_to_target(difficulty)
    return find_nonce(job, e1, e2, lambda v: v <= target, **kw)


def submit(session, job: StratumJob, e2: bytes, nonce: int, worker="alice", ntime=None, version_bits=None):
    ntime_hex = job.ntime if ntime is None else f"{ntime:08x}"
    bits = None if version_bits is None else f"{version_bits:08x}"
    return session.submit(worker, job.job_id, e2.hex(), ntime_hex, f"{nonce:08x}", bits)


def rejection(fn, *args, **kwargs) -> tuple[int, str]:
    with pytest.raises(RequestError) as info:
        fn(*args, **kwargs)
    return info.value.code, info.value.message


# --- jobs and the embedded chain --------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    txids=st.lists(st.binary(min_size=32, max_size=32), max_size=9),
    e1=st.binary(min_size=4, max_size=4),
    e2=st.binary(min_size=4, max_size=4),
    nonce=st.integers(0, 2**32 - 1),
)
def test_header_from_notify_matches_direct_construction(txids, e1, e2, nonce):
    chain = EmbeddedChain()
    base = chain.current()
    job = PoolJob(
        "7",
        base.prev_block_internal,
        base.coinb1,
        base.coinb2,
        merkle_branches(txids),
        0x20000004,
        0x1D00FFFF,
        1700000000,
        base.height,
        [],
    )
    coinbase = job.coinb1 + e1 + e2 + job.coinb2
    direct = BlockHeader(
        job.version,
        job.prev_block_internal,
        merkle_root([coinbase_txid(coinbase)] + txids),
        job.ntime,
        job.nbits,
        nonce,
    ).serialize()
    stratum = StratumJob.from_params(job.stratum_job(True).to_params())
    assert job_header(stratum, e1, e2, nonce=nonce) == direct


def test_embedded_chain_coinbase_carries_bip34_height_and_advances_on_a_block():
    chain = EmbeddedChain(start_height=200)
    seen: list[tuple[PoolJob, bool]] = []
    chain.add_listener(lambda job, clean: seen.append((job, clean)))
    job = chain.current()
    assert job.height == 200 and job.nbits == 0x207FFFFF
    assert bip34_height_push(200) in job.coinb1[41:]
    e = b"\x00" * 8
    coinbase = job.coinb1 + e + job.coinb2
    stratum = job.stratum_job()
    nonce = find_nonce(stratum, e[:4], e[4:], lambda v: v <= job.network_target)
    header = job_header(stratum, e[:4], e[4:], nonce=nonce)
    assert chain.submit_block(job, header, coinbase) == "accepted"
    assert chain.height == 201 and chain.tip_internal == sha256d(header)
    assert len(seen) == 1 and seen[0][1] is True and seen[0][0].prev_block_internal == sha256d(header)
    assert seen[0][0].height == 201 and bip34_height_push(201) in seen[0][0].coinb1[41:]
    # the old job is now stale; a second solution on it is refused
    assert chain.submit_block(job, header, coinbase) == "stale-prevblk"
    assert chain.height == 201 and len(chain.blocks) == 1


@pytest.mark.parametrize(
    "bits, reason",
    [
        (0x00000000, "zero mantissa"),
        (0x1D000000, "zero mantissa"),
        (0x01003456, "target of 0"),
        (0x04923456, "sign bit"),
        (0xFF123456, "overflows 256 bits"),
        (0x1D00FFFF00, "8 hex digits"),  # what int("1d00ffff00", 16) gives a caller
    ],
)
def test_embedded_chain_refuses_an_nbits_no_block_can_meet(bits, reason):
    with pytest.raises(ValueError, match=reason) as info:
        EmbeddedChain(nbits=bits)
    message = str(info.value)
    assert message.startswith("nBits") and "\n" not in message and "like 207fffff" in message


def test_embedded_chain_takes_any_representable_target_even_above_regtest():
    chain = EmbeddedChain(nbits=0x2100FFFF)
    assert chain.current().network_target == 0xFFFF << (8 * 30) > nbits_to_target(REGTEST_NBITS)


def test_embedded_chain_refuses_high_hash_and_bad_merkle_root():
    chain = EmbeddedChain(nbits=HARD_NBITS)
    job = chain.current()
    stratum = job.stratum_job()
    e1, e2 = b"\x00" * 4, b"\x00" * 4
    coinbase = job.coinb1 + e1 + e2 + job.coinb2
    nonce = find_nonce(stratum, e1, e2, lambda v: v > job.network_target)
    assert chain.submit_block(job, job_header(stratum, e1, e2, nonce=nonce), coinbase) == "high-hash"
    easy = EmbeddedChain()
    job = easy.current()
    stratum = job.stratum_job()
    nonce = find_nonce(stratum, e1, e2, lambda v: v <= job.network_target)
    header = job_header(stratum, e1, e2, nonce=nonce)
    other = job.coinb1 + e1 + b"\x01\x00\x00\x00" + job.coinb2  # the header commits to a different coinbase
    assert easy.submit_block(job, header, other) == "bad-txnmrklroot"
    assert easy.height == 1


# --- subscribe and shares ---------------------------------------------------------------------------------------------


def test_subscribe_hands_out_distinct_extranonce1_then_difficulty_then_a_clean_job():
    pool = make_pool()
    s1, out1, e1a, size = connect(pool)
    s2, out2, e1b, _ = connect(pool)
    assert len(e1a) == 4 and size == 4 and e1a != e1b
    assert [kind for kind, _ in out1.sent[:2]] == ["set_difficulty", "notify"]
    assert out1.difficulties() == [SHARE_DIFF]
    job = out1.notifies()[0]
    assert job.clean_jobs and job.job_id == pool.current_job().job_id


def test_accepted_share_then_duplicate_then_low_difficulty():
    pool = make_pool()
    session, out, e1, _ = connect(pool)
    job = out.notifies()[0]
    e2 = b"\x00\x00\x00\x07"
    nonce = share_nonce(job, e1, e2)
    result = submit(session, job, e2, nonce)
    assert result.block is None and result.difficulty == SHARE_DIFF and result.share_difficulty >= SHARE_DIFF
    assert rejection(submit, session, job, e2, nonce)[0] == 22
    bad = find_nonce(job, e1, e2, lambda v: v > difficulty_to_target(SHARE_DIFF))
    assert rejection(submit, session, job, e2, bad)[0] == 23
    assert pool.summary()["accepted"] == 1 and pool.summary()["rejected"] == 2


def test_each_request_error_code():
    pool = make_pool()
    session, out, e1, _ = connect(pool)
    job = out.notifies()[0]
    e2 = b"\x00\x00\x00\x01"
    nonce = share_nonce(job, e1, e2)
    assert rejection(session.submit, "alice", "nope", e2.hex(), job.ntime, f"{nonce:08x}")[0] == 21
    assert rejection(submit, session, job, e2, nonce, worker="mallory")[0] == 24
    code, reason = rejection(session.submit, "alice", job.job_id, "0001", job.ntime, f"{nonce:08x}")
    assert code == 20 and "extranonce2" in reason
    code, reason = rejection(submit, session, job, e2, nonce, ntime=job.ntime_int - 1)
    assert code == 20 and "ntime" in reason
    code, reason = rejection(submit, session, job, e2, nonce, ntime=job.ntime_int + 3 * 3600 + 10**6)
    assert code == 20 and "ntime" in reason
    code, reason = rejection(submit, session, job, e2, nonce, version_bits=0x00002000)
    assert code == 20 and "version" in reason  # no rolling was negotiated
    code, reason = rejection(session.submit, "alice", job.job_id, "zz" * 4, job.ntime, f"{nonce:08x}")
    assert code == 20 and "hex" in reason
    lonely = pool.open_session(FakeOutbox(), "127.0.0.1:2")
    assert rejection(submit, lonely, job, e2, nonce)[0] == 25
    assert pool.summary()["rejected"] == 8 and pool.summary()["accepted"] == 0


def test_rolled_ntime_is_accepted_within_range():
    pool = make_pool()
    session, out, e1, _ = connect(pool)
    job = out.notifies()[0]
    e2 = b"\x00\x00\x00\x02"
    ntime = job.ntime_int + 30
    nonce = share_nonce(job, e1, e2, ntime=ntime)
    assert submit(session, job, e2, nonce, ntime=ntime).block is None


def test_version_rolling_inside_the_mask_is_hashed_with_the_rolled_version():
    pool = make_pool(version_mask=0x1FFFE000)
    session, out, e1, _ = connect(pool, version_mask=0xFFFFFFFF)
    assert session.version_mask == 0x1FFFE000
    job = out.notifies()[0]
    e2 = b"\x00\x00\x00\x03"
    bits = 0x00006000
    version = roll_version(job.version_int, 0x1FFFE000, bits)
    nonce = share_nonce(job, e1, e2, version=version)
    result = submit(session, job, e2, nonce, version_bits=bits)
    assert result.hash_internal == sha256d(job_header(job, e1, e2, version=version, nonce=nonce))
    code, reason = rejection(submit, session, job, e2, nonce, version_bits=0x80000000)
    assert code == 20 and "mask" in reason


def test_miner_mask_narrows_the_pool_mask():
    pool = make_pool(version_mask=0x1FFFE000)
    session = pool.open_session(FakeOutbox(), "p")
    assert session.configure(["version-rolling"], {"version-rolling.mask": "00ff0000"}) == 0x00FF0000
    assert session.configure(["minimum-difficulty"], {}) == 0


def test_a_block_advances_the_chain_and_sends_a_clean_job_to_every_connection():
    pool = make_pool(nbits=0x207FFFFF)
    chain = pool.job_source
    a, out_a, e1, _ = connect(pool)
    b, out_b, _, _ = connect(pool, worker="bob")
    job = out_a.notifies()[0]
    e2 = b"\x00\x00\x00\x04"
    nonce = share_nonce(job, e1, e2)
    result = submit(a, job, e2, nonce)
    assert result.block == "accepted"
    assert chain.height == 2 and pool.summary()["blocks"] == 1 and pool.block_hashes
    for out in (out_a, out_b):
        latest = out.notifies()[-1]
        assert latest.clean_jobs and latest.job_id != job.job_id
        assert latest.prevhash == pool.current_job().stratum_job().prevhash
    block = chain.blocks[0]
    assert sha256d(block[:80]) == chain.tip_internal
    assert hash_to_int(chain.tip_internal) <= nbits_to_target(0x207FFFFF)
    # the old job is stale now
    nonce2 = share_nonce(job, e1, b"\x00\x00\x00\x05")
    code, reason = rejection(submit, a, job, b"\x00\x00\x00\x05", nonce2)
    assert code == 21 and "stale" in reason
    assert rejection(submit, a, dataclasses.replace(job, job_id="nope"), b"\x00\x00\x00\x05", nonce2)[0] == 21
    assert pool.rejection_reasons() == {"stale job": 1, "job not found": 1}


def test_credentials_are_checked_when_configured():
    pool = make_pool(credentials={"alice": "secret"})
    session = pool.open_session(FakeOutbox(), "p")
    session.subscribe("", None)
    assert session.authorize("alice", "secret")
    assert not session.authorize("alice", "wrong")
    assert not session.authorize("bob", "secret")


def test_resume_with_session_id_keeps_extranonce1_and_its_jobs():
    pool = make_pool()
    session, out, e1, _ = connect(pool)
    job = out.notifies()[0]
    session.close()
    again = pool.open_session(FakeOutbox(), "p2")
    _, e1_again, _ = again.subscribe("test/1", e1.hex())
    assert e1_again == e1
    assert again.authorize("alice", "")
    e2 = b"\x00\x00\x00\x09"
    assert submit(again, job, e2, share_nonce(job, e1, e2)).block is None
    # a session id in use by a live connection is not handed out twice
    third = pool.open_session(FakeOutbox(), "p3")
    assert third.subscribe("test/1", e1.hex())[1] != e1


def test_suggest_difficulty_before_subscribe_sets_the_first_difficulty():
    pool = make_pool()
    session = pool.open_session(out := FakeOutbox(), "p")
    session.suggest_difficulty(0.5)
    session.subscribe("", None)
    session.subscribed()
    assert out.difficulties() == [0.5]
    assert rejection(session.suggest_difficulty, -1)[0] == 20


# --- vardiff ----------------------------------------------------------------------------------------------------------


def test_vardiff_raises_difficulty_for_fast_shares_with_a_bounded_step():
    v = Vardiff(1.0, interval=5.0, now=0.0)
    for _ in range(4):
        v.record_share(1.0)
    assert v.retarget(2.5) == 4.0  # 4 shares in 2.5 s wants 8, capped at 4x
    for _ in range(4):
        v.record_share(4.0)
    assert v.retarget(2.5 + 16 * 5.0 / 4 / 2) == pytest.approx(8.0)  # 16 diff-units in 10 s at 5 s/share


def test_vardiff_meets_a_flood_with_one_jump_timed_from_the_first_share():
    # a miner that took 3 s to start hashing, then sent 4 shares 0.1 s apart: 50 times the wanted pace
    v = Vardiff(1.0, interval=5.0, now=0.0)
    for i in range(4):
        v.record_share(1.0, 3.0 + 0.1 * i)
    assert v.retarget(3.3) == pytest.approx(50.0)  # not 4x a window: on a block-per-share chain each is a block
    for i in range(4):
        v.record_share(50.0, 4.0 + 2.0 * i)
    assert v.retarget(11.3) == pytest.approx(125.0)  # 200 diff-units in 8 s: 2.5x the pace, a normal step
    flood = Vardiff(1.0, interval=5.0, now=0.0)
    for i in range(4):
        flood.record_share(1.0, 1.0 + 1e-4 * i)
    assert flood.retarget(1.0003) == 256.0  # a jump is bounded too
    mild = Vardiff(1.0, interval=5.0, now=0.0)
    for i in range(4):
        mild.record_share(1.0, 1.0 + 0.6 * i)
    assert mild.retarget(2.8) == 4.0  # 8x the pace is no flood: the usual 4x step
    silent = Vardiff(1.0, interval=5.0, now=0.0)
    silent.record_share(1.0, 0.0)
    silent.record_share(1.0, 0.001)
    assert silent.retarget(0.002) is None  # two quick shares are no window: nothing before four


def test_vardiff_lowers_difficulty_when_shares_stop_and_respects_bounds():
    v = Vardiff(1.0, interval=5.0, min_difficulty=0.5, now=0.0)
    assert v.retarget(10.0) is None  # not yet: the window is 20 s
    assert v.retarget(20.0) == 0.5  # nothing for 20 s: a quarter, floored at the minimum
    assert v.retarget(45.0) is None  # already at the floor


def test_vardiff_ignores_small_changes():
    v = Vardiff(1.0, interval=5.0, now=0.0)
    for _ in range(4):
        v.record_share(1.0)
    assert v.retarget(21.0) is None  # 4 shares in 21 s is close enough to one per 5 s
    assert v.difficulty == 1.0


def test_session_vardiff_retargets_and_honours_the_old_difficulty_for_old_jobs():
    mono = Clock(0.0)
    pool = make_pool(vardiff=True, difficulty=SHARE_DIFF, share_interval=5.0, monotonic=mono)
    session, out, e1, _ = connect(pool)
    old_job = out.notifies()[0]
    for i in range(4):
        mono.now += 1.0
        e2 = (100 + i).to_bytes(4, "big")
        submit(session, old_job, e2, share_nonce(old_job, e1, e2))
    new_diff = out.difficulties()[-1]
    assert new_diff == pytest.approx(4 * SHARE_DIFF)  # 4 shares in 4 s wants 5x: capped at 4x
    new_job = out.notifies()[-1]
    assert new_job.job_id != old_job.job_id and not new_job.clean_jobs
    assert new_job.prevhash == old_job.prevhash  # same template, new difficulty
    # the old job id still credits at the old difficulty ...
    e2 = (200).to_bytes(4, "big")
    assert submit(session, old_job, e2, share_nonce(old_job, e1, e2)).difficulty == SHARE_DIFF
    # ... the new one requires the new difficulty
    e2 = (201).to_bytes(4, "big")
    easy_only = find_nonce(
        new_job, e1, e2, lambda v: difficulty_to_target(new_diff) < v <= difficulty_to_target(SHARE_DIFF)
    )
    assert rejection(submit, session, new_job, e2, easy_only)[0] == 23
    assert submit(session, new_job, e2, share_nonce(new_job, e1, e2, new_diff)).difficulty == new_diff


def test_session_vardiff_lowers_difficulty_for_a_silent_miner_on_tick():
    mono = Clock(0.0)
    pool = make_pool(vardiff=True, difficulty=1.0, share_interval=5.0, monotonic=mono)
    session, out, _, _ = connect(pool)
    session.tick()
    assert out.difficulties() == [1.0]
    mono.now = 25.0
    session.tick()
    assert out.difficulties() == [1.0, 0.25]
    assert out.notifies()[-1].clean_jobs is False


# --- other job sources ------------------------------------------------------------------------------------------------


class TemplateSource:
    """A job source with transactions, like a node's template; records what it is asked to submit."""

    def __init__(self, txs: list[bytes], fail: bool = False) -> None:
        chain = EmbeddedChain()
        base = chain.current()
        self.txids = [sha256d(tx) for tx in txs]
        self.job = PoolJob(
            "t1", base.prev_block_internal, base.coinb1, base.coinb2, merkle_branches(self.txids), 0x20000000,
            0x207FFFFF, base.ntime, base.height, txs, coinbase_witness=True,
        )  # fmt: skip
        self.fail = fail
        self.submitted: list[tuple[PoolJob, bytes, bytes]] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def current(self) -> PoolJob:
        return self.job

    def add_listener(self, callback) -> None:
        pass

    def submit_block(self, job: PoolJob, header80: bytes, coinbase_tx: bytes) -> str:
        if self.fail:
            raise ConnectionError("node is down")
        self.submitted.append((job, header80, coinbase_tx))
        return "accepted"


def test_block_from_a_template_with_transactions_is_submitted_whole():
    source = TemplateSource([bytes([i]) * 60 for i in range(5)])
    pool = Pool(source, difficulty=SHARE_DIFF, vardiff=False)
    pool.start()
    session, out, e1, _ = connect(pool)
    job = out.notifies()[0]
    assert len(job.merkle_branch) == 3
    e2 = b"\x00\x00\x00\x0b"
    result = submit(session, job, e2, share_nonce(job, e1, e2))
    assert result.block == "accepted" and pool.summary()["blocks"] == 1
    ((sent_job, header, coinbase),) = source.submitted
    assert sent_job is source.job and coinbase == source.job.coinb1 + e1 + e2 + source.job.coinb2
    assert header[36:68] == merkle_root([coinbase_txid(coinbase)] + source.txids)
    assert sha256d(header) == result.hash_internal


def test_a_failing_job_source_does_not_lose_the_share():
    source = TemplateSource([], fail=True)
    pool = Pool(source, difficulty=SHARE_DIFF, vardiff=False)
    pool.start()
    session, out, e1, _ = connect(pool)
    job = out.notifies()[0]
    e2 = b"\x00\x00\x00\x0c"
    result = submit(session, job, e2, share_nonce(job, e1, e2))
    assert result.block is not None and "node is down" in result.block
    assert pool.summary()["accepted"] == 1 and pool.summary()["blocks"] == 0


# --- a real miner on the embedded chain -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_miner_on_the_embedded_chain_loses_few_shares_and_only_to_blocks():
    """At regtest nBits every share is a block, so every share replaces the job and stales the miner's work in flight.

    That costs ~0.1-0.2 s of hashing per block (the kernel call running on each thread, the finder's next one), so the
    stale fraction is the block rate times that: a few percent at the pool's pace (one share per 2.5 s here), a third
    at two blocks a second. Each stale share must be for a job a block replaced: no vardiff re-notify, ntime or
    duplicate may lose one.
    """
    from miner.engine import Engine
    from miner.mining import Miner, PoolConfig
    from miner.pool import EmbeddedPool
    from miner.stats import Stats

    stats = Stats()
    try:
        engine = Engine.for_backend("cpu", threads=2, stats=stats)
    except Exception as exc:  # no numba here: the pure-Python kernel is far too slow for a pool's pace
        pytest.skip(f"the cpu backend is not available: {exc}")
    lines: list[str] = []
    shares = 12
    # ~on pace at 10 MH/s; vardiff moves it to one share per 2.5 s whatever this machine does
    with EmbeddedPool(difficulty=0.005, vardiff=True, share_interval=2.5) as pool:
        miner = Miner([PoolConfig(pool.url, "alice.1")], engine, stats, log=lines.append)
        miner.start()
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                snap = stats.snapshot()
                if snap["accepted"] + snap["stale"] >= shares:
                    break
                time.sleep(0.05)
        finally:
            miner.stop()
        summary, reasons = pool.summary(), pool.rejection_reasons()
    snap = stats.snapshot()
    found = snap["accepted"] + snap["stale"]
    assert found >= shares, f"only {found} shares in 180 s"
    assert snap["rejected"] == 0 and snap["hw_errors"] == 0
    assert summary["accepted"] == summary["blocks"] == snap["accepted"]  # every accepted share extended the chain
    assert set(reasons) <= {"stale job"} and summary["rejected"] == sum(reasons.values())
    stale_lines = [line for line in lines if "stale" in line]
    assert len(stale_lines) == snap["stale"]
    assert all(line.endswith(("its job is no longer valid", "stale job")) for line in stale_lines), stale_lines
    assert snap["stale"] <= found // 3, f"{snap['stale']} of {found} shares stale"
