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


@click.command()
@backend_options
@click.option("--seconds", "-s", type=Number(min=0.1), default=5.0, show_default=True, help="how long to mine")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def bench(backend, threads, device, lanes, seconds, as_json) -> None:
    """Measure nonce throughput beside the plain hashlib loop, in one run."""
    from miner.throughput import engine_rate, hashlib_baseline

    be = make_backend(backend, device, lanes)
    n_threads = (threads or default_threads()) if backend != "opencl" else 1
    baseline = hashlib_baseline(min(1.0, max(0.25, seconds / 5)))
    try:
        result = engine_rate(be, n_threads, seconds)
    except KeyboardInterrupt:
        raise Interrupted() from None
    report = {
        "backend": be.name,
        "threads": n_threads,
        "hashes": result["hashes"],
        "seconds": round(result["seconds"], 3),
        "hashrate": result["hashrate"],
        "baseline_hashrate": baseline,
        "speedup": result["hashrate"] / baseline,
        "description": be.describe(),
    }
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"{'backend':<28}{'threads':>8}{'hashes':>14}{'seconds':>9}{'MH/s':>10}{'x hashlib':>11}")
    click.echo(
        f"{report['description']:<28}{n_threads:>8}{report['hashes']:>14}{report['seconds']:>9.2f}"
        f"{report['hashrate'] / 1e6:>10.2f}{report['speedup']:>11.1f}"
    )
    click.echo(f"{'hashlib baseline (1 thread)':<28}{1:>8}{'':>14}{'':>9}{baseline / 1e6:>10.2f}{1.0:>11.1f}")


commands = [grind, scan, bench]
