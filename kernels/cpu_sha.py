"""SHA-256d with the x86 SHA extensions (SHA-NI): the traced program, and its LLVM IR form.

``sha256rnds2`` does two rounds on a state split as (A,B,E,F) and (C,D,G,H);
``sha256msg1``/``sha256msg2`` extend the message schedule four words at a
time. One nonce uses all four lanes of an xmm register, and a round pair
takes about four cycles to come back while the SHA unit accepts about one per
cycle, so throughput comes from several independent nonces ("streams") in
flight.

The kernel is written once, as SHA-NI instructions over symbolic xmm values
(:class:`ShaKernel`), and traced like :mod:`kernels.sha256d_dag` traces the
scalar one. Every lane of every value is known to be constant, the same for a
whole work unit, or dependent on the nonce. What no nonce reaches is folded on
the host once per work unit: the midstate, the first three rounds of the first
hash, message words and whole instructions whose used lanes are nonce-free.
Two algebraic facts remove more: a round whose state is nonce-free is linear
in its message word (so the first hash's round 3 is two additions), and
``sha256msg2`` is linear in its upper two lanes when the lower two are
nonce-free. The second hash ends with the pair of rounds 60-61: state word H
after round 63, the only one the target test reads, is E after round 60.

Two emitters turn the trace into code: :mod:`kernels.sha_asm` (one register-
allocated assembly block per batch, the fast one) and :func:`emit_sha_scan_loop`
here (LLVM IR, streams interleaved one instruction at a time, for CPUs with
SHA-NI but without the VEX encodings the assembly uses).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from llvmlite import ir

from kernels import reference as ref
from kernels.ir_loop import I32, I64, emit_batch_loop

V4 = ir.VectorType(I32, 4)
MASK32 = ref.MASK32
CONST, UNIFORM, VARYING = 0, 1, 2
ZERO = (0, 0, 0, 0)
ALL = (0, 1, 2, 3)


# --- the instructions, on Python ints (lane 0 first), for folding and the host step ------


def _add(a, b):
    return tuple((x + y) & MASK32 for x, y in zip(a, b, strict=True))


def _shuffle(a, b, mask):
    both = tuple(a) + tuple(b)
    return tuple(both[i] for i in mask)


def _round(abef, cdgh, wk):
    """One SHA-256 round; ``wk`` is W + K of that round."""
    f, e, b, a = abef
    h, g, d, c = cdgh
    t1 = (h + ref.big_sigma1(e) + ref.ch(e, f, g) + wk) & MASK32
    t2 = (ref.big_sigma0(a) + ref.maj(a, b, c)) & MASK32
    return (e, (d + t1) & MASK32, a, (t1 + t2) & MASK32), (g, f, c, b)


def _rnds2(cdgh, abef, wk):
    for lane in (0, 1):
        abef, cdgh = _round(abef, cdgh, wk[lane])
    return abef


def _msg1(a, b):
    nxt = (a[1], a[2], a[3], b[0])
    return tuple((x + ref.small_sigma0(y)) & MASK32 for x, y in zip(a, nxt, strict=True))


def _msg2(a, b):
    w = [b[2], b[3]]
    for lane in range(4):
        w.append((a[lane] + ref.small_sigma1(w[lane])) & MASK32)
    return tuple(w[2:])


def _msg2_sigma(a, b):
    """msg2(a, b) - a, which reads only lanes 0 and 1 of ``a``."""
    return tuple((x - y) & MASK32 for x, y in zip(_msg2(a, b), a, strict=True))


_EVAL: dict[str, Callable] = {
    "add": _add,
    "rnds2": _rnds2,
    "msg1": _msg1,
    "msg2": _msg2,
    "msg2_sigma": _msg2_sigma,
    "round_abef": lambda abef, cdgh, wk: _round(abef, cdgh, wk[0])[0],
    "round_cdgh": lambda abef, cdgh, wk: _round(abef, cdgh, wk[0])[1],
}


def abef_cdgh(state: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The SHA-NI register layout, lane 0 first: (F, E, B, A) and (H, G, D, C)."""
    a, b, c, d, e, f, g, h = state
    return (f, e, b, a), (h, g, d, c)


# --- the symbolic xmm values --------------------------------------------------------------


