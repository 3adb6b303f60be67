"""ONNX indexing ops decomposed into ``gather``: GatherND, ReverseSequence and TensorScatter (any
indices), Col2Im and, with constant indices, ScatterND, ScatterElements, Compress; plus EyeLike
and NonZero of constants."""

from __future__ import annotations

import numpy as np

from ...graph.types import is_int
from ..onnx import onnx_dtype
from . import translates
from .tensor import checked_indices, norm_axis, prod, reshape, static_shape


@translates("GatherND")
def gather_nd(cx):
    # gather whole slices of the data flattened to [rows, *tail] at linear row indices
    x, idx = cx.input(0), cx.input(1)
    dims, idims = static_shape(cx, x), static_shape(cx, idx, "indices")
    b = cx.attr("batch_dims", 0)
    q = len(idims)
    if not is_int(idx.dtype) or q < 1:
        raise cx.fail(f"indices must be integers of rank >= 1, got {idx.type}")
    m = idims[-1]
    if not 1 <= m <= len(dims) - b or tuple(idims[:b]) != tuple(dims[:b]):
        raise cx.fail(f"indices {idx.type} do not index data {x.type} with batch_dims={b}")
    block = dims[b:b + m]
    strides = [prod(block[k + 1:]) for k in range(m)]
    i64 = checked_indices(cx, idx, block, range(b, b + m), dims)
    lin = cx.op("reduce_sum", [cx.op("mul", [i64, cx.const(np.array(strides, dtype=np.int64))])],
                axes=(q - 1,), keepdims=False)
    if b:
        nb = prod(idims[:b])
        offs = (np.arange(nb, dtype=np.int64) * prod(block)).reshape(tuple(idims[:b]) + (1,) * (q - 1 - b))
        lin = cx.op("add", [lin, cx.const(offs)])
    tail = tuple(dims[b + m:])
    flat = reshape(cx, x, (prod(dims[:b + m]),) + tail)
    return cx.op("gather", [flat, lin], axis=0)


def _scatter_rows(cx, rows, updates, targets: np.ndarray, reduction: str):
    """Write ``updates[j]`` into row ``targets[j]`` of ``rows`` (both [n, S]), later updates winning,
    or combined by ``reduction``; done in layers so that no row is written twice in one layer."""
    n = rows.shape[0]
    if targets.size and (targets.min() < 0 or targets.max() >= n):
        raise cx.fail(f"scatter index out of range [0, {n})")
    seen: dict[int, int] = {}
    layer_of = np.zeros(targets.size, dtype=np.int64)
    for j, t in enumerate(targets.tolist()):
        layer_of[j] = seen.get(t, 0)
        seen[t] = layer_of[j] + 1
    combine = {"none": None, "add": "add", "mul": "mul", "max": "maximum", "min": "minimum"}
    if reduction not in combine:
        raise cx.fail(f"unknown reduction {reduction!r}")
    out = rows
    for layer in range(int(layer_of.max()) + 1 if targets.size else 0):
        pick = np.zeros(n, dtype=np.int64)
        mask = np.zeros(n, dtype=bool)
        for j in np.nonzero(layer_of == layer)[0]:
            pick[targets[j]] = j
            mask[targets[j]] = True
        placed = cx.op("gather", [updates, cx.const(pick)], axis=0)
        if combine[reduction] is not None:
            placed = cx.op(combine[reduction], [out, placed])
        out = cx.op("where", [cx.const(mask.reshape((n,) + (1,) * (rows.type.rank - 1))), placed, out])
    return out


@translates("ScatterND")
def scatter_nd(cx):
    x = cx.input(0)
    idx = cx.const_input(1, "indices", required=True)
    upd = cx.input(2)
    dims = static_shape(cx, x)
    m = idx.shape[-1] if idx.ndim else 0
    if idx.ndim < 1 or not 1 <= m <= len(dims):
        raise cx.fail(f"indices of shape {list(idx.shape)} do not index data {x.type}")
    block = np.array(dims[:m], dtype=np.int64)
    bad = (idx < -block) | (idx >= block)
    if bad.any():
        k = tuple(np.argwhere(bad)[0])
        raise cx.fail(f"index {int(idx[k])} is out of range [-{block[k[-1]]}, {block[k[-1]]}) for axis {k[-1]} "
                      f"of the data {list(dims)}")
    i = np.where(idx < 0, idx + block, idx).astype(np.int64)
    strides = np.array([prod(dims[k + 1:m]) for k in range(m)], dtype=np.int64)
    targets = (i * strides).sum(axis=-1).reshape(-1)
    tail = tuple(dims[m:])
    if tuple(upd.shape) != tuple(idx.shape[:-1]) + tail:
        raise cx.fail(f"updates {upd.type} must have shape {list(idx.shape[:-1]) + list(tail)}")
    rows = reshape(cx, x, (prod(dims[:m]), prod(tail)))
    u = reshape(cx, upd, (targets.size, prod(tail)))
    return reshape(cx, _scatter_rows(cx, rows, u, targets, cx.attr("reduction", "none")), dims)


