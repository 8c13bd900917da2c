"""OpenCL nonce throughput per device, beside the hashlib baseline of the same run.

    python benchmarks/bench_opencl.py [--seconds 3] [--device 0:0 ...] [--cpu]

Prints one JSON object (the numbers) and then a table. Each device is measured
through the real engine (one worker per device, re-verification included) and
as bare back-to-back kernel calls; ``--cpu`` adds the numba backend on all
cores for comparison. Rates from different runs are not comparable on a
shared machine, which is why the baseline is measured here every time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from argtypes import positive_float


def measure_device(spec: str, seconds: float) -> dict:
    from kernels import BackendUnavailable
    from kernels.opencl import OpenCLBackend
    from miner.throughput import engine_rate, single_call_rate

    t0 = time.perf_counter()
    try:
        backend = OpenCLBackend(device=spec)
    except BackendUnavailable as exc:
        return {"backend": "opencl", "device": spec, "error": str(exc)}
    setup = time.perf_counter() - t0
    kernel = single_call_rate(backend, seconds / 2)
    engine = engine_rate(backend, 1, seconds)
    return {
        "backend": "opencl",
        "device": spec,
        "name": backend.device_name,
        "setup_seconds": round(setup, 3),
        "chunk": backend.default_chunk,
        "kernel_hashrate": kernel,
        "hashrate": engine["hashrate"],
    }


def measure_cpu(seconds: float) -> dict:
    from kernels import BackendUnavailable, get_backend
    from miner.engine import default_threads
    from miner.throughput import engine_rate

    try:
        backend = get_backend("cpu")
    except (BackendUnavailable, ValueError) as exc:
        return {"backend": "cpu", "device": "cpu", "error": str(exc)}
    threads = default_threads()
    result = engine_rate(backend, threads, seconds)
    return {
        "backend": "cpu",
        "device": f"{threads} threads",
        "name": backend.describe(),
        "hashrate": result["hashrate"],
    }


def build_parser() -> argparse.ArgumentParser:
    """This script's options (the tests walk every float option of every benchmark)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=positive_float, default=3.0, help="seconds per measurement")
    parser.add_argument("--device", action="append", help="PLATFORM:DEVICE (default: every OpenCL device)")
    parser.add_argument("--cpu", action="store_true", help="also measure the numba CPU backend")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from kernels import BackendUnavailable
    from kernels.opencl import list_devices
    from miner.throughput import format_rate, format_ratio, format_table, measure_baseline

    try:
        specs = args.device or [dev.spec for dev in list_devices()]
    except BackendUnavailable as exc:
        print(f"bench_opencl: {exc}", file=sys.stderr)
        return 1
    measured = measure_baseline(runs=7, seconds=0.3)
    baseline = measured.median
    rows = [measure_device(spec, args.seconds) for spec in specs]
    if args.cpu:
        rows.append(measure_cpu(args.seconds))
    for row in rows:
        if "hashrate" in row:
            row["speedup"] = row["hashrate"] / baseline
    print(json.dumps({"baseline_hashrate": baseline, "baseline": measured.to_json(), "results": rows}))

    table = []
    for row in rows:
        if "error" in row:
            continue
        kernel = format_rate(row["kernel_hashrate"]) if "kernel_hashrate" in row else ""
        table.append(
            [
                row["backend"],
                row["device"],
                row["name"],
                format_rate(row["hashrate"]),
                kernel,
                format_ratio(row["speedup"]),
            ]
        )
    table.append(
        ["hashlib", "1 thread", "sha256(sha256(header)), consecutive nonces", format_rate(baseline), "", "1.0"]
    )
    for line in format_table(["backend", "device", "name", "rate", "kernel rate", "x hashlib"], table, "lll"):
        print(line)
    for row in rows:
        if "error" in row:
            print(f"{row['backend']} {row['device']}: unavailable: {row['error']}")
    print(f"hashlib baseline (1 thread): {measured.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
