"""ATen ops that shape, slice, index and create tensors.  Output shapes come from torch's own
metadata (``cx.out_shape()``), so views and expansions over symbolic sizes need no shape
arithmetic here."""

from __future__ import annotations

import numpy as np

from ...graph.ir import Value
from ...graph.types import np_dtype
from ...symbolic import Sym, compare
from ..core import dim_tensor
from . import translates


def _axis(ax: int, rank: int) -> int:
    return ax % rank if rank else 0


@translates("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default", "aten.view_copy.default",
            "aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default", "aten.unsqueeze.default",
            "aten.flatten.using_ints", "aten.unflatten.int")
def view(cx, x, *args):
    return cx.reshape(x, cx.out_shape())


@translates("aten.permute.default", "aten.permute_copy.default")
def permute(cx, x, dims):
    perm = tuple(_axis(d, x.type.rank) for d in dims)
    if perm == tuple(range(x.type.rank)):
        return x
    return cx.op("transpose", [x], perm=perm)


@translates("aten.transpose.int")
def transpose(cx, x, d0, d1):
    perm = list(range(x.type.rank))
    a, b = _axis(d0, x.type.rank), _axis(d1, x.type.rank)
    perm[a], perm[b] = perm[b], perm[a]
    return permute(cx, x, perm)


@translates("aten.t.default", "aten.numpy_T.default")
def t(cx, x):
    return permute(cx, x, list(range(x.type.rank))[::-1])


@translates("aten.expand.default", "aten.expand_copy.default", "aten.broadcast_to.default")
def expand(cx, x, *args, **kwargs):
    return cx.broadcast(x, cx.out_shape())


def _clamp_start(cx, start, d):
    """A slice start as torch clamps it: negative counts from the end, then into [0, d]."""
    if start is None:
        return 0
    if isinstance(start, int) and start < 0:
        start = d + start
        if isinstance(start, int):
            return max(start, 0)
        if compare(start, ">=", 0, cx.b.bounds) is not True:
            raise cx.unsupported("a negative start beyond a symbolic size")
        return start
    if isinstance(d, int) and isinstance(start, int):
        return min(start, d)
    r = compare(start, "<=", d, cx.b.bounds)
    if r is None:
        raise cx.unsupported(f"a slice start {start} that may pass the size {d}")
    return start if r else d


@translates("aten.slice.Tensor", "aten.slice_copy.Tensor")
def slice_(cx, x, dim=0, start=None, end=None, step=1):
    ax = _axis(dim, x.type.rank)
    out = cx.out_shape()
    if tuple(out) == tuple(x.shape):
        return x
    d = x.shape[ax]
    s = _clamp_start(cx, start, d)
    n = out[ax]
    starts = [0] * x.type.rank
    ends = list(x.shape)
    steps = [1] * x.type.rank
    starts[ax], steps[ax] = s, step
    ends[ax] = s + n * step if not (isinstance(n, int) and n == 0) else s
    return cx.op("slice", [x], starts=tuple(starts), ends=tuple(ends), steps=tuple(steps))


@translates("aten.select.int", "aten.select_copy.int")
def select(cx, x, dim, index):
    ax = _axis(dim, x.type.rank)
    d = x.shape[ax]
    i = index
    if isinstance(i, int) and i < 0:
        i = d + i
    starts = [0] * x.type.rank
    ends = list(x.shape)
    starts[ax], ends[ax] = i, i + 1
    y = cx.op("slice", [x], starts=tuple(starts), ends=tuple(ends), steps=(1,) * x.type.rank)
    return cx.reshape(y, cx.out_shape())


@translates("aten.split_with_sizes.default", "aten.split.Tensor", "aten.split_with_sizes_copy.default",
            "aten.split_copy.Tensor", "aten.unbind.int", "aten.chunk.default")
