"""Power targets against on/off: the same farm, the same schedule, both ways, measured.

For each mode a fresh simulated farm (``miner farm simulate --mix dial``: LuxOS S19/S19j Pro/S21,
AvalonMiner 1246 and Braiins OS S17 rigs, the same seed, so the same rigs) serves on loopback in its own
process, in compressed time (``--speed``: a rig's minute-long ramp takes a fraction of a second), and
``miner farm curtail --replay`` walks the 24-slot wet/dry-season schedule (benchmarks/data/wet-dry-24.csv)
against it: plan, command, wait the ramps, read back, measure. Figures are the curtail command's own
summary from the measured draw and hash rate of every slot: profit (revenue at the hashprice less power
paid), energy_kWh, the highest draw measured, slots over the cap. ``--ignore-rate`` seeds rigs that
acknowledge commands and do nothing (they must be found and the cap must still hold).

    python benchmarks/bench_curtail.py --rigs 500
    python benchmarks/bench_curtail.py --rigs 500 --ignore-rate 0.05 --json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from argtypes import non_negative_float, positive_float

HERE = os.path.dirname(os.path.abspath(__file__))
PRICES = os.path.join(HERE, "data", "wet-dry-24.csv")


def start_farm(args, workdir: str, base: str) -> tuple[subprocess.Popen, str]:
    hosts = os.path.join(workdir, f"farm-{base}.txt")
    command = [sys.executable, "-m", "miner", "farm", "simulate", "--rigs", str(args.rigs), "--hosts-file", hosts]
    command += ["--seed", str(args.seed), "--fault-rate", "0", "--mix", "dial", "--speed", str(args.speed)]
    command += ["--ignore-rate", str(args.ignore_rate), "--base-address", base]
    farm = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not os.path.exists(hosts):
        if farm.poll() is not None:
            raise SystemExit(f"the farm did not start: {farm.communicate()[1].strip()}")
        if time.monotonic() > deadline:
            farm.kill()
            raise SystemExit("the farm did not write its hosts file within 300 s")
        time.sleep(0.1)
    return farm, hosts


def run_mode(args, mode: str, workdir: str, base: str) -> dict:
    farm, hosts = start_farm(args, workdir, base)
    try:
        command = [sys.executable, "-m", "miner", "farm", "curtail", "--hosts-file", hosts, "--prices", args.prices]
        command += ["--mode", mode, "--replay", "--json", "--speed", str(args.speed)]
        command += ["--power-cap-kw", str(args.cap_kw), "--min-dwell", "0"]
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        took = time.monotonic() - started
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines or "summary" not in lines[-1]:
            raise SystemExit(f"curtail --mode {mode} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        slots = lines[:-1]
        over = [s for s in slots if s["cap_kw"] is not None and s["measured_kw"] > s["cap_kw"]]
        return {"mode": mode, "seconds": round(took, 1), **lines[-1]["summary"], "over_cap": len(over)}
    finally:
        farm.send_signal(signal.SIGTERM)
        farm.wait(30)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rigs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--speed", type=positive_float, default=300.0, help="simulated seconds per second")
    parser.add_argument("--cap-kw", type=non_negative_float, default=0.0, help="site cap (0: 85%% of nominal)")
    parser.add_argument("--ignore-rate", type=non_negative_float, default=0.0)
    parser.add_argument("--prices", default=PRICES)
    parser.add_argument("--json", action="store_true")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if not args.cap_kw:
        sys.path.insert(0, os.path.join(HERE, ".."))
        from miner.asic.simulator import Farm

        nominal = sum(r.model.watts for r in Farm(args.rigs, seed=args.seed, fault_rate=0.0, mix="dial").rigs)
        args.cap_kw = round(nominal / 1000 * 0.85)
    with tempfile.TemporaryDirectory() as workdir:
        onoff = run_mode(args, "onoff", workdir, "127.1.160.1")
        targets = run_mode(args, "targets", workdir, "127.1.170.1")
    gain = {
        "profit": round(targets["profit"] - onoff["profit"], 2),
        "profit_ratio": round(targets["profit"] / onoff["profit"], 4) if onoff["profit"] else None,
        "energy_kwh": round(targets["energy_kwh"] - onoff["energy_kwh"], 1),
    }
    report = {"rigs": args.rigs, "cap_kw": args.cap_kw, "speed": args.speed, "onoff": onoff, "targets": targets}
    report["targets_minus_onoff"] = gain
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.rigs} rigs, cap {args.cap_kw:g} kW (schedule caps win), 24 slots of {os.path.basename(args.prices)}")
    print(f"{'mode':8} {'profit':>12} {'energy kWh':>14} {'max kW':>9} {'over cap':>9} {'not complying':>14} {'s':>6}")
    for r in (onoff, targets):
        print(
            f"{r['mode']:8} {r['profit']:12,.0f} {r['energy_kwh']:14,.0f} {r['max_kw']:9,.1f} {r['over_cap']:9} "
            f"{len(r['non_compliant']):14} {r['seconds']:6.1f}"
        )
    print(
        f"targets - onoff: profit {gain['profit']:+,.0f} ({gain['profit_ratio']:.3f}x), "
        f"energy {gain['energy_kwh']:+,.0f} kWh"
    )


if __name__ == "__main__":
    main()
