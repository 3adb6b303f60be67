"""ONNX indexing ops decomposed into ``gather``: GatherND, ReverseSequence and TensorScatter (any
indices), Col2Im, ScatterND and ScatterElements (constant indices in layers of gathers, indices
read at run time by comparing every row with every update), Compress; plus EyeLike and NonZero of
constants."""

from __future__ import annotations

import numpy as np

from ...graph.types import is_int, np_dtype
from ...symbolic import Sym, compare, product
from ..onnx import onnx_dtype
from . import data_dims, translates
from .tensor import _dim_tensor, checked_indices, norm_axis, prod, reshape


def _dims_value(cx, dims):
    """A list of dimensions as an int64 tensor: a constant, or computed at run time."""
    return cx.sym_value(np.array(list(dims), dtype=object).reshape(len(dims)))


def iota(cx, n, axis: int, rank: int):
    """0, 1, ..., n - 1 along ``axis`` of a rank-``rank`` int64 tensor (``n`` may be symbolic)."""
    shp = [1] * rank
    shp[axis] = n
    if isinstance(n, Sym):
        return reshape(cx, cx.op("arange", [], length=n, start=0, delta=1, dtype="int64"), shp)
    return cx.const(np.arange(n, dtype=np.int64).reshape(shp))


def _static_dims(cx, v, axes, why: str):
    """``v``'s dimensions, those on ``axes`` required static (they decide what is emitted)."""
    dims = tuple(v.shape)
    for k in axes:
        if isinstance(dims[k], Sym):
            raise cx.fail(f"dimension {k} of '{v.name}' ({v.type}) is the symbolic {dims[k]}, and {why}; "
                          f"fix it with shapes=")
    return dims


@translates("GatherND")
def gather_nd(cx):
    # gather whole slices of the data flattened to [rows, *tail] at linear row indices
    x, idx = cx.input(0), cx.input(1)
    dims, idims = tuple(x.shape), tuple(idx.shape)
    b = cx.attr("batch_dims", 0)
    q = len(idims)
    if not is_int(idx.dtype) or q < 1:
        raise cx.fail(f"indices must be integers of rank >= 1, got {idx.type}")
    m = _static_dims(cx, idx, [q - 1], "its last dimension is the number of indexed axes")[-1]
    if not 1 <= m <= len(dims) - b or tuple(idims[:b]) != tuple(dims[:b]):
        raise cx.fail(f"indices {idx.type} do not index data {x.type} with batch_dims={b}")
    block = dims[b:b + m]
    strides = [product(block[k + 1:]) for k in range(m)]
    i64 = checked_indices(cx, idx, block, range(b, b + m), dims)
    lin = cx.op("reduce_sum", [cx.op("mul", [i64, _dims_value(cx, strides)])], axes=(q - 1,), keepdims=False)
    if b:
        nb, size = product(idims[:b]), product(block)
        if isinstance(nb, int) and isinstance(size, int):
            offs = cx.const(np.arange(nb, dtype=np.int64) * size)
        else:
            offs = cx.op("mul", [iota(cx, nb, 0, 1), _dim_tensor(cx, size)])
        lin = cx.op("add", [lin, reshape(cx, offs, tuple(idims[:b]) + (1,) * (q - 1 - b))])
    tail = tuple(dims[b + m:])
    flat = reshape(cx, x, (product(dims[:b + m]),) + tail)
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


_SCATTER_COMBINE = {"none": None, "add": "add", "mul": "mul", "max": "maximum", "min": "minimum"}