def split(cx, x, sizes=None, dim=0):
    if cx.op_type == "aten.unbind.int":
        dim = sizes if sizes is not None else 0
    ax = _axis(dim, x.type.rank)
    outs, start = [], 0
    for k in range(len(cx.meta)):
        shape = cx.out_shape(k)
        n = shape[ax] if len(shape) == x.type.rank else 1
        starts = [0] * x.type.rank
        ends = list(x.shape)
        starts[ax], ends[ax] = start, start + n
        y = cx.op("slice", [x], starts=tuple(starts), ends=tuple(ends), steps=(1,) * x.type.rank)
        outs.append(cx.reshape(y, shape))
        start = start + n
    return outs


@translates("aten.cat.default", "aten.concat.default")
def cat(cx, tensors, dim=0):
    out = cx.out_dtype()
    vals = [cx.cast(t, out) for t in tensors if not (t.type.rank == 1 and t.shape[0] == 0)]
    if len(vals) == 1:
        return vals[0]
    return cx.op("concat", vals, axis=_axis(dim, vals[0].type.rank))


@translates("aten.embedding.default")
def embedding(cx, weight, indices, *args):
    return cx.op("gather", [weight, indices], axis=0)


@translates("aten.index_select.default")
def index_select(cx, x, dim, index):
    return cx.op("gather", [x, index], axis=_axis(dim, x.type.rank))


@translates("aten.index.Tensor", "aten._unsafe_index.Tensor")
def index(cx, x, indices):
    """``x[..., i0, i1, ...]`` with integer index tensors on adjacent axes: the indices
    broadcast together and become one linear index into those axes merged."""
    pos = [k for k, i in enumerate(indices) if i is not None]
    if not pos or pos != list(range(pos[0], pos[0] + len(pos))):
        raise cx.unsupported("index tensors on axes that are not adjacent")
    idx = [indices[k] for k in pos]
    if any(i.dtype == "bool" for i in idx):
        raise cx.unsupported("boolean masks as indices")
    k0 = pos[0]
    dims = [x.shape[k] for k in pos]
    lin = None
    for i, d in zip(idx, dims):
        i = cx.cast(i, "int64")
        if len(pos) > 1:              # gather counts a negative index from the end; a merged axis does not
            dt = cx.tensor(d, "int64")
            i = cx.op("where", [cx.op("less", [i, cx.scalar(0, "int64")]), cx.op("add", [i, dt]), i])
        lin = i if lin is None else cx.op("add", [cx.op("mul", [lin, cx.tensor(d, "int64")]), i])
    merged = 1
    for d in dims:
        merged *= d
    if len(pos) > 1:
        x = cx.reshape(x, tuple(x.shape[:k0]) + (merged,) + tuple(x.shape[k0 + len(pos):]))
    y = cx.op("gather", [x, lin], axis=k0)
    return cx.reshape(y, cx.out_shape())


@translates("aten.gather.default")
def gather(cx, x, dim, index, sparse_grad=False):
    from ..onnx_ops.tensor import gather_elements_values

    return gather_elements_values(cx, x, index, _axis(dim, x.type.rank))


