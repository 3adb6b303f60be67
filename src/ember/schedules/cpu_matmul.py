"""CPU schedules of matrix products: register tiles of rows x (1, 2 or 4) vectors for matmul
(float, packed and integer), and the fused attention kernel's tile of query rows."""

from __future__ import annotations

from . import register
from .cpu_loops import default_schedule, reduce_unroll, register_tile, vectorize_partials
from .cpu_model import matmul_vectors, pick_tile, register_rows, size_hint


@register("cpu", "matmul", "matmul_packed", "matmul_int")
def matmul(a, s, mm, target):
    """Register tiles of rows x (1, 2 or 4 vectors) outputs; the batch dims and column tiles run in
    parallel."""
    root, red = s.root, s[mm]
    axes = root.tensor.axes
    m, n = axes[-2], axes[-1]
    lanes = target.lanes
    if size_hint(n.extent) < lanes:
        default_schedule(s, target)
        return
    if not isinstance(n.extent, int):
        cols = lanes        # a symbolic width: one vector per row, so its tail stays one simple loop
    else:
        cols = target.knob("matmul.vectors", matmul_vectors(n.extent, lanes, target.core)) * lanes
    rows = target.knob("matmul.rows", register_rows(m.extent, cols // lanes, target.core))
    register_tile(root, red, row_axis=m, col_axis=n, rows=rows, cols=cols, lanes=lanes, before=list(axes[:-2]),
                  unroll=reduce_unroll(red, target, "matmul.unroll"))


@register("cpu", "matmul_int_packed")
def matmul_int_packed(a, s, mm, target):
    """Register tiles of rows x one panel of the packed weight (one or two vectors of int32
    accumulators per row, beside the activations' broadcast, the pairwise add's vector of ones
    and temporaries); the batch dims and panels run in parallel."""
    root, red = s.root, s[mm]
    *batch, m, n = root.tensor.axes
    nb = mm.inputs()[-1].shape[-2]              # the packed weight (read after x): its panel width
    if nb % target.lanes:
        default_schedule(s, target)      # panels made for other vectors
        return
    vecs = nb // target.lanes
    budget = target.core.registers - 4
    rows = target.knob("matmul.rows", pick_tile(m.extent, max(1, budget // vecs - 4), budget // vecs))
    register_tile(root, red, row_axis=m, col_axis=n, rows=rows, cols=nb, lanes=target.lanes, before=batch)


@register("cpu", "attention")
def attention(a, s, out, target):
    """A tile of query rows per iteration of a parallel loop over the batch dims: the rows'
    logits (keys' columns in vectors, the reduction over D outside), their max and sum as
    per-lane partials and exp(logit - max) in vectors are computed once per row tile; the
    weighted sum of the values runs as a register tile of rows x 2 (or 1) vectors of outputs
    per column tile, like a matmul (the last column tile narrower where the tiles do not divide
    the values' width)."""
    root = s.root
    lanes = target.lanes
    *batch, rows, cols = root.tensor.axes
    stages = {st.tensor.name: st for st in s.stages.values() if st is not root}
    weighted = stages["attn_weighted"]
    # column tiles of 2 vectors (1 for widths from 1 to 2 vectors, 2 excluded); a width that
    # is not whole tiles (MobileViT's heads of 36 and 60) gets a tail copy of the column loop,
    # part of a vector wide or whole vectors, rather than one row per iteration with no register
    # tile (3x slower on heads of 36: a [16, 256, 36] attention 12.2 -> 3.3 ms CPU on AVX2)
    tiled = isinstance(cols.extent, int) and cols.extent >= lanes
    if tiled:
        width = 2 * lanes if cols.extent % (2 * lanes) == 0 or cols.extent > 2 * lanes else lanes
        # at most 12 accumulators, planned for 16 registers (not measured with more)
        r = target.knob("attention.rows", register_rows(rows.extent, width // lanes, target.core.limited(16),
                                                        max_acc=12))
        ro, ri = root.split(rows, r)
        co, ci = root.split(cols, width)
        root.reorder(*batch, ro, co, ri, ci)
        root.unroll(ri)
        root.vectorize(ci)
        row_loop = ro
    else:
        row_loop = rows
    par = batch[0] if batch else None
    for ax in batch[1:]:
        par = root.fuse(par, ax)
    if not tiled:
        # one row per iteration (values narrower than a vector, or of a symbolic width)
        par = row_loop = rows if par is None else root.fuse(par, rows)
    elif (par is None or size_hint(par.extent) < 2 * target.num_cores) and rows.extent % r == 0:
        # few batch x head pairs: the row tiles run in parallel too (when they are whole:
        # the loop of an uneven split keeps its tail copy, so it is not fused)
        par = row_loop = ro if par is None else root.fuse(par, ro)
    elif par is None:
        par = row_loop
    if size_hint(par.extent) >= 2:
        root.parallel(par)
    at = row_loop
    for st in stages.values():
        st.compute_at(root, at)
    if tiled:
        weighted.compute_at(root, co)
        w_rows, w_cols = weighted.tensor.axes[-2:]
        cvo, cvi = weighted.split(w_cols, lanes)
        weighted.reorder(*weighted.reduce_axes, w_rows, cvo, cvi)
        weighted.unroll(w_rows)
        weighted.unroll(cvo)
        weighted.vectorize(cvi)
    scores = stages["attn_scores"]
    s_rows, keys = scores.tensor.axes[-2:]
    if isinstance(keys.extent, int) and keys.extent % lanes == 0:
        # a register tile of the tile's rows x 2 vectors of keys (1 when 2 do not divide
        # them), the reduction over D around it: the accumulators stay in registers
        kw = 2 * lanes if keys.extent % (2 * lanes) == 0 else lanes
        jo, jc = scores.split(keys, kw)
        jv, ji = scores.split(jc, lanes)
        scores.reorder(jo, *scores.reduce_axes, s_rows, jv, ji)
        scores.unroll(s_rows)
        scores.unroll(jv)
        scores.vectorize(ji)
    elif size_hint(keys.extent) >= lanes:
        jo, ji = scores.split(keys, lanes)
        scores.reorder(*scores.reduce_axes, jo, ji)
        scores.vectorize(ji)
    exp = stages["attn_exp"]
    last = exp.tensor.axes[-1]
    if size_hint(last.extent) >= lanes:
        jo, ji = exp.split(last, lanes)
        exp.vectorize(ji)
    vectorize_partials(s)