def _scatter_rows_at_run_time(cx, rows, updates, targets, reduction: str):
    """Write ``updates[j]`` into row ``targets[j]`` of ``rows`` ([R, S] and [N, S]; ``targets``,
    [N] int64 in [0, R), read at run time): row t compares its index with every target (O(R * N)
    comparisons, the updates read O(R * N * S) times when combined), takes the last update aimed
    at it, or all of them combined in order by ``reduction``."""
    if reduction not in _SCATTER_COMBINE:
        raise cx.fail(f"unknown reduction {reduction!r}")
    n_rows, n = rows.shape[0], updates.shape[0]
    if isinstance(n, int) and n == 0:
        return rows
    hit = cx.op("equal", [iota(cx, n_rows, 0, 2), reshape(cx, targets, (1, n))])              # [R, N]
    hit_i = cx.op("cast", [hit], to="int64")
    aimed = cx.op("greater", [cx.op("reduce_max", [hit_i], axes=(1,), keepdims=True), cx.scalar(0, "int64")])
    if reduction == "none":
        j = cx.op("mul", [hit_i, cx.op("add", [iota(cx, n, 1, 2), cx.scalar(1, "int64")])])
        last = cx.op("reduce_max", [j], axes=(1,), keepdims=False)                           # 1 + the last j
        picked = cx.op("gather", [updates, cx.op("maximum", [cx.op("sub", [last, cx.scalar(1, "int64")]),
                                                             cx.scalar(0, "int64")])], axis=0)
        return cx.op("where", [aimed, picked, rows])
    core = {"add": "reduce_sum", "mul": "reduce_prod", "max": "reduce_max", "min": "reduce_min"}[reduction]
    dt = np.dtype(np_dtype(updates.dtype)) if updates.dtype != "bfloat16" else np.dtype(np.float32)
    if reduction in ("add", "mul"):
        ident = 0 if reduction == "add" else 1
    elif dt == np.bool_:
        ident = reduction == "min"
    elif dt.kind == "f":
        ident = -np.inf if reduction == "max" else np.inf
    else:
        ident = np.iinfo(dt).min if reduction == "max" else np.iinfo(dt).max
    s = updates.shape[1]
    each = cx.op("where", [reshape(cx, hit, (n_rows, n, 1)), reshape(cx, updates, (1, n, s)),
                           cx.scalar(ident, updates.dtype)])
    total = cx.op(core, [each], axes=(1,), keepdims=False)
    return cx.op("where", [aimed, cx.op(_SCATTER_COMBINE[reduction], [rows, total]), rows])


def _scatter_nd_at_run_time(cx, x, idx, upd):
    """ScatterND with indices read at run time: each index tuple checked per axis and made a
    linear row index into the data flattened to [rows, *tail]."""
    dims, idims = tuple(x.shape), tuple(idx.shape)
    q = len(idims)
    if not is_int(idx.dtype) or q < 1:
        raise cx.fail(f"indices must be integers of rank >= 1, got {idx.type}")
    m = _static_dims(cx, idx, [q - 1], "its last dimension is the number of indexed axes")[-1]
    if not 1 <= m <= len(dims):
        raise cx.fail(f"indices {idx.type} do not index data {x.type}")
    tail = dims[m:]
    if len(upd.shape) != q - 1 + len(tail) or any(
            compare(a, "==", b, None) is False for a, b in zip(upd.shape, idims[:-1] + tail)):
        raise cx.fail(f"updates {upd.type} must have shape {list(idims[:-1]) + list(tail)}")
    block = dims[:m]
    i64 = checked_indices(cx, idx, block, range(m), dims)
    strides = [product(block[k + 1:]) for k in range(m)]
    lin = cx.op("reduce_sum", [cx.op("mul", [i64, _dims_value(cx, strides)])], axes=(q - 1,), keepdims=False)
    n, size = product(idims[:-1]), product(tail)
    rows = reshape(cx, x, (product(block), size))
    out = _scatter_rows_at_run_time(cx, rows, reshape(cx, upd, (n, size)), reshape(cx, lin, (n,)),
                                    cx.attr("reduction", "none"))
    return reshape(cx, out, dims)