class VNode:
    """One xmm value: ``lanes`` holds the kind (CONST/UNIFORM/VARYING) of each lane."""

    __slots__ = ("op", "args", "lanes", "value", "index")

    def __init__(self, op: str, args: tuple, lanes: tuple[int, ...], value=None) -> None:
        self.op = op  # 'const', 'input', 'nonce', or an _EVAL / 'shuffle' operation
        self.args = args  # child nodes (a shuffle's mask is its value)
        self.lanes = lanes
        self.value = value  # const: the four words; input: its slot; shuffle: the mask
        self.index = -1

    @property
    def kind(self) -> int:
        return max(self.lanes)


class VGraph:
    """Builds the traced program, folding what is constant as it goes."""

    def __init__(self) -> None:
        self.nodes: list[VNode] = []

    def _new(self, op: str, args: tuple, lanes: tuple[int, ...], value=None) -> VNode:
        if op != "const":  # only whole constants fold; a computed lane is at least UNIFORM
            lanes = tuple(max(UNIFORM, kind) for kind in lanes)
        node = VNode(op, args, lanes, value)
        node.index = len(self.nodes)
        self.nodes.append(node)
        return node

    def const(self, words) -> VNode:
        return self._new("const", (), (CONST,) * 4, tuple(w & MASK32 for w in words))

    def input(self, slot: int) -> VNode:
        return self._new("input", (), (UNIFORM,) * 4, slot)

    def nonce(self) -> VNode:
        """The byte-swapped nonce (header word 19 as SHA-256 reads it) in every lane."""
        return self._new("nonce", (), (VARYING,) * 4)

    def _op(self, op: str, args: tuple[VNode, ...], used: tuple[tuple[int, ...], ...], lanes=None) -> VNode:
        """``used[i]``: the lanes of ``args[i]`` the operation reads. An argument whose
        unread lanes are of a later kind than the result is narrowed to the read ones, so
        the host step never needs a value the result does not depend on."""
        kind = max(args[i].lanes[lane] for i in range(len(args)) for lane in used[i])
        zero = None
        narrowed = []
        for arg, lanes_read in zip(args, used, strict=True):
            if arg.kind > kind:
                zero = zero or self.const(ZERO)
                arg = self.shuffle(arg, zero, tuple(lane if lane in lanes_read else 4 for lane in range(4)))
            narrowed.append(arg)
        args = tuple(narrowed)
        if kind == CONST:
            return self.const(_EVAL[op](*(a.value for a in args)))
        return self._new(op, args, lanes or (kind,) * 4)

    def add(self, a: VNode, b: VNode) -> VNode:
        for x, y in ((a, b), (b, a)):
            if x.op == "const" and x.value == ZERO:
                return y
        lanes = tuple(max(p, q) for p, q in zip(a.lanes, b.lanes, strict=True))
        return self._op("add", (a, b), (ALL, ALL), lanes)

    def shuffle(self, a: VNode, b: VNode, mask: tuple[int, ...]) -> VNode:
        both = a.lanes + b.lanes
        lanes = tuple(both[i] for i in mask)
        if max(lanes) == CONST:
            words = [x.value if x.op == "const" else ZERO for x in (a, b)]
            return self.const(_shuffle(words[0], words[1], mask))
        picks = []  # (source node, lane) of each result lane, through shuffles of shuffles
        for i in mask:
            src, lane = (a, b)[i // 4], i % 4
            if src.op == "shuffle":
                src, lane = src.args[src.value[lane] // 4], src.value[lane] % 4
            picks.append((src, lane))
        sources = list(dict.fromkeys(src for src, _ in picks))
        if len(sources) <= 2 and sources != [a, b]:
            a, b = sources[0], sources[-1]
            mask = tuple(lane + (4 if src is not a else 0) for src, lane in picks)
        if mask == (0, 1, 2, 3):
            return a
        if mask == (4, 5, 6, 7):
            return b
        return self._new("shuffle", (a, b), lanes, tuple(mask))

    def rnds2(self, cdgh: VNode, abef: VNode, wk: VNode) -> VNode:
        return self._op("rnds2", (cdgh, abef, wk), (ALL, ALL, (0, 1)))

    def round1(self, abef: VNode, cdgh: VNode, wk: VNode) -> tuple[VNode, VNode]:
        """One round on lane 0 of ``wk``. With a nonce-free state the round is
        linear in its W: A and E gain W + K, nothing else depends on it."""
        if max(abef.kind, cdgh.kind) == VARYING:
            raise ValueError("a single round is only emitted on a nonce-free state")
        zero = self.const(ZERO)
        new_cdgh = self._op("round_cdgh", (abef, cdgh, zero), (ALL, ALL, (0,)))
        if wk.lanes[0] < VARYING:
            return self._op("round_abef", (abef, cdgh, wk), (ALL, ALL, (0,))), new_cdgh
        base = self._op("round_abef", (abef, cdgh, zero), (ALL, ALL, (0,)))
        return self.add(base, self.shuffle(wk, zero, (4, 0, 4, 0))), new_cdgh

    def msg1(self, a: VNode, b: VNode) -> VNode:
        lanes = tuple(max(x, y) for x, y in zip(a.lanes, a.lanes[1:] + b.lanes[:1], strict=True))
        return self._op("msg1", (a, b), (ALL, (0,)), lanes)

    def msg2(self, a: VNode, b: VNode) -> VNode:
        low = max(a.lanes[0], a.lanes[1], b.lanes[2], b.lanes[3])
        if low < VARYING and max(a.lanes[2:]) == VARYING:
            a_low = self.shuffle(a, self.const(ZERO), (0, 1, 4, 4))
            return self.add(a, self._op("msg2_sigma", (a_low, b), ((0, 1), (2, 3))))
        lanes = (max(a.lanes[0], b.lanes[2]), max(a.lanes[1], b.lanes[3]))
        lanes += (max(a.lanes[2], lanes[0]), max(a.lanes[3], lanes[1]))
        return self._op("msg2", (a, b), (ALL, (2, 3)), lanes)


# --- SHA-256d, written once --------------------------------------------------------------


# The second hash's rounds in pairs from round 0 (one rnds2 more than starting with a linear
# round 0, but the odd-aligned pairs need two shuffles per four rounds instead of one; measured
# faster on Zen 3).
SECOND_HASH_EVEN_PAIRS = True


class ShaKernel:
    """The traced SHA-NI kernel. Inputs (UNIFORM): slot 0 the midstate as ABEF, slot 1 as
    CDGH, slot 2 the tail words [W0, W1, W2, 0]. The output is lane ``out_lane`` of
    ``out_abef``: state word E after round 60 of the second hash, so H7 = that + H0[7]."""

    def __init__(self, even_pairs: bool = SECOND_HASH_EVEN_PAIRS) -> None:
        g = VGraph()
        self.graph = g
        mid_abef, mid_cdgh = g.input(0), g.input(1)
        tail = g.input(2)
        self.nonce = g.nonce()
        # The header's second block: tail, nonce, padding, length (640 bits).
        block = [g.shuffle(tail, self.nonce, (0, 1, 2, 4)), g.const((0x80000000, 0, 0, 0)), g.const(ZERO)]
        block.append(g.const((0, 0, 0, 640)))
        abef, cdgh, _ = self._compress(mid_abef, mid_cdgh, block, last_round=63)
        abef, cdgh = g.add(abef, mid_abef), g.add(cdgh, mid_cdgh)
        # The 32-byte digest A..H, padded to one block (length 256 bits).
        digest = [g.shuffle(abef, cdgh, (3, 2, 7, 6)), g.shuffle(abef, cdgh, (1, 0, 5, 4))]
        digest += [g.const((0x80000000, 0, 0, 0)), g.const((0, 0, 0, 256))]
        h0_abef, h0_cdgh = abef_cdgh(ref.H0)
        self.out_abef, _, self.out_lane = self._compress(
            g.const(h0_abef), g.const(h0_cdgh), digest, last_round=60, single_rounds=not even_pairs
        )
        self.live = self._live()
        self.frontier = self._frontier()

    def _compress(
        self, abef: VNode, cdgh: VNode, block: list[VNode], last_round: int, single_rounds: bool = True
    ) -> tuple[VNode, VNode, int]:
        """Rounds 0..last_round: pairs on ``sha256rnds2`` after any single rounds the
        nonce-free start allows; message groups are made only as rounds need them.
        Returns the state and the lane of ABEF that holds E after ``last_round``."""
        g = self.graph
        msgs = list(block)
        wks: list[VNode] = []

        def wk(group: int) -> VNode:
            while len(wks) <= group:
                t = len(wks)
                if t >= 4:
                    m0, m1, m2, m3 = msgs[t - 4 : t]
                    msgs.append(g.msg2(g.add(g.msg1(m0, m1), g.shuffle(m2, m3, (1, 2, 3, 4))), m3))
                wks.append(g.add(msgs[t], g.const(ref.K[4 * t : 4 * t + 4])))
            return wks[group]

        r = 0
        e_lane = 1  # where E of the last round done sits: lane 1 after a single round or a pair
        while r <= last_round:
            group, lane = divmod(r, 4)
            this_varies = wk(group).lanes[lane] == VARYING
            pair_varies = this_varies or (r < last_round and wk((r + 1) // 4).lanes[(r + 1) % 4] == VARYING)
            if single_rounds and max(abef.kind, cdgh.kind) < VARYING and (pair_varies or r == last_round):
                # A nonce-free state: one round, on the host or linear in its W.
                abef, cdgh = g.round1(abef, cdgh, g.shuffle(wk(group), wk(group), (lane,) * 4))
                r += 1
                continue
            # sha256rnds2 reads the low two lanes; the masks' upper lanes are the cheapest filler.
            if lane == 0:
                pair = wk(group)
            elif lane == 3:
                pair = g.shuffle(wk(group), wk(group + 1), (3, 4, 5, 6))
            else:
                pair = g.shuffle(wk(group), wk(group), (lane, lane + 1, 2, 3))
            abef, cdgh = g.rnds2(cdgh, abef, pair), abef
            e_lane = 0 if r == last_round else 1  # a pair past the end leaves E of its first round in F
            r += 2
        return abef, cdgh, e_lane

    def _live(self) -> list[VNode]:
        """Nodes that depend on the nonce and reach the output, in creation order."""
        seen: set[int] = set()
        stack = [self.out_abef]
        while stack:
            n = stack.pop()
            if n.index in seen or n.kind != VARYING:
                continue
            seen.add(n.index)
            stack.extend(n.args)
        return [n for n in self.graph.nodes if n.index in seen]

    def _frontier(self) -> list[VNode]:
        """Nonce-free, non-constant nodes the emitted code reads: one xmm each in params."""
        found: dict[int, VNode] = {}
        for n in self.live:
            for a in n.args:
                if a.kind == UNIFORM:
                    found[a.index] = a
        return [found[i] for i in sorted(found)]

    def evaluate_frontier(self, midstate: tuple[int, ...], tail_be: tuple[int, int, int]) -> list[tuple[int, ...]]:
        """The frontier's values for one work unit. A frontier value may be read out of
        lanes of a nonce-dependent one, so the walk runs at an arbitrary nonce (0): the
        lanes it keeps do not depend on it."""
        inputs = (*abef_cdgh(midstate), (*tail_be, 0))
        cache: dict[int, tuple[int, ...]] = {}
        return [_evaluate(n, inputs, 0, cache) for n in self.frontier]

    def evaluate_output(self, midstate: tuple[int, ...], tail_be: tuple[int, int, int], nonce: int) -> int:
        """The hash's top word (byte-swapped H7) as the kernel computes it, on Python
        ints: the frontier from :meth:`evaluate_frontier`, the rest at ``nonce``."""
        inputs = (*abef_cdgh(midstate), (*tail_be, 0))
        frontier = self.evaluate_frontier(midstate, tail_be)
        cache = {n.index: v for n, v in zip(self.frontier, frontier, strict=True)}
        e60 = _evaluate(self.out_abef, inputs, nonce, cache)[self.out_lane]
        return int.from_bytes(((e60 + ref.H0[7]) & MASK32).to_bytes(4, "little"), "big")

    def op_counts(self) -> dict[str, int]:
        """Emitted instructions per nonce, by operation (what the cycle budget counts)."""
        counts: dict[str, int] = {}
        for n in self.live:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts


def _evaluate(node: VNode, inputs, nonce: int, cache: dict[int, tuple[int, ...]]) -> tuple[int, ...]:
    stack = [node]
    while stack:
        n = stack[-1]
        if n.index in cache:
            stack.pop()
            continue
        pending = [a for a in n.args if a.index not in cache]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        if n.op == "const":
            value = n.value
        elif n.op == "input":
            value = tuple(inputs[n.value])
        elif n.op == "nonce":
            value = (int.from_bytes(nonce.to_bytes(4, "little"), "big"),) * 4
        elif n.op == "shuffle":
            value = _shuffle(cache[n.args[0].index], cache[n.args[1].index], n.value)
        else:
            value = _EVAL[n.op](*(cache[a.index] for a in n.args))
        cache[n.index] = value
    return cache[node.index]


KERNEL = ShaKernel()
_FRONTIER_SLOT = {node.index: slot for slot, node in enumerate(KERNEL.frontier)}
PARAM_COUNT = 4 * len(KERNEL.frontier)


def sha_params(midstate: tuple[int, ...], tail_be: tuple[int, int, int]) -> np.ndarray:
    """Per-work-unit inputs of the SHA-NI kernel: every frontier value, four words each."""
    words = [w for vec in KERNEL.evaluate_frontier(midstate, tail_be) for w in vec]
    return np.array(words, dtype=np.uint32)


# --- emission ------------------------------------------------------------------------------


def _declare(module: ir.Module, name: str, nargs: int) -> ir.Function:
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(V4, [V4] * nargs), name=name)
    return fn


def _load_vec(builder: ir.IRBuilder, params_ptr, offset: int) -> ir.Value:
    vec = ir.Constant(V4, ir.Undefined)
    for lane in range(4):
        word = builder.load(builder.gep(params_ptr, [ir.Constant(I64, offset + lane)]))
        vec = builder.insert_element(vec, word, ir.Constant(I32, lane))
    return vec


def emit_sha_tops(builder: ir.IRBuilder, streams: int, params_ptr) -> Callable[[ir.Value], list[ir.Value]]:
    """Loads the per-work-unit values (once, here) and returns ``tops(base)``: it emits
    the hashes of nonces base..base+streams-1, interleaved, and returns their top words
    (i32 each)."""
    module = builder.module
    intrinsics = {
        "rnds2": _declare(module, "llvm.x86.sha256rnds2", 3),
        "msg1": _declare(module, "llvm.x86.sha256msg1", 2),
        "msg2": _declare(module, "llvm.x86.sha256msg2", 2),
    }
    bswap = module.globals.get("llvm.bswap.i32") or ir.Function(
        module, ir.FunctionType(I32, [I32]), name="llvm.bswap.i32"
    )
    uniform = [_load_vec(builder, params_ptr, 4 * slot) for slot in range(len(KERNEL.frontier))]
    undef = ir.Constant(V4, ir.Undefined)

    def tops(base: ir.Value) -> list[ir.Value]:
        values: list[dict[int, ir.Value]] = [{} for _ in range(streams)]

        def operand(node: VNode, s: int) -> ir.Value:
            if node.op == "const":
                return ir.Constant(V4, list(node.value))
            if node.kind == UNIFORM:
                return uniform[_FRONTIER_SLOT[node.index]]
            return values[s][node.index]

        for node in KERNEL.live:  # one instruction for every stream, then the next
            for s in range(streams):
                if node.op == "nonce":
                    word = builder.call(bswap, [builder.add(base, ir.Constant(I32, s))])
                    first = builder.insert_element(undef, word, ir.Constant(I32, 0))
                    v = builder.shuffle_vector(first, undef, ir.Constant(V4, [0, 0, 0, 0]))
                elif node.op == "add":
                    v = builder.add(operand(node.args[0], s), operand(node.args[1], s))
                elif node.op == "shuffle":
                    a, b = (operand(x, s) for x in node.args)
                    v = builder.shuffle_vector(a, b, ir.Constant(V4, list(node.value)))
                elif node.op in intrinsics:
                    v = builder.call(intrinsics[node.op], [operand(x, s) for x in node.args])
                else:  # pragma: no cover - host-only operations never vary
                    raise AssertionError(node.op)
                values[s][node.index] = v
        h7 = ir.Constant(I32, ref.H0[7])
        lane = ir.Constant(I32, KERNEL.out_lane)
        return [
            builder.call(bswap, [builder.add(builder.extract_element(values[s][KERNEL.out_abef.index], lane), h7)])
            for s in range(streams)
        ]

    return tops


def gather(builder: ir.IRBuilder, words: list[ir.Value]) -> ir.Value:
    """i32 values into one ``<len x i32>`` vector, in order."""
    vec = ir.Constant(ir.VectorType(I32, len(words)), ir.Undefined)
    for i, w in enumerate(words):
        vec = builder.insert_element(vec, w, ir.Constant(I32, i))
    return vec


def emit_sha_scan_loop(builder: ir.IRBuilder, streams: int, params_ptr, start, nbatches, target_top) -> ir.Value:
    """Same contract as kernels.cpu._emit_scan_loop, ``streams`` nonces per batch."""
    tops = emit_sha_tops(builder, streams, params_ptr)
    return emit_batch_loop(builder, streams, start, nbatches, target_top, lambda base: gather(builder, tops(base)))
