"""Our auto-chosen CPU kernel beside cpuminer-opt's sha256d, side by side on this machine.

    python benchmarks/bench_peers.py [--cpuminer PATH] [--rounds 3] [--seconds 10] [--threads 1,N] [--json]

cpuminer-opt is the peer a CPU miner is judged against. This runs an installed
build (``--cpuminer PATH``, else ``$CPUMINER``, else ``cpuminer`` on PATH; skipped
with one line when there is none) in its benchmark mode,
``cpuminer -a sha256d --benchmark -t N``, and our miner's engine with the
kernel ``--lanes auto`` picks, alternating (the order flips every round, so a
drift in the machine's load or clock hits both alike), at one thread and at all
threads. It prints each side's median, its spread and the ratio of medians,
with the CPU model named.

cpuminer-opt's own rate comes from its ``--hash-meter`` lines: each thread
reports ``hashes / seconds`` of every scan (``-s 1``: one-second scans). The
first scan of a thread is a 1000-hash calibration and is dropped; the rate of a
round is the sum over threads of each thread's mean over the scans that ended
inside the round's window, which opens once every thread has reported.
(Its ``Total:`` line divides by whole seconds of uptime and its final
``Benchmark:`` line reads the last, time-limit-shortened scans, so neither is
used.) Build it with ``./autogen.sh && ./configure CFLAGS="-O3 -march=native"
--with-curl && make`` from github.com/JayDDee/cpuminer-opt.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from argtypes import positive_float  # noqa: E402

CPUMINER_ENV = "CPUMINER"
MIN_ROUNDS, MIN_SECONDS = 3, 10.0  # what a reported comparison needs; fewer is a quick check
START_TIMEOUT = 60.0  # seconds for cpuminer to report a first scan on every thread
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_THREAD_LINE = re.compile(r"Thread (\d+), CPU -?\d+: ([0-9.]+) ([kMGTP]?)h/s", re.IGNORECASE)
_TOTAL_LINE = re.compile(r"Total: ([0-9.]+) ([kMGTP]?)H/s")
_VERSION = re.compile(r"cpuminer-opt (\S+)")
_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15}


def parse_scan_line(line: str) -> tuple[int, float] | None:
    """(thread, hashes/s) from one ``--hash-meter`` line of cpuminer-opt, or None for any other line."""
    match = _THREAD_LINE.search(_ANSI.sub("", line))
    if match is None:
        return None
    return int(match.group(1)), float(match.group(2)) * _SCALE[match.group(3).lower()]


def parse_total_line(line: str) -> float | None:
    """Hashes/s from a ``Total: 16.32 MH/s, ...`` line, or None."""
    match = _TOTAL_LINE.search(_ANSI.sub("", line))
    return float(match.group(1)) * _SCALE[match.group(2).lower()] if match else None


def round_rate(scans: list[tuple[float, int, float]], threads: int, opened: float, closed: float) -> float | None:
    """A round's rate from (arrival time, thread, hashes/s) scans: the sum of per-thread means in the window.

    A thread's first scan (the calibration) never counts; None if some thread has no scan in the window.
    """
    seen: set[int] = set()
    per_thread: dict[int, list[float]] = {}
    for when, thread, rate in scans:
        if thread not in seen:
            seen.add(thread)
            continue
        if opened < when <= closed:
            per_thread.setdefault(thread, []).append(rate)
    if len(per_thread) < threads:
        return None
    return sum(statistics.fmean(rates) for rates in per_thread.values())


def find_cpuminer(explicit: str | None) -> str | None:
    """The cpuminer binary to run: --cpuminer, else $CPUMINER, else ``cpuminer`` on PATH."""
    for candidate in (explicit, os.environ.get(CPUMINER_ENV)):
        if candidate:
            path = shutil.which(candidate) or (candidate if os.path.isfile(candidate) else None)
            return path if path and os.access(path, os.X_OK) else None
    return shutil.which("cpuminer")


def cpuminer_version(path: str) -> str | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(out.stdout + out.stderr)
    return match.group(1) if match else None


def cpuminer_command(path: str, threads: int, pin: bool) -> list[str]:
    """cpuminer-opt's benchmark mode; ``pin`` as our engine does (only when every core gets a thread)."""
    cmd = [path, "-a", "sha256d", "--benchmark", "-t", str(threads), "-s", "1", "--hash-meter", "--no-color"]
    return cmd if pin else [*cmd, "--cpu-affinity", "0"]  # mask 0: no thread pinned


def run_cpuminer(path: str, threads: int, seconds: float, pin: bool = True) -> dict:
    """One round of cpuminer-opt's benchmark on ``threads`` threads: its rate over ``seconds`` of steady scans."""
    cmd = cpuminer_command(path, threads, pin)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    scans: list[tuple[float, int, float]] = []
    totals: list[float] = []
    tail: list[str] = []
    reported: set[int] = set()
    all_reported = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.monotonic()
            tail.append(line.rstrip())
            del tail[:-5]
            scan = parse_scan_line(line)
            if scan is not None:
                scans.append((now, *scan))
                reported.add(scan[0])
                if len(reported) >= threads:
                    all_reported.set()
            total = parse_total_line(line)
            if total is not None:
                totals.append(total)
        all_reported.set()  # it exited: stop waiting

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not all_reported.wait(START_TIMEOUT) or proc.poll() is not None:
            raise RuntimeError(f"cpuminer reported no scan on every thread: {' | '.join(tail)}")
        opened = time.monotonic()
        if proc.wait(timeout=seconds) is not None:
            raise RuntimeError(f"cpuminer exited with status {proc.returncode}: {' | '.join(tail)}")
    except subprocess.TimeoutExpired:
        pass  # the window closed with cpuminer still mining, as it should
    finally:
        closed = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(5)
    rate = round_rate(scans, threads, opened, closed)
    if rate is None:
        raise RuntimeError(f"no cpuminer scan finished inside the {seconds:g} s window; try more --seconds")
    return {"hashrate": rate, "seconds": closed - opened, "scans": sum(1 for when, _, _ in scans if opened < when)}