@translates("ScatterElements", "Scatter")
def scatter_elements(cx):
    x = cx.input(0)
    idx = cx.const_input(1, "indices", required=True)
    upd = cx.input(2)
    dims = static_shape(cx, x)
    r = len(dims)
    ax = norm_axis(cx, cx.attr("axis", 0), r)
    if idx.ndim != r or tuple(upd.shape) != idx.shape:
        raise cx.fail(f"indices {list(idx.shape)} and updates {upd.type} must match data {x.type} in rank and shape")
    i = np.where(idx < 0, idx + dims[ax], idx).astype(np.int64)
    if i.size and (i.min() < 0 or i.max() >= dims[ax]):
        bad = int(idx.reshape(-1)[np.flatnonzero((i.reshape(-1) < 0) | (i.reshape(-1) >= dims[ax]))[0]])
        raise cx.fail(f"index {bad} is out of range [-{dims[ax]}, {dims[ax]}) for axis {ax} of the data {list(dims)}")
    grids = list(np.meshgrid(*[np.arange(d) for d in idx.shape], indexing="ij"))
    grids[ax] = i
    targets = np.ravel_multi_index(grids, dims).reshape(-1) if i.size else np.zeros(0, np.int64)
    rows = reshape(cx, x, (prod(dims), 1))
    u = reshape(cx, upd, (targets.size, 1))
    return reshape(cx, _scatter_rows(cx, rows, u, targets, cx.attr("reduction", "none")), dims)


@translates("Compress")
def compress(cx):
    x = cx.input(0)
    cond = cx.const_input(1, "condition", required=True).astype(bool).reshape(-1)
    dims = static_shape(cx, x)
    if cx.has_attr("axis"):
        ax = norm_axis(cx, cx.attr("axis"), len(dims))
        n = dims[ax]
    else:
        x, ax, n = reshape(cx, x, (prod(dims),)), 0, prod(dims)
    keep = np.nonzero(cond[:n])[0].astype(np.int64)
    return cx.op("gather", [x, cx.const(keep)], axis=ax)


@translates("EyeLike")
def eye_like(cx):
    x = cx.input(0)
    dims = static_shape(cx, x)
    if len(dims) != 2:
        raise cx.fail(f"expects a 2-D input, got {x.type}")
    dtype = onnx_dtype(cx.attr("dtype"), "dtype", cx.name, cx.op_type) if cx.has_attr("dtype") else x.dtype
    return cx.const(np.eye(dims[0], dims[1], k=cx.attr("k", 0)).astype(dtype), dtype)


@translates("NonZero")
def nonzero(cx):
    x = cx.const_input(0, "input (NonZero's output shape depends on its values)", required=True)
    return cx.const(np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1))


@translates("Col2Im")
def col2im(cx):
    # every image pixel sums the column entries that land on it: a gather of those entries at
    # constant positions (padded with a zero entry to the largest count) and a sum
    x = cx.input(0)
    image = cx.ints_input(1, "image_shape", required=True)
    block = cx.ints_input(2, "block_shape", required=True)
    dims = static_shape(cx, x)
    k = len(image)
    if len(block) != k or len(dims) != 3:
        raise cx.fail(f"expects input [N, C * prod(block), L] and image/block shapes of one rank, got "
                      f"{x.type}, {image}, {block}")
    dil = list(cx.attr("dilations", [1] * k))
    pads = list(cx.attr("pads", [0] * (2 * k)))
    strides = list(cx.attr("strides", [1] * k))
    n_blocks = [(image[d] + pads[d] + pads[d + k] - dil[d] * (block[d] - 1) - 1) // strides[d] + 1
                for d in range(k)]
    nb, nl = prod(block), prod(n_blocks)
    if dims[1] % nb or dims[2] != nl or min(n_blocks) < 1:
        raise cx.fail(f"input {x.type} does not hold {nb}-element blocks at {nl} positions for image {image}")
    c = dims[1] // nb
    sources: list[list[int]] = [[] for _ in range(prod(image))]
    for b in np.ndindex(*block):
        b_flat = int(np.ravel_multi_index(b, block))
        for pos in np.ndindex(*n_blocks):
            at = [pos[d] * strides[d] - pads[d] + b[d] * dil[d] for d in range(k)]
            if all(0 <= at[d] < image[d] for d in range(k)):
                sources[int(np.ravel_multi_index(at, image))].append(b_flat * nl + int(np.ravel_multi_index(pos, n_blocks)))
    width = max(1, max(len(s) for s in sources))
    idx = np.full((len(sources), width), nb * nl, dtype=np.int64)      # nb * nl: the zero entry
    for p, s in enumerate(sources):
        idx[p, :len(s)] = s
    cols = reshape(cx, x, (dims[0], c, nb * nl))
    cols = cx.op("pad", [cols], pads=(0, 0, 0, 0, 0, 1), mode="constant", value=0)
    picked = cx.op("gather", [cols, cx.const(idx)], axis=2)             # [N, C, pixels, width]
    total = cx.op("reduce_sum", [picked], axes=(3,), keepdims=False)
    return reshape(cx, total, (dims[0], c) + tuple(image))


