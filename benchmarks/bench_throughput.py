"""Nonce throughput per backend, lane width and thread count, beside hashlib.

    python benchmarks/bench_throughput.py [--seconds S] [--threads 1,2] [--json] [--plot FILE.png]

Every rate is printed with the plain-Python hashlib baseline measured in the
same run (the machine is noisy; only ratios taken together mean anything).
It also measures time to first hash with a cold numba cache (compiling) and a
warm one (loading), each in a fresh process, and the rate reached within the
first second of mining.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kernels import BackendUnavailable, get_backend  # noqa: E402
from kernels.cpu import LANE_CHOICES, default_lanes, host_cpu_features  # noqa: E402
from miner.engine import default_threads  # noqa: E402
from miner.throughput import engine_rate, hashlib_baseline  # noqa: E402

FIRST_HASH_SNIPPET = """
import time
t0 = time.perf_counter()
from kernels.cpu import CpuBackend
backend = CpuBackend()
prepared = backend.prepare(bytes(80), 0)
backend.scan(prepared, 0, backend.lanes)
t1 = time.perf_counter()
done = 0
while time.perf_counter() - t1 < 1.0:
    backend.scan(prepared, done, 1 << 18)
    done += 1 << 18
print(t1 - t0, done / (time.perf_counter() - t1))
"""


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_to_first_hash(cache_dir: str | None) -> dict:
    """Seconds from import to the first kernel call done, in a new process."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", FIRST_HASH_SNIPPET],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."),
        check=True,
    )
    wall = time.perf_counter() - t0
    first, rate = out.stdout.split()
    return {"first_hash_s": float(first), "process_wall_s": wall, "first_second_rate": float(rate)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--threads", default=None, help="comma list of thread counts (default: 1..cores)")
    parser.add_argument("--lanes", default=None, help="comma list of 4, 8, 16, sha (default: all that run here)")
    parser.add_argument("--json", action="store_true", help="print only JSON")
    parser.add_argument("--plot", default=None, help="write a PNG of hash rate vs threads (needs matplotlib)")
    parser.add_argument("--no-startup", action="store_true", help="skip the cold/warm start measurements")
    args = parser.parse_args()

    threads = [int(t) for t in args.threads.split(",")] if args.threads else list(range(1, default_threads() + 1))
    if args.lanes:
        lanes = [x if x == "sha" else int(x) for x in args.lanes.split(",")]
    else:
        lanes = list(LANE_CHOICES) + (["sha"] if "sha" in host_cpu_features() else [])
    rows = []

    def record(backend_name: str, lane: int | str | None, n_threads: int, result: dict, baseline: float) -> None:
        rows.append(
            {
                "backend": backend_name,
                "lanes": lane,
                "threads": n_threads,
                "hashrate": result["hashrate"],
                "baseline_hashrate": baseline,
                "ratio": result["hashrate"] / baseline,
                "per_thread_ratio": result["hashrate"] / baseline / n_threads,
            }
        )

    for lane in lanes:
        backend = get_backend("cpu", lanes=lane)
        for n in threads:
            baseline = hashlib_baseline(1.0)
            record("cpu", lane, n, engine_rate(backend, n, args.seconds), baseline)
    try:
        opencl = get_backend("opencl")
        baseline = hashlib_baseline(1.0)
        record("opencl", None, 1, engine_rate(opencl, 1, args.seconds), baseline)
        opencl_note = opencl.describe()
    except BackendUnavailable as exc:
        opencl_note = f"unavailable: {exc}"
    baseline = hashlib_baseline(1.0)
    record("reference", None, 1, engine_rate(get_backend("reference"), 1, min(args.seconds, 2.0)), baseline)

    # Scaling: best lane width, N threads vs 1 thread (measured in this run).
    best_lane = default_lanes()
    by_threads = {r["threads"]: r["hashrate"] for r in rows if r["backend"] == "cpu" and r["lanes"] == best_lane}
    scaling = {f"{n}_vs_1": by_threads[n] / by_threads[1] for n in by_threads if 1 in by_threads and n > 1}

    startup = {}
    if not args.no_startup:
        with tempfile.TemporaryDirectory() as empty_cache:
            startup["cold"] = time_to_first_hash(empty_cache)  # compiles
            startup["cached"] = time_to_first_hash(empty_cache)  # loads what the cold run cached

    report = {
        "cpu": cpu_name(),
        "cores": default_threads(),
        "features": sorted(f for f in host_cpu_features() if f in {"avx512f", "avx2", "sse4.1", "sha"}),
        "default_lanes": best_lane,
        "seconds_per_point": args.seconds,
        "rows": rows,
        "thread_scaling": scaling,
        "startup": startup,
        "opencl": opencl_note,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"CPU: {report['cpu']} ({report['cores']} cores; {', '.join(report['features'])})")
        header = ("backend", "lanes", "threads", "MH/s", "hashlib MH/s", "x hashlib", "x/thread")
        print("{:<10}{:>6}{:>8}{:>10}{:>14}{:>11}{:>10}".format(*header))
        for r in rows:
            print(
                f"{r['backend']:<10}{str(r['lanes'] or '-'):>6}{r['threads']:>8}{r['hashrate'] / 1e6:>10.3f}"
                f"{r['baseline_hashrate'] / 1e6:>14.2f}{r['ratio']:>11.1f}{r['per_thread_ratio']:>10.1f}"
            )
        for key, value in scaling.items():
            print(f"thread scaling {key.replace('_', ' ')}: {value:.2f}x")
        for kind, s in startup.items():
            print(
                f"start-up ({kind} numba cache): first hash after {s['first_hash_s']:.2f} s "
                f"(process {s['process_wall_s']:.2f} s), first-second rate {s['first_second_rate'] / 1e6:.1f} MH/s"
            )
        print(f"opencl: {opencl_note}")
        print(json.dumps(report))
    if args.plot:
        plot(rows, args.plot)


def plot(rows: list[dict], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot skipped: matplotlib is not installed", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for lane in sorted({r["lanes"] for r in rows if r["backend"] == "cpu"}, key=str):
        pts = sorted((r["threads"], r["hashrate"] / 1e6) for r in rows if r["backend"] == "cpu" and r["lanes"] == lane)
        label = "cpu, SHA-NI" if lane == "sha" else f"cpu, {lane} lanes"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    base = max(r["baseline_hashrate"] for r in rows) / 1e6
    ax.axhline(base, linestyle="--", color="grey", label="hashlib, 1 thread")
    ax.set_xticks(sorted({r["threads"] for r in rows}))
    ax.set_xlabel("threads")
    ax.set_ylabel("MH/s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
