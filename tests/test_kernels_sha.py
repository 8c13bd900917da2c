"""The SHA-NI kernels: the traced program, its assembly, and the variants' build rules.

The traced program and the register-allocated assembly are checked against hashlib on
every machine (the assembly through a small interpreter of the instructions it uses);
the compiled kernels themselves are held to the brute-force tests in test_kernels.py
wherever the CPU has SHA-NI.
"""

import hashlib
import os
import re

import pytest

from kernels import BackendUnavailable, cpu, cpu_sha, sha_asm
from kernels import reference as ref


def top_word(header: bytes, nonce: int) -> int:
    digest = hashlib.sha256(hashlib.sha256(header[:76] + nonce.to_bytes(4, "little")).digest()).digest()
    return int.from_bytes(digest[28:32], "little")


def work_unit(header: bytes):
    midstate = ref.midstate(header[:64])
    tail = tuple(int.from_bytes(header[64 + 4 * i : 68 + 4 * i], "big") for i in range(3))
    return midstate, tail


def test_traced_program_matches_hashlib():
    for _ in range(4):
        header = os.urandom(80)
        midstate, tail = work_unit(header)
        for nonce in (0, 1, 0x12345678, 0xFFFFFFFF, int.from_bytes(os.urandom(4), "little")):
            assert cpu_sha.KERNEL.evaluate_output(midstate, tail, nonce) == top_word(header, nonce)


def test_frontier_does_not_depend_on_the_nonce():
    """The lane analysis is what lets a frontier value be read out of a nonce-dependent one."""
    midstate, tail = work_unit(os.urandom(80))
    inputs = (*cpu_sha.abef_cdgh(midstate), (*tail, 0))
    for nonce in (0x01020304, 0xFFFFFFFF):
        cache = {}
        values = [cpu_sha._evaluate(n, inputs, nonce, cache) for n in cpu_sha.KERNEL.frontier]
        assert values == cpu_sha.KERNEL.evaluate_frontier(midstate, tail)


def test_second_hash_is_cut_after_round_60():
    counts = cpu_sha.KERNEL.op_counts()
    # first hash: rounds 4..63 in pairs; second: rounds 0..61 in pairs (E after round 60 is the output)
    assert counts["rnds2"] == 30 + 31
    assert "round_abef" not in counts and "msg2_sigma" not in counts  # host-only operations


# --- the assembly, interpreted ---------------------------------------------------------------

_MEM = re.compile(r"(\d+)\(\$1\)")
_XMM = re.compile(r"%xmm(\d+)")


def _words(block: bytes) -> tuple[int, ...]:
    return tuple(int.from_bytes(block[4 * k : 4 * k + 4], "little") for k in range(4))


def _bytes(words) -> bytes:
    return b"".join(w.to_bytes(4, "little") for w in words)