@translates("ReverseSequence")
def reverse_sequence(cx):
    # along the time axis, position t of batch entry b reads len[b] - 1 - t when t < len[b]
    from .arith import T
    from .tensor import gather_elements_values

    x, lens = cx.input(0), cx.input(1)
    dims = static_shape(cx, x)
    t_ax = norm_axis(cx, cx.attr("time_axis", 0), len(dims))
    b_ax = norm_axis(cx, cx.attr("batch_axis", 1), len(dims))
    if t_ax == b_ax or len(dims) < 2 or tuple(lens.shape) != (dims[b_ax],):
        raise cx.fail(f"sequence_lens {lens.type} must hold one length per batch entry of {x.type}")
    shp_t = [1] * len(dims)
    shp_t[t_ax] = dims[t_ax]
    shp_b = [1] * len(dims)
    shp_b[b_ax] = dims[b_ax]
    t = T(cx, cx.const(np.arange(dims[t_ax], dtype=np.int64).reshape(shp_t)))
    n = T(cx, reshape(cx, lens, shp_b)).cast("int64")
    src = (t < n).where((n - 1) - t, t)
    src = T(cx, cx.op("broadcast_to", [src.v], shape=tuple(dims)))
    return gather_elements_values(cx, x, src.v, t_ax)


@translates("TensorScatter")
def tensor_scatter(cx):
    # present[..., p, ...] = update[..., p - w[b], ...] where 0 <= p - w[b] < s (modulo the cache
    # length in circular mode), else past[..., p, ...]; w[b] is batch entry b's write index
    from .arith import T
    from .tensor import gather_elements_values

    past, upd = cx.input(0), cx.input(1)
    w = cx.input(2, required=False)
    dims, udims = static_shape(cx, past), static_shape(cx, upd, "update")
    r = len(dims)
    ax = norm_axis(cx, cx.attr("axis", -2), r)
    if ax == 0 or len(udims) != r or any(d != u for k, (d, u) in enumerate(zip(dims, udims)) if k != ax) \
            or udims[ax] > dims[ax]:
        raise cx.fail(f"update {upd.type} does not fit past_cache {past.type} along axis {ax}")
    mode = cx.attr("mode", "linear")
    if mode not in ("linear", "circular"):
        raise cx.fail(f"unknown mode {mode!r}")
    s, m = udims[ax], dims[ax]
    shp_p = [1] * r
    shp_p[ax] = m
    p = T(cx, cx.const(np.arange(m, dtype=np.int64).reshape(shp_p)))
    if w is None:
        start = T(cx, cx.scalar(0, "int64"))
    else:
        shp_b = [1] * r
        shp_b[0] = dims[0]
        start = T(cx, reshape(cx, w, shp_b)).cast("int64")
    j = p - start
    if mode == "circular":
        j = ((j % m) + m) % m
    inside = (j >= 0) & (j < s)
    full = tuple(dims[:ax]) + (m,) + tuple(dims[ax + 1:])
    src = T(cx, cx.op("broadcast_to", [j.clip(0, s - 1).v], shape=full))
    # gather from the update extended to the cache's length along the axis
    pad = [0] * (2 * r)
    pad[ax + r] = m - s
    ext = cx.op("pad", [upd], pads=tuple(pad), mode="constant", value=0) if m > s else upd
    picked = gather_elements_values(cx, ext, src.v, ax)
    return T(cx, cx.op("broadcast_to", [inside.v], shape=full)).where(picked, past).v
