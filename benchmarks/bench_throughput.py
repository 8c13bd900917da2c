"""Nonce throughput per backend, CPU kernel and thread count, beside hashlib.

    python benchmarks/bench_throughput.py [--seconds S] [--threads 1,2] [--lanes 8,sha] [--json] [--plot FILE.png]

Every rate is printed as a ratio to the plain-Python hashlib baseline of the
same run, taken once for the whole table as the median of several short runs
(one 1-second run swings by half on a shared machine) and printed with its
spread. Every CPU kernel this CPU can run is measured, and the one that
``--lanes auto`` picks is compared with the fastest at each thread count. It
also measures time to first hash with cold caches (compiling, and timing the
kernels for the choice) and warm ones (loading), each in a fresh process, and
the rate reached within the first second of mining.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from argtypes import positive_float  # noqa: E402

from kernels import BackendUnavailable, chooser, get_backend  # noqa: E402
from kernels.cpu import KERNEL_CHOICES, CpuBackend, default_lanes, host_cpu_features  # noqa: E402
from miner.engine import default_threads  # noqa: E402
from miner.throughput import engine_rate, format_rate, format_ratio, format_table, measure_baseline  # noqa: E402

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
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
print(t1 - t0, done / (time.perf_counter() - t1), backend.choice)
"""


def time_to_first_hash(cache_dir: str | None) -> dict:
    """Seconds from import to the first kernel call done, in a new process.

    ``cache_dir`` holds both numba's compiled kernels and the kernel choice, so an empty one
    measures a machine's very first start: every kernel compiled and timed, the winner kept.
    """
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
        env[chooser.CACHE_ENV] = cache_dir
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", FIRST_HASH_SNIPPET], capture_output=True, text=True, env=env, cwd=REPO, check=True
    )
    wall = time.perf_counter() - t0
    first, rate, kernel = out.stdout.split()
    return {"first_hash_s": float(first), "process_wall_s": wall, "first_second_rate": float(rate), "kernel": kernel}


