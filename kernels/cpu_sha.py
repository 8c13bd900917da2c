"""SHA-256d with the x86 SHA extensions (SHA-NI), emitted as LLVM IR.

``sha256rnds2`` does two rounds on a state split as (A,B,E,F) and (C,D,G,H);
``sha256msg1``/``sha256msg2`` extend the message schedule four words at a
time. One nonce uses all four lanes of an xmm register, so throughput comes
from interleaving several independent nonces in straight-line code.

Work per nonce that does not depend on it is done on the host once per work
unit (:func:`sha_params`): the midstate and the first two rounds of the
second block. The second hash stops after 62 rounds: the last state word it
needs (H) is already F of that state.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir

from kernels import reference as ref
from kernels.ir_loop import I32, I64, emit_batch_loop

V4 = ir.VectorType(I32, 4)

# Parameter layout (uint32 words), computed by sha_params.
P_MID_ABEF, P_MID_CDGH, P_ABEF2, P_CDGH2, P_WORDS = 0, 4, 8, 12, 16
PARAM_COUNT = 20


def abef_cdgh(state: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """The SHA-NI register layout, lane 0 first: (F, E, B, A) and (H, G, D, C)."""
    a, b, c, d, e, f, g, h = state
    return [f, e, b, a], [h, g, d, c]


def sha_params(midstate: tuple[int, ...], tail_be: tuple[int, int, int]) -> np.ndarray:
    """Per-work-unit inputs: midstate, the state after rounds 0-1, tail words."""
    w0, w1, w2 = tail_be
    a, b, c, d, e, f, g, h = midstate
    for t, w in ((0, w0), (1, w1)):  # the two rounds no nonce reaches
        t1 = (h + ref.big_sigma1(e) + ref.ch(e, f, g) + ref.K[t] + w) & ref.MASK32
        t2 = (ref.big_sigma0(a) + ref.maj(a, b, c)) & ref.MASK32
        h, g, f, e, d, c, b, a = g, f, e, (d + t1) & ref.MASK32, c, b, a, (t1 + t2) & ref.MASK32
    mid_abef, mid_cdgh = abef_cdgh(midstate)
    abef2, cdgh2 = abef_cdgh((a, b, c, d, e, f, g, h))
    words = [(w2 + ref.K[2]) & ref.MASK32, ref.K[3], w0, w1]
    return np.array(mid_abef + mid_cdgh + abef2 + cdgh2 + words, dtype=np.uint32)


class _Emitter:
    def __init__(self, builder: ir.IRBuilder) -> None:
        self.b = builder
        module = builder.module
        self.rnds2 = self._declare(module, "llvm.x86.sha256rnds2", 3)
        self.msg1 = self._declare(module, "llvm.x86.sha256msg1", 2)
        self.msg2 = self._declare(module, "llvm.x86.sha256msg2", 2)
        self.undef = ir.Constant(V4, ir.Undefined)

    @staticmethod
    def _declare(module: ir.Module, name: str, nargs: int) -> ir.Function:
        fn = module.globals.get(name)
        if fn is None:
            fn = ir.Function(module, ir.FunctionType(V4, [V4] * nargs), name=name)
        return fn

    def vec(self, words: list[int]) -> ir.Constant:
        return ir.Constant(V4, [w & 0xFFFFFFFF for w in words])

    def shuffle(self, x, y, mask: list[int]):
        return self.b.shuffle_vector(x, y, ir.Constant(ir.VectorType(I32, 4), mask))

    def next_schedule(self, m0, m1, m2, m3):
        """W[t..t+3] from the four previous message vectors."""
        b = self.b
        w7 = self.shuffle(m2, m3, [1, 2, 3, 4])  # W[t-7..t-4]
        return b.call(self.msg2, [b.add(b.call(self.msg1, [m0, m1]), w7), m3])

    def two_rounds(self, abef, cdgh, wk):
        """Returns (new ABEF, new CDGH): the old ABEF moves down to CDGH."""
        return self.b.call(self.rnds2, [cdgh, abef, wk]), abef

    def four_rounds(self, abef, cdgh, m, k: list[int]):
        wk = self.b.add(m, self.vec(k))
        abef, cdgh = self.two_rounds(abef, cdgh, wk)
        return self.two_rounds(abef, cdgh, self.shuffle(wk, self.undef, [2, 3, 2, 3]))

    def compress(self, abef, cdgh, msgs: list, first_group: int = 0, rounds: int = 64):
        """Rounds [4*first_group, rounds) with message vectors msgs[first_group..3]."""
        m = list(msgs)
        for group in range(first_group, 16):
            if group >= 4:
                m.append(self.next_schedule(m[group - 4], m[group - 3], m[group - 2], m[group - 1]))
            k = list(ref.K[4 * group : 4 * group + 4])
            if rounds - 4 * group == 2:  # stop after the first pair of this group
                wk = self.b.add(m[group], self.vec(k))
                return self.two_rounds(abef, cdgh, wk)
            abef, cdgh = self.four_rounds(abef, cdgh, m[group], k)
        return abef, cdgh


def _load_vec(builder: ir.IRBuilder, params_ptr, offset: int):
    vec = ir.Constant(V4, ir.Undefined)
    for lane in range(4):
        word = builder.load(builder.gep(params_ptr, [ir.Constant(I64, offset + lane)]))
        vec = builder.insert_element(vec, word, ir.Constant(I32, lane))
    return vec


def emit_sha_scan_loop(builder: ir.IRBuilder, streams: int, params_ptr, start, nbatches, target_top) -> ir.Value:
    """Same contract as kernels.cpu._emit_scan_loop, ``streams`` nonces per batch."""
    em = _Emitter(builder)
    mid_abef = _load_vec(builder, params_ptr, P_MID_ABEF)
    mid_cdgh = _load_vec(builder, params_ptr, P_MID_CDGH)
    abef2 = _load_vec(builder, params_ptr, P_ABEF2)
    cdgh2 = _load_vec(builder, params_ptr, P_CDGH2)
    words = _load_vec(builder, params_ptr, P_WORDS)  # [W2+K2, K3, W0, W1]
    w0w1w2 = em.shuffle(words, em.vec([0, 0, 0, 0]), [2, 3, 0, 4])  # [W0, W1, W2+K2, 0]
    k2 = em.vec([0, 0, ref.K[2], 0])
    m0_base = builder.sub(w0w1w2, k2)  # [W0, W1, W2, 0]: the nonce word goes in lane 3
    wk23_base = em.shuffle(words, em.undef, [0, 1, 0, 1])  # [W2+K2, K3, ...]
    m1 = em.vec([0x80000000, 0, 0, 0])
    m2 = em.vec([0, 0, 0, 0])
    m3 = em.vec([0, 0, 0, 640])
    h0_abef, h0_cdgh = (em.vec(v) for v in abef_cdgh(ref.H0))
    pad2 = em.vec([0x80000000, 0, 0, 0])
    len2 = em.vec([0, 0, 0, 256])
    bswap = builder.module.globals.get("llvm.bswap.i32") or ir.Function(
        builder.module, ir.FunctionType(I32, [I32]), name="llvm.bswap.i32"
    )
    sty = ir.VectorType(I32, streams)

    def hash_tops(base: ir.Value) -> ir.Value:
        tops = ir.Constant(sty, ir.Undefined)
        for s in range(streams):
            nonce_word = builder.call(bswap, [builder.add(base, ir.Constant(I32, s))])
            m0 = builder.insert_element(m0_base, nonce_word, ir.Constant(I32, 3))
            wk23 = builder.add(wk23_base, builder.insert_element(em.vec([0, 0, 0, 0]), nonce_word, ir.Constant(I32, 1)))
            # Rounds 2-3 (the nonce enters at word 3), then 4..63 of the first hash.
            abef, cdgh = em.two_rounds(abef2, cdgh2, wk23)
            abef, cdgh = em.compress(abef, cdgh, [m0, m1, m2, m3], first_group=1)
            abef = builder.add(abef, mid_abef)
            cdgh = builder.add(cdgh, mid_cdgh)
            # The digest words A..H become the second hash's message.
            d0 = em.shuffle(abef, cdgh, [3, 2, 7, 6])
            d1 = em.shuffle(abef, cdgh, [1, 0, 5, 4])
            abef, _ = em.compress(h0_abef, h0_cdgh, [d0, d1, pad2, len2], rounds=62)
            h7 = builder.add(builder.extract_element(abef, ir.Constant(I32, 0)), ir.Constant(I32, ref.H0[7]))
            tops = builder.insert_element(tops, builder.call(bswap, [h7]), ir.Constant(I32, s))
        return tops

    return emit_batch_loop(builder, streams, start, nbatches, target_top, hash_tops)
