"""A small Python API for teaching mining: the steps ``miner explain`` prints, as functions to call.

A class in a notebook follows the tour of docs/how-mining-works.md with these, and ``miner explain``
prints what they return, so the shell and the notebook cannot tell two stories:

- **headers**: :func:`header` (a named real header or 160 hex digits), :func:`header_fields`,
  :func:`explain_header` (both SHA-256 passes, the target, the verdict);
- **hashing**: :func:`sha256d`, :func:`block_hash`;
- **targets**: :func:`difficulty_to_target`, :func:`target_to_difficulty`, :func:`nbits_to_target`,
  :func:`leading_zero_bits`;
- **a short scan**: :func:`scan` runs the real kernel over a nonce range and returns its hits;
- **a job from a capture**: :class:`CaptureWriter` records a Stratum session (``miner mine --capture``),
  :func:`record_capture` records one against a pool on this machine, :func:`read_capture`,
  :func:`capture_shares` and :func:`job_from_capture` walk a captured share to its hash and verdict;
- **a template**: :func:`explain_template` (a getblocktemplate answer to a coinbase, merkle tree and header);
- **odds**: :func:`odds` (the Poisson arithmetic), :func:`measure_odds` (the real kernel against that
  arithmetic), :func:`ks_exponential`, :func:`plot_odds`; :func:`economics` for the cost side.

Every function returns plain data (bytes, ints, floats, dicts of them), ready to print or plot.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from miner import explain as _ex
from miner.block import (
    DIFF1_TARGET,
    hash_to_display_hex,
    hash_to_int,
    int_to_display_hex,
    leading_zero_bits,
    nbits_to_target,
    sha256d,
    target_to_difficulty,
)
from miner.block import difficulty_to_target as _difficulty_to_target
from miner.explain import CapturedShare, WireMessage, explain_header, explain_template, header_fields

__all__ = [
    "CaptureWriter",
    "CapturedShare",
    "Hit",
    "MissingExtra",
    "WireMessage",
    "block_hash",
    "capture_shares",
    "difficulty_to_target",
    "economics",
    "explain_header",
    "explain_template",
    "header",
    "header_fields",
    "job_from_capture",
    "ks_exponential",
    "leading_zero_bits",
    "measure_odds",
    "nbits_to_target",
    "odds",
    "plot_odds",
    "read_capture",
    "record_capture",
    "redact_password",
    "require_matplotlib",
    "scan",
    "sha256d",
    "target_to_difficulty",
]

TEACH_EXTRA = "pip install 'sha256d-miner[teach]'"


class MissingExtra(ImportError):
    """An optional package this function needs is not installed; the message says which extra brings it."""


# --- headers, hashes, targets ----------------------------------------------------------------------------------------


def header(spec: str | bytes) -> bytes:
    """80 header bytes: a real one by name ('genesis', '125552', 'testnet-genesis', 'regtest-genesis'),
    160 hex digits, or the bytes themselves."""
    if isinstance(spec, (bytes, bytearray)):
        if len(spec) != 80:
            raise ValueError(f"a header is 80 bytes, got {len(spec)}")
        return bytes(spec)
    return _ex.resolve_header(spec)[1]


def block_hash(header80: bytes) -> str:
    """sha256d of the header in display order, as block explorers and RPC print it."""
    return hash_to_display_hex(sha256d(header80))


def difficulty_to_target(difficulty: float) -> int:
    """The 256-bit target a share of this difficulty must meet: diff-1 target / difficulty, rounded down."""
    return _difficulty_to_target(difficulty)


# --- a short scan ------------------------------------------------------------------------------------------------


class Hit(NamedTuple):
    """A nonce whose header hash meets the target, as the kernel found it and hashlib confirmed it."""

    nonce: int
    hash_hex: str  # display order
    zero_bits: int  # leading zero bits of the hash, read as a 256-bit number
    difficulty: float  # the difficulty this hash alone meets


@functools.cache
def _backend(name: str):
    from kernels import get_backend

    return get_backend(name)


def scan(
    header80: bytes,
    target: int | None = None,
    *,
    difficulty: float | None = None,
    start: int = 0,
    count: int = 1 << 20,
    backend: str = "cpu",
) -> list[Hit]:
    """Run a kernel over nonces ``start .. start+count-1`` of a header; every hit, re-checked with hashlib.

    The target is ``target``, else the one a share ``difficulty`` must meet, else the header's own nBits
    (a valid block). A kernel returns candidates by one 32-bit word; like the engine, this keeps the ones
    hashlib confirms, and a candidate hashlib contradicts (a broken kernel) raises.
    """
    from miner.engine import verify_candidate
    from miner.work import Work

    header80 = header(header80)
    if target is None:
        target = _difficulty_to_target(difficulty) if difficulty is not None else nbits_to_target(_bits(header80))
    if not 0 <= start < 1 << 32 or count < 0 or start + count > 1 << 32:
        raise ValueError("nonces are 32-bit: start and start + count must lie within 0 .. 2^32")
    be = _backend(backend)
    prepared = be.prepare(header80, target)
    work = Work(header=header80, target=target)
    hits = []
    for nonce in sorted(be.scan(prepared, start, count)):
        verdict, digest = verify_candidate(work, nonce, prepared.target_top)
        if verdict == "hw_error":
            raise RuntimeError(f"the {backend} kernel returned nonce {nonce}, whose hash does not pass its filter")
        if verdict == "share":
            value = hash_to_int(digest)
            hits.append(Hit(nonce, hash_to_display_hex(digest), leading_zero_bits(value), _difficulty_of(value)))
    return hits


def _bits(header80: bytes) -> int:
    return int.from_bytes(header80[72:76], "little")


def _difficulty_of(value: int) -> float:
    return DIFF1_TARGET / value if value else math.inf


# --- captures ------------------------------------------------------------------------------------------------------

_PARAMS_START = re.compile(r'"params"\s*:\s*\[')
_WHITESPACE = re.compile(r"\s*")


def redact_password(line: str) -> str:
    """A Stratum line with mining.authorize's password replaced by "***"; every other character kept.

    The password is found by parsing, not by pattern, so one holding quotes or escapes is replaced
    whole. A line the replacement cannot keep byte for byte is written anew, never with the password.
    """
    if "mining.authorize" not in line:
        return line
    try:
        message = json.loads(line)
    except ValueError:
        from miner.logs import redact

        return redact(line)  # not JSON: what the log's rule makes of it
    params = message.get("params") if isinstance(message, dict) else None
    if message.get("method") != "mining.authorize" or not isinstance(params, list) or len(params) < 2:  # type: ignore[union-attr]
        return line
    wanted = {**message, "params": [params[0], "***", *params[2:]]}
    decoder = json.JSONDecoder()
    for match in _PARAMS_START.finditer(line):
        try:
            pos = _WHITESPACE.match(line, match.end()).end()  # type: ignore[union-attr]
            _, pos = decoder.raw_decode(line, pos)
            pos = _WHITESPACE.match(line, pos).end()  # type: ignore[union-attr]
            if line[pos : pos + 1] != ",":
                continue
            begin = _WHITESPACE.match(line, pos + 1).end()  # type: ignore[union-attr]
            _, end = decoder.raw_decode(line, begin)
        except ValueError:
            continue
        candidate = f'{line[:begin]}"***"{line[end:]}'
        try:
            if json.loads(candidate) == wanted:
                return candidate
        except ValueError:
            continue
    return json.dumps(wanted)


class CaptureWriter:
    """A wire hook that appends each Stratum line to a file as one JSON line: ``{"time", "direction", "line"}``.

    ``time`` is the Unix time in seconds, ``direction`` "out" (miner to pool) or "in", and ``line`` the
    message exactly as it went over the wire, except the password of mining.authorize, which is "***".
    Several connections may share one writer: each line is written whole, and flushed at once, so a
    capture read while the miner runs (or after it is killed) ends at a complete line.
    """

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self.clock = clock
        self._file = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, direction: str, line: str) -> None:
        record = {"time": round(self.clock(), 6), "direction": direction, "line": redact_password(line)}
        text = json.dumps(record) + "\n"
        with self._lock:
            if not self._file.closed:
                self._file.write(text)
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_capture(path: str) -> list[WireMessage]:
    """A capture file's messages in order (``miner mine --capture``'s JSON lines, or a JSON list of messages)."""
    with open(path, encoding="utf-8") as fh:
        return _ex.load_capture(fh.read())


def _entries(capture: str | list[WireMessage]) -> list[WireMessage]:
    return read_capture(capture) if isinstance(capture, str) else capture


def capture_shares(capture: str | list[WireMessage]) -> list[CapturedShare]:
    """Every share (mining.submit) in a capture, with its job, session and the pool's verdict."""
    return _ex.capture_shares(_entries(capture))


