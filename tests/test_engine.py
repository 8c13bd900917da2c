"""The multi-core engine: shares verified, ranges covered, clean jobs prompt."""

import os
import threading
import time

from kernels import get_backend
from kernels.base import Backend
from miner.block import hash_to_int, sha256d
from miner.engine import Engine, chunk_cap, cpu_devices
from miner.stats import Stats
from miner.work import Work


def collect_engine(threads=2, **kw):
    shares = []
    lock = threading.Lock()

    def on_share(share):
        with lock:
            shares.append(share)

    engine = Engine.for_backend("cpu", threads=threads, on_share=on_share, **kw)
    return engine, shares


def test_engine_scans_each_nonce_once_and_every_share_is_real():
    header = os.urandom(80)
    target = 1 << 244  # about one share per 4096 nonces
    work = Work(header=header, target=target, nonce_start=0, nonce_end=200_000)
    handed = []

    def source():
        if handed:
            return None
        handed.append(work)
        return work

    engine, shares = collect_engine(chunk=4096)
    engine.set_source(source)
    engine.start()
    assert engine.wait_exhausted(30)
    engine.stop()
    nonces = sorted(s.nonce for s in shares)
    expected = [n for n in range(200_000) if hash_to_int(sha256d(work.header_with_nonce(n))) <= target]
    assert nonces == expected
    assert engine.stats.total_hashes == 200_000
    assert engine.stats.hw_errors == 0
    assert all(s.hash_int <= target and s.hash_internal == sha256d(s.header) for s in shares)


def test_engine_asks_the_source_for_new_work_when_a_range_is_spent():
    calls = []

    def source():
        calls.append(1)
        if len(calls) > 3:
            return None
        return Work(header=os.urandom(80), target=0, nonce_start=0, nonce_end=50_000)

    engine, _ = collect_engine()
    engine.set_source(source)
    engine.start()
    assert engine.wait_exhausted(30)
    engine.stop()
    assert engine.stats.total_hashes == 150_000
    assert engine.stats.works == 3


def test_clean_source_switch_stops_old_work_quickly():
    seen = []
    lock = threading.Lock()

    def on_share(share):
        with lock:
            seen.append((time.monotonic(), share.work.job_id))

    engine = Engine.for_backend("cpu", threads=2, on_share=on_share)
    engine.set_source(lambda: Work(header=os.urandom(80), target=1 << 250, job_id="old"))
    engine.start()
    time.sleep(0.5)
    switched = time.monotonic()
    engine.set_source(lambda: Work(header=os.urandom(80), target=1 << 250, job_id="new"))
    time.sleep(0.8)
    engine.stop()
    late_old = [t for t, job in seen if job == "old" and t > switched + 0.25]
    assert not late_old, "old work kept producing shares after a clean switch"
    assert any(job == "new" for _, job in seen)


class LyingBackend(Backend):
    """Returns nonces that do not meet the target: the engine must catch them."""

    name = "liar"

    def scan(self, prepared, start, count):
        return list(range(start, min(start + 4, start + count)))


def test_hardware_errors_are_counted_and_never_passed_on():
    shares = []
    stats = Stats()
    engine = Engine(cpu_devices(LyingBackend(), 1, pin=False), stats, shares.append, chunk=1000)
    done = []

    def source():
        if done:
            return None
        done.append(1)
        return Work(header=os.urandom(80), target=0, nonce_start=0, nonce_end=10_000)

    engine.set_source(source)
    engine.start()
    assert engine.wait_exhausted(10)
    engine.stop()
    assert shares == []
    assert stats.hw_errors == 40  # 4 bogus candidates in each of 10 ranges


def test_chunk_cap_bounds_candidate_floods():
    assert chunk_cap(0x7FFFFF << 232) <= 4096
    assert chunk_cap(0) >= 1 << 24


def test_reference_backend_runs_in_the_engine():
    backend = get_backend("reference")
    shares = []
    engine = Engine(cpu_devices(backend, 1, pin=False), Stats(), shares.append)
    work = Work(header=os.urandom(80), target=1 << 252, nonce_start=0, nonce_end=2000)
    engine.set_source(iter([work, None]).__next__)
    engine.start()
    assert engine.wait_exhausted(30)
    engine.stop()
    assert all(s.hash_int <= work.target for s in shares)
    assert len(shares) == sum(hash_to_int(sha256d(work.header_with_nonce(n))) <= work.target for n in range(2000))


def test_several_backends_run_side_by_side():
    from miner.cli.common import CliError, make_engine

    engine = make_engine("cpu,reference", threads=1)
    assert sorted(d.backend.name for d in engine.devices) == ["cpu", "reference"]
    work = Work(header=os.urandom(80), target=0, nonce_start=0, nonce_end=3_000_000)
    engine.set_source(iter([work, None]).__next__)
    engine.start()
    assert engine.wait_exhausted(60)
    engine.stop()
    assert engine.stats.total_hashes == 3_000_000
    assert all(dev.meter.total > 0 for dev in engine.stats.devices.values())
    try:
        make_engine("cpu,reference", threads=1, device="0:0")
    except CliError as exc:
        assert "--device" in str(exc)
    else:
        raise AssertionError("--device without opencl must be refused")


def test_the_cpu_kernel_is_resolved_once_and_is_the_one_measured_fastest(tmp_path, monkeypatch):
    from kernels import chooser
    from kernels.cpu import CpuBackend
    from miner.cli.common import make_engine

    monkeypatch.setenv(chooser.CACHE_ENV, str(tmp_path))
    chooser.forget()
    monkeypatch.setattr(chooser, "_time_slice", lambda backend, *_: 2.0 if backend.choice == "4" else 1.0)
    try:
        assert chooser.choose().winner == "4"
        built = []
        real_init = CpuBackend.__init__

        def counting_init(self, lanes=None):
            built.append(lanes)
            real_init(self, lanes)

        monkeypatch.setattr(CpuBackend, "__init__", counting_init)
        engine = make_engine("cpu", threads=2)
        assert built == ["auto"]  # one backend for every CPU worker, built once
        assert len(engine.devices) == 2 and engine.devices[0].backend is engine.devices[1].backend
        assert engine.devices[0].backend.choice == "4"
        direct = Engine.for_backend("cpu", threads=2)
        assert built == ["auto", None] and direct.devices[0].backend.choice == "4"
    finally:
        chooser.forget()
