"""ONNX ops of training graphs that are plain arithmetic at inference time: the optimizer steps
of the ``ai.onnx.preview.training`` domain (Adagrad, Adam, Momentum), its Gradient (reverse-mode
differentiation of the graph's arithmetic), BatchNormalization in training mode, and Dropout with
nothing dropped (``ratio`` 0)."""

from __future__ import annotations

import numpy as np

from ...errors import FrontendError
from ...graph.types import np_dtype
from . import translates
from .arith import T

_D = "ai.onnx.preview.training"


def _groups(cx, per_tensor: int):
    """(r, t, [[x, g, ...] per optimized tensor]) from the inputs R, T, X1..Xn, G1..Gn, ..."""
    n_in = len(cx.node.input)
    if n_in < 2 + per_tensor or (n_in - 2) % per_tensor:
        raise cx.fail(f"expects R, T and {per_tensor} inputs per optimized tensor, got {n_in} inputs")
    n = (n_in - 2) // per_tensor
    r, t = T(cx, cx.input(0)), T(cx, cx.input(1))
    return r, t, [[T(cx, cx.input(2 + k * n + i)) for k in range(per_tensor)] for i in range(n)]


def _by_output(groups_out, per_tensor):
    # outputs: X1_new..Xn_new, then the second state of each tensor, ...
    return [g[k].v for k in range(per_tensor) for g in groups_out]


@translates(f"{_D}:Adagrad")
def adagrad(cx):
    decay, eps, norm = cx.attr("decay_factor", 0.0), cx.attr("epsilon", 0.0), cx.attr("norm_coefficient", 0.0)
    r, t, groups = _groups(cx, 3)
    out = []
    for x, g, h in groups:
        rr, tt = r.cast(x.dtype), t.cast(x.dtype)
        rate = rr / (tt * decay + 1)
        g_reg = x * norm + g
        h_new = h + g_reg * g_reg
        x_new = x - rate * g_reg / (h_new.unary("sqrt") + eps)
        out.append((x_new, h_new))
    return _by_output(out, 2)


@translates(f"{_D}:Adam")
def adam(cx):
    alpha, beta = cx.attr("alpha", 0.9), cx.attr("beta", 0.999)
    eps, norm = cx.attr("epsilon", 0.0), cx.attr("norm_coefficient", 0.0)
    post = cx.attr("norm_coefficient_post", 0.0)
    r, t, groups = _groups(cx, 4)
    out = []
    for x, g, v, h in groups:
        rr, tt = r.cast(x.dtype), t.cast(x.dtype)
        g_reg = x * norm + g
        v_new = v * alpha + g_reg * (1 - alpha)
        h_new = h * beta + g_reg * g_reg * (1 - beta)
        # bias correction once steps have been taken (T > 0)
        beta_t = T(cx, cx.op("pow", [cx.scalar(beta, x.dtype), tt.v]))
        alpha_t = T(cx, cx.op("pow", [cx.scalar(alpha, x.dtype), tt.v]))
        corrected = rr * ((beta_t * -1) + 1).unary("sqrt") / ((alpha_t * -1) + 1)
        rate = (tt > 0).where(corrected, rr)
        x_new = (x - rate * (v_new / (h_new.unary("sqrt") + eps))) * (1 - post)
        out.append((x_new, v_new, h_new))
    return _by_output(out, 3)


@translates(f"{_D}:Momentum")
def momentum(cx):
    alpha, beta = cx.attr("alpha"), cx.attr("beta")
    norm, mode = cx.attr("norm_coefficient"), cx.attr("mode")
    if mode not in ("standard", "nesterov"):
        raise cx.fail(f"unknown mode {mode!r}")
    r, t, groups = _groups(cx, 3)
    out = []
    for x, g, v in groups:
        rr, tt = r.cast(x.dtype), t.cast(x.dtype)
        g_reg = x * norm + g
        b = (tt > 0).where(T(cx, cx.scalar(beta, x.dtype)), 1.0)      # the first step takes all of G
        v_new = v * alpha + g_reg * b
        step = v_new if mode == "standard" else g_reg + v_new * alpha
        out.append((x - rr * step, v_new))
    return _by_output(out, 2)


# ---- Gradient -------------------------------------------------------------------------------

def _unbroadcast(g: T, shape) -> T:
    """The gradient of an operand of ``shape`` that numpy broadcasting stretched to ``g``'s shape:
    summed over the axes it was stretched along."""
    shape = tuple(shape)
    extra = len(g.shape) - len(shape)
    axes = tuple(range(extra)) + tuple(extra + k for k, d in enumerate(shape) if d == 1 and g.shape[extra + k] != 1)
    if axes:
        g = g.sum(axes, keepdims=True)
    return g.reshape(shape) if g.shape != shape else g