def job_from_capture(capture: str | list[WireMessage], share: int | None = None) -> dict[str, Any]:
    """A captured share walked to its header, hash and verdict: the ``share``-th submit (from 1), or by
    default the last one the pool accepted. What ``miner explain job FILE`` prints."""
    return _ex.explain_capture(_entries(capture), share)


def record_capture(
    path: str,
    shares: int = 1,
    *,
    difficulty: float = 2.0**-16,
    threads: int = 1,
    backend: str = "cpu",
    user: str = "student",
    password: str = "x",
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Mine against a pool on this machine until it accepts ``shares`` shares, recording the session.

    The pool is the project's own, on loopback, with a difficulty-1 network target (so a share is not
    also a block) and a fixed share difficulty. Returns the path and the counts; TimeoutError if the
    pool has not accepted that many within ``timeout`` seconds.
    """
    from miner.engine import Engine
    from miner.mining import Miner, PoolConfig
    from miner.pool import EmbeddedChain, EmbeddedPool

    accepted = threading.Event()
    submits: set[Any] = set()
    count = [0]
    writer = CaptureWriter(path)

    def wire(direction: str, line: str) -> None:
        writer(direction, line)
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if direction == "out" and message.get("method") == "mining.submit":
            submits.add(message.get("id"))
        elif direction == "in" and message.get("id") in submits and message.get("result") is True:
            submits.discard(message.get("id"))
            count[0] += 1
            if count[0] >= shares:
                accepted.set()

    pool = EmbeddedPool(difficulty=difficulty, vardiff=False, job_source=EmbeddedChain(nbits=0x1D00FFFF))
    pool.start()
    try:
        engine = Engine.for_backend(backend, threads=threads)
        miner = Miner([PoolConfig(pool.url, user, password)], engine, wire=wire)
        miner.start()
        try:
            if not accepted.wait(timeout):
                raise TimeoutError(f"the pool accepted {count[0]} of {shares} share(s) within {timeout:g} s")
        finally:
            miner.stop()
    finally:
        pool.stop()
        writer.close()
    return {"path": str(path), "accepted": count[0], "url": pool.url}


# --- odds ------------------------------------------------------------------------------------------------------------


def odds(hashrate: float, difficulty: float, within: list[float] | None = None) -> dict[str, Any]:
    """Expected hashes and time to a hash of ``difficulty`` at ``hashrate``, and the chance within each window."""
    return _ex.explain_odds(hashrate, difficulty, within)


def economics(hashrate: float, power_watts: float, price_per_kwh: float, **network: float) -> dict[str, Any]:
    """Expected revenue against electricity per day (``difficulty``, ``reward_btc``, ``btc_price`` optional)."""
    return _ex.explain_economics(hashrate, power_watts, price_per_kwh, **network)


ODDS_HEADER = "genesis"  # one fixed work unit: every machine scans the same nonces, a faster one further
ODDS_HITS = 8192  # aim: thousands of hits even on a machine busier than when it was timed; each costs a hashlib check
CALIBRATE_SECONDS = 0.1


def ks_exponential(samples: list[float], mean: float) -> tuple[float, float]:
    """The Kolmogorov-Smirnov statistic of ``samples`` against the exponential law of ``mean``, and its p-value.

    The law is given, not fitted, so the classic test applies: D = max |F_n(x) - (1 - e^(-x/mean))|, and
    the p-value is Kolmogorov's limit law at (sqrt(n) + 0.12 + 0.11/sqrt(n)) D (Stephens' correction,
    good to a few parts in a thousand from n = 5 on).
    """
    import numpy as np

    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n == 0 or not mean > 0:
        raise ValueError("the test needs samples and a positive mean")
    cdf = -np.expm1(-x / mean)
    ranks = np.arange(1, n + 1)
    statistic = float(max(np.max(ranks / n - cdf), np.max(cdf - (ranks - 1) / n)))
    root = math.sqrt(n)
    lam = (root + 0.12 + 0.11 / root) * statistic
    if lam < 0.2:  # the series below converges slowly there; the p-value is 1 to double precision
        return statistic, 1.0
    j = np.arange(1, 101)
    p_value = float(2 * np.sum((-1.0) ** (j - 1) * np.exp(-2 * j**2 * lam**2)))
    return statistic, min(1.0, max(0.0, p_value))


def _calibrate(be, header80: bytes, threads: int) -> float:
    """This machine's rate, roughly: one thread's back-to-back kernel calls, times the threads."""
    prepared = be.prepare(header80, 0)
    count, done, started = 1 << 12, 0, time.perf_counter()
    while True:
        be.scan(prepared, done, count)
        done += count
        elapsed = time.perf_counter() - started
        if elapsed >= CALIBRATE_SECONDS or done + 2 * count > 1 << 32:
            return done / elapsed * threads if elapsed > 0 else math.inf
        count *= 2


def _zero_bits_for(hashes: float, hits: int) -> int:
    """The share target's leading zero bits that make ``hashes`` hashes yield about ``hits`` hits."""
    if not hashes > 0 or not math.isfinite(hashes):
        return 32
    return max(1, min(32, round(math.log2(max(1.0, hashes / hits)))))


