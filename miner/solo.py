"""Solo mining: a node's block template -> Work for the engine -> submitblock.

Every Work carries the network target, so every share the engine reports is
a block. The extranonce is rolled inside our own coinbase, which gives each
Work a fresh merkle root and a fresh 2^32 nonce space. Once a job yields a
block, its other solutions are dropped: they would only compete with ours.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from miner.block import hash_to_display_hex, merkle_root_from_branches, ser_uint32_le
from miner.coinbase import coinbase_txid
from miner.engine import Engine
from miner.gbt import GbtJobSource
from miner.pool import PoolJob
from miner.work import Share, Work

EXTRANONCE_SIZE = 8


def job_work(job: PoolJob, extranonce: bytes, ntime: int | None = None) -> Work:
    """The Work for one extranonce of a job: its header template at the network target."""
    coinbase = job.coinb1 + extranonce + job.coinb2
    root = merkle_root_from_branches(coinbase_txid(coinbase), job.merkle_branches)
    header = (
        ser_uint32_le(job.version)
        + job.prev_block_internal
        + root
        + ser_uint32_le(job.ntime if ntime is None else ntime)
        + ser_uint32_le(job.nbits)
        + ser_uint32_le(0)
    )
    target = job.network_target
    return Work(
        header=header,
        target=target,
        job_id=job.job_id,
        extranonce2=extranonce,
        network_target=target,
        source=(job, coinbase),
    )


@dataclass
class BlockResult:
    height: int
    hash_display: str
    verdict: str

    @property
    def accepted(self) -> bool:
        return self.verdict == "accepted"


@dataclass
class SoloMiner:
    """Glue between a GbtJobSource and an Engine; counts the node's verdicts."""

    source: GbtJobSource
    engine: Engine
    blocks_wanted: int | None = None
    echo: Callable[[str], None] = print
    results: list[BlockResult] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._job: PoolJob | None = None
        self._extranonce = itertools.count(1)
        self._solved: set[str] = set()
        self._pending: list[tuple[PoolJob, bytes, bytes, Share]] = []
        self.engine.on_share = self.on_share
        self.source.add_listener(self.on_job)

    @property
    def accepted(self) -> list[BlockResult]:
        return [r for r in self.results if r.accepted]

    def start(self) -> None:
        """First template (RpcFailure if the node cannot give one), then mine."""
        self.source.start()
        self.on_job(self.source.current(), True)
        self.engine.start()

    def stop(self) -> None:
        self.engine.stop()
        self.source.stop()

    def on_job(self, job: PoolJob, clean: bool) -> None:
        with self._lock:
            if self._job is not None and self._job.job_id == job.job_id:
                return
            self._job = job
            pending, self._pending = self._pending, []
        # Blocks found while the node was away go first: once the engine mines the new job, a block of
        # its own (a regtest node's target takes milliseconds) would move the tip and make them stale.
        for old_job, header, coinbase, share in pending:
            self._submit(old_job, header, coinbase, share)
        self.engine.set_source(self.next_work, clean=clean)

    def next_work(self) -> Work | None:
        with self._lock:
            job = self._job
            counter = next(self._extranonce)
        if job is None or self.done.is_set():
            return None
        extranonce = counter.to_bytes(EXTRANONCE_SIZE, "big")
        # Keep the header's time current on a long-lived template (the node rejects >2h drift).
        return job_work(job, extranonce, max(job.ntime, int(time.time())))

    def on_share(self, share: Share) -> None:
        job, coinbase = share.work.source
        with self._lock:
            if job.job_id in self._solved or self.done.is_set():
                return
            self._solved.add(job.job_id)
        self._submit(job, share.header, coinbase, share)

    def _submit(self, job: PoolJob, header: bytes, coinbase: bytes, share: Share) -> None:
        verdict = self.source.submit_block(job, header, coinbase)
        result = BlockResult(job.height, hash_to_display_hex(share.hash_internal), verdict)
        if verdict.startswith("not submitted"):
            with self._lock:
                self._pending.append((job, header, coinbase, share))  # sent again once the node is back
            self.echo(f"block {result.hash_display} height {result.height}: {verdict}; will retry")
            return
        self.results.append(result)
        if result.accepted:
            self.engine.stats.block_found(result.hash_display)
            self.engine.stats.share_result("accepted", share.difficulty, device=share.device)
        else:
            self.engine.stats.share_result("rejected", share.difficulty, device=share.device, reason=verdict)
        self.echo(f"block {result.hash_display} height {result.height}: {verdict}")
        if self.blocks_wanted is not None and len(self.accepted) >= self.blocks_wanted:
            self.done.set()
            self.engine.set_source(None)

    def run(self, duration: float | None = None) -> None:
        """Mine until enough blocks are accepted or ``duration`` seconds pass."""
        self.start()
        try:
            self.done.wait(duration)
        finally:
            self.stop()

    def summary(self) -> dict:
        snap = self.engine.stats.snapshot()
        return {
            "mode": "solo",
            "seconds": round(snap["elapsed"], 3),
            "hashes": snap["hashes"],
            "hashrate": snap["hashrate_av"],
            "accepted": len(self.accepted),
            "rejected": len(self.results) - len(self.accepted),
            "blocks": [r.hash_display for r in self.accepted],
            "heights": [r.height for r in self.accepted],
            "rejections": [r.verdict for r in self.results if not r.accepted],
        }