def _scatter_elements_at_run_time(cx, x, idx, upd, ax: int):
    """ScatterElements with indices read at run time: element p of the updates goes to p with
    its coordinate on ``ax`` replaced by the (checked) index, as a linear index into the
    flattened data."""
    dims, idims = tuple(x.shape), tuple(idx.shape)
    r = len(dims)
    if not is_int(idx.dtype) or len(idims) != r or any(
            compare(a, "==", b, None) is False for a, b in zip(upd.shape, idims)):
        raise cx.fail(f"indices {idx.type} and updates {upd.type} must match data {x.type} in rank and shape")
    for k in range(r):
        if k != ax:
            cx.require(dims[k] - idims[k], ">=", f"indices {idx.type} within data {x.type} on axis {k}")
    strides = [product(dims[k + 1:]) for k in range(r)]
    i64 = checked_indices(cx, idx, (dims[ax],), (ax,), dims)
    lin = cx.op("mul", [i64, _dim_tensor(cx, strides[ax])])
    for k in range(r):
        if k != ax:
            lin = cx.op("add", [lin, cx.op("mul", [iota(cx, idims[k], k, r), _dim_tensor(cx, strides[k])])])
    n = product(idims)
    out = _scatter_rows_at_run_time(cx, reshape(cx, x, (product(dims), 1)), reshape(cx, upd, (n, 1)),
                                    reshape(cx, lin, (n,)), cx.attr("reduction", "none"))
    return reshape(cx, out, dims)


@translates("ScatterND")
def scatter_nd(cx):
    x = cx.input(0)
    if data_dims.runtime_operand(cx, 1) is not None:
        return _scatter_nd_at_run_time(cx, x, cx.input(1), cx.input(2))
    idx = cx.const_input(1, "indices", required=True)
    upd = cx.input(2)
    m = idx.shape[-1] if idx.ndim else 0
    if idx.ndim < 1 or not 1 <= m <= x.type.rank:
        raise cx.fail(f"indices of shape {list(idx.shape)} do not index data {x.type}")
    dims = tuple(x.shape)
    tail = dims[m:]
    if tuple(upd.shape) != tuple(idx.shape[:-1]) + tail:
        raise cx.fail(f"updates {upd.type} must have shape {list(idx.shape[:-1]) + list(tail)}")
    symbolic = [k for k in range(m) if isinstance(dims[k], Sym)]
    if symbolic:
        # only the box [0, largest index] of the indexed axes is written: scattered into as a
        # static tensor and put back
        if idx.size and idx.min() < 0:
            _static_dims(cx, x, symbolic, "negative constant indices count from its end")
        top = idx.reshape(-1, m).max(axis=0) + 1 if idx.size else np.zeros(m, np.int64)
        box = tuple(int(t) for t in top) + tail
        if any(compare(box[k], ">", dims[k], cx.bounds) for k in range(m)):
            raise cx.fail(f"indices of shape {list(idx.shape)} reach outside data {x.type}")
        inner = cx.op("slice", [x], starts=(0,) * len(dims), ends=box, steps=(1,) * len(dims))
        return _put_back(cx, x, _scatter_nd_static(cx, inner, idx, upd), box)
    return _scatter_nd_static(cx, x, idx, upd)


def _scatter_nd_static(cx, x, idx, upd):
    """ScatterND with constant indices into ``x``, whose indexed axes are static."""
    dims = tuple(x.shape)
    m = idx.shape[-1]
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
    rows = reshape(cx, x, (prod(dims[:m]), product(tail)))
    u = reshape(cx, upd, (targets.size, product(tail)))
    return reshape(cx, _scatter_rows(cx, rows, u, targets, cx.attr("reduction", "none")), dims)


def _put_back(cx, x, done, box):
    """``x`` with its box [0, box) replaced by ``done`` (of shape ``box``): each axis of ``done``
    read at min(position, box - 1), taken inside the box."""
    dims, r = tuple(x.shape), x.type.rank
    inside = None
    for k in range(r):
        if box[k] == dims[k]:
            continue
        pos = cx.op("arange", [], length=dims[k], start=0, delta=1, dtype="int64")
        done = cx.op("gather", [done, cx.op("minimum", [pos, cx.scalar(max(box[k] - 1, 0), "int64")])], axis=k)
        shp = [1] * r
        shp[k] = dims[k]
        within = reshape(cx, cx.op("less", [pos, cx.scalar(box[k], "int64")]), shp)
        inside = within if inside is None else cx.op("logical_and", [inside, within])
    return done if inside is None else cx.op("where", [inside, done, x])


