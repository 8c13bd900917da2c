"""Nonce-throughput measurement shared by ``miner bench`` and ``benchmarks/``.

Rates are only comparable within one run on a noisy machine, so every figure
comes with the plain-Python baseline measured in the same process.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time

from kernels import Backend
from miner.engine import Engine
from miner.work import Work


def hashlib_baseline(seconds: float = 1.0) -> float:
    """Hashes/s of ``sha256(sha256(header))`` over consecutive nonces, one thread."""
    sha = hashlib.sha256
    pack = struct.Struct("<I").pack
    prefix = os.urandom(76)
    done = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for nonce in range(done, done + 20000):
            sha(sha(prefix + pack(nonce)).digest()).digest()
        done += 20000
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - t0)


def endless_work(target: int = 0):
    """A work source of fresh random headers: nothing to find, all to scan."""

    def next_work() -> Work:
        return Work(header=os.urandom(76) + bytes(4), target=target)

    return next_work


def engine_rate(backend: Backend, threads: int, seconds: float) -> dict:
    """Run the real engine for ``seconds`` and count what it hashed."""
    if hasattr(backend, "warm_up"):
        backend.warm_up()
    engine = Engine.for_backend(backend, threads=threads)
    engine.set_source(endless_work())
    start_hashes = engine.stats.total_hashes
    t0 = time.perf_counter()
    engine.start()
    time.sleep(seconds)
    # A device whose one batch outlasts ``seconds`` (OpenCL on a busy CPU) has counted nothing yet:
    # run on until a batch completes, and count that whole time, rather than report zero.
    give_up = time.perf_counter() + max(60.0, 10 * seconds)
    while engine.stats.total_hashes == start_hashes and not engine.errors and time.perf_counter() < give_up:
        time.sleep(0.01)
    hashes = engine.stats.total_hashes - start_hashes
    elapsed = time.perf_counter() - t0
    engine.stop()
    # Ranges still in flight when we read the counter finish after it; the
    # reading and the clock were taken together, so the rate stays honest.
    return {"hashes": hashes, "seconds": elapsed, "hashrate": hashes / elapsed}


def single_call_rate(backend: Backend, seconds: float = 1.0) -> float:
    """Hashes/s of back-to-back kernel calls on this thread (no engine)."""
    if hasattr(backend, "warm_up"):
        backend.warm_up()
    prepared = backend.prepare(os.urandom(80), 0)
    chunk = backend.default_chunk
    done = 0
    start = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if start + chunk > 1 << 32:
            start = 0
        backend.scan(prepared, start, chunk)
        start += chunk
        done += chunk
    return done / (time.perf_counter() - t0)
