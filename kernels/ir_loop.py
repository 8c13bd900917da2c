"""The batch loop both numba CPU kernels share, as LLVM IR.

for i in range(nbatches): hash ``lanes`` consecutive nonces, compare the
hashes' top words with the target, and leave at the first batch with a
candidate. Staying in one loop until a hit keeps the per-call overhead off the
hot path; the driver in :mod:`kernels.cpu` records the rare hits.
"""

from __future__ import annotations

from collections.abc import Callable

from llvmlite import ir

I32 = ir.IntType(32)
I64 = ir.IntType(64)


def splat(builder: ir.IRBuilder, vty: ir.VectorType, scalar: ir.Value) -> ir.Value:
    """A vector with ``scalar`` in every lane."""
    undef = ir.Constant(vty, ir.Undefined)
    first = builder.insert_element(undef, scalar, ir.Constant(I32, 0))
    return builder.shuffle_vector(first, undef, ir.Constant(ir.VectorType(I32, vty.count), [0] * vty.count))


def emit_batch_loop(
    builder: ir.IRBuilder,
    lanes: int,
    start: ir.Value,
    nbatches: ir.Value,
    target_top: ir.Value,
    hash_tops: Callable[[ir.Value], ir.Value],
) -> ir.Value:
    """Emit the loop; ``hash_tops(base)`` emits one batch and returns the
    ``<lanes x i32>`` top 32 bits of the hashes of nonces base..base+lanes-1.

    Returns (i << 32) | lane_mask of the first batch with a candidate, or -1.
    """
    vty = ir.VectorType(I32, lanes)
    target_vec = splat(builder, vty, target_top)
    entry = builder.block
    fn = builder.function
    loop = fn.append_basic_block("scan.loop")
    found = fn.append_basic_block("scan.found")
    cont = fn.append_basic_block("scan.cont")
    done = fn.append_basic_block("scan.done")
    builder.branch(loop)

    builder.position_at_end(loop)
    i = builder.phi(I64, name="batch")
    i.add_incoming(ir.Constant(I64, 0), entry)
    base = builder.add(start, builder.mul(builder.trunc(i, I32), ir.Constant(I32, lanes)))
    hit = builder.icmp_unsigned("<=", hash_tops(base), target_vec)
    mask = builder.zext(builder.bitcast(hit, ir.IntType(lanes)), I64)
    builder.cbranch(builder.icmp_unsigned("!=", mask, ir.Constant(I64, 0)), found, cont)

    builder.position_at_end(found)
    found_result = builder.or_(builder.shl(i, ir.Constant(I64, 32)), mask)
    builder.branch(done)

    builder.position_at_end(cont)
    next_i = builder.add(i, ir.Constant(I64, 1))
    i.add_incoming(next_i, cont)
    builder.cbranch(builder.icmp_signed("<", next_i, nbatches), loop, done)

    builder.position_at_end(done)
    result = builder.phi(I64, name="scan.result")
    result.add_incoming(found_result, found)
    result.add_incoming(ir.Constant(I64, -1), cont)
    return result