@translates("ScatterElements", "Scatter")
def scatter_elements(cx):
    x = cx.input(0)
    upd = cx.input(2)
    r = x.type.rank
    ax = norm_axis(cx, cx.attr("axis", 0), r)
    if data_dims.runtime_operand(cx, 1) is not None:
        return _scatter_elements_at_run_time(cx, x, cx.input(1), upd, ax)
    idx = cx.const_input(1, "indices", required=True)
    if idx.ndim != r or tuple(upd.shape) != idx.shape:
        raise cx.fail(f"indices {list(idx.shape)} and updates {upd.type} must match data {x.type} in rank and shape")
    if not x.type.is_static:
        return _scatter_elements_in_box(cx, x, idx, upd, ax)
    dims = tuple(x.shape)
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


def _scatter_elements_in_box(cx, x, idx, upd, ax: int):
    """ScatterElements into data of symbolic shape: the constant indices write only inside the
    static box [0, idx.shape) ([0, largest index] along the axis), so the box is sliced out,
    scattered into as a static tensor and put back where it came from."""
    dims, r = tuple(x.shape), x.type.rank
    if idx.size and idx.min() < 0:
        _static_dims(cx, x, [ax], "negative constant indices count from its end")
    i = np.where(idx < 0, idx + (dims[ax] if idx.size and idx.min() < 0 else 0), idx).astype(np.int64)
    box = list(idx.shape)
    box[ax] = int(i.max()) + 1 if i.size else 0
    if i.size and (i.min() < 0 or compare(box[ax], ">", dims[ax], cx.bounds)):
        raise cx.fail(f"index out of range on axis {ax}")
    inner = cx.op("slice", [x], starts=(0,) * r, ends=tuple(box), steps=(1,) * r)
    grids = list(np.meshgrid(*[np.arange(d) for d in idx.shape], indexing="ij"))
    grids[ax] = i
    targets = np.ravel_multi_index(grids, box).reshape(-1) if i.size else np.zeros(0, np.int64)
    rows = reshape(cx, inner, (prod(box), 1))
    u = reshape(cx, upd, (targets.size, 1))
    done = reshape(cx, _scatter_rows(cx, rows, u, targets, cx.attr("reduction", "none")), box)
    return _put_back(cx, x, done, box)


@translates("Compress")
def compress(cx):
    x = cx.input(0)
    if data_dims.runtime_operand(cx, 1) is not None:
        return _compress_at_run_time(cx, x, cx.input(1))
    cond = cx.const_input(1, "condition", required=True).astype(bool).reshape(-1)
    if cx.has_attr("axis"):
        ax = norm_axis(cx, cx.attr("axis"), x.type.rank)
        n = _static_dims(cx, x, [ax], "the constant condition selects along it")[ax]
    else:
        dims = _static_dims(cx, x, range(x.type.rank), "the constant condition selects from the flattened input")
        x, ax, n = reshape(cx, x, (prod(dims),)), 0, prod(dims)
    keep = np.nonzero(cond[:n])[0].astype(np.int64)
    return cx.op("gather", [x, cx.const(keep)], axis=ax)


def _compress_at_run_time(cx, x, cond):
    """Compress by a condition read at run time: the positions of its true elements (their
    count bound at run time), gathered along the axis (or from the flattened input)."""
    if cond.type.rank != 1 or not isinstance(cond.shape[0], int):
        raise cx.fail(f"the condition must be 1-D of static length, got {cond.type}")
    if cx.has_attr("axis"):
        ax = norm_axis(cx, cx.attr("axis"), x.type.rank)
        n = x.shape[ax]
    else:
        x, ax, n = reshape(cx, x, (prod(x.shape),)), 0, prod(x.shape)
    m = cond.shape[0]
    if m > 0 and compare(n, "<", m) is not False:
        if not isinstance(n, int):
            raise cx.fail(f"the condition of length {m} may be longer than the axis {n}; fix it with shapes=")
        cond = cx.op("slice", [cond], starts=(0,), ends=(n,), steps=(1,))
        m = n
    if m == 0:
        return cx.op("slice", [x], starts=tuple(0 for _ in x.shape),
                     ends=tuple(0 if k == ax else d for k, d in enumerate(x.shape)), steps=tuple(1 for _ in x.shape))
    pos, _ = data_dims.nonzero_positions(cx, cond)
    return cx.op("gather", [x, pos], axis=ax)


