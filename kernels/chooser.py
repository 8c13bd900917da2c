"""Which CPU kernel runs here: every kernel this CPU can run, timed, the fastest kept.

Feature flags do not predict the winner: 16 AVX-512 lanes beat SHA-NI by 2.5x on an Intel
Sapphire Rapids core, while on an AMD Zen 3 core SHA-NI beats 8 AVX2 lanes by half again. So
the choice is measured. Every entry of :data:`kernels.cpu.KERNEL_CHOICES` that builds here is
checked against hashlib on a few hundred nonces, then timed on every core at once (as mining
runs them) in short slices, interleaved so that a burst of load elsewhere hits every kernel
alike; each kernel keeps its best slice.

The verdict is cached on disk, keyed by everything that could change it: the CPU model and
features, the numba and llvmlite versions, the kernel fingerprint and the kernel sources. A
later start reads one small file and builds only the winner, so it costs what it cost before
the choice was measured. Set ``SHA256D_MINER_CACHE`` to a directory to keep the cache
elsewhere (tests do); delete the file, or run ``miner bench --rechoose``, to time again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from kernels.base import Backend, BackendUnavailable, prepare

CACHE_ENV = "SHA256D_MINER_CACHE"
FORMAT = 1  # bump when the record's meaning changes
SLICE_SECONDS = 0.08  # one timed slice of one kernel
ROUNDS = 3  # slices per kernel; each kernel keeps its best
CONTENDERS = 0.05  # kernels this close to the leader get two more slices each
CALL_NONCES = 1 << 16  # nonces per scan call while timing (a few ms)
CHECK_NONCES = 512  # nonces each kernel must get exactly right before it is timed
CHECK_TOP = 0x0FFFFFFF  # a one-word target that about one nonce in sixteen meets

_lock = threading.Lock()
_chosen: KernelChoice | None = None


@dataclass(frozen=True)
class KernelChoice:
    """The verdict of one timing: every kernel's rate, the winner, and where it is kept."""

    winner: str
    rates: dict[str, float]  # choice -> hashes/s (best slice), every kernel that ran
    labels: dict[str, str]  # choice -> its backend's description
    unavailable: dict[str, str]  # choice -> why it cannot run here
    feature_default: str  # what the CPU's feature flags alone would pick
    threads: int  # threads the kernels were timed on, together
    seconds: float  # wall time the timing took
    measured_at: str  # ISO 8601, UTC
    key: dict = field(default_factory=dict)
    path: str | None = None  # the cache file; None when it could not be written
    cached: bool = False  # read from the cache: this start timed nothing

    def ranked(self) -> list[tuple[str, float]]:
        """(choice, hashes/s), fastest first."""
        return sorted(self.rates.items(), key=lambda item: -item[1])

    @property
    def runner_up(self) -> str | None:
        ranked = self.ranked()
        return ranked[1][0] if len(ranked) > 1 else None

    def margin(self, other: str | None) -> float | None:
        """The winner's rate over ``other``'s: 1.2 means 20% faster; None if ``other`` did not run."""
        if other is None or other not in self.rates or self.rates[other] <= 0:
            return None
        return self.rates[self.winner] / self.rates[other]

    def label(self, choice: str) -> str:
        return self.labels.get(choice, choice)

    def summary(self) -> str:
        """'sha (cpu (numba, SHA-NI x4)) timed fastest, 1.91x the runner-up 8, 1.91x the feature-flag default 8'."""
        parts = [f"{self.winner} ({self.label(self.winner)}) timed fastest"]
        runner = self.runner_up
        if runner is not None:
            parts.append(f"{self.margin(runner):.2f}x the runner-up {runner}")
        if self.feature_default == self.winner:
            parts.append("the feature-flag default too")
        elif self.feature_default in self.rates:
            parts.append(f"{self.margin(self.feature_default):.2f}x the feature-flag default {self.feature_default}")
        return ", ".join(parts)

    def to_json(self) -> dict:
        record = asdict(self)
        record["runner_up"] = self.runner_up
        record["vs_runner_up"] = self.margin(self.runner_up)
        record["vs_feature_default"] = self.margin(self.feature_default)
        return record


