"""The SHA-NI kernel's batch as one block of x86 assembly, register-allocated here.

LLVM schedules and allocates the interleaved SHA-NI streams poorly: with more than
two streams it spills the round state, and a spilled state word comes back through
store-to-load forwarding, adding its latency to the round chain that bounds the
kernel. The traced program (:class:`kernels.cpu_sha.ShaKernel`) is straight-line
code, so it is cheap to do this well by hand: the streams' instructions are
interleaved one operation at a time, and registers are assigned by Belady's rule
(when one must be freed, free the one whose value is needed furthest ahead), with
spilled values read back as memory operands wherever the instruction takes one.
The round chain then stays in registers and message words, read long after they
are made, go to memory.

Everything the block reads that does not depend on the nonce sits in one 16-byte
aligned table (the per-work-unit frontier values first, then constants); the block
writes each stream's output word after it. The legacy-SSE SHA instructions need
aligned memory operands, hence the table. The loop is entered after ``vzeroupper``:
a legacy-SSE instruction while a 256-bit one has left upper halves dirty costs
hundreds of cycles on AMD Zen 3 (measured), and the block is legacy SSE and VEX-128
only. ``sha256msg2`` never takes a memory operand: that form measured half the
register form's throughput on Zen 3.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from kernels.cpu_sha import KERNEL, VARYING, VNode

ALLOCATABLE = tuple(range(1, 16))  # xmm0 is sha256rnds2's implicit message operand
_LANE_BYTES = [[4 * lane + k for k in range(4)] for lane in range(4)]


def _zero(node: VNode) -> bool:
    return node.op == "const" and node.value == (0, 0, 0, 0)


class ConstTable:
    """16-byte rows: the kernel's frontier values (filled per work unit), then constants."""

    def __init__(self, frontier: list[VNode]) -> None:
        self.frontier_rows = {node.index: row for row, node in enumerate(frontier)}
        self.constants: list[tuple[int, ...]] = []

    def const_row(self, words: tuple[int, ...]) -> int:
        words = tuple(w & 0xFFFFFFFF for w in words)
        if words not in self.constants:
            self.constants.append(words)
        return len(self.frontier_rows) + self.constants.index(words)

    def row(self, node: VNode) -> int:
        if node.op == "const":
            return self.const_row(node.value)
        return self.frontier_rows[node.index]

    @property
    def rows(self) -> int:
        return len(self.frontier_rows) + len(self.constants)


@dataclass
class Op:
    """One emitted instruction of one stream, before registers are assigned.

    ``form`` picks the encoding: 'vex' (three operands, the last source may be memory),
    'sse' (destructive: the first source is overwritten; the second may be memory),
    'rnds2' ('sse' with the message words in xmm0), 'to_xmm0' (a 'vex' op whose result
    goes straight into xmm0, for the rnds2 that follows), 'insert' (the nonce into a lane).
    """

    form: str
    text: str  # mnemonic and immediate, e.g. "vpshufd $$0xee"
    srcs: list  # ('v', value id) | ('m', table row)
    dest: tuple | None  # value id, or None for xmm0
    imm_lane: int = 0


def _isel_shuffle(node: VNode, table: ConstTable):
    """(text, sources) of one instruction for a shuffle node, sources as nodes."""
    a, b = node.args
    mask = node.value
    if a is b or all(i < 4 for i in mask) or all(i >= 4 for i in mask):
        src = a if all(i < 4 for i in mask) else b
        imm = sum((i % 4) << (2 * k) for k, i in enumerate(mask))
        return f"vpshufd $${imm:#x}", [src]
    for k in (1, 2, 3):
        if mask == (k, k + 1, k + 2, k + 3):  # lanes k.. of a, then b: (b:a) >> 32k
            return f"vpalignr $${4 * k}", [b, a]  # the high part is the register source
    if all(i < 4 for i in mask[:2]) and all(i >= 4 for i in mask[2:]):
        imm = sum((i % 4) << (2 * k) for k, i in enumerate(mask))
        return f"vshufps $${imm:#x}", [a, b]
    zero_side = 0 if _zero(a) else 1 if _zero(b) else None
    if zero_side is not None:
        src = (a, b)[1 - zero_side]
        control = []
        for i in mask:
            from_src = (i >= 4) == (zero_side == 0)
            control += _LANE_BYTES[i % 4] if from_src else [0x80] * 4
        words = tuple(int.from_bytes(bytes(control[4 * k : 4 * k + 4]), "little") for k in range(4))
        return "vpshufb", [src, table.const_row(words)]
    raise NotImplementedError(f"no instruction for shuffle mask {mask}")