@translates("EyeLike")
def eye_like(cx):
    x = cx.input(0)
    dims = tuple(x.shape)
    if len(dims) != 2:
        raise cx.fail(f"expects a 2-D input, got {x.type}")
    dtype = onnx_dtype(cx.attr("dtype"), "dtype", cx.name, cx.op_type) if cx.has_attr("dtype") else x.dtype
    k = cx.attr("k", 0)
    if x.type.is_static:
        return cx.const(np.eye(dims[0], dims[1], k=k).astype(dtype), dtype)
    # ones where column - row == k
    diff = cx.op("sub", [iota(cx, dims[1], 1, 2), iota(cx, dims[0], 0, 2)])
    return cx.op("cast", [cx.op("equal", [diff, cx.scalar(k, "int64")])], to=dtype)


@translates("NonZero")
def nonzero(cx):
    x = cx.input(0)
    if x.is_const:
        return cx.const(np.array(np.nonzero(x.const), dtype=np.int64).reshape(x.const.ndim, -1))
    # the positions of the nonzeros in the flattened input (their count bound at run time),
    # unraveled into coordinates
    dims = list(x.shape)
    n = prod(dims)
    if not isinstance(n, int):
        raise cx.fail(f"needs a static element count, got {x.type}; fix the input's shape with shapes=")
    if n == 0:
        return cx.const(np.zeros((len(dims), 0), np.int64))
    pos, nz = data_dims.nonzero_positions(cx, cx.op("reshape", [x], shape=(n,)))
    rows, stride = [], n
    for d in dims:
        stride //= d
        c = cx.op("div", [pos, cx.scalar(stride, "int64")]) if stride != 1 else pos
        if rows:
            c = cx.op("fmod", [c, cx.scalar(d, "int64")])
        rows.append(cx.op("reshape", [c], shape=(1, nz)))
    if not rows:        # a scalar: [0, count]
        return cx.op("slice", [cx.op("reshape", [pos], shape=(1, nz))], starts=(0, 0), ends=(0, nz), steps=(1, 1))
    return rows[0] if len(rows) == 1 else cx.op("concat", rows, axis=0)


def _col2im_attrs(cx, k: int):
    dil = list(cx.attr("dilations", [1] * k))
    pads = list(cx.attr("pads", [0] * (2 * k)))
    strides = list(cx.attr("strides", [1] * k))
    if len(dil) != k or len(pads) != 2 * k or len(strides) != k or min(strides + dil) < 1:
        raise cx.fail(f"dilations {dil}, pads {pads} and strides {strides} do not fit {k} image axes")
    return dil, pads, strides


@translates("Col2Im")
def col2im(cx):
    # every image pixel sums the column entries that land on it: a gather of those entries at
    # constant positions (padded with a zero entry to the largest count) and a sum
    x = cx.input(0)
    dims = _static_dims(cx, x, [1, 2], "it must match the image and block shapes") if x.type.rank == 3 else x.shape
    if data_dims.runtime_operand(cx, 1) is not None or data_dims.runtime_operand(cx, 2) is not None:
        k = cx.input(1).shape[0] if cx.input(1).type.rank == 1 else -1
        if len(dims) != 3 or not isinstance(k, int) or k < 1:
            raise cx.fail(f"expects input [N, C * prod(block), L] and a 1-D image_shape of static length, got "
                          f"{x.type}, {cx.input(1).type}")
        return _col2im_at_run_time(cx, x, dims, k, *_col2im_attrs(cx, k))
    image = cx.ints_input(1, "image_shape", required=True)
    block = cx.ints_input(2, "block_shape", required=True)
    k = len(image)
    if len(block) != k or len(dims) != 3:
        raise cx.fail(f"expects input [N, C * prod(block), L] and image/block shapes of one rank, got "
                      f"{x.type}, {image}, {block}")
    dil, pads, strides = _col2im_attrs(cx, k)
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


