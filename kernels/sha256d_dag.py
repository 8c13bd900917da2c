"""SHA-256d of a block header's second half, traced once into an expression graph.

The kernel is written here a single time, as plain SHA-256 over symbolic
32-bit words. Tracing it sorts every intermediate value into one of three kinds:

* ``CONST``: known when the kernel is built (round constants, padding words,
  the initial state of the second hash). Folded away in Python.
* ``UNIFORM``: the same for every nonce of one work unit (anything computed
  from the midstate and the three tail words only: the first three rounds of
  the second block, most of the early message schedule). Computed once per
  work unit on the host, by :func:`evaluate_frontier`.
* ``VARYING``: depends on the nonce. Only these become vector instructions.

Sums are reassociated so constants and uniforms are added first; the output
is the last state word of the second hash, so rounds that cannot reach it
(the final three, and schedule words they alone use) are never emitted. This
is cpuminer's hand precomputation, derived instead of hand-written.
"""

from __future__ import annotations

from kernels.reference import H0, K

MASK32 = 0xFFFFFFFF
CONST, UNIFORM, VARYING = 0, 1, 2


class Node:
    __slots__ = ("op", "args", "kind", "value", "index")

    def __init__(self, op: str, args: tuple, kind: int, value: int | None = None) -> None:
        self.op = op  # 'const', 'input', 'nonce', 'add', 'xor', 'and', 'or', 'not', 'rotr', 'shr', 'bswap'
        self.args = args  # child nodes, plus an int shift count for rotr/shr
        self.kind = kind
        self.value = value  # for const nodes; input index for inputs
        self.index = -1


