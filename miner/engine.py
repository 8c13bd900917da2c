"""The multi-core engine: worker threads pull nonce ranges and scan them.

Kernels release the GIL (numba ``nogil=True``, OpenCL waits), so one thread
per core runs truly in parallel. Ranges are sized so a call takes ~100 ms:
a clean job stops stale work within about that long. Every candidate a kernel
returns is re-hashed with hashlib here, before anything trusts it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from kernels import Backend, get_backend
from miner.block import hash_to_int, sha256d
from miner.stats import Stats
from miner.work import Share, Work

CALL_SECONDS = 0.1  # aim for one kernel call to take this long
MIN_CHUNK = 1 << 10
MAX_CHUNK = 1 << 28
CANDIDATES_PER_CALL = 256  # easy targets: keep hashlib re-checks per call bounded


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class Device:
    """One worker: a name for the stats and the backend it scans with."""

    name: str
    backend: Backend
    kind: str = "CPU"
    cpu: int | None = None  # core to pin the thread to, where the OS allows


def cpu_devices(backend: Backend, threads: int | None = None, pin: bool = True) -> list[Device]:
    n = threads or default_threads()
    cores: list[int | None] = [None] * n
    if pin and hasattr(os, "sched_getaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        # Pin only when every allowed core gets a thread: pinning a subset would put
        # two `miner -t 1` processes on the same core while another sits idle.
        if len(allowed) == n:
            cores = list(allowed)
    return [Device(f"{backend.name.upper()} {i}", backend, "CPU", cores[i]) for i in range(n)]


def chunk_cap(target: int) -> int:
    """Largest range whose expected candidates stay near CANDIDATES_PER_CALL.

    At regtest difficulty half of all nonces are hits; scanning millions at
    once would leave the first share waiting behind a million hashlib checks.
    """
    expected_per_nonce = ((target >> 224) + 1) / (1 << 32)
    return int(min(MAX_CHUNK, max(MIN_CHUNK, CANDIDATES_PER_CALL / expected_per_nonce)))


def verify_candidate(work: Work, nonce: int, target_top: int) -> tuple[str, bytes]:
    """Re-hash a kernel's candidate with hashlib.

    Returns ('share' | 'miss' | 'hw_error', digest). A 'miss' met the kernel's
    one-word filter but not the full target: expected, not an error.
    """
    digest = sha256d(work.header_with_nonce(nonce))
    value = hash_to_int(digest)
    if value >> 224 > target_top:
        return "hw_error", digest
    return ("share" if value <= work.target else "miss"), digest


class Engine:
    """Runs devices over work handed out by a work source.

    The work source is a callable returning a fresh :class:`Work` (a new
    extranonce2, ntime or version bits) each time the previous one's nonce
    space runs out, or ``None`` when there is nothing more to do.
    """

    def __init__(
        self,
        devices: list[Device],
        stats: Stats | None = None,
        on_share: Callable[[Share], None] | None = None,
        chunk: int | None = None,
    ) -> None:
        if not devices:
            raise ValueError("the engine needs at least one device")
        self.devices = devices
        self.stats = stats or Stats()
        self.on_share = on_share
        self.fixed_chunk = chunk
        self._cond = threading.Condition()
        self._next_work: Callable[[], Work | None] | None = None
        self._work: Work | None = None
        self._next_nonce = 0
        self._in_flight = 0
        self._exhausted = False
        self._stopping = False
        self._paused = False  # pause(): no range handed out, the work and the pool sessions kept
        self._disabled: set[str] = set()  # device names that take no ranges (the API's pgadisable)
        self._threads: list[threading.Thread] = []
        self.errors: deque[str] = deque(maxlen=100)  # the latest device/source failures
        for dev in devices:
            self.stats.device(dev.name, dev.kind)

    @classmethod
    def for_backend(
        cls,
        backend: str | Backend = "cpu",
        threads: int | None = None,
        stats: Stats | None = None,
        on_share: Callable[[Share], None] | None = None,
        chunk: int | None = None,
        **backend_options,
    ) -> Engine:
        """An engine over one backend: a built one, or one built here by name with ``get_backend``.

        A name is resolved once, here; for ``cpu`` without ``lanes`` that means the kernel
        :mod:`kernels.chooser` timed fastest on this machine.
        """
        be = get_backend(backend, **backend_options) if isinstance(backend, str) else backend
        if be.name in ("cpu", "reference"):
            devices = cpu_devices(be, threads)
        else:
            label = getattr(be, "spec", 0)
            devices = [Device(f"{be.name.upper()} {label}", be, getattr(be, "kind", be.name.upper()))]
        return cls(devices, stats, on_share, chunk)

    # --- control ----------------------------------------------------------------

    def set_source(self, next_work: Callable[[], Work | None] | None, clean: bool = True) -> None:
        """Switch to a new work source; ``clean`` drops the current work now."""
        with self._cond:
            self._next_work = next_work
            self._exhausted = False
            if clean:
                self._work = None
            self._cond.notify_all()

    def start(self) -> None:
        for dev in self.devices:
            t = threading.Thread(target=self._run, args=(dev,), name=f"miner-{dev.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def pause(self) -> None:
        """Stop hashing after the ranges in flight (a curtailed rig draws idle power), keeping the work."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def set_device_enabled(self, index: int, enabled: bool) -> None:
        """Let device ``index`` take ranges or not; the others go on (cgminer's pgaenable/pgadisable)."""
        if not 0 <= index < len(self.devices):
            raise ValueError(f"no device {index} (0 - {len(self.devices) - 1})")
        name = self.devices[index].name
        with self._cond:
            if enabled:
                self._disabled.discard(name)
            else:
                self._disabled.add(name)
            self._cond.notify_all()
        self.stats.devices[name].enabled = enabled

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no range is being scanned (after ``set_source(None)``: every range handed out is done)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._in_flight == 0, timeout)

    def wait_exhausted(self, timeout: float | None = None) -> bool:
        """Block until the source returned None and all ranges are scanned."""
        with self._cond:
            return self._cond.wait_for(lambda: self._exhausted and self._in_flight == 0, timeout)

    # --- workers ----------------------------------------------------------------

    def _take(self, chunk: int, device: str = ""):
        """The next range to scan: (work, start, count), or None when stopping."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                if self._paused or device in self._disabled:
                    self._cond.wait(0.5)
                    continue
                if self._work is not None and self._next_nonce < self._work.nonce_end:
                    start = self._next_nonce
                    if self.fixed_chunk is None:
                        chunk = min(chunk, chunk_cap(self._work.target))
                    count = min(chunk, self._work.nonce_end - start)
                    self._next_nonce = start + count
                    self._in_flight += 1
                    return self._work, start, count
                if self._next_work is not None and not self._exhausted:
                    try:
                        work = self._next_work()
                    except Exception as exc:  # a work source bug must not kill the workers
                        self.errors.append(f"work source failed: {exc}")
                        work = None
                    if work is None:
                        self._exhausted = True
                        self._work = None
                        self._cond.notify_all()
                        continue
                    self._work = work
                    self._next_nonce = work.nonce_start
                    self.stats.new_work()
                    continue
                self._cond.wait(0.5)

    def _done(self) -> None:
        with self._cond:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._cond.notify_all()

    def _run(self, dev: Device) -> None:
        if dev.cpu is not None:
            try:
                os.sched_setaffinity(0, {dev.cpu})  # 0 = this thread on Linux
            except (AttributeError, OSError):
                pass
        chunk = self.fixed_chunk or dev.backend.default_chunk
        prepared_work: Work | None = None  # the work `prepared` was made from
        prepared = None
        while True:
            got = self._take(chunk, dev.name)
            if got is None:
                return
            work, start, count = got
            try:
                if work is not prepared_work:
                    prepared = dev.backend.prepare(work.header, work.target)
                    prepared_work = work
                t0 = time.perf_counter()
                candidates = dev.backend.scan(prepared, start, count)
                elapsed = time.perf_counter() - t0
            except Exception as exc:  # a device failing must not take the others down
                self.errors.append(f"{dev.name}: {exc}")
                self._done()
                with self._cond:
                    self._cond.wait(1.0)
                continue
            self.stats.add_hashes(dev.name, count)
            for nonce in candidates:
                verdict, digest = verify_candidate(work, nonce, prepared.target_top)
                if verdict == "hw_error":
                    self.stats.hardware_error(dev.name)
                elif verdict == "share":
                    share = Share(work, nonce, digest, dev.name)
                    self.stats.share_found(share.difficulty)
                    if self.on_share is not None:
                        try:
                            self.on_share(share)
                        except Exception as exc:
                            self.errors.append(f"share handler failed: {exc}")
            self._done()
            if self.fixed_chunk is None and elapsed > 0:
                scale = min(4.0, max(0.25, CALL_SECONDS / elapsed))
                chunk = int(min(MAX_CHUNK, max(MIN_CHUNK, chunk * scale))) & ~63
