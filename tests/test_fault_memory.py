"""State that must stay bounded in a miner that runs for days: what it keeps per share and per job.

Drives :class:`miner.mining.Miner` with a stand-in pool connection through
many clean jobs, each with a few shares, and checks what it remembers does
not grow with the number of jobs seen.
"""

from __future__ import annotations

from miner.engine import Engine
from miner.mining import Miner, PoolConfig
from miner.stats import Stats
from miner.work import Share
from stratum.client import Ready
from stratum.protocol import Notify, SetDifficulty, SubscribeResult

JOBS = 300
SHARES_PER_JOB = 5


class StandInClient:
    """What Miner needs of a StratumClient: readiness and a submit that records."""

    ready = True
    ever_ready = True

    def __init__(self) -> None:
        self.submitted: list[tuple] = []

    def submit(self, *fields, context=None) -> bool:
        self.submitted.append(fields)
        return True

    def stop(self, timeout: float = 1.0) -> None:
        pass


def notify(job_id: str, clean: bool = True) -> Notify:
    params = [job_id, "00" * 32, "01000000", "ffffffff", [], "20000000", "1d00ffff", "65000000", clean]
    return Notify(params, job_id, clean)


def drive(jobs: int, clean: bool = True) -> tuple[Miner, StandInClient]:
    stats = Stats()
    engine = Engine.for_backend("reference", threads=1, stats=stats)  # never started: shares are made here
    miner = Miner([PoolConfig("stratum+tcp://127.0.0.1:1", "w")], engine, stats)
    client = StandInClient()
    pool = miner._pools[0]
    pool.client = client
    miner._running = True
    miner._on_event(client, SubscribeResult(1, b"\x01\x02\x03\x04", 4, "s1"))
    miner._on_event(client, SetDifficulty(2.0**-32))
    miner._on_event(client, Ready(b"\x01\x02\x03\x04", 4, False, 0))
    for j in range(jobs):
        miner._on_event(client, notify(f"{j:x}", clean or j == 0))
        source = miner._source(pool)
        for k in range(SHARES_PER_JOB):
            work = source()
            assert work is not None
            miner._on_share(Share(work, k, b"\x00" * 32, "CPU 0"))
    return miner, client


def test_every_share_is_submitted_once() -> None:
    miner, client = drive(20)
    assert len(client.submitted) == 20 * SHARES_PER_JOB
    assert len(set(client.submitted)) == len(client.submitted)
    # the engine reporting the same share again (e.g. a rescanned range) sends nothing more
    pool = miner._pools[0]
    work = miner._source(pool)()
    share = Share(work, 7, b"\x00" * 32, "CPU 0")
    miner._on_share(share)
    miner._on_share(share)
    assert len(client.submitted) == 20 * SHARES_PER_JOB + 1


def test_jobs_kept_stay_bounded() -> None:
    miner, _ = drive(JOBS)
    assert len(miner._pools[0].jobs) <= 32


def test_share_memory_stays_bounded() -> None:
    miner, _ = drive(JOBS)
    assert len(miner._pools[0].seen) <= 64 * SHARES_PER_JOB


def test_memory_bounded_when_the_pool_never_cleans() -> None:
    miner, client = drive(JOBS, clean=False)
    pool = miner._pools[0]
    assert len(client.submitted) == JOBS * SHARES_PER_JOB
    assert len(pool.jobs) <= 64
    assert len(pool.seen) <= 64 * SHARES_PER_JOB
