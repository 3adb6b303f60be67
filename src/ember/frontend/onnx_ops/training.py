"""ONNX ops of training graphs that are plain arithmetic at inference time: the optimizer steps
of the ``ai.onnx.preview.training`` domain (Adagrad, Adam, Momentum), BatchNormalization in
training mode, and Dropout with nothing dropped (``ratio`` 0)."""

from __future__ import annotations

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