def _col2im_at_run_time(cx, x, dims, k, dil, pads, strides):
    """Col2Im with its image_shape or block_shape read at run time: the image sizes, the block
    sizes and the channel count they leave are bound (sizes whose block counts do not multiply
    to the input's L, or a block whose size does not divide its channels, fail the binding), and
    every output pixel sums, over the block's offsets, the column entry whose block puts that
    offset on it: a gather at positions computed from the run's sizes (a zero entry where no
    block does), O(pixels x block size)."""
    from .arith import T

    def operand(i, what):
        if data_dims.runtime_operand(cx, i) is None:
            return cx.const(np.array(cx.ints_input(i, what, required=True), np.int64))
        return data_dims.shape_operand(cx, cx.input(i), what)

    image, block = operand(1, "image_shape"), operand(2, "block_shape")
    n_ch, n_l = dims[1], dims[2]
    if image.shape[0] != k or block.shape[0] != k:
        raise cx.fail(f"expects input [N, C * prod(block), L] and image/block shapes of one rank, got "
                      f"{x.type}, {image.type}, {block.type}")
    one = T(cx, cx.scalar(1, "int64"))

    def counts(vals):
        """The image and block sizes in ``vals`` ([image..., block...]), the block count along
        each axis, the block's size and whether some size fits no block."""
        img = [T(cx, data_dims.element(cx, vals, d)) for d in range(k)]
        blk = [T(cx, data_dims.element(cx, vals, k + d)) for d in range(k)]
        nb, bad, n_blocks = one, None, []
        for d in range(k):
            e = img[d] + (pads[d] + pads[d + k] + dil[d]) - blk[d] * dil[d] - 1
            short = (e < 0) | (blk[d] < 1)
            bad = short if bad is None else bad | short
            n_blocks.append(e / strides[d] + 1)
            nb = nb * blk[d]
        return img, blk, n_blocks, nb, bad

    vals = cx.op("concat", [image, block], axis=0)
    _, _, n_blocks, nb, bad = counts(vals)
    total = one
    for n_d in n_blocks:
        total = total * n_d
    nb1 = nb.max(1)
    bad = bad | total.ne(n_l) | (T(cx, cx.scalar(n_ch, "int64")) % nb1).ne(0)
    channels = (T(cx, cx.scalar(n_ch, "int64")) / nb1).reshape((1,))
    vals = cx.op("concat", [vals, channels.v], axis=0)
    # a block size is at most the channels; the largest image size along an axis gives all L
    # blocks there
    limits = [max(0, (n_l - 1) * strides[d] + dil[d] * (n_ch - 1) + 1 - pads[d] - pads[d + k]) for d in range(k)]
    bound, sizes = data_dims.bind(cx, data_dims.invalid_if(cx, vals, bad.v),
                                  [f"image{d}" for d in range(k)] + [f"block{d}" for d in range(k)] + ["channels"],
                                  limits=limits + [n_ch] * (k + 1))
    _, blk, n_blocks, nb, _ = counts(bound)
    # over [channel, pixels..., offsets...]: per axis d (pixel axis 1 + d, offset axis 1 + k + d)
    # the block whose offset lands on the pixel, and whether there is one
    ok, at_l, off, later, later_b = None, None, None, one, one
    for d in reversed(range(k)):
        t, b = sizes[d], sizes[k + d]
        shp = [1] * (1 + 2 * k)
        shp[1 + d], shp[1 + k + d] = t, b
        i = T(cx, data_dims.iota(cx, bound, t)).reshape((t, 1))
        j = T(cx, data_dims.iota(cx, bound, b)).reshape((1, b))
        q = i + pads[d] - j * dil[d]
        qc = q.max(0)
        at = qc / strides[d]
        fits = ((q >= 0) & (qc % strides[d]).eq(0) & (at < n_blocks[d])).reshape(shp)
        ok = fits if ok is None else ok & fits
        at_l = (at * later).reshape(shp) if at_l is None else at_l + (at * later).reshape(shp)
        jo = (j * later_b).reshape([1] * (1 + k + d) + [b] + [1] * (k - 1 - d))
        off = jo if off is None else off + jo
        later, later_b = later * n_blocks[d], later_b * blk[d]
    ch = T(cx, data_dims.iota(cx, bound, sizes[2 * k])).reshape((sizes[2 * k],) + (1,) * (2 * k))
    col = ok.where((ch * nb + off) * n_l + at_l, n_ch * n_l)            # n_ch * n_l: the zero entry
    flat = reshape(cx, x, (dims[0], n_ch * n_l))
    flat = cx.op("pad", [flat], pads=(0, 0, 0, 1), mode="constant", value=0)
    picked = cx.op("gather", [flat, col.v], axis=1)                      # [N, C, pixels..., offsets...]
    return cx.op("reduce_sum", [picked], axes=tuple(range(2 + k, 2 + 2 * k)), keepdims=False)


