"""Every backend's scan equals a hashlib brute force."""

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import BackendUnavailable, get_backend
from kernels import reference as ref
from kernels.cpu import KERNEL_CHOICES, build_variant
from kernels.sha256d_dag import Sha256dKernel
from miner.block import nbits_to_target


def _runs_here(choice: str) -> bool:
    try:
        build_variant(choice)
    except BackendUnavailable:
        return False
    return True


LANES = tuple(choice for choice in KERNEL_CHOICES if _runs_here(choice))


def brute_force(header: bytes, target: int, start: int, count: int) -> list[int]:
    top = target >> 224
    found = []
    for nonce in range(start, start + count):
        digest = hashlib.sha256(hashlib.sha256(header[:76] + nonce.to_bytes(4, "little")).digest()).digest()
        if int.from_bytes(digest[28:32], "little") <= top:
            found.append(nonce)
    return found


@pytest.fixture(scope="module", params=LANES)
def cpu(request):
    backend = get_backend("cpu", lanes=request.param)
    backend.warm_up()
    return backend


@given(st.binary(min_size=0, max_size=200))
def test_reference_sha256_matches_hashlib(message):
    assert ref.sha256(message) == hashlib.sha256(message).digest()
    assert ref.sha256d(message) == hashlib.sha256(hashlib.sha256(message).digest()).digest()


def test_reference_midstate_is_the_first_block_state():
    header = os.urandom(80)
    state = ref.midstate(header[:64])
    second = ref.pad(header)[64:]
    assert ref.state_to_bytes(ref.compress(state, second)) == hashlib.sha256(header).digest()


def test_traced_graph_matches_hashlib():
    kernel = Sha256dKernel()
    header = os.urandom(80)
    midstate = ref.midstate(header[:64])
    tail = tuple(int.from_bytes(header[64 + 4 * i : 68 + 4 * i], "big") for i in range(3))
    for nonce in (0, 1, 0x12345678, 0xFFFFFFFF):
        digest = hashlib.sha256(hashlib.sha256(header[:76] + nonce.to_bytes(4, "little")).digest()).digest()
        assert kernel.evaluate_output(midstate, tail, nonce) == int.from_bytes(digest[28:32], "big")


targets = st.sampled_from([1 << 255, 1 << 252, 1 << 248, (1 << 246) + 12345, 0, (1 << 256) - 1])
starts = st.one_of(
    st.integers(min_value=0, max_value=5000),
    st.integers(min_value=(1 << 32) - 3000, max_value=(1 << 32) - 1),
    st.integers(min_value=0, max_value=(1 << 32) - 1),
)


@settings(max_examples=40, deadline=None)
@given(header=st.binary(min_size=80, max_size=80), target=targets, start=starts, count=st.integers(0, 1500))
def test_cpu_scan_equals_brute_force(cpu, header, target, start, count):
    count = min(count, (1 << 32) - start)
    prepared = cpu.prepare(header, target)
    assert cpu.scan(prepared, start, count) == brute_force(header, target, start, count)


def test_cpu_scan_finds_real_block_nonces(cpu, header_vectors):
    for v in header_vectors:
        header = bytes.fromhex(v["header_hex"])
        bits_target = nbits_to_target(int(v["bits"], 16))
        nonce = v["nonce"]
        start = max(0, nonce - 100)
        found = cpu.scan(cpu.prepare(header, bits_target), start, 200)
        assert nonce in found, v["name"]


def test_cpu_easy_target_overflows_the_result_buffer_without_loss(cpu):
    header = os.urandom(80)
    everything = (1 << 256) - 1
    assert cpu.scan(cpu.prepare(header, everything), 10, 70_000) == list(range(10, 70_010))


def test_ranges_past_the_nonce_space_are_errors(cpu):
    prepared = cpu.prepare(bytes(80), 0)
    with pytest.raises(ValueError, match="2\\^32"):
        cpu.scan(prepared, (1 << 32) - 10, 11)
    with pytest.raises(ValueError):
        cpu.scan(prepared, -1, 5)


def test_reference_backend_matches_brute_force():
    backend = get_backend("reference")
    header = os.urandom(80)
    assert backend.scan(backend.prepare(header, 1 << 252), 0, 300) == brute_force(header, 1 << 252, 0, 300)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        get_backend("fpga")