def cpu_model() -> str:
    """The CPU's model name as the OS reports it."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sources_digest() -> str:
    """The kernel sources the compiled code comes from (numba itself keys only on timestamps)."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted([*here.glob("cpu*.py"), here / "ir_loop.py", here / "sha256d_dag.py"]):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def machine_key() -> dict:
    """Everything a cached verdict depends on; any change makes the cache miss."""
    import llvmlite
    import numba

    from kernels import cpu

    try:
        from llvmlite import binding

        host = binding.get_host_cpu_name()
    except Exception:  # pragma: no cover - llvmlite without host CPU support
        host = ""
    return {
        "format": FORMAT,
        "cpu": cpu_model(),
        "llvm_cpu": host,
        "features": sorted(cpu.host_cpu_features()),
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "kernel": f"{cpu.KERNEL_ID:06x}",
        "sources": _sources_digest(),
        "choices": list(cpu.KERNEL_CHOICES),
        "threads": _threads(),
    }


def cache_dir() -> Path:
    """``$SHA256D_MINER_CACHE``, else ``$XDG_CACHE_HOME/sha256d-miner``, else ``~/.cache/sha256d-miner``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sha256d-miner"


def cache_path(key: dict | None = None) -> Path:
    """The file that holds the verdict for ``key`` (this machine's by default)."""
    key = machine_key() if key is None else key
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"kernel-choice-{name}.json"


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _brute_force(header76: bytes, count: int, top: int) -> list[int]:
    hits = []
    for nonce in range(count):
        digest = hashlib.sha256(hashlib.sha256(header76 + nonce.to_bytes(4, "little")).digest()).digest()
        if int.from_bytes(digest[28:32], "little") <= top:
            hits.append(nonce)
    return hits


def _time_slice(backend: Backend, threads: int, seconds: float, headers: list[bytes]) -> float:
    """Hashes/s of ``backend`` scanning on ``threads`` threads at once for about ``seconds``."""
    prepared = [backend.prepare(header, 0) for header in headers[:threads]]
    barrier = threading.Barrier(threads)
    spans: list[tuple[float, float, int]] = []

    def work(index: int) -> None:
        barrier.wait()
        t0 = time.perf_counter()
        deadline = t0 + seconds
        start = done = 0
        while time.perf_counter() < deadline:
            backend.scan(prepared[index], start, CALL_NONCES)
            start = (start + CALL_NONCES) % (1 << 32)
            done += CALL_NONCES
        spans.append((t0, time.perf_counter(), done))

    pool = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    return sum(done for _, _, done in spans) / elapsed if elapsed > 0 else 0.0


def measure(
    choices: Iterable[str] | None = None,
    threads: int | None = None,
    slice_seconds: float = SLICE_SECONDS,
    rounds: int = ROUNDS,
    factory: Callable[[str], Backend] | None = None,
) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
    """Time each kernel: (rates in hashes/s, why some cannot run, descriptions).

    A kernel that does not build (:class:`BackendUnavailable`, or any error while compiling) or
    that misses or invents a candidate in the hashlib check is listed as unavailable, never timed.
    """
    from kernels import cpu

    choices = list(cpu.KERNEL_CHOICES if choices is None else choices)
    threads = threads or _threads()
    factory = factory or cpu.CpuBackend
    backends: dict[str, Backend] = {}
    unavailable: dict[str, str] = {}
    check_header = hashlib.sha256(b"kernel choice self-check").digest() * 2 + bytes(12)
    expected = _brute_force(check_header[:76], CHECK_NONCES, CHECK_TOP)
    for choice in choices:
        try:
            backend = factory(choice)
            found = backend.scan(prepare(check_header, (CHECK_TOP << 224) | ((1 << 224) - 1)), 0, CHECK_NONCES)
        except BackendUnavailable as exc:
            unavailable[choice] = str(exc)
            continue
        except Exception as exc:  # a kernel that fails to compile here must not stop the miner
            unavailable[choice] = f"failed to build: {type(exc).__name__}: {exc}"
            continue
        if found != expected:
            unavailable[choice] = f"failed the hashlib check ({len(found)} candidates, {len(expected)} expected)"
            continue
        backends[choice] = backend
    headers = [hashlib.sha256(b"kernel choice %d" % i).digest() * 2 + bytes(16) for i in range(threads)]
    best: dict[str, float] = dict.fromkeys(backends, 0.0)
    order = list(backends)
    for r in range(rounds if order else 0):
        shift = r % len(order)  # a different kernel goes first each round
        for choice in order[shift:] + order[:shift]:
            best[choice] = max(best[choice], _time_slice(backends[choice], threads, slice_seconds, headers))
    if len(best) > 1:
        top = max(best.values())
        contenders = [choice for choice, rate in best.items() if rate >= top * (1 - CONTENDERS)]
        if len(contenders) > 1:
            for _ in range(2):
                for choice in contenders:
                    best[choice] = max(best[choice], _time_slice(backends[choice], threads, slice_seconds, headers))
    labels = {choice: backend.describe() for choice, backend in backends.items()}
    return best, unavailable, labels


def _feature_default() -> str:
    from kernels import cpu

    return str(cpu.default_lanes())


def _load(path: Path, key: dict) -> KernelChoice | None:
    try:
        record = json.loads(path.read_text())
        if record.get("key") != key or record["winner"] not in record["rates"]:
            return None
        fields = {name: record[name] for name in KernelChoice.__dataclass_fields__ if name in record}
        fields.update(path=str(path), cached=True)
        choice = KernelChoice(**fields)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if choice.winner not in key["choices"]:
        return None
    return choice


def _store(path: Path, choice: KernelChoice) -> bool:
    record = asdict(choice)
    record.pop("path")
    record.pop("cached")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kernel-choice-", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        return False
    return True


def cached_choice() -> KernelChoice | None:
    """The verdict on disk for this machine, or None (nothing is timed)."""
    key = machine_key()
    return _load(cache_path(key), key)


def choose(refresh: bool = False, factory: Callable[[str], Backend] | None = None) -> KernelChoice:
    """This machine's kernel: remembered in this process, else read from the cache, else timed.

    ``refresh`` times again and overwrites the cache. Raises :class:`BackendUnavailable` only if
    no kernel at all runs here.
    """
    global _chosen
    with _lock:
        if _chosen is not None and not refresh:
            return _chosen
        key = machine_key()
        path = cache_path(key)
        found = None if refresh else _load(path, key)
        if found is None:
            t0 = time.perf_counter()
            rates, unavailable, labels = measure(key["choices"], key["threads"], factory=factory)
            if not rates:
                reasons = "; ".join(f"{name}: {why}" for name, why in unavailable.items())
                raise BackendUnavailable(f"no CPU kernel runs here ({reasons})")
            found = KernelChoice(
                winner=max(rates, key=rates.__getitem__),
                rates=rates,
                labels=labels,
                unavailable=unavailable,
                feature_default=_feature_default(),
                threads=key["threads"],
                seconds=round(time.perf_counter() - t0, 3),
                measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                key=key,
            )
            stored = _store(path, found)
            found = replace(found, path=str(path) if stored else None)
        _chosen = found
        return found


def chosen_kernel() -> str:
    """The winning entry of KERNEL_CHOICES (what ``--lanes auto`` runs)."""
    return choose().winner


def forget() -> None:
    """Drop this process's remembered verdict; the next :func:`choose` reads the cache again."""
    global _chosen
    with _lock:
        _chosen = None