class Graph:
    """Builds nodes with constant folding and algebraic simplification."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def _new(self, op: str, args: tuple, kind: int, value: int | None = None) -> Node:
        node = Node(op, args, kind, value)
        node.index = len(self.nodes)
        self.nodes.append(node)
        return node

    def const(self, value: int) -> Node:
        return self._new("const", (), CONST, value & MASK32)

    def input(self, slot: int) -> Node:
        return self._new("input", (), UNIFORM, slot)

    def nonce_word(self) -> Node:
        """Header word 19 as SHA-256 reads it: the byte-swapped nonce."""
        return self._new("nonce", (), VARYING)

    def _binary(self, op: str, a: Node, b: Node) -> Node:
        if a.kind == CONST and b.kind == CONST:
            return self.const(_apply(op, (a.value, b.value)))
        return self._new(op, (a, b), max(a.kind, b.kind))

    def add(self, *terms: Node) -> Node:
        """A sum, reassociated so the nonce-independent part is one node."""
        const_sum = 0
        uniforms: list[Node] = []
        varying: list[Node] = []
        for t in terms:
            if t.kind == CONST:
                const_sum = (const_sum + t.value) & MASK32
            elif t.kind == UNIFORM:
                uniforms.append(t)
            else:
                varying.append(t)
        acc: Node | None = self.const(const_sum) if const_sum else None
        for t in uniforms + varying:
            acc = t if acc is None else self._binary("add", acc, t)
        return acc if acc is not None else self.const(0)

    def xor(self, a: Node, b: Node) -> Node:
        if a.kind == CONST and a.value == 0:
            return b
        if b.kind == CONST and b.value == 0:
            return a
        return self._binary("xor", a, b)

    def and_(self, a: Node, b: Node) -> Node:
        for x, y in ((a, b), (b, a)):
            if x.kind == CONST and x.value == 0:
                return x
            if x.kind == CONST and x.value == MASK32:
                return y
        return self._binary("and", a, b)

    def or_(self, a: Node, b: Node) -> Node:
        for x, y in ((a, b), (b, a)):
            if x.kind == CONST and x.value == 0:
                return y
        return self._binary("or", a, b)

    def rotr(self, a: Node, n: int) -> Node:
        if a.kind == CONST:
            return self.const(_apply("rotr", (a.value, n)))
        return self._new("rotr", (a, n), a.kind)

    def shr(self, a: Node, n: int) -> Node:
        if a.kind == CONST:
            return self.const(a.value >> n)
        return self._new("shr", (a, n), a.kind)

    # --- SHA-256 functions, in forms that fold well -------------------------------

    def ch(self, e: Node, f: Node, g: Node) -> Node:
        return self.xor(g, self.and_(e, self.xor(f, g)))

    def maj(self, a: Node, b: Node, c: Node) -> Node:
        return self.or_(self.and_(a, b), self.and_(c, self.or_(a, b)))

    def big_sigma0(self, x: Node) -> Node:
        return self.xor(self.xor(self.rotr(x, 2), self.rotr(x, 13)), self.rotr(x, 22))

    def big_sigma1(self, x: Node) -> Node:
        return self.xor(self.xor(self.rotr(x, 6), self.rotr(x, 11)), self.rotr(x, 25))

    def small_sigma0(self, x: Node) -> Node:
        return self.xor(self.xor(self.rotr(x, 7), self.rotr(x, 18)), self.shr(x, 3))

    def small_sigma1(self, x: Node) -> Node:
        return self.xor(self.xor(self.rotr(x, 17), self.rotr(x, 19)), self.shr(x, 10))

    def compress(self, state: list[Node], block: list[Node]) -> list[Node]:
        w = list(block)
        a, b, c, d, e, f, g, h = state
        for t in range(64):
            if t >= 16:  # schedule words made just in time: emitted code keeps few alive
                w.append(self.add(self.small_sigma1(w[t - 2]), w[t - 7], self.small_sigma0(w[t - 15]), w[t - 16]))
            t1 = self.add(self.const(K[t]), w[t], h, self.big_sigma1(e), self.ch(e, f, g))
            t2 = self.add(self.big_sigma0(a), self.maj(a, b, c))
            h, g, f = g, f, e
            e = self.add(d, t1)
            d, c, b = c, b, a
            a = self.add(t1, t2)
        return [self.add(s, v) for s, v in zip(state, (a, b, c, d, e, f, g, h), strict=True)]


def _apply(op: str, vals: tuple) -> int:
    if op == "add":
        return (vals[0] + vals[1]) & MASK32
    if op == "xor":
        return vals[0] ^ vals[1]
    if op == "and":
        return vals[0] & vals[1]
    if op == "or":
        return vals[0] | vals[1]
    if op == "rotr":
        x, n = vals
        return ((x >> n) | (x << (32 - n))) & MASK32
    if op == "shr":
        return vals[0] >> vals[1]
    if op == "bswap":
        return int.from_bytes(vals[0].to_bytes(4, "little"), "big")
    raise ValueError(op)


class Sha256dKernel:
    """The traced kernel: inputs are midstate[0..7] (slots 0-7) and the three
    tail words (slots 8-10); the output is the second hash's last state word."""

    def __init__(self) -> None:
        g = Graph()
        self.graph = g
        midstate = [g.input(i) for i in range(8)]
        tail = [g.input(8 + i) for i in range(3)]
        self.nonce = g.nonce_word()
        # Second 64-byte block of the header: tail, nonce, padding, length (640 bits).
        block2 = tail + [self.nonce, g.const(0x80000000)] + [g.const(0)] * 10 + [g.const(640)]
        first = g.compress(midstate, block2)
        # The 32-byte digest, padded to one block (length 256 bits).
        block3 = first + [g.const(0x80000000)] + [g.const(0)] * 6 + [g.const(256)]
        second = g.compress([g.const(h) for h in H0], block3)
        self.output = second[7]
        self.live = self._live_varying()
        self.frontier = self._frontier()

    def _live_varying(self) -> list[Node]:
        """Varying nodes the output depends on, in creation (topological) order."""
        seen: set[int] = set()
        stack = [self.output]
        while stack:
            n = stack.pop()
            if n.index in seen or n.kind != VARYING:
                continue
            seen.add(n.index)
            stack.extend(a for a in n.args if isinstance(a, Node))
        return [n for n in self.graph.nodes if n.index in seen]

    def _frontier(self) -> list[Node]:
        """Uniform nodes read by the vector code: computed once per work unit."""
        found: dict[int, Node] = {}
        for n in self.live:
            for a in n.args:
                if isinstance(a, Node) and a.kind == UNIFORM:
                    found[a.index] = a
        return [found[i] for i in sorted(found)]

    def evaluate_frontier(self, midstate: tuple[int, ...], tail: tuple[int, ...]) -> list[int]:
        inputs = list(midstate) + list(tail)
        cache: dict[int, int] = {}
        return [_evaluate(n, inputs, None, cache) for n in self.frontier]

    def evaluate_output(self, midstate: tuple[int, ...], tail: tuple[int, ...], nonce: int) -> int:
        """Whole graph in Python ints: the oracle for the tracing itself."""
        return _evaluate(self.output, list(midstate) + list(tail), nonce, {})


def _evaluate(node: Node, inputs: list[int], nonce: int | None, cache: dict[int, int]) -> int:
    # Iterative post-order walk: the graph is deep (thousands of nodes).
    stack = [node]
    while stack:
        n = stack[-1]
        if n.index in cache:
            stack.pop()
            continue
        pending = [a for a in n.args if isinstance(a, Node) and a.index not in cache]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        if n.op == "const":
            cache[n.index] = n.value
        elif n.op == "input":
            cache[n.index] = inputs[n.value]
        elif n.op == "nonce":
            if nonce is None:
                raise ValueError("a uniform value cannot depend on the nonce")
            cache[n.index] = _apply("bswap", (nonce,))
        else:
            cache[n.index] = _apply(n.op, tuple(cache[a.index] if isinstance(a, Node) else a for a in n.args))
    return cache[node.index]
