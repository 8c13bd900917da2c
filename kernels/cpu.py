"""The numba CPU backend: SHA-256d over many nonces per call, lane-vectorised.

The nonce loop is emitted as LLVM IR on ``<lanes x i32>`` vectors (16 lanes
fill an AVX-512 register, 8 an AVX2 one, 4 an SSE one) from the traced kernel
in :mod:`kernels.sha256d_dag`, through ``numba.extending.intrinsic``. Writing
the vectors out, instead of hoping the loop vectoriser finds them, keeps the
arithmetic 32-bit and the lane width ours to choose. The loop runs until a
batch has a candidate and returns its lane mask; the ``@njit(nogil=True)``
driver around it records nonces, so threads scan in parallel.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import literally, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from kernels.base import Backend, BackendUnavailable, Prepared, check_range
from kernels.ir_loop import I32, I64, emit_batch_loop, splat
from kernels.sha256d_dag import CONST, UNIFORM, Node, Sha256dKernel

KERNEL = Sha256dKernel()
_FRONTIER_SLOT = {node.index: slot for slot, node in enumerate(KERNEL.frontier)}
LANE_CHOICES = (4, 8, 16)


def _vector_intrinsic(builder: ir.IRBuilder, name: str, vty: ir.VectorType, args: list[ir.Value]) -> ir.Value:
    module = builder.module
    full = f"llvm.{name}.v{vty.count}i32"
    fn = module.globals.get(full)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(vty, [vty] * len(args)), name=full)
    return builder.call(fn, args)


def _emit_scan_loop(builder: ir.IRBuilder, lanes: int, params_ptr, start, nbatches, target_top) -> ir.Value:
    """The traced kernel over ``<lanes x i32>`` vectors, one nonce per lane."""
    vty = ir.VectorType(I32, lanes)
    consts: dict[int, ir.Value] = {}

    def const_vec(value: int) -> ir.Value:
        if value not in consts:
            consts[value] = ir.Constant(vty, [value] * lanes)
        return consts[value]

    # Once per call: broadcast the per-work-unit values.
    uniform = []
    for slot in range(len(KERNEL.frontier)):
        scalar = builder.load(builder.gep(params_ptr, [ir.Constant(I64, slot)]))
        uniform.append(splat(builder, vty, scalar))
    lane_offsets = ir.Constant(vty, list(range(lanes)))

    def hash_tops(base: ir.Value) -> ir.Value:
        nonces = builder.add(splat(builder, vty, base), lane_offsets)
        values: dict[int, ir.Value] = {}

        def operand(node) -> ir.Value:
            if node.kind == CONST:
                return const_vec(node.value)
            if node.kind == UNIFORM:
                return uniform[_FRONTIER_SLOT[node.index]]
            return values[node.index]

        for node in KERNEL.live:
            op = node.op
            if op == "nonce":
                v = _vector_intrinsic(builder, "bswap", vty, [nonces])
            elif op == "add":
                v = builder.add(operand(node.args[0]), operand(node.args[1]))
            elif op == "xor":
                v = builder.xor(operand(node.args[0]), operand(node.args[1]))
            elif op == "and":
                v = builder.and_(operand(node.args[0]), operand(node.args[1]))
            elif op == "or":
                v = builder.or_(operand(node.args[0]), operand(node.args[1]))
            elif op == "rotr":
                x = operand(node.args[0])
                v = _vector_intrinsic(builder, "fshr", vty, [x, x, const_vec(node.args[1])])
            elif op == "shr":
                v = builder.lshr(operand(node.args[0]), const_vec(node.args[1]))
            else:  # pragma: no cover - the tracer emits no other op
                raise AssertionError(op)
            values[node.index] = v
        # The hash's top 32 bits are the byte-swapped last state word.
        return _vector_intrinsic(builder, "bswap", vty, [operand(KERNEL.output)])

    return emit_batch_loop(builder, lanes, start, nbatches, target_top, hash_tops)


SHA_NI_BASE = 100  # variant codes 101..119: SHA-NI on (code - 100) nonces, LLVM-scheduled
SHA_ASM_BASE = 120  # codes 121..139: SHA-NI on (code - 120) nonces, one assembly block (kernels/sha_asm.py)


def kernel_fingerprint() -> int:
    """A 24-bit digest of the code the intrinsics emit.

    numba's cache is keyed on this file's timestamp only; the emitted IR also
    depends on the traced graph and on kernels/cpu_sha.py. Folding this digest
    into the variant literal (part of the cached signature) makes any change
    to them a cache miss, never a stale kernel reading misordered parameters.
    """
    digest = hashlib.sha256()
    for node in KERNEL.live:
        args = [a.index if isinstance(a, Node) else a for a in node.args]
        digest.update(repr((node.index, node.op, args, node.kind, node.value)).encode())
    digest.update(repr([node.index for node in KERNEL.frontier]).encode())
    for name in ("cpu_sha.py", "ir_loop.py", "sha_asm.py"):
        digest.update(Path(__file__).with_name(name).read_bytes())
    return int.from_bytes(digest.digest()[:3], "big")


KERNEL_ID = kernel_fingerprint()


def make_variant(code: int, tuning: int = 0) -> int:
    """The literal passed to scan_range: kernel fingerprint, a tuning byte, the variant code."""
    return (KERNEL_ID << 16) | (tuning << 8) | code


@intrinsic
def scan_batches(typingctx, params, start, nbatches, target_top, variant):
    """(params uint32[:], start u32, nbatches i64 >= 1, target_top u32, variant literal) -> i64

    ``variant`` is a compile-time constant (see make_variant); its low byte
    is 4/8/16 vector lanes, 100+n for SHA-NI on n interleaved nonces as LLVM
    schedules them, or 120+n for the same as one register-allocated block.
    """
    if not isinstance(variant, types.IntegerLiteral):
        return None
    code = variant.literal_value & 0xFF
    tuning = (variant.literal_value >> 8) & 0xFF
    sig = types.int64(params, types.uint32, types.int64, types.uint32, variant)

    def codegen(context, builder, signature, args):
        params_val, start_val, nbatches_val, target_val, _ = args
        data = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=params_val).data
        if code > SHA_ASM_BASE:
            from kernels.sha_asm import emit_asm_tops

            streams = code - SHA_ASM_BASE
            tops = emit_asm_tops(builder, streams, data, tuning & 0xF or SHA_SEGMENT_PAIRS, tuning >> 4)
            return emit_batch_loop(builder, streams, start_val, nbatches_val, target_val, tops)
        if code > SHA_NI_BASE:
            from kernels.cpu_sha import emit_sha_scan_loop

            return emit_sha_scan_loop(builder, code - SHA_NI_BASE, data, start_val, nbatches_val, target_val)
        return _emit_scan_loop(builder, code, data, start_val, nbatches_val, target_val)

    return sig, codegen


@njit(nogil=True, cache=True)
def scan_range(params, start, count, target_top, out, variant):
    """Candidates of [start, start+count) into ``out``: (written, nonces scanned).

    Stops early only when ``out`` is full; the caller resumes from
    start + scanned. One compiled (and cached) specialisation per variant.
    """
    code = variant & 0xFF
    if code > SHA_ASM_BASE:
        lanes = code - SHA_ASM_BASE
    elif code > SHA_NI_BASE:
        lanes = code - SHA_NI_BASE
    else:
        lanes = code
    n = 0
    batches = (count + lanes - 1) // lanes
    b = 0
    while b < batches:
        if n + lanes > out.shape[0]:
            return n, b * lanes
        first = np.uint32((start + b * lanes) & 0xFFFFFFFF)
        r = scan_batches(params, first, batches - b, np.uint32(target_top), literally(variant))
        if r < 0:
            break
        b += r >> 32
        mask = r & 0xFFFF
        for lane in range(lanes):
            if (mask >> lane) & 1 and b * lanes + lane < count:
                out[n] = start + b * lanes + lane
                n += 1
        b += 1
    return n, count


def host_cpu_features() -> set[str]:
    """The CPU features LLVM sees here (e.g. 'avx512f', 'avx2', 'sha')."""
    try:
        from llvmlite import binding

        return {name for name, on in binding.get_host_cpu_features().items() if on}
    except Exception:  # pragma: no cover - llvmlite without host feature support
        return set()


def default_lanes(features: set[str] | None = None) -> int:
    """The vector width the feature flags suggest: 16 lanes fill an AVX-512 register, 8 an AVX2 one, 4 an SSE one.

    Only a yardstick now: the kernel that runs by default is the one :mod:`kernels.chooser`
    measured fastest, and ``miner bench`` reports its margin over this guess.
    """
    feats = host_cpu_features() if features is None else features
    if "avx512f" in feats:
        return 16
    if "avx2" in feats:
        return 8
    return 4


def compiled_scanner(variant: int):
    """scan_range's compiled specialisation for ``variant``, callable directly.

    Going through the dispatcher with a literal argument re-resolves the
    literal on every call (milliseconds, holding the GIL); the entry point
    costs under a microsecond, so threads stay parallel and short ranges
    (easy targets) stay cheap.
    """
    scan_range(np.zeros(64, dtype=np.uint32), 0, 0, 0, np.empty(1, dtype=np.int64), variant)  # compile or load
    for signature, compiled in scan_range.overloads.items():
        literal = signature[-1]
        if isinstance(literal, types.IntegerLiteral) and literal.literal_value == variant:
            return compiled.entry_point
    raise RuntimeError(f"no compiled scan_range for variant {variant:#x}")  # pragma: no cover


SHA_STREAMS = 3  # nonces in flight in "sha": on Zen 3, 3 and 4 run alike alone, 3 better beside a busy neighbour
SHA_SEGMENT_PAIRS = 2  # kernels/sha_asm.py: rnds2 pairs of one stream emitted together
SHA_LOOKAHEAD = 2  # kernels/sha_asm.py: segments the message schedule runs ahead of the rounds
KERNEL_CHOICES = ("4", "8", "16", "sha", "sha2", "sha4")


def sha_asm_variant(streams: int, segment_pairs: int = SHA_SEGMENT_PAIRS, lookahead: int = SHA_LOOKAHEAD) -> int:
    """The variant literal of the assembly SHA-NI kernel (tuning byte: lookahead, segment)."""
    return make_variant(SHA_ASM_BASE + streams, (lookahead << 4) | segment_pairs)


def build_variant(choice: str, features: set[str] | None = None) -> tuple[int, int]:
    """(nonces per batch, variant literal) of an entry of KERNEL_CHOICES.

    Raises BackendUnavailable when this CPU lacks what the kernel needs. "sha" is the
    fastest SHA-NI form measured (the assembly kernel, SHA_STREAMS nonces); on a CPU with
    SHA-NI but no AVX (the assembly uses VEX encodings) it is the LLVM-scheduled kernel.
    "sha2"/"sha4" are the assembly kernel on fewer or more nonces, for CPUs where that wins.
    """
    if choice.isdigit():
        return int(choice), make_variant(int(choice))
    feats = host_cpu_features() if features is None else features
    if choice in ("sha", "sha2", "sha4"):
        if "sha" not in feats:
            raise BackendUnavailable("this CPU has no SHA extensions (SHA-NI)")
        streams = SHA_STREAMS if choice == "sha" else int(choice[3:])
        if "avx" in feats:
            return streams, sha_asm_variant(streams)
        if choice != "sha":
            raise BackendUnavailable(f"kernel {choice!r} needs AVX (VEX encodings) beside SHA-NI")
        return streams, make_variant(SHA_NI_BASE + streams)
    raise BackendUnavailable(f"kernel {choice!r} has no build rule")


class CpuBackend(Backend):
    """numba kernel; share one instance between threads (it holds no state).

    ``lanes``: an entry of KERNEL_CHOICES (4, 8 or 16 SIMD lanes of the vector
    kernel, "sha" for the SHA-NI kernel, ...), or None / "auto" for the one
    :mod:`kernels.chooser` measured fastest on this machine. Which kernel wins
    depends on the CPU (16 lanes on an AVX-512 Xeon, SHA-NI on AMD Zen), so
    it is timed once and cached, not guessed from feature flags.
    """

    name = "cpu"
    default_chunk = 1 << 19  # ~15 ms at full speed; the engine grows it toward ~100 ms

    def __init__(self, lanes: int | str | None = None) -> None:
        choice = "auto" if lanes is None else str(lanes)
        self.auto = choice == "auto"
        if self.auto:
            from kernels.chooser import chosen_kernel

            choice = chosen_kernel()
        if choice not in KERNEL_CHOICES:
            raise ValueError(f"lanes must be auto or one of {', '.join(KERNEL_CHOICES)}, got {lanes!r}")
        try:
            self._build(choice)
        except BackendUnavailable:
            if not self.auto:
                raise
            from kernels.chooser import choose

            self._build(choose(refresh=True).winner)  # the cached winner no longer runs here: time again

    def _build(self, choice: str) -> None:
        self.lanes, self.variant = build_variant(choice)
        self.choice = choice
        self._scan_range = compiled_scanner(self.variant)

    @property
    def uses_sha_ni(self) -> bool:
        return self.variant & 0xFF > SHA_NI_BASE

    def prepare(self, header: bytes, target: int) -> Prepared:
        prepared = super().prepare(header, target)
        if self.uses_sha_ni:
            from kernels.cpu_sha import sha_params

            params = sha_params(prepared.midstate, prepared.tail_be)
        else:
            params = np.array(KERNEL.evaluate_frontier(prepared.midstate, prepared.tail_be), dtype=np.uint32)
        return CpuPrepared(*(getattr(prepared, f.name) for f in fields(Prepared)), params=params)

    def scan(self, prepared: Prepared, start: int, count: int) -> list[int]:
        check_range(start, count)
        if not isinstance(prepared, CpuPrepared):
            prepared = self.prepare(prepared.header76, prepared.target)
        found: list[int] = []
        out = np.empty(min(count, 1 << 16) + 16, dtype=np.int64)
        while count > 0:
            n, scanned = self._scan_range(prepared.params, start, count, prepared.target_top, out, self.variant)
            found.extend(out[:n].tolist())
            start += scanned
            count -= scanned
        return found

    def warm_up(self) -> None:
        """Compile (or load from cache) before timing anything."""
        self.scan(self.prepare(bytes(80), 0), 0, self.lanes)

    def describe(self) -> str:
        if self.uses_sha_ni and self.variant & 0xFF <= SHA_ASM_BASE:
            return f"cpu (numba, SHA-NI x{self.lanes}, LLVM-scheduled)"
        if self.uses_sha_ni:
            return f"cpu (numba, SHA-NI x{self.lanes})"
        return f"cpu (numba, {self.lanes} lanes)"


@dataclass(frozen=True)
class CpuPrepared(Prepared):
    """Prepared plus the per-work-unit values the vector code reads."""

    params: np.ndarray = field(default=None, compare=False)
