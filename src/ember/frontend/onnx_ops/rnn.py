"""ONNX RNN, GRU and LSTM, unrolled over the sequence length into matmuls and elementwise gate
arithmetic.  ``sequence_lens`` is honoured with masks: past its length a sequence keeps its
state and outputs zeros.  The batch may be symbolic; a symbolic sequence length with a bound of
at most ``MAX_UNROLL`` is unrolled to it (the input zero-padded to it, the steps past the actual
length masked like those past ``sequence_lens``, the output sliced back); a longer one, or one
without a bound, runs as a ``loop`` of the artifact over the step (one per direction), the input
projections computed for all steps at once before it."""

from __future__ import annotations

import numpy as np

from ... import limits
from ...graph.builder import GraphBuilder
from ...graph.types import TensorType
from ...symbolic import Sym, compare, dim_range
from . import translates
from .control import MAX_UNROLL, pad_to
from .tensor import _dim_tensor, reshape

# activation -> (uses alpha, uses beta, default alpha, default beta)
_ACTIVATIONS = {
    "Relu": (False, False, None, None), "Tanh": (False, False, None, None), "Sigmoid": (False, False, None, None),
    "Softsign": (False, False, None, None), "Softplus": (False, False, None, None),
    "Affine": (True, True, 1.0, 0.0), "LeakyRelu": (True, False, 0.01, None),
    "ThresholdedRelu": (True, False, 1.0, None), "ScaledTanh": (True, True, 1.0, 1.0),
    "HardSigmoid": (True, True, 0.2, 0.5), "Elu": (True, False, 1.0, None),
}


def _activation_list(cx, defaults: list[str], num_dirs: int):
    names = cx.attr("activations", None) or defaults * num_dirs
    if len(names) == len(defaults) and num_dirs == 2:
        names = names * 2
    if len(names) != len(defaults) * num_dirs:
        raise cx.fail(f"needs {len(defaults) * num_dirs} activations, got {names}")
    alphas = list(cx.attr("activation_alpha", []))
    betas = list(cx.attr("activation_beta", []))
    out = []
    for name in names:
        key = next((k for k in _ACTIVATIONS if k.lower() == name.lower()), None)
        if key is None:
            raise cx.unsupported(f"activation {name!r}")
        ua, ub, da, db = _ACTIVATIONS[key]
        a = (alphas.pop(0) if alphas else da) if ua else None
        b = (betas.pop(0) if betas else db) if ub else None
        out.append((key, a, b))
    return out


def _apply(cx, act, x):
    name, a, b = act
    s = lambda v: cx.scalar(v, x.dtype)  # noqa: E731
    if name in ("Relu", "Tanh", "Sigmoid"):
        return cx.op(name.lower(), [x])
    if name == "Softsign":
        return cx.op("div", [x, cx.op("add", [cx.op("abs", [x]), s(1)])])
    if name == "Softplus":
        t = cx.op("exp", [cx.op("neg", [cx.op("abs", [x])])])
        return cx.op("add", [cx.op("relu", [x]), cx.op("log", [cx.op("add", [t, s(1)])])])
    if name == "Affine":
        return cx.op("add", [cx.op("mul", [x, s(a)]), s(b)])
    if name == "LeakyRelu":
        return cx.op("where", [cx.op("less", [x, s(0)]), cx.op("mul", [x, s(a)]), x])
    if name == "ThresholdedRelu":
        return cx.op("where", [cx.op("greater", [x, s(a)]), x, s(0)])
    if name == "ScaledTanh":
        return cx.op("mul", [cx.op("tanh", [cx.op("mul", [x, s(b)])]), s(a)])
    if name == "HardSigmoid":
        return cx.op("clip", [cx.op("add", [cx.op("mul", [x, s(a)]), s(b)])], lo=0.0, hi=1.0)
    # Elu
    em1 = cx.op("sub", [cx.op("exp", [x]), s(1)])
    return cx.op("where", [cx.op("less", [x, s(0)]), cx.op("mul", [em1, s(a)]), x])


