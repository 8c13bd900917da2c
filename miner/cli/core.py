"""``miner grind``, ``miner scan`` and ``miner bench``: the kernel, directly."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import click

from kernels.base import NONCE_LIMIT
from miner.block import (
    difficulty_to_target,
    hash_to_display_hex,
    header_bits,
    nbits_to_target,
    parse_header_hex,
    parse_target_hex,
)
from miner.cli.common import CliError, Interrupted, Number, Positive, backend_options, make_backend, make_engine
from miner.engine import Engine, default_threads, verify_candidate
from miner.work import Work

EXIT_NOT_FOUND = 1
EXIT_BAD_INPUT = 2


def _header_arg(header_hex: str) -> bytes:
    try:
        return parse_header_hex(header_hex)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None


def find_nonce(engine: Engine, header: bytes, target: int, nonce_end: int = NONCE_LIMIT) -> bytes | None:
    """The header with the lowest nonce that meets ``target``, or None: the same on every backend and thread count.

    Ranges go out in increasing order, so once a hit is in, every lower nonce is in a range already
    handed out. Handing out no more and letting those finish leaves the lowest hit among those found.
    """
    found: list[bytes] = []
    done = threading.Event()

    def on_share(share) -> None:
        found.append(share.header)
        done.set()

    engine.on_share = on_share
    engine.set_source(iter([Work(header=header, target=target, nonce_end=nonce_end), None]).__next__)
    engine.start()
    threading.Thread(target=lambda: (engine.wait_exhausted(), done.set()), daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
        engine.set_source(None)
        engine.wait_idle()
    finally:
        engine.stop()
    return min(found, key=lambda h: int.from_bytes(h[76:], "little")) if found else None


@click.command()
@click.argument("header_hex")
@backend_options
def grind(header_hex: str, backend: str, threads: int | None, device: str | None, lanes: str | None) -> None:
    """Find a nonce that makes HEADER_HEX meet its own nBits target.

    Prints the 80-byte header with that nonce, nothing else: the contract of
    Bitcoin Core's `bitcoin-util grind`, so `contrib/signet/miner
    --grind-cmd "miner grind"` works. Exit 1 if no nonce in 0..2^32-1 works,
    2 on a malformed header.
    """
    header = _header_arg(header_hex)
    try:
        target = nbits_to_target(header_bits(header))
    except ValueError as exc:
        raise CliError(f"invalid difficulty bits: {exc}", EXIT_BAD_INPUT) from None
    if target == 0:
        raise CliError("invalid difficulty bits: the target is zero", EXIT_BAD_INPUT)

    engine = make_engine(backend, threads, device, lanes)
    try:
        solved = find_nonce(engine, header, target)
    except KeyboardInterrupt:
        raise Interrupted() from None
    if solved is None:
        for error in engine.errors:
            click.echo(f"miner: {error}", err=True)
        raise CliError("could not satisfy difficulty target: nonce space exhausted", EXIT_NOT_FOUND)
    click.echo(solved.hex())


def _scan_target(target: str | None, bits: str | None, difficulty: float | None) -> int:
    given = [x is not None for x in (target, bits, difficulty)]
    if sum(given) != 1:
        raise CliError("give exactly one of --target, --bits, --difficulty", EXIT_BAD_INPUT)
    try:
        if target is not None:
            return parse_target_hex(target)
        if bits is not None:
            text = bits.lower().removeprefix("0x")
            if len(text) != 8 or any(c not in "0123456789abcdef" for c in text):
                raise ValueError(f"--bits must be 8 hex digits (like 1d00ffff), got {bits!r}")
            return nbits_to_target(int(text, 16))
        return difficulty_to_target(difficulty)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None


@click.command()
@click.argument("header_hex")
@click.option("--target", help="target as 64 hex digits, most significant first")
@click.option("--bits", help="target as compact nBits, 8 hex digits")
@click.option("--difficulty", type=Positive, help="target as a share difficulty")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True, help="first nonce")
@click.option("--count", type=click.IntRange(min=0), default=None, help="nonces to scan (default: up to 2^32)")
@backend_options
def scan(header_hex, target, bits, difficulty, start, count, backend, threads, device, lanes) -> None:
    """Print every nonce in [start, start+count) whose hash meets the target.

    One JSON object per line, {"nonce": N, "hash": "<display hex>"}, each hit
    exactly once, in ascending nonce order.
    """
    header = _header_arg(header_hex)
    full_target = _scan_target(target, bits, difficulty)
    if count is None:
        count = max(0, NONCE_LIMIT - start)
    if start + count > NONCE_LIMIT:
        raise CliError(f"range [{start}, {start + count}) runs past 2^32 (no wrap-around)", EXIT_BAD_INPUT)
    be = make_backend(backend, device, lanes)
    prepared = be.prepare(header, full_target)
    work = Work(header=header, target=full_target)
    chunk = max(1024, min(be.default_chunk, count // (4 * (threads or default_threads())) or 1024))
    ranges = [(s, min(chunk, start + count - s)) for s in range(start, start + count, chunk)]
    hw_errors = 0

    def run(rng: tuple[int, int]) -> list[int]:
        return be.scan(prepared, *rng)

    workers = 1 if backend == "opencl" else (threads or default_threads())
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for candidates in pool.map(run, ranges):  # map keeps range order
                for nonce in candidates:
                    verdict, digest = verify_candidate(work, nonce, prepared.target_top)
                    if verdict == "share":
                        click.echo(json.dumps({"nonce": nonce, "hash": hash_to_display_hex(digest)}))
                    elif verdict == "hw_error":
                        hw_errors += 1
        except KeyboardInterrupt:
            pool.shutdown(cancel_futures=True)
            raise Interrupted() from None
        except ValueError as exc:
            raise CliError(str(exc), EXIT_BAD_INPUT) from None
    if hw_errors:
        raise CliError(f"{hw_errors} candidate(s) failed hashlib verification (hardware errors)", 3)


def _kernel_report(devices: list) -> tuple[dict | None, list[str]]:
    """What the CPU workers run and how it was chosen, as JSON and as lines; (None, []) without a CPU kernel."""
    from kernels.cpu import CpuBackend

    cpu = next((dev.backend for dev in devices if isinstance(dev.backend, CpuBackend)), None)
    if cpu is None:
        return None, []
    from kernels import chooser

    # A forced kernel never triggers a timing: it is compared with a verdict already on disk, if any.
    choice = chooser.choose() if cpu.auto else chooser.cached_choice()
    report: dict = {"running": cpu.choice, "description": cpu.describe(), "forced": not cpu.auto}
    if choice is None:
        return report, [f"kernel: {cpu.choice} ({cpu.describe()}), forced with --lanes"]
    report["choice"] = choice.to_json()
    if cpu.auto:
        how = "timed at this start" if not choice.cached else f"timed {choice.measured_at}"
        how += f", cached in {choice.path}" if choice.path else ", not cached: the cache directory is not writable"
        return report, [f"kernel: {choice.summary()} ({how}; --lanes forces one)"]
    line = f"kernel: {cpu.choice} ({cpu.describe()}), forced with --lanes"
    if choice.winner != cpu.choice:
        margin = choice.margin(cpu.choice)
        faster = f", {margin:.2f}x as fast in the start-up timing" if margin else ""
        line += f"; --lanes auto would run {choice.winner}{faster}"
    return report, [line]


def _baseline_line(baseline) -> str:
    return f"hashlib baseline (1 thread): {baseline.describe()}"


@click.command()
@backend_options
@click.option("--seconds", "-s", type=Number(min=0.1), default=5.0, show_default=True, help="how long to mine")
@click.option("--all-kernels", is_flag=True, help="time every CPU kernel in turn (--seconds each), not just one")
@click.option("--rechoose", is_flag=True, help="time the CPU kernels for --lanes auto again and cache the new verdict")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def bench(backend, threads, device, lanes, seconds, all_kernels, rechoose, as_json) -> None:
    """Measure nonce throughput beside the plain hashlib loop, in one run.

    Runs what `mine` would run with the same options: one backend, several at once (-b cpu,opencl)
    or several OpenCL devices (--device 0:0,0:1), each backend's rate on its own row. The hashlib
    baseline is the median of several short runs, taken once, with its spread.
    """
    from miner.cli.common import make_devices
    from miner.throughput import BASELINE_SECONDS, engine_rates, measure_baseline

    if rechoose and "cpu" in backend.split(","):
        from kernels import BackendUnavailable, chooser

        try:
            chooser.choose(refresh=True)
        except BackendUnavailable as exc:
            raise CliError(str(exc)) from None
    if all_kernels:
        _bench_all_kernels(backend, threads, device, lanes, seconds, as_json)
        return
    devices = make_devices(backend, threads, device, lanes)
    n_threads = sum(1 for dev in devices if not dev.name.startswith("OPENCL")) or 1
    kernel, kernel_lines = _kernel_report(devices)
    try:
        baseline = measure_baseline(seconds=min(BASELINE_SECONDS, max(0.05, seconds / 10)))
        result = engine_rates(devices, seconds)
    except KeyboardInterrupt:
        raise Interrupted() from None
    groups = result["groups"]
    report = {
        "backend": ",".join(dict.fromkeys(group["backend"] for group in groups)),
        "threads": n_threads,
        "hashes": result["hashes"],
        "seconds": round(result["seconds"], 3),
        "hashrate": result["hashrate"],
        "baseline_hashrate": baseline.median,
        "baseline": baseline.to_json(),
        "speedup": result["hashrate"] / baseline.median,
        "description": " + ".join(group["description"] for group in groups),
        "rows": [{**group, "speedup": group["hashrate"] / baseline.median} for group in groups],
        "kernel": kernel,
        "errors": result["errors"],
    }
    if as_json:
        click.echo(json.dumps(report))
        return
    from miner.throughput import format_rate, format_ratio, format_table

    rows = [
        [
            row["description"],
            str(row["workers"]),
            str(row["hashes"]),
            f"{report['seconds']:.2f}",
            format_rate(row["hashrate"]),
            format_ratio(row["speedup"]),
        ]
        for row in report["rows"]
    ]
    if len(rows) > 1:
        rows.append(
            [
                "total",
                str(len(devices)),
                str(report["hashes"]),
                f"{report['seconds']:.2f}",
                format_rate(report["hashrate"]),
                format_ratio(report["speedup"]),
            ]
        )
    rows.append(["hashlib baseline (1 thread)", "1", "", "", format_rate(baseline.median), "1.0"])
    header = ["backend", "threads", "hashes", "seconds", "rate", "x hashlib"]
    for line in format_table(header, rows):
        click.echo(line)
    click.echo(_baseline_line(baseline))
    for line in kernel_lines:
        click.echo(line)
    for error in report["errors"][:3]:
        click.echo(f"miner: {error}", err=True)


def _bench_all_kernels(backend, threads, device, lanes, seconds, as_json) -> None:
    """Every CPU kernel through the real engine in turn, one baseline for the table."""
    from kernels import BackendUnavailable, chooser
    from kernels.cpu import KERNEL_CHOICES, default_lanes
    from miner.throughput import (
        BASELINE_SECONDS,
        format_rate,
        format_ratio,
        format_table,
        kernel_rates,
        measure_baseline,
    )

    if backend != "cpu" or device is not None:
        raise CliError("--all-kernels times the CPU kernels: use it with --backend cpu", 2)
    if lanes not in (None, "auto"):
        raise CliError("--all-kernels times every kernel: leave out --lanes", 2)
    try:
        choice = chooser.choose()
    except BackendUnavailable as exc:
        raise CliError(str(exc)) from None
    n_threads = threads or default_threads()
    try:
        baseline = measure_baseline(seconds=min(BASELINE_SECONDS, max(0.05, seconds / 10)))
        rows = kernel_rates(list(KERNEL_CHOICES), n_threads, seconds)
    except KeyboardInterrupt:
        raise Interrupted() from None
    measured = [row for row in rows if "hashrate" in row]
    fastest = max(measured, key=lambda row: row["hashrate"]) if measured else None
    feature_default = str(default_lanes())
    for row in measured:
        row["speedup"] = row["hashrate"] / baseline.median
        row["vs_fastest"] = row["hashrate"] / fastest["hashrate"]
        row["auto"] = row["kernel"] == choice.winner
        row["feature_default"] = row["kernel"] == feature_default
    report = {
        "threads": n_threads,
        "seconds_per_kernel": seconds,
        "baseline_hashrate": baseline.median,
        "baseline": baseline.to_json(),
        "kernels": rows,
        "fastest": fastest["kernel"] if fastest else None,
        "auto": choice.winner,
        "feature_default": feature_default,
        "choice": choice.to_json(),
    }
    by_kernel = {row["kernel"]: row for row in measured}
    auto_row = by_kernel.get(choice.winner)
    report["auto_vs_fastest"] = auto_row["vs_fastest"] if auto_row else None
    if as_json:
        click.echo(json.dumps(report))
        return
    table = []
    for row in measured:
        marks = [mark for mark, on in (("auto", row["auto"]), ("feature flags", row["feature_default"])) if on]
        table.append(
            [
                row["kernel"],
                row["description"],
                str(n_threads),
                format_rate(row["hashrate"]),
                format_ratio(row["speedup"]),
                f"{row['vs_fastest']:.2f}",
                ", ".join(marks),
            ]
        )
    table.append(["hashlib", "baseline (1 thread)", "1", format_rate(baseline.median), "1.0", "", ""])
    header = ["kernel", "description", "threads", "rate", "x hashlib", "x fastest", ""]
    for line in format_table(header, table, "llrrrrl"):
        click.echo(line)
    for row in rows:
        if "error" in row:
            click.echo(f"{row['kernel']}: cannot run here: {row['error']}")
    click.echo(_baseline_line(baseline))
    if auto_row is not None and fastest is not None:
        click.echo(
            f"--lanes auto runs {choice.winner}: {auto_row['vs_fastest']:.2f}x the fastest kernel in this run "
            f"({fastest['kernel']}); at start-up: {choice.summary()}"
        )


commands = [grind, scan, bench]