def measure_odds(
    seconds: float,
    threads: int | None = None,
    backend: str = "cpu",
    hits: int = ODDS_HITS,
) -> dict[str, Any]:
    """Run the real engine on one fixed work unit for ``seconds`` and hold its hits against the theory.

    The share difficulty is a power of two chosen from a quick measurement of this machine, so that the
    run yields about ``hits`` hits. Each hit is a kernel candidate the engine re-checked with hashlib;
    nothing is re-hashed here. Returned beside the theory:

    - ``counts``: for each k from the share target's own leading zero bits up to the most any hit has,
      the hits with at least k leading zero bits, against N x 2^-k for N hashes (the target itself,
      0xffff... rather than 0x10000..., makes the first row's chance a hair smaller: it is used exactly);
    - ``gaps``: the hashes between successive hits (nonces are scanned in order, so the gaps are in the
      order the draws were made), against the exponential law of mean 2^32 x D hashes, that is
      2^32 x D / hashrate seconds, with the Kolmogorov-Smirnov statistic and p-value; and, since the law
      is memoryless, the mean further wait of the gaps that already lasted longer than the mean.
    """
    from miner.engine import Engine, default_threads
    from miner.throughput import warm_up
    from miner.work import Work

    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"the measurement needs a positive number of seconds, not {seconds!r}")
    threads = threads or default_threads()
    engine = Engine.for_backend(backend, threads=threads)
    warm_up(engine.devices)
    be = engine.devices[0].backend
    header80 = header(ODDS_HEADER)
    workers = len(engine.devices)
    zero_bits = _zero_bits_for(_calibrate(be, header80, workers) * seconds, hits)
    difficulty = 2.0 ** (zero_bits - 32)
    target = _difficulty_to_target(difficulty)
    work = Work(header=header80, target=target)
    found: list[tuple[int, int]] = []
    engine.on_share = lambda share: found.append((share.nonce, share.hash_int))
    handed = [False]

    def once() -> Work | None:
        if handed[0]:
            return None
        handed[0] = True
        return work

    engine.set_source(once)
    started = time.perf_counter()
    engine.start()
    engine.wait_exhausted(seconds)  # a machine that scans all 2^32 nonces sooner stops there
    engine.set_source(None, clean=True)
    engine.wait_idle(60.0)  # every range handed out is scanned, so the nonces scanned are 0 .. N-1
    elapsed = time.perf_counter() - started
    engine.stop()
    hashes = engine.stats.total_hashes
    hw_errors = engine.stats.hw_errors
    nonces = sorted(n for n, _ in found)
    if nonces and nonces[-1] >= hashes:
        raise RuntimeError("a hit lies past the nonces counted as scanned")
    zeros = [leading_zero_bits(value) for _, value in found]
    hashrate = hashes / elapsed if elapsed > 0 else 0.0
    return {
        "seconds": elapsed,
        "backend": be.name,
        "threads": workers,
        "header_hex": header80.hex(),
        "difficulty": difficulty,
        "target_hex": int_to_display_hex(target),
        "target_zero_bits": zero_bits,
        "hashes": hashes,
        "hashrate": hashrate,
        "hits": len(found),
        "hardware_errors": hw_errors,
        "counts": _counts(zeros, hashes, target, zero_bits),
        "gaps": _gaps(nonces, target, hashrate),
        "nonces": nonces,
    }


