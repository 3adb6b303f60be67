"""Random graphs for differential tests of the text form and the passes.

``random_graph(seed)`` builds a graph of elementwise, broadcast, reduction, transform and
neural-network ops over random shapes with GraphBuilder, and seeds it with the situations the
passes look for: constant-only subexpressions, duplicated nodes, no-op arithmetic, chains of
reshapes and transposes, conv2d followed by batch norm.  ``random_inputs`` makes inputs for it.
"""

from __future__ import annotations

import numpy as np

from ember.graph import Graph, GraphBuilder, TensorType, Value
from ember.graph.types import np_dtype

UNARY = ["relu", "neg", "abs", "tanh", "sigmoid", "sin", "cos", "floor"]
BINARY = ["add", "sub", "mul", "maximum", "minimum"]
REDUCE = ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min"]


class _Gen:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.b = GraphBuilder(f"random{seed}")
        self.pool: list[Value] = []

    # -- helpers ---------------------------------------------------------------------------

    def r(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def pick(self, pred=lambda v: True) -> Value | None:
        cands = [v for v in self.pool if pred(v)]
        if not cands:
            return None
        # prefer recent values, so that graphs are deep rather than wide
        w = np.arange(1, len(cands) + 1, dtype=np.float64) ** 2
        return cands[int(self.rng.choice(len(cands), p=w / w.sum()))]

    def add(self, v: Value) -> Value:
        self.pool.append(v)
        return v

    def op(self, op: str, inputs, **attrs) -> Value:
        return self.add(self.b.op(op, inputs, **attrs))

    def const(self, shape, scale: float = 1.0, positive: bool = False, dtype: str = "float32") -> Value:
        a = self.rng.standard_normal(shape) * scale
        if positive:
            a = np.abs(a) + 0.5
        return self.b.const(np.asarray(a).astype(dtype), name="c")

    def bcast_shape(self, shape) -> tuple:
        """A shape that broadcasts to ``shape``: some dims 1, maybe fewer leading dims."""
        s = [1 if self.chance(0.4) else d for d in shape]
        drop = self.r(0, len(s)) if self.chance(0.3) else 0
        return tuple(s[drop:])

    # -- steps -----------------------------------------------------------------------------

    def unary(self):
        v = self.pick()
        self.op(str(self.rng.choice(UNARY)), [v])

    def binary(self):
        v = self.pick()
        op = str(self.rng.choice(BINARY))
        if self.chance(0.5):
            other = self.pick(lambda u: u.type.shape == self.bcast_shape_of(u, v) and u is not v)
            if other is not None:
                self.op(op, [v, other] if self.chance(0.5) else [other, v])
                return
        c = self.const(self.bcast_shape(v.shape))
        self.op(op, [v, c] if self.chance(0.7) else [c, v])

    def bcast_shape_of(self, u: Value, v: Value):
        """u's shape if u broadcasts into v without enlarging it, else None."""
        su, sv = u.type.shape, v.type.shape
        if len(su) > len(sv):
            return None
        off = len(sv) - len(su)
        if all(d == 1 or d == sv[off + k] for k, d in enumerate(su)):
            return su
        return None

    def divide(self):
        v = self.pick()
        self.op("div", [v, self.const(self.bcast_shape(v.shape), positive=True)])

    def reduce(self):
        v = self.pick(lambda u: u.type.rank >= 1)
        if v is None:
            return
        axes = tuple(int(a) for a in np.flatnonzero(self.rng.random(v.type.rank) < 0.5))
        if not axes:
            axes = (self.r(0, v.type.rank - 1),)
        if self.chance(0.3):
            axes = tuple(a - v.type.rank for a in axes)
        self.op(str(self.rng.choice(REDUCE)), [v], axes=axes, keepdims=self.chance(0.5))

    def reshape(self):
        v = self.pick(lambda u: u.type.rank >= 1)
        if v is None:
            return
        s = list(v.shape)
        kind = self.r(0, 3)
        if kind == 0:
            new = [v.type.size]
        elif kind == 1 and len(s) >= 2:
            k = self.r(0, len(s) - 2)
            new = s[:k] + [s[k] * s[k + 1]] + s[k + 2:]
        elif kind == 2:
            k = self.r(0, len(s))
            new = s[:k] + [1] + s[k:]
        else:
            new = s[::-1] if self.chance(0.5) else [v.type.size, 1]
        out = self.op("reshape", [v], shape=tuple(new))
        if self.chance(0.3):  # reshape of a reshape
            self.op("reshape", [out], shape=tuple(s))

    def transpose(self):
        v = self.pick(lambda u: u.type.rank >= 2)
        if v is None:
            return
        perm = tuple(int(p) for p in self.rng.permutation(v.type.rank))
        out = self.op("transpose", [v], perm=perm)
        if self.chance(0.4):  # transpose of a transpose
            self.op("transpose", [out], perm=tuple(int(p) for p in self.rng.permutation(v.type.rank)))

    def slice(self):
        v = self.pick(lambda u: u.type.rank >= 1 and all(d >= 2 for d in u.shape))
        if v is None:
            return
        st, en, sp = [], [], []
        for d in v.shape:
            if self.chance(0.3):
                st.append(d - 1), en.append(-1), sp.append(-1)
            else:
                s = self.r(0, d - 2)
                st.append(s), en.append(self.r(s + 1, d)), sp.append(self.r(1, 2))
        self.op("slice", [v], starts=tuple(st), ends=tuple(en), steps=tuple(sp))

    def concat(self):
        v = self.pick(lambda u: u.type.rank >= 1)
        if v is None:
            return
        ax = self.r(0, v.type.rank - 1)
        other = self.pick(lambda u: u.type.rank == v.type.rank and u.dtype == v.dtype and all(
            d == e for k, (d, e) in enumerate(zip(u.shape, v.shape)) if k != ax))
        self.op("concat", [v, other, self.const(v.shape)] if self.chance(0.3) else [v, other], axis=ax)

    def pad(self):
        v = self.pick(lambda u: u.type.rank >= 1)
        if v is None:
            return
        pads = tuple(self.r(0, 2) for _ in range(2 * v.type.rank))
        self.op("pad", [v], pads=pads, value=float(self.rng.choice([0.0, 1.5])))

    def broadcast(self):
        v = self.pick(lambda u: u.type.rank <= 3)
        if v is None:
            return
        shape = tuple(self.r(2, 3) if d == 1 else d for d in v.shape)
        self.op("broadcast_to", [v], shape=(self.r(1, 2),) + shape)

    def conv(self):
        v = self.pick(lambda u: u.type.rank == 4 and u.shape[2] >= 3 and u.shape[3] >= 3)
        if v is None:
            v = self.add(self.b.input("img", TensorType((self.r(1, 2), self.r(2, 4), self.r(4, 7), self.r(4, 7)),
                                                        "float32")))
        c = v.shape[1]
        g = c if self.chance(0.2) else 1
        o = g * self.r(1, 3) if g > 1 else self.r(2, 5)
        k = self.r(1, 3)
        w = self.const((o, c // g, k, k), scale=1 / np.sqrt(c * k * k))
        p = self.r(0, 1)
        out = self.op("conv2d", [v, w], strides=(self.r(1, 2),) * 2, pads=(p,) * 4, groups=g)
        if self.chance(0.3):
            out = self.op("add", [out, self.const((1, o, 1, 1))])
        if self.chance(0.6):
            self.op("batch_norm", [out, self.const((o,)), self.const((o,)), self.const((o,)),
                                   self.const((o,), positive=True)], epsilon=1e-3)
        if self.chance(0.5):
            self.op("relu", [self.pool[-1]])

    def matmul(self):
        v = self.pick(lambda u: u.type.rank >= 2)
        if v is None:
            return
        k = v.shape[-1]
        self.op("matmul", [v, self.const((k, self.r(1, 4)), scale=1 / np.sqrt(k))])

    def batch_norm(self):
        v = self.pick(lambda u: u.type.rank >= 2)
        if v is None:
            return
        c = v.shape[1]
        params = [self.const((c,)), self.const((c,)), self.const((c,)), self.const((c,), positive=True)]
        if self.chance(0.3):  # non-constant parameters: a graph input
            params[0] = self.b.input("gamma", TensorType((c,), "float32"))
        self.op("batch_norm", [v] + params)

    def softmax(self):
        v = self.pick(lambda u: u.type.rank >= 1)
        if v is None:
            return
        self.op("softmax", [v], axis=self.r(-v.type.rank, v.type.rank - 1), log=self.chance(0.3))

    def constant_subgraph(self):
        v = self.pick()
        shape = self.bcast_shape(v.shape)
        c = self.b.op(str(self.rng.choice(["tanh", "neg", "abs"])), [self.const(shape)])
        c = self.b.op(str(self.rng.choice(BINARY)), [c, self.const(shape)])
        self.op("mul", [v, c])

    def duplicate(self):
        """Repeat an existing node (same op, inputs, attrs): work for CSE."""
        n = self.pick(lambda u: u.producer is not None)
        if n is None:
            return
        node = n.producer
        twin = self.b.op(node.op, node.inputs, **node.attrs)
        self.op("add", [n, twin])

    def no_op(self):
        v = self.pick()
        kind = self.r(0, 5)
        if kind == 0:
            self.op("mul", [v, self.b.const(np.ones(self.bcast_shape(v.shape), "float32"), name="one")])
        elif kind == 1:
            self.op("add", [self.b.const(np.full(self.bcast_shape(v.shape), -0.0, "float32"), name="zero"), v])
        elif kind == 2:
            self.op("sub", [v, self.b.const(np.zeros((), "float32"), name="zero")])
        elif kind == 3:
            self.op("cast", [v], to="float32")
        elif kind == 4:
            i = self.b.op("cast", [v], to="int32")
            i = self.b.op("add", [i, self.b.const(np.zeros((1,), "int32"), name="izero")])
            self.op("cast", [i], to="float32")
        else:
            self.op("reshape", [v], shape=v.shape)

    STEPS = {
        "unary": 3, "binary": 4, "divide": 1, "reduce": 2, "reshape": 2, "transpose": 2, "slice": 1,
        "concat": 1, "pad": 1, "broadcast": 1, "conv": 2, "matmul": 1, "batch_norm": 1, "softmax": 1,
        "constant_subgraph": 1, "duplicate": 1, "no_op": 2,
    }

    def build(self, steps: int) -> Graph:
        self.add(self.b.input("x", TensorType((self.r(1, 2), self.r(2, 4), self.r(3, 6), self.r(3, 6)), "float32")))
        if self.chance(0.5):
            self.add(self.b.input("y", TensorType((self.r(2, 5), self.r(2, 5)), "float32")))
        names = list(self.STEPS)
        w = np.array([self.STEPS[k] for k in names], dtype=np.float64)
        for _ in range(steps):
            getattr(self, names[int(self.rng.choice(len(names), p=w / w.sum()))])()
        produced = [v for v in self.pool if v.producer is not None]
        outs = [self.pool[-1]]
        for _ in range(self.r(0, 2)):
            v = produced[int(self.rng.integers(len(produced)))] if produced else None
            if v is not None and v not in outs:
                outs.append(v)
        return self.b.finish(outs)


def random_graph(seed: int, steps: int | None = None) -> Graph:
    gen = _Gen(seed)
    return gen.build(steps if steps is not None else gen.r(4, 16))


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for v in graph.inputs:
        a = rng.standard_normal(v.type.shape) * 2
        out[v.name] = a.astype(np_dtype(v.dtype))
    return out


def assert_same_results(a: Graph, b: Graph, inputs, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    from ember.graph import run_graph

    ra, rb = run_graph(a, inputs), run_graph(b, inputs)
    assert len(ra) == len(rb)
    for k, (x, y) in enumerate(zip(ra, rb)):
        assert x.dtype == y.dtype and x.shape == y.shape, f"output {k}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}"
        np.testing.assert_allclose(y, x, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"output {k}")


def assert_rewrites(pass_fn, before: str, after: str, inputs=None) -> Graph:
    """``pass_fn(parse(before))`` prints as ``parse(after)`` does, is well formed, leaves its
    input alone and computes what ``before`` computes."""
    from ember.graph.text import parse_graph, print_graph
    from ember.graph.verify import verify

    g = parse_graph(before)
    text_before = print_graph(g)
    out = pass_fn(g)
    verify(out)
    assert print_graph(g) == text_before, "the pass modified its input graph"
    got, want = print_graph(out), print_graph(parse_graph(after))
    assert got == want, f"--- got\n{got}--- want\n{want}"
    assert_same_results(g, out, inputs if inputs is not None else random_inputs(g))
    return out