def _operand(node: VNode, stream: int, table: ConstTable):
    if node.kind == VARYING:
        return ("v", (node.index, stream))
    return ("m", table.row(node))


def _source(x, stream: int, table: ConstTable):
    """An instruction source: a node, or a table row the instruction selection added."""
    return _operand(x, stream, table) if isinstance(x, VNode) else ("m", x)


def _stream_ops(node: VNode, s: int, table: ConstTable, fused: set[int]) -> list[Op]:
    """The instructions for one node of one stream."""
    if node.op == "nonce" or node.index in fused:
        return []
    if node.op == "add":
        x, y = node.args
        if x.kind != VARYING:  # the memory-capable source goes last
            x, y = y, x
        return [Op("vex", "vpaddd", [_operand(x, s, table), _operand(y, s, table)], (node.index, s))]
    if node.op == "shuffle":
        a, b = node.args
        if b.op == "nonce" or a.op == "nonce":
            other, mask_lane = (a, node.value.index(4)) if b.op == "nonce" else (b, node.value.index(0))
            return [Op("insert", "vpinsrd", [_operand(other, s, table)], (node.index, s), imm_lane=mask_lane)]
        text, srcs = _isel_shuffle(node, table)
        return [Op("vex", text, [_source(x, s, table) for x in srcs], (node.index, s))]
    if node.op in ("msg1", "msg2"):
        x, y = node.args
        return [Op("sse", f"sha256{node.op}", [_operand(x, s, table), _operand(y, s, table)], (node.index, s))]
    if node.op == "rnds2":
        cdgh, abef, wk = node.args
        ops = []
        if wk.index in fused:
            text, srcs = _isel_shuffle(wk, table)
            ops.append(Op("to_xmm0", text, [_source(x, s, table) for x in srcs], None))
        else:
            ops.append(Op("to_xmm0", "vmovdqa", [_operand(wk, s, table)], None))
        ops.append(Op("rnds2", "sha256rnds2", [_operand(cdgh, s, table), _operand(abef, s, table)], (node.index, s)))
        return ops
    raise AssertionError(node.op)  # pragma: no cover - the tracer emits no other op


def _fused_pairs() -> set[int]:
    """Shuffles read by one rnds2 only (as its message words): made straight into xmm0."""
    readers: dict[int, list[tuple[VNode, int]]] = {}
    for node in KERNEL.live:
        for pos, arg in enumerate(node.args):
            readers.setdefault(arg.index, []).append((node, pos))
    fused = set()
    for node in KERNEL.live:
        users = readers.get(node.index, [])
        if node.op == "shuffle" and len(users) == 1 and users[0][0].op == "rnds2" and users[0][1] == 2:
            if node.args[0].op != "nonce" and node.args[1].op != "nonce":
                fused.add(node.index)
    return fused


def _state_values() -> set[int]:
    """Nodes on the round chain: what sha256rnds2 makes and reads as state."""
    state = set()
    for node in KERNEL.live:
        if node.op == "rnds2":
            state.update(arg.index for arg in node.args[:2] if arg.kind == VARYING)
            state.add(node.index)
    return state


TABLE = ConstTable(KERNEL.frontier)
_FUSED = _fused_pairs()
_STATE = _state_values()


def _segments(pairs_per_segment: int) -> list[list[VNode]]:
    """The live nodes cut after every ``pairs_per_segment`` sha256rnds2, in trace order."""
    segments: list[list[VNode]] = [[]]
    pairs = 0
    for node in KERNEL.live:
        segments[-1].append(node)
        if node.op == "rnds2":
            pairs += 1
            if pairs % pairs_per_segment == 0:
                segments.append([])
    return [seg for seg in segments if seg]