def _matmul_grads(cx, a: T, b: T, g: T):
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise cx.unsupported("gradient through a MatMul of a 1-D operand")

    def mt(v: T) -> T:
        r = len(v.shape)
        return v.transpose(tuple(range(r - 2)) + (r - 1, r - 2))

    return [_unbroadcast(T(cx, cx.op("matmul", [g.v, mt(b).v])), a.shape),
            _unbroadcast(T(cx, cx.op("matmul", [mt(a).v, g.v])), b.shape)]


# ONNX op -> (inputs, output, gradient of the output) -> gradients of the inputs
_VJP = {
    "Identity": lambda cx, i, y, g: [g],
    "Neg": lambda cx, i, y, g: [-g],
    "Add": lambda cx, i, y, g: [g, g],
    "Sub": lambda cx, i, y, g: [g, -g],
    "Mul": lambda cx, i, y, g: [g * i[1], g * i[0]],
    "Div": lambda cx, i, y, g: [g / i[1], -(g * y) / i[1]],
    "Relu": lambda cx, i, y, g: [(i[0] > 0).where(g, 0)],
    "Sigmoid": lambda cx, i, y, g: [g * y * (1 - y)],
    "Tanh": lambda cx, i, y, g: [g * (1 - y * y)],
    "Exp": lambda cx, i, y, g: [g * y],
    "Log": lambda cx, i, y, g: [g / i[0]],
    "Sqrt": lambda cx, i, y, g: [g / (y * 2)],
    "MatMul": lambda cx, i, y, g: _matmul_grads(cx, i[0], i[1], g),
}


@translates(f"{_D}:Gradient")
def gradient(cx):
    """dy/dx for every x of ``xs``: reverse-mode over the graph's nodes from ``xs`` to ``y``, with
    the gradient of ``y`` seeded with ones (the gradient of the sum of ``y`` when it is not a
    scalar).  ``zs`` and every other tensor count as constants."""
    xs, y_name = list(cx.attr("xs")), cx.attr("y")
    if len(xs) != cx.num_outputs:
        raise cx.fail(f"has {cx.num_outputs} outputs for {len(xs)} xs {xs}")
    producer = {o: n for n in cx.graph_nodes() for o in n.output if o}
    # the nodes on a path from some x to y, in the graph's order of computation
    depends: dict[str, bool] = {}

    def on_path(name: str) -> bool:
        if name not in depends:
            depends[name] = False                       # (a cycle would be an invalid model anyway)
            node = producer.get(name)
            depends[name] = name in xs or (node is not None and any(on_path(i) for i in node.input if i))
        return depends[name]

    order: list = []
    seen: set[int] = set()

    def visit(name: str) -> None:
        node = producer.get(name)
        if name in xs or node is None or id(node) in seen or not on_path(name):
            return
        seen.add(id(node))
        for i in node.input:
            if i:
                visit(i)
        order.append(node)

    try:
        y = T(cx, cx.lookup(y_name))
    except FrontendError:
        raise cx.fail(f"y '{y_name}' must be computed before the Gradient node") from None
    if not y.dtype.startswith(("float", "bfloat")):
        raise cx.fail(f"y '{y_name}' must be a floating-point tensor, got {y.v.type}")
    visit(y_name)
    grads: dict[str, T] = {y_name: T(cx, cx.const(np.ones(y.shape, dtype=np_dtype(y.dtype)), y.dtype))}
    for node in reversed(order):
        rule = _VJP.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        g = grads.get(node.output[0])
        if g is None:
            continue
        if rule is None or len(node.output) != 1:
            raise cx.unsupported(f"gradient through {node.op_type} node '{node.name or node.output[0]}'")
        ins = [T(cx, cx.lookup(i)) for i in node.input]
        for name, gi, v in zip(node.input, rule(cx, ins, T(cx, cx.lookup(node.output[0])), g), ins):
            if not on_path(name):
                continue
            gi = _unbroadcast(gi, v.shape)
            grads[name] = gi if name not in grads else grads[name] + gi
    outs = []
    for k, x in enumerate(xs):
        xv = cx.input(k)
        outs.append(grads[x].v if x in grads else cx.const(np.zeros(xv.shape, dtype=np_dtype(xv.dtype)), xv.dtype))
    return outs
