"""Soak: `miner mine` against `miner pool` for a long time, sampling memory, hash rate and hardware errors.

Both run as real processes over loopback. Every ``--interval`` seconds the
script reads the miner's RSS (and the pool's) from /proc and its counters from
its cgminer API (``summary``). At the end it stops both with SIGTERM and prints
one JSON report: is memory flat (after a warm-up), is the hash rate steady,
are there zero hardware errors, and did the miner and pool agree on the
shares.

    python benchmarks/soak.py                       # one hour
    python benchmarks/soak.py --seconds 300 --interval 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

from argtypes import non_negative_float, positive_float

from miner.asic.client import query


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (to tell a slow miner from a busy machine)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def miner_cmd() -> list[str]:
    exe = shutil.which("miner")
    return [exe] if exe else [sys.executable, "-m", "miner"]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process exited early with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listening on {port} after {timeout:g} s")


def summary(api_port: int) -> dict | None:
    try:
        reply = query("127.0.0.1", api_port, "summary", timeout=5)
    except Exception:
        return None
    rows = reply.get("SUMMARY") or []
    return rows[0] if rows else None


def slope_per_hour(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (seconds), per hour."""
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 3600


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> tuple[str, str]:
    """SIGTERM, then (stdout, stderr); killed if it does not stop in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out or "", err or ""


def last_json(text: str) -> dict:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def build_parser() -> argparse.ArgumentParser:
    """This script's options (the tests walk every float option of every benchmark)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=positive_float, default=3600.0, help="soak length (default one hour)")
    parser.add_argument("--interval", type=positive_float, default=10.0, help="seconds between samples")
    parser.add_argument(
        "--warmup", type=non_negative_float, default=30.0, help="seconds left out of the flatness checks"
    )
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--share-interval", type=positive_float, default=2.0, help="the pool's vardiff aim, seconds a share"
    )
    parser.add_argument("--nbits", default="207fffff", help="the pool chain's nBits (regtest: every share a block)")
    parser.add_argument("--samples", action="store_true", help="include every sample in the report")
    return parser


def main() -> None:
    args = build_parser().parse_args()

    pool_port, api_port = free_port(), free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    pool = subprocess.Popen(
        miner_cmd()
        + ["pool", "--listen", f"127.0.0.1:{pool_port}", "--share-interval", str(args.share_interval)]
        + ["--nbits", args.nbits, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    wait_listening(pool_port, pool)
    miner = subprocess.Popen(
        miner_cmd()
        + ["mine", "-o", f"stratum+tcp://127.0.0.1:{pool_port}", "-b", args.backend, "-t", str(args.threads)]
        + ["--api-listen", f"127.0.0.1:{api_port}", "--json", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    samples: list[dict] = []
    started = time.monotonic()
    try:
        wait_listening(api_port, miner)
        last_mh, last_t, last_cpu = None, None, None
        while True:
            now = time.monotonic()
            elapsed = now - started
            row = summary(api_port)
            sample = {"t": round(elapsed, 1), "miner_rss_mb": round(rss_mb(miner.pid), 2)}
            sample["pool_rss_mb"] = round(rss_mb(pool.pid), 2)
            cpu = cpu_seconds(miner.pid)
            if row is not None:
                total_mh = float(row.get("Total MH", 0.0))
                if last_mh is not None and now > last_t:
                    sample["mhs"] = round((total_mh - last_mh) / (now - last_t), 4)
                    sample["miner_cpu"] = round((cpu - last_cpu) / (now - last_t), 3)
                    if cpu > last_cpu:
                        sample["mh_per_cpu_s"] = round((total_mh - last_mh) / (cpu - last_cpu), 4)
                last_mh, last_t, last_cpu = total_mh, now, cpu
                sample["hw_errors"] = int(row.get("Hardware Errors", 0))
                sample["accepted"] = int(row.get("Accepted", 0))
                sample["rejected"] = int(row.get("Rejected", 0))
                sample["stale"] = int(row.get("Stale", 0))
            samples.append(sample)
            if elapsed >= args.seconds or miner.poll() is not None:
                break
            time.sleep(max(0.0, min(args.interval, args.seconds - elapsed)))
    finally:
        miner_out, miner_err = stop(miner)
        pool_out, _ = stop(pool)
    final = last_json(miner_out)
    pool_summary = last_json(pool_out)

    steady = [s for s in samples if s["t"] >= args.warmup]
    rates = [s["mhs"] for s in steady if "mhs" in s]
    rss = [s["miner_rss_mb"] for s in steady]
    pool_rss = [s["pool_rss_mb"] for s in steady]
    times = [s["t"] for s in steady]
    mean_rate = statistics.fmean(rates) if rates else 0.0
    cv = statistics.pstdev(rates) / mean_rate if len(rates) > 1 and mean_rate else float("nan")
    # on a shared machine the wall-clock rate follows the CPU the scheduler gives; per CPU second it should not
    per_cpu = [s["mh_per_cpu_s"] for s in steady if "mh_per_cpu_s" in s]
    mean_per_cpu = statistics.fmean(per_cpu) if per_cpu else 0.0
    cv_per_cpu = statistics.pstdev(per_cpu) / mean_per_cpu if len(per_cpu) > 1 and mean_per_cpu else float("nan")
    utilisation = [s["miner_cpu"] for s in steady if "miner_cpu" in s]
    report = {
        "seconds": round(time.monotonic() - started, 1),
        "interval": args.interval,
        "warmup": args.warmup,
        "backend": args.backend,
        "threads": args.threads,
        "samples": len(samples),
        "miner_rss_start_mb": rss[0] if rss else None,
        "miner_rss_end_mb": rss[-1] if rss else None,
        "miner_rss_max_mb": max(rss) if rss else None,
        "miner_rss_slope_mb_per_hour": round(slope_per_hour(times, rss), 3),
        "pool_rss_start_mb": pool_rss[0] if pool_rss else None,
        "pool_rss_end_mb": pool_rss[-1] if pool_rss else None,
        "pool_rss_slope_mb_per_hour": round(slope_per_hour(times, pool_rss), 3),
        "rate_mean_mhs": round(mean_rate, 3),
        "rate_min_mhs": min(rates) if rates else None,
        "rate_max_mhs": max(rates) if rates else None,
        "rate_cv": round(cv, 4),
        "miner_cpu_mean": round(statistics.fmean(utilisation), 3) if utilisation else None,
        "miner_cpu_min": min(utilisation) if utilisation else None,
        "rate_per_cpu_s_mean_mh": round(mean_per_cpu, 3),
        "rate_per_cpu_s_cv": round(cv_per_cpu, 4),
        "hw_errors": final.get("hw_errors", samples[-1].get("hw_errors") if samples else None),
        "miner_final": final,
        "pool_final": pool_summary,
        "miner_exit_code": miner.returncode,
        "miner_stderr_tail": miner_err.strip().splitlines()[-3:],
    }
    growth = (rss[-1] - rss[0]) if len(rss) > 1 else 0.0
    report["memory_flat"] = bool(rss) and growth <= max(5.0, 0.05 * rss[0])
    report["rate_steady"] = bool(rates) and cv <= 0.10
    report["rate_per_cpu_steady"] = bool(per_cpu) and cv_per_cpu <= 0.10
    report["zero_hw_errors"] = report["hw_errors"] == 0
    report["shares_agree"] = bool(final) and final.get("accepted") == pool_summary.get("accepted")
    if args.samples:
        report["sample_rows"] = samples
    print(json.dumps(report))
    ok = report["memory_flat"] and report["rate_per_cpu_steady"] and report["zero_hw_errors"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