def run_ours(backend, threads: int, seconds: float) -> dict:
    from miner.throughput import engine_rate

    return engine_rate(backend, threads, seconds)


def summarise(rates: list[float]) -> dict:
    median = statistics.median(rates)
    return {
        "median": median,
        "low": min(rates),
        "high": max(rates),
        "spread": (max(rates) - min(rates)) / median if median else 0.0,
        "runs": rates,
    }


def build_parser() -> argparse.ArgumentParser:
    """This script's options (the tests walk every float option of every benchmark)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpuminer", default=None, help=f"cpuminer-opt binary (default: ${CPUMINER_ENV}, then PATH)")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help="rounds per thread count, each side once")
    parser.add_argument("--seconds", type=positive_float, default=MIN_SECONDS, help="seconds per side per round")
    parser.add_argument("--threads", default=None, help="comma list of thread counts (default: 1 and all cores)")
    parser.add_argument("--lanes", default="auto", help="our kernel (default: auto, the one the chooser picks)")
    parser.add_argument("--json", action="store_true", help="print only JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    path = find_cpuminer(args.cpuminer)
    if path is None:
        given = args.cpuminer or os.environ.get(CPUMINER_ENV)
        why = f"{given!r} is not an executable" if given else "no cpuminer on PATH"
        why += f" (give --cpuminer PATH or set ${CPUMINER_ENV})"
        line = f"bench_peers: skipped: cpuminer-opt not found: {why}"
        print(json.dumps({"skipped": line}) if args.json else line)
        return 0

    from kernels import BackendUnavailable, chooser
    from kernels.cpu import CpuBackend
    from miner.engine import default_threads
    from miner.throughput import format_rate, format_table

    try:
        threads = sorted({int(t) for t in args.threads.split(",")}) if args.threads else sorted({1, default_threads()})
    except ValueError:
        parser.error(f"--threads: {args.threads!r} is not a comma list of numbers")
    if any(n < 1 for n in threads):
        parser.error("--threads: every count must be at least 1")
    try:
        backend = CpuBackend(args.lanes)
    except (BackendUnavailable, ValueError) as exc:
        print(f"bench_peers: {exc}", file=sys.stderr)
        return 1
    backend.warm_up()
    version = cpuminer_version(path)
    quick = args.rounds < MIN_ROUNDS or args.seconds < MIN_SECONDS
    results = []
    for n in threads:
        ours: list[float] = []
        peer: list[float] = []
        for r in range(args.rounds):
            sides = [("ours", ours), ("peer", peer)]
            for side, rates in sides if r % 2 == 0 else sides[::-1]:
                try:
                    if side == "ours":
                        rates.append(run_ours(backend, n, args.seconds)["hashrate"])
                    else:
                        rates.append(run_cpuminer(path, n, args.seconds, pin=n == default_threads())["hashrate"])
                except RuntimeError as exc:
                    print(f"bench_peers: {exc}", file=sys.stderr)
                    return 1
        results.append({"threads": n, "ours": summarise(ours), "peer": summarise(peer)})
        results[-1]["ratio"] = results[-1]["ours"]["median"] / results[-1]["peer"]["median"]
    report = {
        "cpu": chooser.cpu_model(),
        "cores": default_threads(),
        "cpuminer": {"path": path, "version": version},
        "ours": {"kernel": backend.choice, "description": backend.describe(), "auto": backend.auto},
        "rounds": args.rounds,
        "seconds": args.seconds,
        "quick_check": quick,
        "results": results,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"CPU: {report['cpu']} ({report['cores']} cores); cpuminer-opt {version or '(version unknown)'} at {path}; "
        f"ours: {backend.choice} ({backend.describe()}{', --lanes auto' if backend.auto else ''})"
    )
    print(f"{args.rounds} round(s) of {args.seconds:g} s per side, alternating")
    rows = []
    for res in results:
        o, p = res["ours"], res["peer"]
        rows.append(
            [
                str(res["threads"]),
                format_rate(o["median"]),
                f"{100 * o['spread']:.0f}%",
                format_rate(p["median"]),
                f"{100 * p['spread']:.0f}%",
                f"{res['ratio']:.3f}x",
            ]
        )
    header = ["threads", "ours (median)", "spread", "cpuminer-opt (median)", "spread", "ours / cpuminer-opt"]
    for line in format_table(header, rows, "r"):
        print(line)
    if quick:
        print(f"a quick check: a comparison to report needs >= {MIN_ROUNDS} rounds of >= {MIN_SECONDS:g} s")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