@translates("aten.constant_pad_nd.default")
def constant_pad_nd(cx, x, pad, value=0):
    r = x.type.rank
    begins, ends = [0] * r, [0] * r
    for k in range(len(pad) // 2):
        ax = r - 1 - k
        begins[ax], ends[ax] = pad[2 * k], pad[2 * k + 1]
    return cx.op("pad", [x], pads=tuple(begins + ends), mode="constant", value=float(value))


@translates("aten.repeat.default")
def repeat(cx, x, repeats):
    r = len(repeats)
    x = cx.reshape(x, (1,) * (r - x.type.rank) + tuple(x.shape))
    inter = []
    for rep, d in zip(repeats, x.shape):
        inter += [1, d]
    y = cx.reshape(x, inter)
    full = []
    for rep, d in zip(repeats, x.shape):
        full += [rep, d]
    y = cx.broadcast(y, full)
    return cx.reshape(y, cx.out_shape())


@translates("aten.roll.default")
def roll(cx, x, shifts, dims=()):
    if not dims:
        raise cx.unsupported("roll over the flattened tensor")
    for s, d in zip(shifts, dims):
        ax = _axis(d, x.type.rank)
        n = x.shape[ax]
        if not isinstance(n, int):
            raise cx.unsupported("roll along a symbolic axis")
        s = s % n if n else 0
        if s == 0:
            continue
        def part(a, b):
            st, en = [0] * x.type.rank, list(x.shape)
            st[ax], en[ax] = a, b
            return cx.op("slice", [x], starts=tuple(st), ends=tuple(en), steps=(1,) * x.type.rank)
        x = cx.op("concat", [part(n - s, n), part(0, n - s)], axis=ax)
    return x


@translates("aten.flip.default")
def flip(cx, x, dims):
    st, en, sp = [0] * x.type.rank, list(x.shape), [1] * x.type.rank
    for d in dims:
        ax = _axis(d, x.type.rank)
        n = x.shape[ax]
        st[ax], en[ax], sp[ax] = n - 1, -1, -1
    return cx.op("slice", [x], starts=tuple(st), ends=tuple(en), steps=tuple(sp))


@translates("aten.tril.default", "aten.triu.default")
def tri(cx, x, diagonal=0):
    rows, cols = x.shape[-2], x.shape[-1]
    r = cx.op("arange", [], length=rows, dtype="int64") if not isinstance(rows, int) else cx.const(np.arange(rows))
    c = cx.op("arange", [], length=cols, dtype="int64") if not isinstance(cols, int) else cx.const(np.arange(cols))
    r = cx.reshape(r, (rows, 1))
    diff = cx.op("sub", [cx.reshape(c, (1, cols)), r])            # col - row
    keep = cx.op("less_equal" if cx.op_type == "aten.tril.default" else "greater_equal",
                 [diff, cx.scalar(diagonal, "int64")])
    return cx.op("where", [keep, x, cx.scalar(0, x.dtype)])


# ---- creation -----------------------------------------------------------------------------------

def _filled(cx, value):
    shape, dt = cx.out_shape(), cx.out_dtype()
    if isinstance(value, Value):
        v = cx.cast(value, dt)
    elif isinstance(value, Sym):
        v = cx.scalar(value, dt)
    else:
        if all(isinstance(d, int) for d in shape):
            return cx.const(np.full(shape, value, dtype=np_dtype(dt)), dt)
        v = cx.scalar(value, dt)
    return cx.broadcast(v, shape)


@translates("aten.full.default", "aten.new_full.default")
def full(cx, *args, **kwargs):
    value = args[-1] if cx.op_type == "aten.full.default" else args[2]
    return _filled(cx, value)


@translates("aten.full_like.default")
def full_like(cx, x, value, **kwargs):
    return _filled(cx, value)


@translates("aten.zeros.default", "aten.zeros_like.default", "aten.new_zeros.default", "aten.empty.memory_format",
            "aten.empty_like.default", "aten.new_empty.default", "aten.empty_strided.default",
            "aten.new_empty_strided.default")
def zeros(cx, *args, **kwargs):
    return _filled(cx, 0)


@translates("aten.ones.default", "aten.ones_like.default", "aten.new_ones.default")
def ones(cx, *args, **kwargs):
    return _filled(cx, 1)


@translates("aten.scalar_tensor.default")
def scalar_tensor(cx, value, **kwargs):
    return cx.tensor(value, cx.out_dtype())


@translates("aten.arange.start_step", "aten.arange.default", "aten.arange.start")
def arange(cx, *args, **kwargs):
    nums = [a for a in args]
    if cx.op_type == "aten.arange.default":
        start, step = 0, 1
    else:
        start = nums[0]
        step = nums[2] if len(nums) > 2 else kwargs.get("step", 1)
    (n,), dt = cx.out_shape(), cx.out_dtype()
    if isinstance(n, int) and not isinstance(start, Sym) and not isinstance(step, Sym):
        seq = (np.array(start, np.float64) + np.arange(n, dtype=np.float64) * step)
        return cx.const(seq.astype(np_dtype(dt)), dt)
    return cx.op("arange", [], length=n, start=start, delta=step, dtype=dt)


# ---- checks that have no value ------------------------------------------------------------------

@translates("aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
            "aten.sym_constrain_range_for_size.default", "aten.sym_constrain_range.default",
            "aten._assert_async.msg", "aten._assert_async.default")
def no_value(cx, *args, **kwargs):
    return None
