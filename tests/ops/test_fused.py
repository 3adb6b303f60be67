"""Fused kernels: several ops in one group (epilogues after conv and matmul, reductions of
elementwise producers, injective chains), and random DAGs of elementwise, broadcast, reduction
and data-movement ops, compiled and compared with the reference interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from ember.graph import GraphBuilder, TensorType

from .harness import Batch, check_graph, check_kernels_safe, random_array


def test_conv_epilogues():
    batch = Batch("fused_conv")
    for xs, ws, attrs in [((1, 8, 10, 10), (16, 8, 3, 3), dict(pads=(1, 1, 1, 1))),
                          ((1, 3, 9, 11), (5, 3, 3, 3), dict(strides=(2, 2), pads=(1, 1, 1, 1))),
                          ((1, 16, 12, 12), (16, 1, 3, 3), dict(groups=16, pads=(1, 1, 1, 1))),
                          ((2, 4, 7, 7), (8, 4, 1, 1), {})]:
        def f(c, xs=xs, ws=ws, attrs=attrs):
            x = c.input(xs)
            conv = c.op("conv2d", [x, c.const(c.rng.standard_normal(ws).astype(np.float32))], **attrs)
            bias = c.const(c.rng.standard_normal((1, ws[0], 1, 1)).astype(np.float32))
            y = c.op("relu", [c.op("add", [conv, bias])])
            res = c.input(conv.shape)
            return c.op("add", [y, res])
        batch.case(f"conv {list(xs)} {list(ws)} {attrs} -> add(bias) -> relu -> add(residual)", f,
                   rtol=1e-4, atol=1e-4)

    def bn(c):
        x = c.input((1, 8, 9, 9))
        conv = c.op("conv2d", [x, c.const(c.rng.standard_normal((8, 8, 3, 3)).astype(np.float32))], pads=(1, 1, 1, 1))
        ch = 8
        y = c.op("batch_norm", [conv, c.const(c.rng.uniform(0.5, 2, ch).astype(np.float32)),
                                c.const(c.rng.standard_normal(ch).astype(np.float32)),
                                c.const(c.rng.standard_normal(ch).astype(np.float32)),
                                c.const(c.rng.uniform(0.5, 2, ch).astype(np.float32))])
        return c.op("clip", [y], lo=0.0, hi=6.0)
    batch.case("conv -> batch_norm -> clip (relu6)", bn, rtol=1e-4, atol=1e-4)
    batch.check()


def test_matmul_epilogues():
    batch = Batch("fused_matmul")
    for sa, sb in [((7, 13), (13, 9)), ((16, 32), (32, 24)), ((2, 5, 8), (8, 16)), ((64, 128), (128, 64))]:
        def f(c, sa=sa, sb=sb):
            a = c.input(sa)
            mm = c.op("matmul", [a, c.const(c.rng.standard_normal(sb).astype(np.float32))])
            y = c.op("relu", [c.op("add", [mm, c.input((sb[-1],))])])
            return y
        batch.case(f"matmul {list(sa)}@{list(sb)} -> add -> relu", f, rtol=1e-4, atol=1e-4)

        def g(c, sa=sa, sb=sb):
            mm = c.op("matmul", [c.input(sa), c.input(sb)])
            return c.op("softmax", [mm], axis=-1)
        batch.case(f"matmul {list(sa)}@{list(sb)} -> softmax", g, rtol=1e-4, atol=1e-5)

    def gelu(c):
        x = c.op("matmul", [c.input((6, 16)), c.input((16, 8))])
        inner = c.op("erf", [c.op("mul", [x, c.const(np.float32(0.7071067811865476))])])
        return c.op("mul", [c.op("mul", [x, c.const(np.float32(0.5))]),
                            c.op("add", [inner, c.const(np.float32(1.0))])])
    batch.case("matmul -> gelu", gelu, rtol=1e-4, atol=1e-5)
    batch.check()


def test_reductions_of_elementwise():
    batch = Batch("fused_reduce")
    for shape, axes in [((7, 13), (1,)), ((4, 5, 6), (0, 2)), ((64, 1000), (1,)), ((3, 37), (0,))]:
        batch.case(f"reduce_mean(x*x) {list(shape)} axes={axes}",
                   lambda c, shape=shape, axes=axes: (lambda x: c.op("reduce_mean", [c.op("mul", [x, x])], axes=axes))(
                       c.input(shape)), rtol=1e-4, atol=1e-5)
        batch.case(f"reduce_sum(exp(x - 1)) {list(shape)} axes={axes}",
                   lambda c, shape=shape, axes=axes: c.op("reduce_sum", [c.op("exp", [c.op(
                       "sub", [c.input(shape), c.const(np.float32(1))])])], axes=axes, keepdims=False),
                   rtol=1e-4, atol=1e-4)
        batch.case(f"reduce_max(abs(x) * y) {list(shape)} axes={axes}",
                   lambda c, shape=shape, axes=axes: c.op("reduce_max", [c.op("mul", [
                       c.op("abs", [c.input(shape)]), c.input(shape[-1:])])], axes=axes))

    def norm(c):
        x = c.input((5, 24))
        mean = c.op("reduce_mean", [x], axes=(1,))
        d = c.op("sub", [x, mean])
        var = c.op("reduce_mean", [c.op("mul", [d, d])], axes=(1,))
        return c.op("div", [d, c.op("sqrt", [c.op("add", [var, c.const(np.float32(1e-5))])])])
    batch.case("decomposed layer norm", norm, rtol=1e-4, atol=1e-5)
    batch.check()


def test_injective_chains():
    batch = Batch("fused_injective")

    def chain(c):
        x = c.input((2, 3, 4, 5))
        t = c.op("transpose", [x], perm=(0, 2, 3, 1))            # 2, 4, 5, 3
        r = c.op("reshape", [t], shape=(8, 15))
        s = c.op("slice", [r], starts=(7, 1), ends=(-1, 15), steps=(-2, 3))  # 4, 5
        return c.op("concat", [s, c.op("neg", [s]), c.input((4, 2))], axis=1)
    batch.case("transpose -> reshape -> slice -> concat", chain)

    def chain2(c):
        x = c.input((6, 7))
        p = c.op("pad", [x], pads=(1, 2, 0, 1))
        t = c.op("transpose", [p], perm=(1, 0))
        g = c.op("gather", [t, c.input((5,), "int64", data=[0, -1, 3, 9, 2])], axis=0)
        return c.op("broadcast_to", [c.op("reshape", [g], shape=(1, 5, 7))], shape=(3, 5, 7))
    batch.case("pad -> transpose -> gather -> reshape -> broadcast_to", chain2)

    def chain3(c):
        x = c.input((16, 33))
        y = c.op("slice", [x], starts=(0, 32), ends=(16, -1), steps=(1, -1))
        z = c.op("pad", [y], pads=(0, 3, 0, 4), mode="reflect")
        return c.op("add", [c.op("transpose", [z], perm=(1, 0)), c.input((40, 1))])
    batch.case("slice reversed -> reflect pad -> transpose -> add", chain3)

    def big(c):
        x = c.input((64, 1000))
        t = c.op("transpose", [c.op("reshape", [x], shape=(64, 10, 100))], perm=(1, 0, 2))
        return c.op("relu", [c.op("concat", [t, t], axis=2)])
    batch.case("reshape -> transpose -> concat -> relu [64, 1000]", big)
    batch.check()


def test_where_cast_compare_chain():
    batch = Batch("fused_mixed_dtypes")

    def f(c):
        x, y = c.input((9, 17)), c.input((17,))
        m = c.op("greater", [x, y])
        i = c.op("cast", [m], to="int32")
        s = c.op("reduce_sum", [i], axes=(0,), keepdims=False)
        return [c.op("where", [m, x, c.op("mul", [y, y])]), s]
    batch.case("greater -> cast -> reduce_sum, where", f)

    def g(c):
        x = c.input((5, 11), "int64")
        q = c.op("div", [x, c.input((11,), "int64", low=1, high=5)])
        r = c.op("fmod", [x, c.const(np.int64(3))])
        return c.op("cast", [c.op("add", [q, r])], to="float32")
    batch.case("int64 div/fmod -> cast", g)
    batch.check()


# ---------------------------------------------------------------------------------------------
# random DAGs

UNARY = ["relu", "neg", "abs", "tanh", "sigmoid", "exp", "sin", "floor", "sqrt_abs", "log_abs"]
BINARY = ["add", "sub", "mul", "maximum", "minimum", "div_safe"]
REDUCE = ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min"]


class _RandomDag:
    """~10 ops of elementwise, broadcast, reduction and data-movement kinds over random shapes."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(1000 + seed)
        self.b = GraphBuilder(f"dag{seed}")
        self.feeds: dict = {}
        self.pool: list = []

    def r(self, lo, hi):
        return int(self.rng.integers(lo, hi + 1))

    def input(self, shape):
        v = self.b.input(f"x{len(self.feeds)}", TensorType(tuple(shape), "float32"))
        self.feeds[v.name] = random_array(self.rng, shape, "float32")
        self.pool.append(v)
        return v

    def pick(self):
        pool = [v for v in self.pool if v.dtype == "float32"]
        w = np.arange(1, len(pool) + 1, dtype=np.float64) ** 2
        return pool[int(self.rng.choice(len(pool), p=w / w.sum()))]

    def op(self, name, inputs, **attrs):
        v = self.b.op(name, inputs, **attrs)
        self.pool.append(v)
        return v

    def bcast_shape(self, shape):
        s = [1 if self.rng.random() < 0.4 else d for d in shape]
        return tuple(s[self.r(0, len(s)):]) if self.rng.random() < 0.3 else tuple(s)

    def step(self):
        x = self.pick()
        kind = self.rng.choice(["unary", "binary", "binary", "reduce", "move", "mixed"])
        shape = x.shape
        if kind == "unary":
            u = str(self.rng.choice(UNARY))
            if u == "sqrt_abs":
                return self.op("sqrt", [self.op("abs", [x])])
            if u == "log_abs":
                return self.op("log", [self.op("add", [self.op("abs", [x]), self.b.const(np.float32(1.0))])])
            if u == "exp":
                return self.op("exp", [self.op("tanh", [x])])
            return self.op(u, [x])
        if kind == "binary":
            bop = str(self.rng.choice(BINARY))
            others = [v for v in self.pool if v is not x and v.dtype == "float32" and _broadcastable(v.shape, shape)]
            if others and self.rng.random() < 0.6:
                y = others[int(self.rng.integers(len(others)))]
            else:
                y = self.input(self.bcast_shape(shape))
            if self.rng.random() < 0.5:
                x, y = y, x
            if bop == "div_safe":
                den = self.op("add", [self.op("abs", [y]), self.b.const(np.float32(0.5))])
                return self.op("div", [x, den])
            return self.op(bop, [x, y])
        if kind == "mixed":
            m = str(self.rng.choice(["where", "cast", "gather", "argmax", "clip", "softmax"]))
            if m == "where":
                y = self.input(self.bcast_shape(shape))
                return self.op("where", [self.op("greater", [x, y]), x, self.op("neg", [y])])
            if m == "cast":
                i = self.op("cast", [self.op("mul", [x, self.b.const(np.float32(4.0))])], to="int32")
                return self.op("cast", [self.op("add", [i, self.b.const(np.int32(1))])], to="float32")
            if m == "clip":
                return self.op("clip", [x], lo=-0.5, hi=0.75)
            if len(shape) == 0:
                return self.op("sigmoid", [x])
            ax = self.r(0, len(shape) - 1)
            if m == "gather":
                n = shape[ax]
                idx = self.b.const(self.rng.integers(-n, n, self.r(1, 5)).astype(np.int64))
                return self.op("gather", [x, idx], axis=ax)
            if m == "softmax":
                return self.op("softmax", [x], axis=ax, log=bool(self.rng.random() < 0.3))
            am = self.op("argmax", [x], axis=ax, keepdims=bool(self.rng.random() < 0.5))
            return self.op("cast", [am], to="float32")
        if kind == "reduce" and len(shape) >= 1:
            axes = tuple(sorted(set(int(a) for a in self.rng.choice(len(shape), self.r(1, len(shape)), replace=False))))
            return self.op(str(self.rng.choice(REDUCE)), [x], axes=axes, keepdims=bool(self.rng.random() < 0.5))
        if len(shape) == 0:
            return self.op("reshape", [x], shape=(1, 1))
        m = self.rng.choice(["transpose", "reshape", "slice", "concat", "pad", "broadcast_to"])
        if m == "transpose":
            return self.op("transpose", [x], perm=tuple(int(p) for p in self.rng.permutation(len(shape))))
        if m == "reshape":
            n = int(np.prod(shape))
            divs = [d for d in range(1, n + 1) if n % d == 0]
            d = divs[int(self.rng.integers(len(divs)))]
            return self.op("reshape", [x], shape=(d, n // d) if self.rng.random() < 0.7 else (n,))
        if m == "slice":
            st, en, sp = [], [], []
            for d in shape:
                if d > 1 and self.rng.random() < 0.6:
                    step = int(self.rng.choice([1, 2, -1, -2]))
                    if step > 0:
                        st.append(self.r(0, d - 1)), en.append(self.r(st[-1] + 1, d)), sp.append(step)
                    else:
                        st.append(self.r(1, d - 1)), en.append(self.r(-1, st[-1] - 1)), sp.append(step)
                else:
                    st.append(0), en.append(d), sp.append(1)
            return self.op("slice", [x], starts=tuple(st), ends=tuple(en), steps=tuple(sp))
        if m == "concat":
            ax = self.r(0, len(shape) - 1)
            other = list(shape)
            other[ax] = self.r(1, 4)
            return self.op("concat", [x, self.input(other), x], axis=ax)
        if m == "pad":
            pads = tuple(self.r(0, 2) for _ in range(2 * len(shape)))
            mode = str(self.rng.choice(["constant", "edge", "wrap"]))
            return self.op("pad", [x], pads=pads, mode=mode)
        return self.op("broadcast_to", [x], shape=(self.r(1, 3),) + tuple(shape))


def _broadcastable(a, b):
    if len(a) > len(b):
        return False
    return all(d == 1 or d == e for d, e in zip(a, b[len(b) - len(a):]))


def random_dag(seed: int, n_ops: int = 10):
    g = _RandomDag(seed)
    rank = g.r(1, 4)
    g.input(tuple(int(g.rng.choice([1, 2, 3, 5, 7, 8, 13, 16, 17, 33])) for _ in range(rank)))
    for _ in range(n_ops):
        g.step()
        if int(np.prod(g.pool[-1].shape)) > 20000 or len(g.pool[-1].shape) > 5:
            g.op("reduce_sum", [g.pool[-1]], axes=(0,), keepdims=False)
    users = {id(v) for n in g.b.nodes for v in n.inputs}
    outs = [v for v in g.pool if v.producer is not None and id(v) not in users]
    return g.b.finish(outs or [g.pool[-1]]), g.feeds


@pytest.mark.parametrize("seed", range(20))
def test_random_dag(seed):
    graph, feeds = random_dag(seed)
    check_graph(graph, feeds, rtol=1e-4, atol=1e-4)
    check_kernels_safe(graph, limit=20000)


@pytest.mark.parametrize("seed", range(5))
def test_random_dag_unoptimized(seed):
    """The same DAGs with no graph passes at all (opt level 0): every op its own kernel or
    fused as written."""
    graph, feeds = random_dag(100 + seed)
    check_graph(graph, feeds, rtol=1e-4, atol=1e-4, opt_level=0)


def test_names_that_are_c_identifiers():
    """Node and input names that are C keywords, libc functions, names of the generated file
    (entry, arena) or start with an underscore still make a valid, correct program."""
    b = GraphBuilder("int")
    names = ["int", "exp", "main", "_x", "ember_model_entry", "memcpy", "arena", "inputs", "outputs", "i0", "_b",
             "_a", "restrict", "expf", "k_exp", "tanh", "malloc", "INFINITY"]
    ins = [b.input(n, TensorType((3, 9), "float32")) for n in names[:6]]
    x = ins[0]
    for k, n in enumerate(names):
        x = b.op("exp" if k % 2 else "add", [x] if k % 2 else [x, ins[k % 6]], name=n)
    y = b.op("reduce_sum", [x], axes=(1,), name="free")
    rng = np.random.default_rng(0)
    feeds = {v.name: (rng.random((3, 9)) * 0.01).astype(np.float32) for v in ins}
    check_graph(b.finish([x, y]), feeds)