class _Cell:
    """What the three recurrences share: inputs, layout, directions, per-step helpers."""

    def __init__(self, cx, gates: int, default_acts: list[str]):
        self.cx = cx
        x = cx.input(0)
        if x.type.rank != 3:
            raise cx.fail(f"X must be 3-D, got {x.type}")
        self.layout = cx.attr("layout", 0)
        if self.layout:
            x = cx.op("transpose", [x], perm=(1, 0, 2))
        seq, self.batch, self.input_size = x.shape
        if isinstance(self.input_size, Sym):
            raise cx.fail(f"the input size of X {x.type} must be static (it is the width of W)")
        # a symbolic length: unrolled to a small bound over the input padded with zeros, else
        # (no bound, or a larger one) run as a loop of the artifact
        self.length = seq
        hi = dim_range(seq, dict(cx.bounds.items()))[1] if isinstance(seq, Sym) else None
        self.looped = isinstance(seq, Sym) and (hi is None or hi > MAX_UNROLL)
        if isinstance(seq, Sym) and not self.looped:
            bound = cx.unrolled_length(seq, f"the sequence of X {x.type}")
            limits.check_count("loop_iterations", bound, "the number of steps unrolled", node=cx.name, op=cx.op_type)
            x = pad_to(cx, x, 0, bound)
            seq = bound
        self.x = x
        self.seq = seq
        self.w, self.r = cx.input(1), cx.input(2)
        self.b = cx.input(3, required=False)
        self.h = int(cx.attr("hidden_size", self.r.shape[-1]))
        direction = cx.attr("direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise cx.fail(f"unknown direction {direction!r}")
        self.dirs = ["forward", "reverse"] if direction == "bidirectional" else [direction]
        nd = len(self.dirs)
        self.gates = gates
        self.check_weights(nd)
        self.acts = _activation_list(cx, default_acts, nd)
        self.clip = cx.attr("clip", None)
        self.mask = None
        lens = cx.input(4, required=False)
        if lens is not None:
            lens = reshape(cx, cx.op("cast", [lens], to="int64"), (self.batch, 1))
        if isinstance(self.length, Sym) and not self.looped:
            n = _dim_tensor(cx, self.length)
            lens = n if lens is None else cx.op("minimum", [lens, n])
        self.lens = lens
        if lens is not None and not self.looped:
            self.mask = [cx.op("less", [cx.scalar(t, "int64"), lens]) for t in range(self.seq)]

    def check_weights(self, nd: int) -> None:
        if tuple(self.w.shape) != (nd, self.gates * self.h, self.input_size) or \
                tuple(self.r.shape) != (nd, self.gates * self.h, self.h):
            raise self.cx.fail(f"W {self.w.type} / R {self.r.type} do not match {self.gates} gates of hidden size {self.h}")

    def input_product(self, x2, d: int):
        """x2 [rows, input] times direction d's input weights: [rows, gates*hidden]."""
        return self.cx.op("matmul", [x2, self.cx.op("transpose", [self.take(self.w, d)], perm=(1, 0))])

    def recurrent_product(self, h, d: int, rt):
        """h [batch, hidden] times direction d's recurrence weights (``rt``: R[d] transposed)."""
        return self.cx.op("matmul", [h, rt])

    def initial(self, k: int, d: int):
        v = self.cx.input(k, required=False)
        if v is None:
            if isinstance(self.batch, Sym):
                return self.cx.op("broadcast_to", [self.cx.scalar(0, self.x.dtype)], shape=(self.batch, self.h))
            return self.cx.const(np.zeros((self.batch, self.h), dtype=self.x.dtype), self.x.dtype)
        if self.layout:
            v = self.cx.op("transpose", [v], perm=(1, 0, 2))
        if v.type.rank == 3 and (isinstance(self.batch, Sym) or isinstance(v.shape[1], Sym)) \
                and compare(self.batch - v.shape[1], "==", 0, None) is not True:
            # a state of another batch (a fixed one, or a symbol of its own, as a separate graph
            # input gives): the input's batch must be that (as onnxruntime requires), which the
            # run checks; the state then takes the input's batch
            self.cx.require(self.batch - v.shape[1], "==", f"the batch {self.batch} of the input to be the "
                                                           f"{v.shape[1]} of the initial state {v.type}")
            return self.cx.op("reshape", [self.take(v, d)], shape=(self.batch, v.shape[2]), checked=True)
        return self.take(v, d)

    def take(self, v, d: int, lo: int | None = None, hi: int | None = None):
        """v[d] (v[d, lo:hi] along the last axis) without the leading direction axis."""
        shape = list(v.shape)
        starts = [d] + [0] * (len(shape) - 1)
        ends = [d + 1] + shape[1:]
        if lo is not None:
            starts[-1], ends[-1] = lo, hi
        s = self.cx.op("slice", [v], starts=tuple(starts), ends=tuple(ends), steps=(1,) * len(shape))
        return reshape(self.cx, s, s.shape[1:])

    def gate(self, v, g: int):
        """Gate ``g`` of a [batch, gates*hidden] value."""
        return self.cx.op("slice", [v], starts=(0, g * self.h), ends=(self.batch, (g + 1) * self.h), steps=(1, 1))

    def projections(self, d: int):
        """X W^T + Wb for every step at once, and R^T, Rb for the steps: [seq][batch, gates*hidden]."""
        cx = self.cx
        gh = self.gates * self.h
        rt = cx.op("transpose", [self.take(self.r, d)], perm=(1, 0))
        xw = self.input_product(reshape(cx, self.x, (self.seq * self.batch, self.input_size)), d)
        wb = rb = None
        if self.b is not None:
            wb = self.take(self.b, d, 0, gh)
            rb = self.take(self.b, d, gh, 2 * gh)
            xw = cx.op("add", [xw, wb])
        xw = reshape(cx, xw, (self.seq, self.batch, gh))
        if self.looped:
            return _Rows(cx, xw), rt, rb
        steps = [reshape(cx, cx.op("slice", [xw], starts=(t, 0, 0), ends=(t + 1, self.batch, gh), steps=(1, 1, 1)),
                         (self.batch, gh)) for t in range(self.seq)]
        return steps, rt, rb

    def clipped(self, v):
        if self.clip is None:
            return v
        return self.cx.op("clip", [v], lo=-float(self.clip), hi=float(self.clip))

    def run(self, step):
        """Unroll ``step(d, t, xw_t, state) -> (h_t, new_state)`` over every direction; returns
        Y [seq, dirs, batch, hidden] and the final states stacked per direction."""
        cx = self.cx
        if self.looped:
            return self.finish(*self.run_looped(step))
        ys, finals = [], []
        for d, direction in enumerate(self.dirs):
            state = self.start_state(d)
            out = [None] * self.seq
            order = range(self.seq) if direction == "forward" else range(self.seq - 1, -1, -1)
            for t in order:
                h_t, new = step(d, t, state)
                if self.mask is not None:
                    m = self.mask[t]
                    new = tuple(cx.op("where", [m, n, o]) for n, o in zip(new, state))
                    h_t = cx.op("where", [m, h_t, cx.scalar(0, h_t.dtype)])
                state = new
                out[t] = h_t
            ys.append(cx.op("concat", [reshape(cx, o, (1, 1, self.batch, self.h)) for o in out], axis=0)
                      if self.seq else None)
            finals.append(state)
        y = ys[0] if len(ys) == 1 else cx.op("concat", ys, axis=1)
        if isinstance(self.length, Sym):
            y = cx.op("slice", [y], starts=(0, 0, 0, 0), ends=(self.length,) + tuple(y.shape[1:]), steps=(1,) * 4)
        return self.finish(y, finals)

    def run_looped(self, step):
        """``step`` as the body of a ``loop`` over the sequence, one per direction: the step's
        projections gathered at the iteration's row, Y its scan output (rows reversed after a
        reverse direction)."""
        cx = self.cx
        tr = cx._tr
        n = _dim_tensor(cx, self.length)
        ys, finals = [], []
        for d, direction in enumerate(self.dirs):
            state = self.start_state(d)
            body = GraphBuilder(f"{cx.name}/step{d}")
            with tr.building(body, cx):
                it = body.input("iteration", TensorType((), "int64"))
                go = body.input("cond", TensorType((), "bool"))
                st = tuple(body.input(f"state{k}", v.type) for k, v in enumerate(state))
                t = it if direction == "forward" else cx.op("sub", [cx.op("sub", [n, cx.scalar(1, "int64")]), it])
                h_t, new = step(d, t, st)
                if self.lens is not None:
                    m = cx.op("less", [t, self.lens])
                    new = tuple(cx.op("where", [m, v, o]) for v, o in zip(new, st))
                    h_t = cx.op("where", [m, h_t, cx.scalar(0, h_t.dtype)])
            g, caps = tr.closed_graph(body, [it, go] + list(st), [go] + list(new) + [h_t], cx)
            res = cx.b.op_multi("loop", [n, cx.const(np.array(True))] + list(state) + caps, name=cx.name, body=g,
                                num_carried=len(state), length=self.length)
            y = res[-1]
            if direction != "forward":
                rows = cx.op("sub", [cx.op("sub", [n, cx.scalar(1, "int64")]),
                                     cx.op("arange", [], length=self.length, start=0, delta=1, dtype="int64")])
                y = cx.op("gather", [y, rows], axis=0)
            ys.append(reshape(cx, y, (self.length, 1, self.batch, self.h)))
            finals.append(tuple(res[:-1]))
        return (ys[0] if len(ys) == 1 else cx.op("concat", ys, axis=1)), finals

    def finish(self, y, finals):
        """Y and the final states stacked per direction, in the node's layout."""
        cx = self.cx
        stacked = [cx.op("concat", [reshape(cx, f[k], (1, self.batch, self.h)) for f in finals], axis=0)
                   for k in range(len(finals[0]))]
        if self.layout:
            y = cx.op("transpose", [y], perm=(2, 0, 1, 3))
            stacked = [cx.op("transpose", [s], perm=(1, 0, 2)) for s in stacked]
        return [y] + stacked


@translates("RNN")
def rnn(cx):
    c = _Cell(cx, 1, ["Tanh"])
    proj = [c.projections(d) for d in range(len(c.dirs))]
    c.start_state = lambda d: (c.initial(5, d),)

    def step(d, t, state):
        xs, rt, rb = proj[d]
        pre = cx.op("add", [xs[t], cx.op("matmul", [state[0], rt])])
        if rb is not None:
            pre = cx.op("add", [pre, rb])
        h = _apply(cx, c.acts[d], c.clipped(pre))
        return h, (h,)

    return c.run(step)


@translates("GRU")
def gru(cx):
    c = _Cell(cx, 3, ["Sigmoid", "Tanh"])
    proj = [c.projections(d) for d in range(len(c.dirs))]
    c.start_state = lambda d: (c.initial(5, d),)
    lbr = cx.attr("linear_before_reset", 0)

    hs = c.h

    def cols(v, lo, hi):
        return cx.op("slice", [v], starts=(0, lo), ends=(v.shape[0], hi), steps=(1, 1))

    def part(v, lo, hi):
        return cx.op("slice", [v], starts=(lo,), ends=(hi,), steps=(1,))

    def step(d, t, state):
        xs, rt, rb = proj[d]
        f, g = c.acts[2 * d], c.acts[2 * d + 1]
        hprev = state[0]
        x_t = xs[t]
        # H R^T (+ Rb) for the update and reset gates, and for the candidate too when it is
        # taken before the reset
        hr = cx.op("matmul", [hprev, rt if lbr else cols(rt, 0, 2 * hs)])
        if rb is not None:
            hr = cx.op("add", [hr, rb if lbr else part(rb, 0, 2 * hs)])
        z = _apply(cx, f, c.clipped(cx.op("add", [c.gate(x_t, 0), c.gate(hr, 0)])))
        r = _apply(cx, f, c.clipped(cx.op("add", [c.gate(x_t, 1), c.gate(hr, 1)])))
        if lbr:
            cand = cx.op("add", [c.gate(x_t, 2), cx.op("mul", [r, c.gate(hr, 2)])])
        else:
            rh = cx.op("matmul", [cx.op("mul", [r, hprev]), cols(rt, 2 * hs, 3 * hs)])
            if rb is not None:
                rh = cx.op("add", [rh, part(rb, 2 * hs, 3 * hs)])
            cand = cx.op("add", [c.gate(x_t, 2), rh])
        hc = _apply(cx, g, c.clipped(cand))
        one = cx.scalar(1, hc.dtype)
        h = cx.op("add", [cx.op("mul", [cx.op("sub", [one, z]), hc]), cx.op("mul", [z, hprev])])
        return h, (h,)

    return c.run(step)


@translates("LSTM")
def lstm(cx):
    return lstm_cell(cx, _Cell(cx, 4, ["Sigmoid", "Tanh", "Tanh"]))


class _Rows:
    """The rows of the projections [seq, batch, gates*hidden] a looped step reads: ``rows[t]``
    gathers row ``t`` (a value of the body)."""

    def __init__(self, cx, xw):
        self.cx, self.xw = cx, xw

    def __getitem__(self, t):
        return self.cx.op("gather", [self.xw, t], axis=0)


def lstm_cell(cx, c):
    """LSTM's steps over cell ``c`` (a _Cell, or one whose weight products differ)."""
    proj = [c.projections(d) for d in range(len(c.dirs))]
    c.start_state = lambda d: (c.initial(5, d), c.initial(6, d))
    peep = cx.input(7, required=False)
    couple = cx.attr("input_forget", 0)

    def step(d, t, state):
        xs, rt, rb = proj[d]
        f, g, hact = c.acts[3 * d], c.acts[3 * d + 1], c.acts[3 * d + 2]
        hprev, cprev = state
        pre = cx.op("add", [xs[t], c.recurrent_product(hprev, d, rt)])
        if rb is not None:
            pre = cx.op("add", [pre, rb])
        # gate order i, o, f, c
        pi, po, pf = (c.take(peep, d, k * c.h, (k + 1) * c.h) for k in range(3)) if peep is not None else (None,) * 3
        gi, go, gf, gc = (c.gate(pre, k) for k in range(4))
        if pi is not None:
            gi = cx.op("add", [gi, cx.op("mul", [pi, cprev])])
            gf = cx.op("add", [gf, cx.op("mul", [pf, cprev])])
        i = _apply(cx, f, c.clipped(gi))
        fg = cx.op("sub", [cx.scalar(1, i.dtype), i]) if couple else _apply(cx, f, c.clipped(gf))
        cc = _apply(cx, g, c.clipped(gc))
        cnew = cx.op("add", [cx.op("mul", [fg, cprev]), cx.op("mul", [i, cc])])
        if po is not None:
            go = cx.op("add", [go, cx.op("mul", [po, cnew])])
        o = _apply(cx, f, c.clipped(go))
        h = cx.op("mul", [o, _apply(cx, hact, cnew)])
        return h, (h, cnew)

    return c.run(step)