def build_parser() -> argparse.ArgumentParser:
    """This script's options (the tests walk every float option of every benchmark)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=positive_float, default=3.0, help="seconds per measurement")
    parser.add_argument("--threads", default=None, help="comma list of thread counts (default: 1..cores)")
    parser.add_argument(
        "--lanes", default=None, help=f"comma list of {', '.join(KERNEL_CHOICES)} (default: all that run here)"
    )
    parser.add_argument("--baseline-runs", type=int, default=7, help="hashlib runs whose median is the baseline")
    parser.add_argument("--json", action="store_true", help="print only JSON")
    parser.add_argument("--plot", default=None, help="write a PNG of hash rate vs threads (needs matplotlib)")
    parser.add_argument("--no-startup", action="store_true", help="skip the cold/warm start measurements")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        threads = [int(t) for t in args.threads.split(",")] if args.threads else list(range(1, default_threads() + 1))
    except ValueError:
        parser.error(f"--threads: {args.threads!r} is not a comma list of numbers")
    if any(n < 1 for n in threads):
        parser.error("--threads: every count must be at least 1")
    kernels = args.lanes.split(",") if args.lanes else list(KERNEL_CHOICES)
    unknown = [k for k in kernels if k not in KERNEL_CHOICES]
    if unknown:
        parser.error(f"--lanes: {', '.join(unknown)} not among {', '.join(KERNEL_CHOICES)}")

    choice = chooser.choose()
    baseline = measure_baseline(runs=max(1, args.baseline_runs), seconds=0.3)
    rows: list[dict] = []
    unavailable: dict[str, str] = {}

    def record(backend_name: str, kernel: str | None, n_threads: int, result: dict) -> None:
        rows.append(
            {
                "backend": backend_name,
                "lanes": kernel,
                "threads": n_threads,
                "hashrate": result["hashrate"],
                "baseline_hashrate": baseline.median,
                "ratio": result["hashrate"] / baseline.median,
                "per_thread_ratio": result["hashrate"] / baseline.median / n_threads,
            }
        )

    for kernel in kernels:
        try:
            backend = CpuBackend(kernel)
        except BackendUnavailable as exc:
            unavailable[kernel] = str(exc)
            continue
        for n in threads:
            record("cpu", kernel, n, engine_rate(backend, n, args.seconds))
    try:
        opencl = get_backend("opencl")
        record("opencl", None, 1, engine_rate(opencl, 1, args.seconds))
        opencl_note = opencl.describe()
    except BackendUnavailable as exc:
        opencl_note = f"unavailable: {exc}"
    record("reference", None, 1, engine_rate(get_backend("reference"), 1, min(args.seconds, 2.0)))

    # The choice by measurement against the kernels forced one by one, at each thread count.
    auto = {}
    for n in threads:
        at_n = {r["lanes"]: r["hashrate"] for r in rows if r["backend"] == "cpu" and r["threads"] == n}
        if at_n:
            fastest = max(at_n, key=at_n.__getitem__)
            auto[str(n)] = {
                "fastest": fastest,
                "auto": choice.winner,
                "auto_vs_fastest": at_n[choice.winner] / at_n[fastest] if choice.winner in at_n else None,
            }
    by_threads = {r["threads"]: r["hashrate"] for r in rows if r["backend"] == "cpu" and r["lanes"] == choice.winner}
    scaling = {f"{n}_vs_1": by_threads[n] / by_threads[1] for n in by_threads if 1 in by_threads and n > 1}

    startup = {}
    if not args.no_startup:
        with tempfile.TemporaryDirectory() as empty_cache:
            startup["cold"] = time_to_first_hash(empty_cache)  # compiles every kernel and times them
            startup["cached"] = time_to_first_hash(empty_cache)  # loads the choice and the winner only

    report = {
        "cpu": chooser.cpu_model(),
        "cores": default_threads(),
        "features": sorted(f for f in host_cpu_features() if f in {"avx512f", "avx2", "sse4.1", "sha"}),
        "feature_default": str(default_lanes()),
        "auto": choice.winner,
        "choice": choice.to_json(),
        "seconds_per_point": args.seconds,
        "baseline": baseline.to_json(),
        "rows": rows,
        "unavailable": unavailable,
        "auto_vs_fastest": auto,
        "thread_scaling": scaling,
        "startup": startup,
        "opencl": opencl_note,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report, baseline)
    if args.plot:
        plot(rows, args.plot)


def print_report(report: dict, baseline) -> None:
    print(f"CPU: {report['cpu']} ({report['cores']} cores; {', '.join(report['features'])})")
    print(f"hashlib baseline (1 thread): {baseline.describe()}, taken once for this table")
    table = []
    for r in report["rows"]:
        marks = []
        if r["backend"] == "cpu" and r["lanes"] == report["auto"]:
            marks.append("auto")
        if r["backend"] == "cpu" and r["lanes"] == report["feature_default"]:
            marks.append("feature flags")
        table.append(
            [
                r["backend"],
                str(r["lanes"] or "-"),
                str(r["threads"]),
                format_rate(r["hashrate"]),
                format_ratio(r["ratio"]),
                format_ratio(r["per_thread_ratio"]),
                ", ".join(marks),
            ]
        )
    for line in format_table(["backend", "kernel", "threads", "rate", "x hashlib", "x/thread", ""], table, "lrrrrrl"):
        print(line)
    for kernel, why in report["unavailable"].items():
        print(f"kernel {kernel}: cannot run here: {why}")
    for n, verdict in report["auto_vs_fastest"].items():
        ratio = verdict["auto_vs_fastest"]
        shown = f"{ratio:.3f}x" if ratio is not None else "not measured"
        print(f"{n} thread(s): --lanes auto ({verdict['auto']}) runs at {shown} the fastest ({verdict['fastest']})")
    for key, value in report["thread_scaling"].items():
        print(f"thread scaling {key.replace('_', ' ')}: {value:.2f}x")
    for kind, s in report["startup"].items():  # cold: empty caches; cached: what the cold run left
        print(
            f"start-up ({'empty' if kind == 'cold' else 'warm'} caches): first hash after {s['first_hash_s']:.2f} s "
            f"(process {s['process_wall_s']:.2f} s, kernel {s['kernel']}), "
            f"first-second rate {format_rate(s['first_second_rate'])}"
        )
    print(f"opencl: {report['opencl']}")
    print(json.dumps(report))


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
        label = f"cpu, {lane} lanes" if lane.isdigit() else f"cpu, {lane}"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    base = rows[0]["baseline_hashrate"] / 1e6 if rows else 0.0
    ax.axhline(base, linestyle="--", color="grey", label="hashlib, 1 thread")
    ax.set_xticks(sorted({r["threads"] for r in rows}))
    ax.set_xlabel("threads")
    ax.set_ylabel("MH/s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