def run_block(lines: list[str], table: list, base: int) -> None:
    """Executes the block's instructions on Python ints; ``table`` is a list of 16-byte rows."""
    xmm: list = [None] * 16
    gpr = 0

    def read(operand: str):
        if m := _MEM.fullmatch(operand):
            offset = int(m.group(1))
            assert offset % 16 == 0, f"unaligned vector operand {operand}"
            assert table[offset // 16] is not None, f"read of an unwritten row: {operand}"
            return table[offset // 16]
        value = xmm[int(_XMM.fullmatch(operand).group(1))]
        assert value is not None, f"read of an unwritten register: {operand}"
        return value

    def write(operand: str, value) -> None:
        if m := _MEM.fullmatch(operand):
            table[int(m.group(1)) // 16] = tuple(value)
        else:
            xmm[int(_XMM.fullmatch(operand).group(1))] = tuple(value)

    def word_at(operand: str) -> tuple[int, int]:
        offset = int(_MEM.fullmatch(operand).group(1))
        return offset // 16, (offset % 16) // 4

    for line in lines:
        mnemonic, _, rest = line.partition(" ")
        args = [a.strip() for a in rest.split(",")]
        imm = int(args.pop(0)[2:], 0) if args[0].startswith("$$") else None
        if mnemonic == "vmovdqa":
            write(args[1], read(args[0]))
        elif mnemonic == "vpaddd":
            write(args[2], cpu_sha._add(read(args[0]), read(args[1])))
        elif mnemonic == "vpshufd":
            src = read(args[0])
            write(args[1], [src[(imm >> 2 * k) & 3] for k in range(4)])
        elif mnemonic == "vpalignr":
            both = read(args[0]) + read(args[1])  # low, then high
            write(args[2], both[imm // 4 : imm // 4 + 4])
        elif mnemonic == "vshufps":
            high, low = read(args[0]), read(args[1])
            write(args[2], [low[imm & 3], low[(imm >> 2) & 3], high[(imm >> 4) & 3], high[(imm >> 6) & 3]])
        elif mnemonic == "vpshufb":
            control, src = _bytes(read(args[0])), _bytes(read(args[1]))
            write(args[2], _words(bytes(0 if c & 0x80 else src[c & 15] for c in control)))
        elif mnemonic == "vpinsrd":
            value = list(read(args[1]))
            value[imm] = gpr
            write(args[2], value)
        elif mnemonic == "sha256rnds2":
            assert args[0] == "%xmm0"
            write(args[2], cpu_sha._rnds2(read(args[2]), read(args[1]), xmm[0]))
        elif mnemonic in ("sha256msg1", "sha256msg2"):
            op = cpu_sha._msg1 if mnemonic.endswith("1") else cpu_sha._msg2
            write(args[1], op(read(args[1]), read(args[0])))
        elif mnemonic == "movl" and args == ["$2", "$0"]:
            gpr = base
        elif mnemonic == "addl":
            gpr = (gpr + imm) & 0xFFFFFFFF
        elif mnemonic == "bswapl":
            gpr = int.from_bytes(gpr.to_bytes(4, "little"), "big")
        elif mnemonic == "vpextrd" or (mnemonic == "movl" and args[0] == "$0"):
            row, lane = word_at(args[-1])
            words = list(table[row] or (0, 0, 0, 0))
            words[lane] = read(args[0])[imm] if mnemonic == "vpextrd" else gpr
            table[row] = tuple(words)
        elif mnemonic == "movl":
            row, lane = word_at(args[0])
            gpr = table[row][lane]
        else:  # pragma: no cover - a new instruction needs a line here
            raise AssertionError(f"the interpreter does not know {line!r}")


@pytest.mark.parametrize(
    ("streams", "segment", "lookahead"),
    [(1, 2, 0), (2, 2, 0), (3, 2, 2), (4, cpu.SHA_SEGMENT_PAIRS, cpu.SHA_LOOKAHEAD), (5, 1, 1), (6, 4, 0), (8, 2, 2)],
)
def test_assembly_matches_hashlib(streams, segment, lookahead):
    out_rows = (streams + 3) // 4
    block = sha_asm.assemble(streams, sha_asm.TABLE.rows, sha_asm.TABLE.rows + out_rows, segment, lookahead)
    if streams > 2:
        assert block.stores, "more streams than registers, and nothing spilled?"
    for _ in range(2):
        header = os.urandom(80)
        table: list = [None] * (sha_asm.TABLE.rows + out_rows + block.spill_rows)
        table[: len(sha_asm.TABLE.frontier_rows)] = cpu_sha.KERNEL.evaluate_frontier(*work_unit(header))
        table[len(sha_asm.TABLE.frontier_rows) : sha_asm.TABLE.rows] = sha_asm.TABLE.constants
        base = int.from_bytes(os.urandom(4), "little") & 0xFFFFFF00
        run_block(block.lines, table, base)
        for s in range(streams):
            e60 = table[sha_asm.TABLE.rows + s // 4][s % 4]
            top = int.from_bytes(((e60 + ref.H0[7]) & 0xFFFFFFFF).to_bytes(4, "little"), "big")
            assert top == top_word(header, base + s), f"stream {s}"


def test_assembly_keeps_the_round_state_in_registers():
    """Spilled round state would come back through memory on the round chain itself;
    sha256msg2 from memory is slow. (The second hash's constant start state is a table row.)"""
    rows = sha_asm.TABLE.rows
    block = sha_asm.assemble(cpu.SHA_STREAMS, rows, rows + 1, cpu.SHA_SEGMENT_PAIRS, cpu.SHA_LOOKAHEAD)
    assert block.stores
    for line in block.lines:
        if line.startswith(("sha256rnds2", "sha256msg2")):
            offsets = [int(m) for m in _MEM.findall(line)]
            assert not offsets or (line.startswith("sha256rnds2") and offsets[0] // 16 < rows), line


# --- build rules ------------------------------------------------------------------------------


SHA_CHOICES = [c for c in cpu.KERNEL_CHOICES if c.startswith("sha")]


@pytest.mark.parametrize("choice", SHA_CHOICES)
def test_sha_choices_need_sha_ni(monkeypatch, choice):
    monkeypatch.setattr(cpu, "host_cpu_features", lambda: {"avx", "avx2", "sse4.1"})
    with pytest.raises(BackendUnavailable, match="SHA"):
        cpu.CpuBackend(lanes=choice)


def test_assembly_choices_need_avx():
    assert cpu.build_variant("sha", {"sha", "avx"})[1] & 0xFF > cpu.SHA_ASM_BASE
    assert cpu.build_variant("sha", {"sha"})[1] & 0xFF == cpu.SHA_NI_BASE + cpu.SHA_STREAMS
    with pytest.raises(BackendUnavailable, match="AVX"):
        cpu.build_variant("sha2", {"sha"})


def test_every_choice_has_a_build_rule():
    for choice in cpu.KERNEL_CHOICES:
        lanes, variant = cpu.build_variant(choice, {"sha", "avx", "avx2", "avx512f"})
        assert 1 <= lanes <= 16 and variant >> 16 == cpu.KERNEL_ID


needs_sha = pytest.mark.skipif("sha" not in cpu.host_cpu_features(), reason="this CPU has no SHA-NI")


@needs_sha
def test_llvm_scheduled_fallback_equals_brute_force(monkeypatch):
    """What "sha" runs on a CPU with SHA-NI but no AVX."""
    features = cpu.host_cpu_features() - {"avx"}
    monkeypatch.setattr(cpu, "host_cpu_features", lambda: features)
    backend = cpu.CpuBackend(lanes="sha")
    assert backend.variant & 0xFF == cpu.SHA_NI_BASE + cpu.SHA_STREAMS
    header = os.urandom(80)
    for start, count, target in ((0, 3000, 1 << 252), ((1 << 32) - 1000, 1000, 1 << 250), (7, 5000, (1 << 256) - 1)):
        want = [n for n in range(start, start + count) if top_word(header, n) <= target >> 224]
        assert backend.scan(backend.prepare(header, target), start, count) == want