def _chain_nodes() -> set[int]:
    """The round chain and what only it reads: rnds2, the state, and message words plus
    round constants (each read by its rounds alone, so made just before them)."""
    chain = set(_STATE)
    readers: dict[int, list[VNode]] = {}
    for node in KERNEL.live:
        for arg in node.args:
            readers.setdefault(arg.index, []).append(node)
    wk_readers = {n.index for n in KERNEL.live if n.index in _FUSED}
    for node in KERNEL.live:
        users = readers.get(node.index, [])
        if node.index in _FUSED or (
            users and all(u.index in wk_readers or (u.op == "rnds2" and u.args[2] is node) for u in users)
        ):
            chain.add(node.index)
    return chain


def program(streams: int, pairs_per_segment: int = 2, lookahead: int = 0) -> list[Op]:
    """The batch's instructions: a segment of the trace (one round group by default) for
    every stream, then the next segment. Each stream's temporaries die within its
    segment, so few are live at once; the streams' round chains stay interleaved.
    ``lookahead`` moves message-schedule work that many segments earlier."""
    segments = _segments(pairs_per_segment)
    chain = _chain_nodes()
    done: set[int] = set()
    steps: list[list[VNode]] = []
    for k, segment in enumerate(segments):
        step = []
        for ahead in segments[k + 1 : k + 1 + lookahead]:
            for node in ahead:
                if (
                    node.index not in chain
                    and node.index not in done
                    and all(a.index in done or a.kind != VARYING for a in node.args)
                ):
                    step.append(node)
                    done.add(node.index)
        for node in segment:
            if node.index not in done:
                step.append(node)
                done.add(node.index)
        steps.append(step)
    ops: list[Op] = []
    for step in steps:
        for s in range(streams):
            for node in step:
                ops.extend(_stream_ops(node, s, TABLE, _FUSED))
    return ops


program(1)  # registers every constant the instructions read, so the table's size is fixed from here on


@dataclass
class Allocation:
    """The assembled block and what its spilling cost."""

    lines: list[str] = field(default_factory=list)
    spill_rows: int = 0
    stores: int = 0
    loads: int = 0


def _mem(row: int) -> str:
    return f"{16 * row}($1)"


