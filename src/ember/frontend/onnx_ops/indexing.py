"""ONNX indexing ops decomposed into ``gather``: GatherND (any indices) and, with constant
indices, ScatterND, ScatterElements, Compress; plus EyeLike and NonZero of constants."""

from __future__ import annotations

import numpy as np

from ...graph.types import is_int
from ..onnx import onnx_dtype
from . import translates
from .tensor import norm_axis, prod, reshape, static_shape


def _normalized_indices(cx, idx, dims_vec):
    """int64 indices with negatives counted from the end (``dims_vec`` broadcasts against idx)."""
    i64 = idx if idx.dtype == "int64" else cx.op("cast", [idx], to="int64")
    return cx.op("where", [cx.op("less", [i64, cx.scalar(0, "int64")]), cx.op("add", [i64, dims_vec]), i64])


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
    i64 = _normalized_indices(cx, idx, cx.const(np.array(block, dtype=np.int64)))
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
        raise cx.fail(f"index out of range on axis {ax}")
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