def _counts(zeros: list[int], hashes: int, target: int, first: int) -> list[dict[str, Any]]:
    rows = []
    for k in range(first, max(zeros, default=first) + 1):
        p = min(target + 1, 1 << (256 - k)) / 2.0**256  # the chance that one hash has >= k zero bits and is a hit
        expected = hashes * p
        sigma = math.sqrt(hashes * p * (1 - p))
        count = sum(z >= k for z in zeros)
        rows.append(
            {
                "zero_bits": k,
                "hits": count,
                "expected": expected,
                "sigma": sigma,
                "z": (count - expected) / sigma if sigma > 0 else 0.0,
            }
        )
    return rows


def _gaps(nonces: list[int], target: int, hashrate: float) -> dict[str, Any]:
    mean = 2.0**256 / (target + 1)  # hashes per hit: 2^32 x D, up to the diff-1 target's 0xffff
    gaps = [nonces[i + 1] - nonces[i] for i in range(len(nonces) - 1)]
    out: dict[str, Any] = {
        "count": len(gaps),
        "mean_hashes_theory": mean,
        "mean_hashes": sum(gaps) / len(gaps) if gaps else None,
        "mean_seconds_theory": mean / hashrate if hashrate > 0 else None,
        "mean_seconds": sum(gaps) / len(gaps) / hashrate if gaps and hashrate > 0 else None,
        "ks_statistic": None,
        "ks_p_value": None,
        "memoryless": None,
    }
    if len(gaps) >= 2:
        out["ks_statistic"], out["ks_p_value"] = ks_exponential(gaps, mean)
        long = [g - mean for g in gaps if g > mean]
        out["memoryless"] = {
            "longer_than_mean": len(long),
            "mean_further_hashes": sum(long) / len(long) if long else None,
        }
    out["gaps"] = gaps
    return out