def assemble(streams: int, out_row: int, spill_base: int, pairs_per_segment: int = 2, lookahead: int = 0) -> Allocation:
    """Registers for program(streams), by Belady's rule; returns the assembly lines.

    Table rows: [0, TABLE.rows) the table, ``out_row`` the output words (one i32 per
    stream), ``spill_base`` onward the spill slots.
    """
    ops = program(streams, pairs_per_segment, lookahead)
    uses: dict[tuple, list[int]] = {}
    for pos, op in enumerate(ops):
        for kind, val in op.srcs:
            if kind == "v":
                uses.setdefault(val, []).append(pos)
    outputs = [(KERNEL.out_abef.index, s) for s in range(streams)]
    for val in outputs:
        uses.setdefault(val, []).append(len(ops))

    def next_use(val, after: int) -> int | None:
        """The first position > ``after`` that reads ``val``."""
        lst = uses.get(val, [])
        i = bisect.bisect_right(lst, after)
        return lst[i] if i < len(lst) else None

    alloc = Allocation()
    reg_of: dict[tuple, int] = {}
    holder: dict[int, tuple | None] = {r: None for r in ALLOCATABLE}
    slot_of: dict[tuple, int] = {}  # values with a valid copy in memory
    free_slots: list[int] = []
    emit = alloc.lines.append

    def store(val, r: int) -> None:
        if val in slot_of:
            return
        slot_of[val] = free_slots.pop() if free_slots else spill_base + alloc.spill_rows
        alloc.spill_rows += slot_of[val] == spill_base + alloc.spill_rows
        emit(f"vmovdqa %xmm{r}, {_mem(slot_of[val])}")
        alloc.stores += 1

    def release(r: int) -> None:
        val = holder[r]
        if val is not None:
            holder[r] = None
            del reg_of[val]

    def drop_dead(pos: int, slots: bool = True) -> None:
        """Forget values nothing after ``pos`` reads (their slots only once ``pos`` is emitted:
        the instruction may read one as a memory operand)."""
        for r, val in holder.items():
            if val is not None and next_use(val, pos) is None:
                release(r)
        if slots:
            for val in [v for v in slot_of if next_use(v, pos) is None]:
                free_slots.append(slot_of.pop(val))

    def take_reg(pos: int, locked: set[int]) -> int:
        """A register for use at ``pos``. If none is free, the value needed furthest ahead goes to
        memory, round state last: a state word reloaded lengthens the round chain itself."""
        free = [r for r in ALLOCATABLE if holder[r] is None and r not in locked]
        if free:
            return free[0]

        def cost(r: int) -> tuple[bool, int]:
            val = holder[r]
            return val[0] not in _STATE, next_use(val, pos - 1) or 1 << 30

        victim = max((r for r in ALLOCATABLE if r not in locked), key=cost)
        val = holder[victim]
        if next_use(val, pos - 1) is not None:
            store(val, victim)
        release(victim)
        return victim

    def bind(r: int, val) -> None:
        holder[r], reg_of[val] = val, r

    def source(src, pos: int, locked: set[int], memory_ok: bool) -> str:
        kind, val = src
        if kind == "v" and src == in_xmm0:
            return "%xmm0"
        if kind == "v" and val in reg_of:
            locked.add(reg_of[val])
            return f"%xmm{reg_of[val]}"
        address = _mem(val) if kind == "m" else _mem(slot_of[val])
        if memory_ok:
            return address
        r = take_reg(pos, locked)
        emit(f"vmovdqa {address}, %xmm{r}")
        alloc.loads += 1
        if kind == "v":
            bind(r, val)
        locked.add(r)
        return f"%xmm{r}"

    def result_reg(pos: int, locked: set[int]) -> int:
        drop_dead(pos, slots=False)  # a source read for the last time may take the result
        return take_reg(pos + 1, {r for r in locked if holder[r] is not None})

    def lives_in_xmm0(op: Op, pos: int) -> bool:
        """A result read only by the next instruction moving it to xmm0 and, at most, by
        the next write of xmm0: made in xmm0 itself, no register and no move."""
        readers = uses.get(op.dest, [])
        if not readers or readers[0] != pos + 1 or pos + 1 == len(ops) or len(readers) > 2:
            return False
        if ops[pos + 1].form != "to_xmm0":
            return False
        if ops[pos + 1].text != "vmovdqa":
            return len(readers) == 1
        later = [p for p in range(pos + 2, len(ops)) if ops[p].form == "to_xmm0"][:1]
        return len(readers) == 1 or readers[1:] == later

    in_xmm0 = None  # ('m', row) or ('v', value) that xmm0 holds
    for pos, op in enumerate(ops):
        locked: set[int] = set()
        if op.form == "to_xmm0" and op.text == "vmovdqa":
            if in_xmm0 != op.srcs[0]:
                emit(f"vmovdqa {source(op.srcs[0], pos, locked, memory_ok=True)}, %xmm0")
                in_xmm0 = op.srcs[0]
            drop_dead(pos)
            continue
        if op.form in ("vex", "to_xmm0"):
            first = [source(src, pos, locked, memory_ok=False) for src in op.srcs[:-1]]
            last = source(op.srcs[-1], pos, locked, memory_ok=True)
            if op.form == "to_xmm0":
                dest = "%xmm0"
                in_xmm0 = None
            elif lives_in_xmm0(op, pos):
                dest = "%xmm0"
                in_xmm0 = ("v", op.dest)
            else:
                r = result_reg(pos, locked)
                bind(r, op.dest)
                dest = f"%xmm{r}"
            mnemonic = op.text if "$" not in op.text else op.text + ","
            emit(f"{mnemonic} {', '.join([last, *reversed(first), dest])}")
        elif op.form == "insert":
            src = source(op.srcs[0], pos, locked, memory_ok=False)
            r = result_reg(pos, locked)
            bind(r, op.dest)
            emit("movl $2, $0")
            if op.dest[1]:
                emit(f"addl $${op.dest[1]}, $0")
            emit("bswapl $0")
            emit(f"vpinsrd $${op.imm_lane}, $0, {src}, %xmm{r}")
        else:  # 'sse', 'rnds2': the first source's register is overwritten with the result
            kind0, val0 = op.srcs[0]
            r0 = int(source(op.srcs[0], pos, locked, memory_ok=False)[4:])
            if kind0 == "v":
                if next_use(val0, pos) is not None and val0 not in slot_of:
                    spare = [r for r in ALLOCATABLE if holder[r] is None and r not in locked]
                    if spare:
                        emit(f"vmovdqa %xmm{r0}, %xmm{spare[0]}")
                        release(r0)
                        bind(spare[0], val0)
                    else:
                        store(val0, r0)
                release(r0)
            src = source(op.srcs[1], pos, locked, memory_ok=op.text != "sha256msg2")  # its memory form is slow
            prefix = "%xmm0, " if op.form == "rnds2" else ""
            emit(f"{op.text} {prefix}{src}, %xmm{r0}")
            if holder[r0] is not None:  # pragma: no cover - r0 stays locked
                raise AssertionError("overwrote a live register")
            bind(r0, op.dest)
        drop_dead(pos)
    lane = KERNEL.out_lane
    for s, val in enumerate(outputs):
        if val in reg_of:
            emit(f"vpextrd $${lane}, %xmm{reg_of[val]}, {16 * out_row + 4 * s}($1)")
        else:
            emit(f"movl {16 * slot_of[val] + 4 * lane}($1), $0")
            emit(f"movl $0, {16 * out_row + 4 * s}($1)")
    return alloc


