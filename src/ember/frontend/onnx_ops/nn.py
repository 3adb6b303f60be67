"""ONNX neural-network ops: Conv, ConvTranspose, pooling, normalizations, Softmax family, Gemm,
MatMul.  1-D convolutions and pools run as 2-D ones over a height of 1; 3-D ones as 2-D ones too
(see ``conv_nd`` and ``pool_nd``)."""

from __future__ import annotations

import numpy as np

from ...graph.types import is_float, np_dtype
from ...symbolic import Sym, compare, dim_range
from . import data_dims, translates
from ...ops.nn import clip_window, conv_out_dim
from .tensor import norm_axis, prod, reshape, static_shape


# ---- padding ------------------------------------------------------------------------------

def explicit_pads(cx, in_sp, kernel, strides, dilations) -> list[int]:
    """ONNX pads (begins, then ends) after resolving ``auto_pad`` exactly as ONNX defines it."""
    n = len(in_sp)
    auto = cx.attr("auto_pad", "NOTSET")
    if auto == "NOTSET":
        pads = list(cx.attr("pads", [0] * (2 * n)))
        if len(pads) != 2 * n:
            raise cx.fail(f"needs {2 * n} pads, got {pads}")
        if any(p < 0 for p in pads):
            raise cx.fail(f"pads {pads} must not be negative")
        return pads
    if auto == "VALID":
        return [0] * (2 * n)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise cx.fail(f"unknown auto_pad {auto!r}")
    begins, ends = [], []
    for i, k, s, d in zip(in_sp, kernel, strides, dilations):
        eff = (k - 1) * d + 1
        if isinstance(i, Sym):
            # (ceil(i/s) - 1)*s + eff - i = eff - 1 - (i + s - 1) % s: symbolic, in [eff - s, eff - 1]
            total = eff - 1 - (i + s - 1) % s
            if compare(total, ">=", 0) is not True:
                if eff > 1:
                    raise cx.fail(f"auto_pad={auto} with stride {s} and a window of {eff} over the symbolic size "
                                  f"{i}: whether there is padding depends on {i} % {s}; fix that dimension "
                                  f"with shapes=")
                total = 0                       # a window of 1 never needs padding
            total = total if isinstance(total, Sym) else max(0, total)
        else:
            total = max(0, (-(-i // s) - 1) * s + eff - i)
        small, big = total // 2, total - total // 2
        b, e = (small, big) if auto == "SAME_UPPER" else (big, small)
        begins.append(b)
        ends.append(e)
    return begins + ends


def settle_pads(cx, x, pads, kernel, strides, dilations, value):
    """``x`` and ``pads`` where the pads of SAME auto_pad over a symbolic size (which depend on
    the size's remainder by the stride) are taken out: the input padded with ``value`` by the
    most they can be, then sliced from where the run's padding begins, as long as the windows
    of ``ceil(i / s)`` outputs reach; static pads are left to the op."""
    n = len(kernel)
    if not any(isinstance(p, Sym) for p in pads):
        return x, pads
    dims = tuple(x.shape)
    r = len(dims)
    pads = list(pads)
    before, after = [0] * r, [0] * r
    starts, ends = [0] * r, list(dims)
    for a in range(n):
        b, e = pads[a], pads[a + n]
        if not (isinstance(b, Sym) or isinstance(e, Sym)):
            continue
        i, s, eff = dims[2 + a], strides[a], (kernel[a] - 1) * dilations[a] + 1
        bmax, emax = dim_range(b)[1], dim_range(e)[1]
        before[2 + a], after[2 + a] = bmax, emax
        starts[2 + a] = bmax - b
        ends[2 + a] = starts[2 + a] + ((i + s - 1) // s - 1) * s + eff
        pads[a], pads[a + n] = 0, 0
    x = cx.op("pad", [x], pads=tuple(before + after), mode="constant", value=value)
    return cx.op("slice", [x], starts=tuple(starts), ends=tuple(ends), steps=(1,) * r), pads


def _spatial(cx, x, max_nsp: int = 2):
    dims = tuple(x.shape)
    nsp = len(dims) - 2
    if nsp < 1:
        raise cx.fail(f"expects an input of rank >= 3 (N, C, spatial...), got {x.type}")
    if nsp > max_nsp:
        raise cx.unsupported(f"{nsp}-D spatial input")
    return dims, nsp


def _ints(cx, name, n, default):
    v = list(cx.attr(name, [default] * n))
    if len(v) != n:
        raise cx.fail(f"{name} {v} needs {n} values")
    return v


def _as_2d(nsp, dims_sp, pads, strides, dilations, kernel):
    """Parameters of a 1-D window op lifted to 2-D (height 1)."""
    if nsp == 2:
        return tuple(pads), tuple(strides), tuple(dilations), tuple(kernel)
    return (0, pads[0], 0, pads[1]), (1, strides[0]), (1, dilations[0]), (1, kernel[0])


def _add_bias(cx, y, bias, nsp):
    if bias is None:
        return y
    m = y.shape[1]
    if bias.type.rank != 1 or bias.shape[0] != m:
        raise cx.fail(f"bias {bias.type} must have shape [{m}]")
    return cx.op("add", [y, reshape(cx, bias, (m,) + (1,) * nsp)])


# ---- convolution --------------------------------------------------------------------------

@translates("Conv")
def conv(cx):
    x, w, bias = cx.input(0), cx.input(1), cx.input(2, required=False)
    y = convolution(cx, x, w)
    return _add_bias(cx, y, bias, y.type.rank - 2)


def convolution(cx, x, w, op: str = "conv2d", **extra):
    """The convolution the node's attributes describe, without bias, as core op ``op`` (conv2d,
    or conv2d_int for ConvInteger and QLinearConv, with ``extra`` attributes)."""
    dims, nsp = _spatial(cx, x, 3)
    wd = static_shape(cx, w, "weight")
    if len(wd) != len(dims):
        raise cx.fail(f"weight {w.type} must have the rank of the input {x.type}")
    kernel = list(wd[2:])
    if cx.has_attr("kernel_shape") and list(cx.attr("kernel_shape")) != kernel:
        raise cx.fail(f"kernel_shape {cx.attr('kernel_shape')} differs from the weight's {kernel}")
    strides = _ints(cx, "strides", nsp, 1)
    dil = _ints(cx, "dilations", nsp, 1)
    pads = explicit_pads(cx, dims[2:], kernel, strides, dil)
    x, pads = settle_pads(cx, x, pads, kernel, strides, dil, extra.get("pad_value", 0))
    return conv_nd(cx, x, w, strides, pads, dil, cx.attr("group", 1), op, **extra)


def conv_nd(cx, x, w, strides, pads, dil, groups, op: str = "conv2d", **extra):
    """A 1-, 2- or 3-D convolution (ONNX pads: begins, then ends) with the core ``op`` (``conv2d``
    or ``conv2d_int``, taking ``extra`` attributes).  1-D runs over a height of 1.  3-D gathers, for every output depth, the input planes its KD depth
    taps read into the channel axis (channels ordered group, tap, channel of the group) and runs
    one 2-D convolution over a batch of N * OD with the weight reordered to match."""
    wd = static_shape(cx, w, "weight")
    dims = tuple(x.shape)
    nsp = len(dims) - 2
    if nsp == 2:
        return cx.op(op, [x, w], strides=tuple(strides), pads=tuple(pads), dilations=tuple(dil),
                     groups=groups, **extra)
    if nsp == 1:
        x4 = reshape(cx, x, (dims[0], dims[1], 1, dims[2]))
        w4 = reshape(cx, w, (wd[0], wd[1], 1, wd[2]))
        y = cx.op(op, [x4, w4], strides=(1, strides[0]), pads=(0, pads[0], 0, pads[1]),
                  dilations=(1, dil[0]), groups=groups, **extra)
        return reshape(cx, y, (y.shape[0], y.shape[1], y.shape[3]))
    n, c, d, h, wi = dims
    m, cg, kd = wd[0], wd[1], wd[2]
    if groups < 1 or c % groups or c // groups != cg or m % groups:
        raise cx.fail(f"weight {w.type} does not match input {x.type} with group={groups}")
    dp = d + pads[0] + pads[3]
    span = (kd - 1) * dil[0] + 1
    od = (dp - span) // strides[0] + 1
    if isinstance(od, int) and od <= 0:
        raise cx.fail(f"kernel depth {kd} (dilation {dil[0]}) does not fit input {x.type} with pads {list(pads)}")
    if pads[0] or pads[3]:
        x = cx.op("pad", [x], pads=(0, 0, pads[0], 0, 0, 0, 0, pads[3], 0, 0), value=float(extra.get("pad_value", 0)))
    taps = []
    for t in range(kd):
        z0 = t * dil[0]
        tap = cx.op("slice", [x], starts=(0, 0, z0, 0, 0), ends=(n, c, z0 + (od - 1) * strides[0] + 1, h, wi),
                    steps=(1, 1, strides[0], 1, 1))
        taps.append(reshape(cx, tap, (n, 1, c, od, h, wi)))
    xt = taps[0] if kd == 1 else cx.op("concat", taps, axis=1)                 # [n, kd, c, od, h, w]
    xt = reshape(cx, xt, (n, kd, groups, cg, od, h, wi))
    xt = cx.op("transpose", [xt], perm=(0, 4, 2, 1, 3, 5, 6))                  # [n, od, g, kd, cg, h, w]
    xt = reshape(cx, xt, (n * od, groups * kd * cg, h, wi))
    wt = cx.op("transpose", [w], perm=(0, 2, 1, 3, 4))                         # [m, kd, cg, kh, kw]
    wt = reshape(cx, wt, (m, kd * cg, wd[3], wd[4]))
    y = cx.op(op, [xt, wt], strides=tuple(strides[1:]), pads=(pads[1], pads[2], pads[4], pads[5]),
              dilations=tuple(dil[1:]), groups=groups, **extra)                        # [n * od, m, oh, ow]
    y = reshape(cx, y, (n, od, m, y.shape[2], y.shape[3]))
    return cx.op("transpose", [y], perm=(0, 2, 1, 3, 4))


@translates("ConvTranspose")
def conv_transpose(cx):
    # a convolution (stride 1, flipped and transposed weight) over the input with s-1 zeros
    # inserted between elements and (k_eff - 1 - pad) zeros around it
    x, w, bias = cx.input(0), cx.input(1), cx.input(2, required=False)
    dims, nsp = _spatial(cx, x, 3)
    wd = static_shape(cx, w, "weight")
    g = cx.attr("group", 1)
    if len(wd) != len(dims) or wd[0] != dims[1] or dims[1] % g:
        raise cx.fail(f"weight {w.type} does not match input {x.type} with group={g}")
    kernel = list(wd[2:])
    if cx.has_attr("kernel_shape") and list(cx.attr("kernel_shape")) != kernel:
        raise cx.fail(f"kernel_shape {cx.attr('kernel_shape')} differs from the weight's {kernel}")
    strides = _ints(cx, "strides", nsp, 1)
    dil = _ints(cx, "dilations", nsp, 1)
    outpad = _ints(cx, "output_padding", nsp, 0)
    in_sp = list(dims[2:])
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    auto = cx.attr("auto_pad", "NOTSET")
    out_shape = cx.attr("output_shape", None)
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        if out_shape is None:
            out_shape = [i * s for i, s in zip(in_sp, strides)]
        out_shape = list(out_shape)[-nsp:]
        begins, ends = [], []
        for i, s, e, op_, o in zip(in_sp, strides, eff, outpad, out_shape):
            total = s * (i - 1) + op_ + e - o
            small, big = total // 2, total - total // 2
            b, en = (small, big) if auto == "SAME_UPPER" else (big, small)
            begins.append(b)
            ends.append(en)
        pads = begins + ends
    elif auto == "VALID":
        pads = [0] * (2 * nsp)
    elif auto == "NOTSET":
        pads = _ints(cx, "pads", 2 * nsp, 0)
    else:
        raise cx.fail(f"unknown auto_pad {auto!r}")
    n, c = dims[0], dims[1]
    crop = [0] * nsp
    if any(s > 1 for s in strides):
        # zeros between elements: [.., i, 1, ..] padded to [.., i, s, ..] and merged
        t = reshape(cx, x, (n, c) + tuple(v for i in in_sp for v in (i, 1)))
        ends = [0, 0] + [v for s in strides for v in (0, s - 1)]
        t = cx.op("pad", [t], pads=tuple([0] * len(ends) + ends))
        x = reshape(cx, t, (n, c) + tuple(i * s for i, s in zip(in_sp, strides)))
        crop = [s - 1 for s in strides]
    pb = [e - 1 - pads[k] for k, e in enumerate(eff)]
    pe = [e - 1 - pads[k + nsp] + outpad[k] - crop[k] for k, e in enumerate(eff)]
    x = cx.op("pad", [x], pads=tuple([0, 0] + pb + [0, 0] + pe))
    cin, mg = wd[0], wd[1]
    m = mg * g
    wt = reshape(cx, w, (g, cin // g, mg) + tuple(kernel))
    wt = cx.op("transpose", [wt], perm=(0, 2, 1) + tuple(range(3, 3 + nsp)))
    wt = reshape(cx, wt, (m, cin // g) + tuple(kernel))
    wt = cx.op("slice", [wt], starts=(0, 0) + tuple(k - 1 for k in kernel), ends=(m, cin // g) + (-1,) * nsp,
               steps=(1, 1) + (-1,) * nsp)
    y = conv_nd(cx, x, wt, [1] * nsp, [0] * (2 * nsp), dil, g)
    return _add_bias(cx, y, bias, nsp)


# ---- pooling ------------------------------------------------------------------------------

def _pool_window(cx, x):
    """A pooling node's window: kernel, strides, explicit pads, dilations and ceil mode."""
    dims, nsp = _spatial(cx, x, 3)
    kernel = cx.attr("kernel_shape")
    if len(kernel) != nsp:
        raise cx.fail(f"kernel_shape {kernel} needs {nsp} values for {x.type}")
    strides = _ints(cx, "strides", nsp, 1)
    dil = _ints(cx, "dilations", nsp, 1)
    pads = explicit_pads(cx, dims[2:], kernel, strides, dil)
    ceil_mode = bool(cx.attr("ceil_mode", 0)) and cx.attr("auto_pad", "NOTSET") in ("NOTSET", "VALID")
    return kernel, strides, pads, dil, ceil_mode


def _pool(cx, core):
    x = cx.input(0)
    kernel, strides, pads, dil, ceil_mode = _pool_window(cx, x)
    include = bool(cx.attr("count_include_pad", 0))
    if not any(isinstance(p, Sym) for p in pads):
        return pool_nd(cx, core, x, kernel, strides, pads, dil, ceil_mode, include)
    if core == "max_pool2d":
        low = float("-inf") if is_float(x.dtype) else int(np.iinfo(np_dtype(x.dtype)).min)
        x, pads = settle_pads(cx, x, pads, kernel, strides, dil, low)
        return pool_nd(cx, core, x, kernel, strides, pads, dil, ceil_mode, include)
    if include:
        x, pads = settle_pads(cx, x, pads, kernel, strides, dil, 0)
        return pool_nd(cx, core, x, kernel, strides, pads, dil, ceil_mode, True)
    # padding not counted: the average over the padded input divided by that of a mask of ones
    # padded alike (the share of each window inside the input)
    ones = cx.op("broadcast_to", [cx.scalar(1, x.dtype)], shape=(1, 1) + tuple(x.shape[2:]))
    avgs = []
    for v in (x, ones):
        v, rest = settle_pads(cx, v, pads, kernel, strides, dil, 0)
        avgs.append(pool_nd(cx, core, v, kernel, strides, rest, dil, ceil_mode, True))
    return cx.op("div", avgs)


def pool_nd(cx, core, x, kernel, strides, pads, dil, ceil_mode, count_include_pad):
    """A 1-, 2- or 3-D pool with the core 2-D pools.  1-D runs over a height of 1; 3-D runs as a
    2-D pool over (H, W) and then one over D, which is exact because max, the sum over the window
    and the window's count all factor over the axes."""
    dims = tuple(x.shape)
    nsp = len(dims) - 2
    kernel = clip_window(dims[2:], kernel, strides, pads, dil, ceil_mode)
    extra = {"count_include_pad": count_include_pad} if core == "avg_pool2d" else {}
    if nsp == 3:
        n, c, d, h, w = dims
        hw = pool_nd(cx, core, reshape(cx, x, (n, c * d, h, w)), kernel[1:], strides[1:],
                     [pads[1], pads[2], pads[4], pads[5]], dil[1:], ceil_mode, count_include_pad)
        h2, w2 = hw.shape[2], hw.shape[3]
        y = cx.op(core, [reshape(cx, hw, (n, c, d, h2 * w2))], kernel=(kernel[0], 1), strides=(strides[0], 1),
                  pads=(pads[0], 0, pads[3], 0), dilations=(dil[0], 1), ceil_mode=ceil_mode, **extra)
        return reshape(cx, y, (n, c, y.shape[2], h2, w2))
    p2, s2, d2, k2 = _as_2d(nsp, dims[2:], pads, strides, dil, kernel)
    if nsp == 2:
        p2 = (pads[0], pads[1], pads[2], pads[3])
    x4 = x if nsp == 2 else reshape(cx, x, (dims[0], dims[1], 1, dims[2]))
    y = cx.op(core, [x4], kernel=k2, strides=s2, pads=p2, dilations=d2, ceil_mode=ceil_mode, **extra)
    if nsp == 1:
        y = reshape(cx, y, (y.shape[0], y.shape[1], y.shape[3]))
    return y


@translates("MaxPool")
def max_pool(cx):
    y = _pool(cx, "max_pool2d")
    if not cx.output_used(1):
        return [y]
    return [y, _max_pool_indices(cx, y)]


def _max_pool_indices(cx, y):
    """MaxPool's Indices output: the flat index (row-major, or column-major over the spatial
    axes with storage_order=1) of the first maximum of every window.  The window taps are
    gathered at constant positions, the padding reading -inf."""
    from .arith import T

    x = cx.input(0)
    dims = tuple(x.shape)
    if any(isinstance(d, Sym) for d in dims[2:]):   # the taps are gathered at positions computed here
        raise cx.fail(f"the Indices output over the symbolic spatial sizes of {x.type}: the taps' positions are "
                      f"laid out at compile time; fix them with shapes=")
    nsp = len(dims) - 2
    kernel = list(cx.attr("kernel_shape"))
    strides = _ints(cx, "strides", nsp, 1)
    dil = _ints(cx, "dilations", nsp, 1)
    pads = explicit_pads(cx, dims[2:], kernel, strides, dil)
    out_sp = list(y.shape[2:])
    space = list(dims[2:])
    n, c = dims[0], dims[1]
    col_major = bool(cx.attr("storage_order", 0))
    taps = list(np.ndindex(*kernel))
    grids = np.meshgrid(*[np.arange(o) for o in out_sp], indexing="ij")
    pos = np.zeros((len(taps), prod(out_sp)), dtype=np.int64)      # row-major position read
    ok = np.zeros((len(taps), prod(out_sp)), dtype=bool)
    stored = np.zeros((len(taps), prod(out_sp)), dtype=np.int64)   # the index reported
    for t, off in enumerate(taps):
        coord = [(g * s - pads[a] + off[a] * d).reshape(-1) for a, (g, s, d) in enumerate(zip(grids, strides, dil))]
        valid = np.all([(q >= 0) & (q < space[a]) for a, q in enumerate(coord)], axis=0)
        cl = [np.clip(q, 0, space[a] - 1) for a, q in enumerate(coord)]
        pos[t] = np.ravel_multi_index(cl, space)
        stored[t] = np.ravel_multi_index(cl, space, order="F" if col_major else "C")
        ok[t] = valid
    flat = T(cx, reshape(cx, x, (n, c, prod(space))))
    vals = flat.gather(cx.const(pos), axis=2)                           # [n, c, taps, out]
    low = -np.inf if x.dtype.startswith("float") else np.iinfo(np_dtype(x.dtype)).min
    vals = T(cx, cx.const(ok)).where(vals, low)
    best = cx.op("argmax", [vals.v], axis=2, keepdims=True)            # [n, c, 1, out]
    hot = T(cx, cx.op("equal", [best, cx.const(np.arange(len(taps), dtype=np.int64).reshape(-1, 1))]))
    idx = (hot.cast("int64") * T(cx, cx.const(stored))).sum((2,))      # [n, c, out]
    if isinstance(n * c, Sym):
        base = reshape(cx, cx.op("arange", [], length=n * c, start=0, delta=prod(space), dtype="int64"), (n, c, 1))
    else:
        base = cx.const((np.arange(n * c, dtype=np.int64) * prod(space)).reshape(n, c, 1))
    idx = idx + T(cx, base)
    return idx.reshape([n, c] + out_sp).v


@translates("MaxUnpool")
def max_unpool(cx):
    # out[q] = x[the last p with indices[p] == q], else 0: a comparison of every input position
    # with every output position (MaxUnpool's tensors are small feature maps)
    from .arith import T

    x, ind = cx.input(0), cx.input(1)
    dims, nsp = _spatial(cx, x, 3)
    if tuple(static_shape(cx, ind, "indices")) != tuple(dims):
        raise cx.fail(f"indices {ind.type} must have the shape of X {x.type}")
    kernel = list(cx.attr("kernel_shape"))
    strides = _ints(cx, "strides", nsp, 1)
    pads = _ints(cx, "pads", 2 * nsp, 0)
    inferred = list(dims[:2]) + [(dims[2 + a] - 1) * strides[a] - pads[a] - pads[a + nsp] + kernel[a]
                                 for a in range(nsp)]
    run_shape = data_dims.runtime_operand(cx, 2)
    out_shape = None if run_shape is not None else cx.ints_input(2, "output_shape")
    out_shape = inferred if out_shape is None else list(out_shape)
    if len(out_shape) != len(dims) or any(o < i for o, i in zip(out_shape, inferred)):
        raise cx.fail(f"output_shape {out_shape} is smaller than the unpooled shape {inferred}")
    m, q = prod(dims), prod(inferred)
    i_flat = T(cx, reshape(cx, ind, (m, 1))).cast("int64")
    hit = i_flat.eq(T(cx, cx.const(np.arange(q, dtype=np.int64).reshape(1, q))))      # [m, q]
    which = hit.where(T(cx, cx.const(np.arange(m, dtype=np.int64).reshape(m, 1))), -1)
    last = T(cx, cx.op("reduce_max", [which.v], axes=(0,), keepdims=False))          # [q]
    vals = T(cx, reshape(cx, x, (m,))).gather(last.max(0), axis=0)
    y = (last >= 0).where(vals, 0).reshape(inferred)
    if run_shape is not None:
        return _unpool_to_run_time_shape(cx, y, run_shape, inferred)
    if out_shape != inferred:
        extra = [o - i for o, i in zip(out_shape, inferred)]
        y = T(cx, cx.op("pad", [y.v], pads=tuple([0] * len(dims) + extra), mode="constant", value=0))
    return y.v


def _unpool_to_run_time_shape(cx, y, shape, inferred):
    """MaxUnpool's result ``y`` (the unpooled shape ``inferred``) zero-padded at the end of each
    spatial axis to an output_shape read at run time: its spatial sizes bound (batch or channels
    other than the input's, or a size below the unpooled one, fail the binding), each axis a
    gather of its positions, those past the unpooled size reading an appended zero."""
    from .arith import T
    from .tensor import _dim_tensor

    r = len(inferred)
    shape = data_dims.shape_operand(cx, shape, "output_shape")
    if shape.shape[0] != r:
        raise cx.fail(f"output_shape {shape.type} needs {r} sizes")
    vals = T(cx, shape)
    bad = None
    for k in range(r):
        v = T(cx, data_dims.element(cx, shape, k))
        miss = v.ne(T(cx, _dim_tensor(cx, inferred[k]))) if k < 2 else v < inferred[k]
        bad = miss if bad is None else bad | miss
    spatial = vals.gather(cx.const(np.arange(2, r, dtype=np.int64)), axis=0)
    bound, sizes = data_dims.bind(cx, data_dims.invalid_if(cx, spatial.v, bad.v), [f"output{k}" for k in range(2, r)])
    out = cx.op("pad", [y.v], pads=(0,) * r + (0, 0) + (1,) * (r - 2), mode="constant", value=0)
    for k, size in zip(range(2, r), sizes):
        at = T(cx, data_dims.iota(cx, bound, size)).min(inferred[k])
        out = cx.op("gather", [out, at.v], axis=k)
    return out


@translates("AveragePool")
def avg_pool(cx):
    return _pool(cx, "avg_pool2d")


@translates("GlobalAveragePool", "GlobalMaxPool")
def global_pool(cx):
    x = cx.input(0)
    r = x.type.rank
    if r < 3:
        raise cx.fail(f"expects an input of rank >= 3, got {x.type}")
    core = "reduce_mean" if cx.op_type == "GlobalAveragePool" else "reduce_max"
    return cx.op(core, [x], axes=tuple(range(2, r)), keepdims=True)


# ---- normalization ------------------------------------------------------------------------

def _as_dtype(cx, v, dtype):
    return v if v.dtype == dtype else cx.op("cast", [v], to=dtype)


@translates("BatchNormalization")
def batch_norm(cx):
    if cx.attr("training_mode", 0):
        return _batch_norm_training(cx)
    if cx.opset < 9 and cx.attr("spatial", 1) == 0:
        raise cx.unsupported("spatial=0")
    if any(cx.output_used(k) for k in range(1, 5)):
        raise cx.unsupported("training outputs (running mean/var)")
    x = cx.input(0)
    params = [_as_dtype(cx, cx.input(k), x.dtype) for k in range(1, 5)]
    return [cx.op("batch_norm", [x] + params, epsilon=float(cx.attr("epsilon", 1e-5)))]


def _batch_norm_training(cx):
    """Normalize with the batch's own statistics; the running statistics are updated by
    ``momentum`` (outputs Y, running_mean, running_var)."""
    x = cx.input(0)
    dims = tuple(x.shape)
    r = len(dims)
    if r < 2:
        raise cx.fail(f"expects an input of rank >= 2, got {x.type}")
    scale, bias, mean, var = [_as_dtype(cx, cx.input(k), x.dtype) for k in range(1, 5)]
    eps, momentum = float(cx.attr("epsilon", 1e-5)), float(cx.attr("momentum", 0.9))
    axes = tuple(a for a in range(r) if a != 1)
    d, _, inv = _normalize(cx, x, axes, eps)
    shp = (dims[1],) + (1,) * (r - 2)
    y = cx.op("add", [cx.op("mul", [cx.op("mul", [d, inv]), reshape(cx, scale, shp)]), reshape(cx, bias, shp)])
    batch_mean = cx.op("reduce_mean", [x], axes=axes, keepdims=False)
    batch_var = cx.op("reduce_mean", [cx.op("mul", [d, d])], axes=axes, keepdims=False)

    def running(old, new):
        return cx.op("add", [cx.op("mul", [old, cx.scalar(momentum, x.dtype)]),
                             cx.op("mul", [new, cx.scalar(1 - momentum, x.dtype)])])

    return [y, running(mean, batch_mean), running(var, batch_var)]


def _normalize(cx, x, axes, eps):
    """(x - mean) / sqrt(var + eps) over ``axes``; also returns mean and 1/sqrt(var + eps)."""
    mean = cx.op("reduce_mean", [x], axes=tuple(axes), keepdims=True)
    d = cx.op("sub", [x, mean])
    var = cx.op("reduce_mean", [cx.op("mul", [d, d])], axes=tuple(axes), keepdims=True)
    inv = cx.op("reciprocal", [cx.op("sqrt", [cx.op("add", [var, cx.scalar(eps, x.dtype)])])])
    return d, mean, inv


@translates("InstanceNormalization")
def instance_norm(cx):
    x, scale, bias = cx.input(0), cx.input(1), cx.input(2)
    dims = tuple(x.shape)
    r = len(dims)
    if r < 3:
        raise cx.fail(f"expects an input of rank >= 3, got {x.type}")
    eps = float(cx.attr("epsilon", 1e-5))
    mean = cx.op("reduce_mean", [x], axes=tuple(range(2, r)), keepdims=True)
    d = cx.op("sub", [x, mean])
    var = cx.op("reduce_mean", [cx.op("mul", [d, d])], axes=tuple(range(2, r)), keepdims=True)
    y = cx.op("div", [d, cx.op("sqrt", [cx.op("add", [var, cx.scalar(eps, x.dtype)])])])
    shp = (dims[1],) + (1,) * (r - 2)
    return cx.op("add", [cx.op("mul", [y, reshape(cx, scale, shp)]), reshape(cx, bias, shp)])


@translates("LayerNormalization")
def layer_norm(cx):
    x, scale, bias = cx.input(0), cx.input(1), cx.input(2, required=False)
    r = x.type.rank
    axis = norm_axis(cx, cx.attr("axis", -1), r)
    eps = float(cx.attr("epsilon", 1e-5))
    if not (cx.output_used(1) or cx.output_used(2)):
        if bias is None:
            bias = cx.const(np.zeros(scale.shape, dtype=np_dtype(scale.dtype)), scale.dtype)
        return [cx.op("layer_norm", [x, scale, bias], axis=axis, epsilon=eps)]
    d, mean, inv = _normalize(cx, x, range(axis, r), eps)
    y = cx.op("mul", [cx.op("mul", [d, inv]), scale])
    if bias is not None:
        y = cx.op("add", [y, bias])
    return [y, mean, inv]


@translates("GroupNormalization")
def group_norm(cx):
    x, scale, bias = cx.input(0), cx.input(1), cx.input(2)
    dims = tuple(x.shape)
    if len(dims) < 3:
        raise cx.fail(f"expects an input of rank >= 3, got {x.type}")
    n, c = dims[0], dims[1]
    g = cx.attr("num_groups")
    if not isinstance(c, int):
        raise cx.fail(f"needs a static channel count, got {x.type}")
    if c % g:
        raise cx.fail(f"{c} channels are not divisible by num_groups={g}")
    eps = float(cx.attr("epsilon", 1e-5))
    xg = reshape(cx, x, (n, g, prod(dims[1:]) // g))
    d, _, inv = _normalize(cx, xg, (2,), eps)
    y = reshape(cx, cx.op("mul", [d, inv]), dims)
    if cx.opset < 21 and scale.shape == (g,) and g != c:
        # opset 18 gives one scale and bias per group
        scale = reshape(cx, cx.op("broadcast_to", [reshape(cx, scale, (g, 1))], shape=(g, c // g)), (c,))
        bias = reshape(cx, cx.op("broadcast_to", [reshape(cx, bias, (g, 1))], shape=(g, c // g)), (c,))
    shp = (c,) + (1,) * (len(dims) - 2)
    return cx.op("add", [cx.op("mul", [y, reshape(cx, scale, shp)]), reshape(cx, bias, shp)])


@translates("LRN")
def lrn(cx):
    # the sum of squares over a window of channels is an average pool over a [C, H*W] plane
    x = cx.input(0)
    dims = tuple(x.shape)
    if len(dims) < 3:
        raise cx.fail(f"expects an input of rank >= 3, got {x.type}")
    size = cx.attr("size")
    alpha, beta, bias = cx.attr("alpha", 1e-4), cx.attr("beta", 0.75), cx.attr("bias", 1.0)
    n, c = dims[0], dims[1]
    sq = reshape(cx, cx.op("mul", [x, x]), (n, 1, c, prod(dims[2:])))
    pre = (size - 1) // 2
    post = size - 1 - pre
    avg = cx.op("avg_pool2d", [sq], kernel=(size, 1), strides=(1, 1), pads=(pre, 0, post, 0),
                count_include_pad=True)
    # base = bias + alpha / size * sum = bias + alpha * average
    base = cx.op("add", [cx.scalar(bias, x.dtype), cx.op("mul", [reshape(cx, avg, dims), cx.scalar(alpha, x.dtype)])])
    return cx.op("div", [x, cx.op("pow", [base, cx.scalar(beta, x.dtype)])])


# ---- softmax family -----------------------------------------------------------------------

def _coerced_2d(cx, fn):
    """Before opset 13, Softmax-like ops work on the input flattened to 2-D at ``axis``."""
    x = cx.input(0)
    r = x.type.rank
    if cx.opset >= 13:
        return fn(x, norm_axis(cx, cx.attr("axis", -1), r))
    dims = tuple(x.shape)
    axis = cx.attr("axis", 1)
    if not -r <= axis <= r:
        raise cx.fail(f"axis {axis} is out of range for rank {r}")
    axis = axis + r if axis < 0 else axis
    if axis == r - 1 and r > 0:
        return fn(x, r - 1)
    flat = reshape(cx, x, (prod(dims[:axis]), prod(dims[axis:])))
    return reshape(cx, fn(flat, 1), dims)


@translates("Softmax", "LogSoftmax")
def softmax(cx):
    log = cx.op_type == "LogSoftmax"
    return _coerced_2d(cx, lambda x, ax: cx.op("softmax", [x], axis=ax, log=log))


@translates("Hardmax")
def hardmax(cx):
    def f(x, ax):
        am = cx.op("argmax", [x], axis=ax, keepdims=True)
        shp = [1] * x.type.rank
        shp[ax] = x.shape[ax]
        hot = cx.op("equal", [am, cx.const(np.arange(x.shape[ax], dtype=np.int64).reshape(shp))])
        return cx.op("cast", [hot], to=x.dtype)
    return _coerced_2d(cx, f)


# ---- matrix products ----------------------------------------------------------------------

@translates("MatMul")
def matmul(cx):
    return matmul_values(cx, cx.input(0), cx.input(1))


def matmul_values(cx, a, b, op: str = "matmul", **extra):
    """numpy.matmul semantics (1-D operands included) with core op ``op`` (matmul, or matmul_int
    with ``extra`` attributes) and reshapes."""
    if a.type.rank == 0 or b.type.rank == 0:
        raise cx.fail(f"operands must have rank >= 1, got {a.type} and {b.type}")
    a2 = reshape(cx, a, (1, a.shape[0])) if a.type.rank == 1 else a
    b2 = reshape(cx, b, (b.shape[0], 1)) if b.type.rank == 1 else b
    y = cx.op(op, [a2, b2], **extra)
    if a.type.rank == 1 or b.type.rank == 1:
        shp = list(y.shape)
        if b.type.rank == 1:
            shp.pop(-1)
        if a.type.rank == 1:
            shp.pop(-2 if b.type.rank != 1 else -1)
        y = reshape(cx, y, shp)
    return y


@translates("Gemm")
def gemm(cx):
    return gemm_values(cx, cx.input(0), cx.input(1), cx.input(2, required=cx.opset < 11))


def gemm_values(cx, a, b, c):
    """alpha * op(A) @ op(B) + beta * C (C optional) with the node's Gemm attributes."""
    for v, nm in ((a, "A"), (b, "B")):
        if v.type.rank != 2:
            raise cx.fail(f"{nm} must be 2-D, got {v.type}")
    if cx.attr("transA", 0):
        a = cx.op("transpose", [a], perm=(1, 0))
    if cx.attr("transB", 0):
        b = cx.op("transpose", [b], perm=(1, 0))
    y = cx.op("matmul", [a, b])
    alpha, beta = cx.attr("alpha", 1.0), cx.attr("beta", 1.0)
    if alpha != 1.0:
        y = cx.op("mul", [y, cx.scalar(alpha, y.dtype)])
    if c is not None and beta != 0.0:
        if beta != 1.0:
            c = cx.op("mul", [c, cx.scalar(beta, c.dtype)])
        y2 = cx.op("add", [y, c])
        if y2.shape != y.shape:
            raise cx.fail(f"C {c.type} does not broadcast to the product's shape {list(y.shape)}")
        y = y2
    return y


@translates("LpPool")
def lp_pool(cx):
    # (sum over the window of |x|^p)^(1/p): an average pool counting padding, times the count
    x = cx.input(0)
    p = float(cx.attr("p", 2))
    kernel, strides, pads, dil, ceil_mode = _pool_window(cx, x)
    powered = cx.op("pow", [cx.op("abs", [x]), cx.scalar(p, x.dtype)])
    powered, pads = settle_pads(cx, powered, pads, kernel, strides, dil, 0)
    dims, nsp = list(powered.shape), len(kernel)
    avg = pool_nd(cx, "avg_pool2d", powered, kernel, strides, pads, dil, ceil_mode, True)
    if any(isinstance(d, Sym) for d in dims[2:]):
        if ceil_mode:
            raise cx.fail(f"ceil_mode over the symbolic sizes of {x.type}: the windows past the padding are "
                          f"counted at compile time; fix them with shapes=")
        # every window lies inside the padded input: the average counts the whole kernel
        total = cx.op("mul", [avg, cx.scalar(float(np.prod(kernel)), x.dtype)])
        return cx.op("pow", [total, cx.scalar(1.0 / p, x.dtype)])
    count = np.ones((), dtype=np.float64)
    for ax in range(nsp):
        n_in, n_out = dims[2 + ax], avg.shape[2 + ax]
        taps = np.arange(n_out)[:, None] * strides[ax] - pads[ax] + np.arange(kernel[ax])[None, :] * dil[ax]
        cnt = (taps < n_in + pads[ax + nsp]).sum(axis=1).astype(np.float64)
        count = np.multiply.outer(count, cnt)
    total = cx.op("mul", [avg, cx.const(count.astype(np_dtype(x.dtype)), x.dtype)])
    return cx.op("pow", [total, cx.scalar(1.0 / p, x.dtype)])


@translates("GlobalLpPool")
def global_lp_pool(cx):
    x = cx.input(0)
    r = x.type.rank
    p = float(cx.attr("p", 2))
    s = cx.op("reduce_sum", [cx.op("pow", [cx.op("abs", [x]), cx.scalar(p, x.dtype)])], axes=tuple(range(2, r)),
              keepdims=True)
    return cx.op("pow", [s, cx.scalar(1.0 / p, x.dtype)])


@translates("LpNormalization")
def lp_normalization(cx):
    x = cx.input(0)
    ax = norm_axis(cx, cx.attr("axis", -1), x.type.rank)
    p = cx.attr("p", 2)
    if p == 1:
        norm = cx.op("reduce_sum", [cx.op("abs", [x])], axes=(ax,), keepdims=True)
    elif p == 2:
        norm = cx.op("sqrt", [cx.op("reduce_sum", [cx.op("mul", [x, x])], axes=(ax,), keepdims=True)])
    else:
        raise cx.fail(f"p must be 1 or 2, got {p}")
    zero = cx.scalar(0, x.dtype)
    return cx.op("where", [cx.op("equal", [norm, zero]), zero, cx.op("div", [x, norm])])


@translates("MeanVarianceNormalization")
def mean_variance_normalization(cx):
    # (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9), as ONNX's function body defines it
    x = cx.input(0)
    r = x.type.rank
    axes = tuple(sorted(norm_axis(cx, a, r) for a in cx.attr("axes", [0, 2, 3])))
    mean = cx.op("reduce_mean", [x], axes=axes, keepdims=True)
    mean_sq = cx.op("reduce_mean", [cx.op("mul", [x, x])], axes=axes, keepdims=True)
    std = cx.op("sqrt", [cx.op("sub", [mean_sq, cx.op("mul", [mean, mean])])])
    return cx.op("div", [cx.op("sub", [x, mean]), cx.op("add", [std, cx.scalar(1e-9, x.dtype)])])


@translates("RMSNormalization")
def rms_normalization(cx):
    x, scale = cx.input(0), cx.input(1)
    r = x.type.rank
    axis = norm_axis(cx, cx.attr("axis", -1), r)
    eps = float(cx.attr("epsilon", 1e-5))
    ms = cx.op("reduce_mean", [cx.op("mul", [x, x])], axes=tuple(range(axis, r)), keepdims=True)
    inv = cx.op("reciprocal", [cx.op("sqrt", [cx.op("add", [ms, cx.scalar(eps, x.dtype)])])])
    return cx.op("mul", [cx.op("mul", [x, inv]), scale])
