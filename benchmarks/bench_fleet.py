"""A fleet sweep at farm scale: `miner asic summary` over 5,000 simulated rigs on this machine.

The farm is the real ``miner farm simulate`` command in its own process (one asyncio loop, one loopback
address per rig), so its memory and CPU can be read from /proc apart from the sweep's. The sweep runs in
this process exactly as ``miner asic summary --hosts-file`` does: one joined summary+stats+... request per
rig, at most --concurrency in flight, --timeout per try, --retries. Each sweep is checked against the
farm's manifest: every rig has a row, and every faulty rig is marked (down, faulty or slow) while every
healthy one is up.

Reported: sweep wall time per run (and the best), the sweep's CPU seconds and the farm's during the
sweep, the farm's resident memory for N rigs, and the counts of rigs up, paused, faulty and down.

    python benchmarks/bench_fleet.py --rigs 5000
    python benchmarks/bench_fleet.py --rigs 5000 --concurrency 1024 --timeout 2 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from argtypes import non_negative_float, positive_float

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

READABLE_QUIRKS = ("no_nul", "glued", "trailing_comma")  # the client reads through these: such rigs are up


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start_farm(args, workdir: str) -> tuple[subprocess.Popen, str, str]:
    hosts, manifest = os.path.join(workdir, "farm.txt"), os.path.join(workdir, "manifest.json")
    command = [sys.executable, "-m", "miner", "farm", "simulate", "--rigs", str(args.rigs), "--hosts-file", hosts]
    command += ["--seed", str(args.seed), "--manifest", manifest, "--fault-rate", str(args.fault_rate)]
    pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "stdin": subprocess.DEVNULL}
    farm = subprocess.Popen(command, text=True, **pipes)
    deadline = time.monotonic() + 300
    while not os.path.exists(hosts):
        if farm.poll() is not None:
            raise SystemExit(f"the farm did not start: {farm.communicate()[1].strip()}")
        if time.monotonic() > deadline:
            farm.kill()
            raise SystemExit("the farm did not write its hosts file within 300 s")
        time.sleep(0.1)
    return farm, hosts, manifest


def check(rows, manifest: list[dict]) -> dict:
    """Every rig reported, every fault marked, no healthy rig marked."""
    by_target = {(r.host, r.port): r for r in rows}
    missing = [m for m in manifest if (m["host"], m["port"]) not in by_target]
    unmarked, false_alarms = [], []
    for m in manifest:
        row = by_target.get((m["host"], m["port"]))
        if row is None:
            continue
        healthy = m["fault"] is None or m["quirk"] in READABLE_QUIRKS
        marked = row.state in ("faulty", "down") or row.slow
        if healthy and (row.state != "up" or row.slow):
            false_alarms.append(f"{m['host']}:{m['port']} {row.state} {row.status}")
        if not healthy and not marked:
            unmarked.append(f"{m['host']}:{m['port']} {m['fault']} -> {row.state} {row.status}")
    return {
        "reported": len(rows),
        "missing": len(missing),
        "faults_unmarked": len(unmarked),
        "false_alarms": len(false_alarms),
        "examples": (unmarked + false_alarms)[:5],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rigs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=512, help="hosts in flight at once")
    parser.add_argument("--timeout", type=positive_float, default=3.0, help="seconds per host per try")
    parser.add_argument("--retries", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3, help="sweeps to time (the farm stays up between them)")
    parser.add_argument("--fault-rate", type=non_negative_float, default=0.05, help="share of faulty rigs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    from miner.asic.fleet import fleet_summary, read_hosts_file, totals

    raise_fd_limit(args.concurrency + 1024)
    workdir = tempfile.mkdtemp(prefix="bench_fleet_")
    farm, hosts_file, manifest_file = start_farm(args, workdir)
    try:
        targets = read_hosts_file(hosts_file)
        with open(manifest_file) as fh:
            manifest = json.load(fh)
        farm_rss = proc_rss_mib(farm.pid)
        runs = []
        for _ in range(args.runs):
            farm_cpu, own = proc_cpu_s(farm.pid), os.times()
            started = time.perf_counter()
            rows = fleet_summary(targets, timeout=args.timeout, workers=args.concurrency, retries=args.retries)
            wall = time.perf_counter() - started
            after = os.times()
            runs.append(
                {
                    "wall_s": round(wall, 3),
                    "sweep_cpu_s": round(after.user + after.system - own.user - own.system, 3),
                    "farm_cpu_s": round(proc_cpu_s(farm.pid) - farm_cpu, 3),
                    "check": check(rows, manifest),
                }
            )
        farm_rss_after = proc_rss_mib(farm.pid)
    finally:
        farm.send_signal(signal.SIGTERM)
        try:
            farm.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            farm.kill()
            farm.communicate()
        shutil.rmtree(workdir, ignore_errors=True)
    t = totals(rows)
    best = min(runs, key=lambda r: r["wall_s"])
    result = {
        "rigs": args.rigs,
        "concurrency": args.concurrency,
        "timeout_s": args.timeout,
        "retries": args.retries,
        "cores": os.cpu_count(),
        "runs": runs,
        "best_wall_s": best["wall_s"],
        "farm_rss_mib": round(farm_rss, 1),
        "farm_rss_after_sweeps_mib": round(farm_rss_after, 1),
        "farm_kib_per_rig": round(farm_rss_after * 1024 / args.rigs, 1),
        "up": t.up,
        "paused": t.paused,
        "faulty": t.faulty,
        "down": t.down,
        "slow": t.slow,
        "total_phs": round(t.ths / 1e3, 2),
        "total_kw": round(t.kw, 1),
        "problems": t.problems,
    }
    result["ok"] = all(r["check"]["missing"] == 0 and r["check"]["faults_unmarked"] == 0 for r in runs)
    print(json.dumps(result))
    if not args.json:
        table = [
            ("rigs (cores on this machine)", f"{args.rigs} ({result['cores']})"),
            ("sweep wall s, each run", ", ".join(str(r["wall_s"]) for r in runs)),
            ("sweep CPU s / farm CPU s (best run)", f"{best['sweep_cpu_s']} / {best['farm_cpu_s']}"),
            ("farm RSS MiB (KiB per rig)", f"{result['farm_rss_after_sweeps_mib']} ({result['farm_kib_per_rig']})"),
            ("up / paused / faulty / down (slow)", f"{t.up} / {t.paused} / {t.faulty} / {t.down} ({t.slow})"),
            ("total PH/s, kW", f"{result['total_phs']}, {result['total_kw']}"),
            ("every rig reported, every fault marked", result["ok"]),
            ("healthy rigs marked anyway", sum(r["check"]["false_alarms"] for r in runs)),
        ]
        width = max(len(k) for k, _ in table)
        for key, value in table:
            print(f"{key:<{width}}  {value}")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