def emit_asm_tops(builder, streams: int, params_ptr, pairs_per_segment: int = 2, lookahead: int = 0):
    """Like :func:`kernels.cpu_sha.emit_sha_tops`, the batch as one assembly block;
    returns ``tops(base)`` giving the ``<streams x i32>`` top words."""
    from llvmlite import binding, ir
    from numba.core import cgutils

    from kernels import reference as ref
    from kernels.ir_loop import I32, I64, splat

    binding.initialize_native_asmparser()  # numba sets up the printer only; inline assembly needs the parser
    v4 = ir.VectorType(I32, 4)
    out_rows = (streams + 3) // 4
    alloc = assemble(streams, TABLE.rows, TABLE.rows + out_rows, pairs_per_segment, lookahead)
    rows = TABLE.rows + out_rows + alloc.spill_rows
    scratch = cgutils.alloca_once(builder, ir.ArrayType(v4, rows), name="sha.table")
    scratch.align = 64
    rows_ptr = builder.bitcast(scratch, v4.as_pointer())
    for row in range(len(TABLE.frontier_rows)):  # this work unit's values
        vec = ir.Constant(v4, ir.Undefined)
        for lane in range(4):
            word = builder.load(builder.gep(params_ptr, [ir.Constant(I64, 4 * row + lane)]))
            vec = builder.insert_element(vec, word, ir.Constant(I32, lane))
        builder.store(vec, builder.gep(rows_ptr, [ir.Constant(I64, row)]), align=16)
    for i, words in enumerate(TABLE.constants):
        row = len(TABLE.frontier_rows) + i
        builder.store(ir.Constant(v4, list(words)), builder.gep(rows_ptr, [ir.Constant(I64, row)]), align=16)
    vzeroupper = builder.module.globals.get("llvm.x86.avx.vzeroupper") or ir.Function(
        builder.module, ir.FunctionType(ir.VoidType(), []), name="llvm.x86.avx.vzeroupper"
    )
    builder.call(vzeroupper, [])
    clobbers = ",".join(f"~{{xmm{r}}}" for r in range(16))
    constraint = f"=&r,r,r,{clobbers},~{{memory}},~{{dirflag}},~{{fpsr}},~{{flags}}"
    byte_ptr = builder.bitcast(scratch, ir.IntType(8).as_pointer())
    asm = ir.InlineAsm(ir.FunctionType(I32, [byte_ptr.type, I32]), "\n\t".join(alloc.lines), constraint, True)
    sty = ir.VectorType(I32, streams)
    out_ptr = builder.bitcast(builder.gep(rows_ptr, [ir.Constant(I64, TABLE.rows)]), sty.as_pointer())
    h7 = splat(builder, sty, ir.Constant(I32, ref.H0[7]))
    bswap_name = f"llvm.bswap.v{streams}i32"
    bswap = builder.module.globals.get(bswap_name) or ir.Function(
        builder.module, ir.FunctionType(sty, [sty]), name=bswap_name
    )

    def tops(base):
        builder.call(asm, [byte_ptr, base])
        return builder.call(bswap, [builder.add(builder.load(out_ptr, align=16), h7)])

    return tops