@translates("ReverseSequence")
def reverse_sequence(cx):
    # along the time axis, position t of batch entry b reads len[b] - 1 - t when t < len[b]
    from .arith import T
    from .tensor import gather_elements_values

    x, lens = cx.input(0), cx.input(1)
    dims = tuple(x.shape)
    t_ax = norm_axis(cx, cx.attr("time_axis", 0), len(dims))
    b_ax = norm_axis(cx, cx.attr("batch_axis", 1), len(dims))
    if t_ax == b_ax or len(dims) < 2 or tuple(lens.shape) != (dims[b_ax],):
        raise cx.fail(f"sequence_lens {lens.type} must hold one length per batch entry of {x.type}")
    shp_b = [1] * len(dims)
    shp_b[b_ax] = dims[b_ax]
    t = T(cx, iota(cx, dims[t_ax], t_ax, len(dims)))
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
    dims, udims = tuple(past.shape), tuple(upd.shape)
    r = len(dims)
    ax = norm_axis(cx, cx.attr("axis", -2), r)
    if ax == 0 or len(udims) != r or any(d != u for k, (d, u) in enumerate(zip(dims, udims)) if k != ax) \
            or compare(udims[ax], ">", dims[ax], cx.bounds):
        raise cx.fail(f"update {upd.type} does not fit past_cache {past.type} along axis {ax}")
    mode = cx.attr("mode", "linear")
    if mode not in ("linear", "circular"):
        raise cx.fail(f"unknown mode {mode!r}")
    s, m = udims[ax], dims[ax]
    p = T(cx, iota(cx, m, ax, r))
    if w is None:
        start = T(cx, cx.scalar(0, "int64"))
    else:
        shp_b = [1] * r
        shp_b[0] = dims[0]
        start = T(cx, reshape(cx, w, shp_b)).cast("int64")
    j = p - start
    if isinstance(m, Sym) or isinstance(s, Sym):
        m_, s_ = (T(cx, _dim_tensor(cx, d)) for d in (m, s))
        if mode == "circular":
            j = ((j % m_) + m_) % m_
        inside = (j >= 0) & (j < s_)
        full = tuple(dims[:ax]) + (m,) + tuple(dims[ax + 1:])
        src = T(cx, cx.op("broadcast_to", [j.max(0).min(s_).v], shape=full))
        # gather from the update extended by a zero slot (read where nothing is inside)
        zero = list(udims)
        zero[ax] = 1
        ext = cx.op("concat", [upd, cx.op("broadcast_to", [cx.scalar(0, upd.dtype)], shape=tuple(zero))], axis=ax)
        picked = gather_elements_values(cx, ext, src.v, ax)
        return T(cx, cx.op("broadcast_to", [inside.v], shape=full)).where(picked, past).v
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
