"""The OpenCL backend against a hashlib brute force, on whatever OpenCL device is here (PoCL in CI)."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels import BackendUnavailable, get_backend
from kernels.base import NONCE_LIMIT, prepare
from miner.block import hash_to_int, nbits_to_target
from miner.cli import main

pytestmark = pytest.mark.opencl

TARGET_TOPS = st.one_of(
    st.sampled_from([0, 0x0000FFFF, 0x00FFFFFF, 0x0FFFFFFF, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF]),
    st.integers(0, 0xFFFFFFFF),
)


def _platform_or_skip() -> None:
    """Skip when no OpenCL platform exists; anything past that must work."""
    from kernels.opencl import list_devices

    try:
        if not list_devices():
            pytest.skip("OpenCL platform present but it has no devices")
    except BackendUnavailable as exc:
        pytest.skip(f"no OpenCL platform: {exc}")


@pytest.fixture(scope="module")
def backend():
    _platform_or_skip()
    return get_backend("opencl", device="0:0")


@pytest.fixture
def fresh(backend):
    """A new backend with the initial small result buffer (the kernel build is cached)."""
    from kernels.opencl import OpenCLBackend

    return OpenCLBackend(device="0:0", chunk=1 << 16)


def brute_candidates(header76: bytes, target_top: int, start: int, count: int) -> list[int]:
    """Backend.scan's contract computed with hashlib: the hash's top 32 bits <= target_top."""
    sha = hashlib.sha256
    found = []
    for nonce in range(start, start + count):
        digest = sha(sha(header76 + nonce.to_bytes(4, "little")).digest()).digest()
        if int.from_bytes(digest[28:32], "little") <= target_top:
            found.append(nonce)
    return found


def target_with_top(target_top: int) -> int:
    return (target_top << 224) | ((1 << 224) - 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.binary(min_size=76, max_size=76),
    target_top=TARGET_TOPS,
    count=st.integers(0, 3000),
    where=st.sampled_from(["start", "end", "anywhere"]),
    offset=st.integers(0, NONCE_LIMIT - 1),
)
def test_scan_equals_hashlib(backend, header, target_top, count, where, offset):
    start = {"start": 0, "end": NONCE_LIMIT - count, "anywhere": min(offset, NONCE_LIMIT - count)}[where]
    prepared = backend.prepare(header, target_with_top(target_top))
    assert backend.scan(prepared, start, count) == brute_candidates(header, target_top, start, count)


@pytest.mark.parametrize("lanes", [1, 2, 4, 8, 16])
def test_every_vector_width_matches_hashlib(backend, lanes):
    from kernels.opencl import OpenCLBackend

    narrow = OpenCLBackend(device="0:0", chunk=1 << 16, vector_width=lanes)
    assert narrow.vector_width == lanes
    header = hashlib.sha256(bytes([lanes])).digest() * 2 + bytes(12)
    for target_top, start, count in [(0x0FFFFFFF, 0, 4099), (0x7FFFFFFF, NONCE_LIMIT - 1001, 1001), (0x01FFFFFF, 3, 5)]:
        prepared = prepare(header, target_with_top(target_top))
        assert narrow.scan(prepared, start, count) == brute_candidates(header, target_top, start, count)


def test_real_blocks_found_at_their_nonce(backend, header_vectors):
    for vec in header_vectors:
        header = bytes.fromhex(vec["header_hex"])
        target = nbits_to_target(int(vec["bits"], 16))
        nonce = vec["nonce"]
        start = max(0, nonce - 700)
        count = min(NONCE_LIMIT, nonce + 300) - start
        got = backend.scan(backend.prepare(header, target), start, count)
        assert got == brute_candidates(header[:76], target >> 224, start, count), vec["name"]
        exact = [n for n in got if hash_to_int(_sha256d(header[:76] + n.to_bytes(4, "little"))) <= target]
        assert nonce in exact, vec["name"]


def _sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


@pytest.mark.parametrize("target_top", [0x7FFFFFFF, 0xBFFFFFFF])
def test_overflowing_result_buffer_grows_and_loses_nothing(fresh, target_top):
    header = bytes(range(76))
    count = 3 * fresh._capacity  # about half (or three quarters) are candidates: well past the buffer
    got = fresh.scan(prepare(header, target_with_top(target_top)), 1000, count)
    assert got == brute_candidates(header, target_top, 1000, count)
    assert len(got) > 4096


def test_overflow_past_capacity_limit_splits_the_range(fresh, monkeypatch):
    import kernels.opencl as opencl

    monkeypatch.setattr(opencl, "MAX_CAPACITY", 256)
    header = bytes(reversed(range(76)))
    count = 5 * fresh._capacity
    got = fresh.scan(prepare(header, target_with_top(0x7FFFFFFF)), NONCE_LIMIT - count, count)
    assert got == brute_candidates(header, 0x7FFFFFFF, NONCE_LIMIT - count, count)
    assert fresh._capacity < 2 * 4096  # it split instead of growing past the limit


def test_many_launches_per_call_match_one(fresh):
    header = b"\x5a" * 76
    prepared = prepare(header, target_with_top(0x03FFFFFF))
    whole = fresh.scan(prepared, 77, 20000)
    fresh.launch_size = 999  # not a multiple of the work group size: exercises the bounds check
    assert fresh.scan(prepared, 77, 20000) == whole == brute_candidates(header, 0x03FFFFFF, 77, 20000)


def test_range_checks(backend):
    prepared = backend.prepare(bytes(80), 1 << 255)
    assert backend.scan(prepared, NONCE_LIMIT, 0) == []
    with pytest.raises(ValueError):
        backend.scan(prepared, NONCE_LIMIT - 10, 11)
    with pytest.raises(ValueError):
        backend.scan(prepared, -1, 5)


def test_tuned_chunk_is_sane(backend):
    from kernels.opencl import MAX_CHUNK, MIN_CHUNK

    assert MIN_CHUNK <= backend.default_chunk <= MAX_CHUNK
    assert backend.default_chunk & (backend.default_chunk - 1) == 0
    assert "0:0" in backend.describe()


def test_engine_finds_every_share(backend):
    from miner.engine import Engine
    from miner.work import Work

    header = bytes(range(100, 176)) + bytes(4)
    target = target_with_top(0x00FFFFFF) >> 1  # exact test differs from the one-word filter
    work = Work(header=header, target=target, nonce_start=5000, nonce_end=5000 + 40000)
    shares = []
    engine = Engine.for_backend(backend, on_share=shares.append, chunk=4096)
    handed = [work]
    engine.set_source(lambda: handed.pop() if handed else None)
    engine.start()
    try:
        assert engine.wait_exhausted(timeout=60)
    finally:
        engine.stop()
    expected = [n for n in range(5000, 45000) if hash_to_int(_sha256d(header[:76] + n.to_bytes(4, "little"))) <= target]
    assert sorted(s.nonce for s in shares) == expected
    assert engine.stats.total_hashes == 40000
    assert not engine.errors


# --- errors a user can cause -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "words"),
    [("9:0", "no OpenCL platform 9"), ("0:99", "no OpenCL device 0:99"), ("gpu", "bad OpenCL device")],
)
def test_bad_device_is_one_clear_error(backend, spec, words):
    with pytest.raises(BackendUnavailable, match=words):
        get_backend("opencl", device=spec)


def test_build_failure_names_the_cause(backend, monkeypatch, tmp_path):
    import kernels.opencl as opencl

    broken = tmp_path / "broken.cl"
    broken.write_text("__kernel void sha256d_scan(__global uint *out) { out[0] = undefined_name; }\n")
    monkeypatch.setattr(opencl, "KERNEL_PATH", broken)
    with pytest.raises(BackendUnavailable, match="build failed"):
        opencl.OpenCLBackend(device="0:0", chunk=1 << 16)


def test_missing_pyopencl_is_one_clear_error_and_devices_still_lists_cpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyopencl", None)  # import pyopencl now raises ImportError
    with pytest.raises(BackendUnavailable, match="pyopencl"):
        get_backend("opencl")
    result = CliRunner().invoke(main, ["devices"])
    assert result.exit_code == 0, result.output
    assert "--backend cpu" in result.output
    assert "OpenCL  unavailable" in result.output and "pyopencl" in result.output


@pytest.mark.parametrize("how", ["raises", "empty"])
def test_no_platform_is_one_clear_error_and_other_backends_still_work(monkeypatch, how):
    cl = pytest.importorskip("pyopencl", reason="pyopencl is not installed")

    def no_platforms():
        if how == "raises":  # what the ICD loader does when no vendor is installed
            raise cl.LogicError("clGetPlatformIDs failed: PLATFORM_NOT_FOUND_KHR")
        return []

    monkeypatch.setattr(cl, "get_platforms", no_platforms)
    with pytest.raises(BackendUnavailable, match="no OpenCL platform"):
        get_backend("opencl")
    runner = CliRunner()
    listing = runner.invoke(main, ["devices"])
    assert listing.exit_code == 0 and "OpenCL  unavailable: no OpenCL platform" in listing.output
    if "scan" in main.commands:
        header = bytes(80).hex()
        failed = runner.invoke(main, ["scan", header, "--bits", "207fffff", "--count", "4", "--backend", "opencl"])
        assert failed.exit_code != 0
        assert failed.output.strip().startswith("miner: error: no OpenCL platform")
        assert len(failed.output.strip().splitlines()) == 1
        works = runner.invoke(main, ["scan", header, "--bits", "207fffff", "--count", "4", "--backend", "reference"])
        assert works.exit_code == 0, works.output
        target = nbits_to_target(0x207FFFFF)
        expected = [n for n in range(4) if hash_to_int(_sha256d(bytes(76) + n.to_bytes(4, "little"))) <= target]
        assert [json.loads(line)["nonce"] for line in works.output.splitlines()] == expected


# --- the command line -----------------------------------------------------------------------------


def test_cli_devices_json(backend):
    result = CliRunner().invoke(main, ["devices", "--json"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    assert listing["cpu"]["cores"] >= 1
    assert listing["opencl"]["available"]
    specs = [dev["spec"] for dev in listing["opencl"]["devices"]]
    assert "0:0" in specs
    assert all(dev["compute_units"] >= 1 and dev["global_mem_bytes"] > 0 for dev in listing["opencl"]["devices"])


def _cli_ready() -> None:
    if "scan" not in main.commands or "bench" not in main.commands:
        pytest.skip("the scan/bench commands are not in this tree")


def test_cli_scan_opencl_prints_exact_hits(backend):
    _cli_ready()
    header = bytes(range(1, 81))
    target = target_with_top(0x00FFFFFF) >> 2
    start, count = NONCE_LIMIT - 30000, 30000
    result = CliRunner().invoke(
        main,
        ["scan", header.hex(), "--target", f"{target:064x}", "--start", str(start), "--count", str(count)]
        + ["--backend", "opencl", "--device", "0:0"],
    )
    assert result.exit_code == 0, result.output
    hits = [json.loads(line)["nonce"] for line in result.output.splitlines() if line.strip()]
    expected = [
        n for n in range(start, start + count) if hash_to_int(_sha256d(header[:76] + n.to_bytes(4, "little"))) <= target
    ]
    assert hits == expected and hits


def test_cli_bench_opencl_reports_a_rate(backend):
    _cli_ready()
    result = CliRunner().invoke(main, ["bench", "--backend", "opencl", "--seconds", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["backend"] == "opencl"
    assert report["hashes"] > 0 and report["hashrate"] > 0 and report["baseline_hashrate"] > 0


def test_cli_grind_opencl_meets_the_header_bits(backend):
    if "grind" not in main.commands:
        pytest.skip("the grind command is not in this tree")
    bits = 0x2000FFFF  # about one nonce in 65536 meets it
    header = hashlib.sha256(b"grind").digest() * 2 + bytes(8) + bits.to_bytes(4, "little") + bytes(4)
    result = CliRunner().invoke(main, ["grind", header.hex(), "--backend", "opencl", "--device", "0:0"])
    assert result.exit_code == 0, result.output
    ground = bytes.fromhex(result.output.strip())
    assert ground[:76] == header[:76]
    assert hash_to_int(_sha256d(ground)) <= nbits_to_target(bits)


def test_cli_bad_device_is_one_line(backend):
    _cli_ready()
    result = CliRunner().invoke(main, ["bench", "--backend", "opencl", "--device", "7:3", "--seconds", "0.2"])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("miner: error:") and "7" in lines[0]