def require_matplotlib(headless: bool = False):
    """matplotlib's pyplot, or MissingExtra naming the extra that installs it; ``headless`` draws to files only
    where no display was chosen yet."""
    try:
        import matplotlib

        if headless and "matplotlib.pyplot" not in sys.modules:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtra(f"plotting needs matplotlib: {TEACH_EXTRA}") from None
    return plt


def plot_odds(measurement: dict[str, Any], path: str | None = None, dpi: int = 80):
    """Both panels of a measurement: hits per leading zero bits against N x 2^-k, and the gaps between hits
    against the exponential law. Saved to ``path`` when given; returns the matplotlib Figure.

    MissingExtra when matplotlib is not installed (``pip install 'sha256d-miner[teach]'``).
    """
    plt = require_matplotlib(headless=path is not None)
    import numpy as np

    rows = measurement["counts"]
    gaps = measurement["gaps"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    ks = [r["zero_bits"] for r in rows]
    left.semilogy(ks, [max(r["hits"], 0.5) for r in rows], "o", label="hits measured")
    left.semilogy(ks, [r["expected"] for r in rows], "-", label=r"expected $N \cdot 2^{-k}$")
    left.set_xlabel("leading zero bits k")
    left.set_ylabel("hits with at least k zero bits")
    left.set_title(f"{measurement['hits']} hits in {measurement['hashes']:,} hashes")
    left.legend()
    rate = measurement["hashrate"]
    if gaps["count"] and rate > 0:
        seconds = np.asarray(gaps["gaps"], dtype=float) / rate
        mean = gaps["mean_seconds_theory"]
        right.hist(seconds * 1e3, bins=40, density=True, alpha=0.6, label="gaps measured")
        grid = np.linspace(0, seconds.max(), 200)
        right.plot(grid * 1e3, np.exp(-grid / mean) / mean / 1e3, label=f"exponential, mean {mean * 1e3:.3g} ms")
        if gaps["ks_p_value"] is not None:
            right.set_title(f"KS D = {gaps['ks_statistic']:.4f}, p = {gaps['ks_p_value']:.3g}")
        right.legend()
    right.set_xlabel("time between hits (ms)")
    right.set_ylabel("density")
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=dpi)
    return figure
