"""Nonce-throughput measurement shared by ``miner bench`` and ``benchmarks/``.

Rates are only comparable within one run on a noisy machine, so every figure
comes with the plain-Python baseline measured in the same process. One short
baseline run on a shared machine swings by half (0.90 to 1.41 MH/s in eight
runs in a row), so a table takes its baseline once, as the median of several
short runs, and prints their spread beside it.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import struct
import time
from dataclasses import dataclass

from kernels import Backend
from miner.engine import Device, Engine
from miner.work import Work

BASELINE_RUNS = 5
BASELINE_SECONDS = 0.2


def hashlib_baseline(seconds: float = 1.0) -> float:
    """Hashes/s of ``sha256(sha256(header))`` over consecutive nonces, one thread, one run."""
    sha = hashlib.sha256
    pack = struct.Struct("<I").pack
    prefix = os.urandom(76)
    done = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    step = 5000
    while True:
        for nonce in range(done, done + step):
            sha(sha(prefix + pack(nonce)).digest()).digest()
        done += step
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - t0)


@dataclass(frozen=True)
class Baseline:
    """The hashlib loop's rate over several short runs: the median is the yardstick, the rest its spread."""

    runs: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def low(self) -> float:
        return min(self.runs)

    @property
    def high(self) -> float:
        return max(self.runs)

    @property
    def spread(self) -> float:
        """(high - low) / median: 0.1 means the runs lay within 10% of the median's size."""
        return (self.high - self.low) / self.median if self.median > 0 else 0.0

    def describe(self) -> str:
        return (
            f"median of {len(self.runs)} runs {format_rate(self.median)} "
            f"(range {format_rate(self.low)} to {format_rate(self.high)}, spread {100 * self.spread:.0f}%)"
        )

    def to_json(self) -> dict:
        return {
            "hashrate": self.median,
            "low": self.low,
            "high": self.high,
            "spread": self.spread,
            "runs": list(self.runs),
        }


def measure_baseline(runs: int = BASELINE_RUNS, seconds: float = BASELINE_SECONDS) -> Baseline:
    """The hashlib baseline for one table: ``runs`` runs of ``seconds`` each."""
    return Baseline(tuple(hashlib_baseline(seconds) for _ in range(max(1, runs))))


def format_rate(hashes_per_second: float) -> str:
    """A hash rate with three significant digits in the unit that fits: '2.13 kH/s', '28.4 MH/s'."""
    value = float(hashes_per_second)
    for unit in ("H/s", "kH/s", "MH/s", "GH/s", "TH/s"):
        if abs(value) < 999.5 or unit == "TH/s":
            break
        value /= 1000
    if value == 0:
        return f"0 {unit}"
    digits = 2 if abs(value) < 9.995 else 1 if abs(value) < 99.95 else 0
    return f"{value:.{digits}f} {unit}"


def format_ratio(ratio: float) -> str:
    """A ratio with the digits it needs: '56.3', '1.94', '0.0017'."""
    if ratio >= 99.95:
        return f"{ratio:.0f}"
    if ratio >= 9.995:
        return f"{ratio:.1f}"
    if ratio >= 0.1:
        return f"{ratio:.2f}"
    return f"{ratio:.2g}"


def format_table(header: list[str], rows: list[list[str]], align: str = "l") -> list[str]:
    """Lines of a plain table whose columns fit their widest cell.

    ``align`` has one letter per column, ``l`` or ``r``; columns past its end align right.
    """
    cells = [list(map(str, header))] + [list(map(str, row)) for row in rows]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = []
        for i, (cell, width) in enumerate(zip(row, widths, strict=False)):
            parts.append(cell.ljust(width) if align[i : i + 1] == "l" else cell.rjust(width))
        lines.append("  ".join(parts).rstrip())
    return lines


def endless_work(target: int = 0):
    """A work source of fresh random headers: nothing to find, all to scan."""

    def next_work() -> Work:
        return Work(header=os.urandom(76) + bytes(4), target=target)

    return next_work


def warm_up(devices: list[Device]) -> None:
    """Compile (or load) every distinct backend's kernel before any clock starts."""
    seen: set[int] = set()
    for dev in devices:
        if id(dev.backend) not in seen and hasattr(dev.backend, "warm_up"):
            seen.add(id(dev.backend))
            dev.backend.warm_up()


def engine_rates(devices: list[Device], seconds: float) -> dict:
    """Run the real engine over ``devices`` for ``seconds``: the total and each backend's share.

    ``groups`` has one entry per distinct backend instance (the CPU threads share one), in the
    order the devices came: {"backend", "description", "workers", "hashes", "hashrate"}.
    """
    warm_up(devices)
    engine = Engine(devices)
    engine.set_source(endless_work())
    start_hashes = engine.stats.total_hashes
    t0 = time.perf_counter()
    engine.start()
    time.sleep(seconds)
    # A device whose one batch outlasts ``seconds`` (OpenCL on a busy CPU) has counted nothing yet:
    # run on until every device has completed a batch, and count that whole time, rather than report zero.
    give_up = time.perf_counter() + max(60.0, 10 * seconds)
    while (
        any(stats.meter.total == 0 for stats in engine.stats.devices.values())
        and not engine.errors
        and time.perf_counter() < give_up
    ):
        time.sleep(0.01)
    per_device = {name: stats.meter.total for name, stats in engine.stats.devices.items()}
    hashes = engine.stats.total_hashes - start_hashes
    elapsed = time.perf_counter() - t0
    engine.stop()
    groups: dict[int, dict] = {}
    for dev in devices:
        group = groups.setdefault(
            id(dev.backend),
            {"backend": dev.backend.name, "description": dev.backend.describe(), "workers": 0, "hashes": 0},
        )
        group["workers"] += 1
        group["hashes"] += per_device.get(dev.name, 0)
    for group in groups.values():
        group["hashrate"] = group["hashes"] / elapsed
    # Ranges still in flight when we read the counter finish after it; the
    # reading and the clock were taken together, so the rate stays honest.
    return {
        "hashes": hashes,
        "seconds": elapsed,
        "hashrate": hashes / elapsed,
        "groups": list(groups.values()),
        "errors": list(engine.errors),
    }


def engine_rate(backend: Backend, threads: int, seconds: float) -> dict:
    """Run the real engine on one backend for ``seconds`` and count what it hashed."""
    result = engine_rates(Engine.for_backend(backend, threads=threads).devices, seconds)
    return {"hashes": result["hashes"], "seconds": result["seconds"], "hashrate": result["hashrate"]}


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


def kernel_rates(choices: list[str], threads: int, seconds: float) -> list[dict]:
    """Each CPU kernel through the real engine on ``threads`` threads, in turn; unbuildable ones say why."""
    from kernels import BackendUnavailable
    from kernels.cpu import CpuBackend

    rows = []
    for choice in choices:
        try:
            backend = CpuBackend(choice)
        except BackendUnavailable as exc:
            rows.append({"kernel": choice, "error": str(exc)})
            continue
        result = engine_rate(backend, threads, seconds)
        rows.append({"kernel": choice, "description": backend.describe(), **result})
    return rows
