"""ONNX ops whose output *shape* depends on input values: Unique and NonMaxSuppression (NonZero
lives in ``indexing.py``).  Unique (with or without an axis) and NonMaxSuppression of static
sizes run at run time (``data_dims``).  Operands known while compiling are evaluated while
translating, with numpy."""

from __future__ import annotations

import numpy as np

from ...symbolic import product
from . import data_dims, translates
from .tensor import norm_axis


@translates("Unique")
def unique(cx):
    x_ir = cx.input(0)
    if data_dims.runtime_operand(cx, 0) is not None:
        n = product(x_ir.shape)
        if not isinstance(n, int) or n == 0 or x_ir.dtype in ("string",):
            raise cx.fail(f"a Unique computed at run time needs a static, non-empty element count, got {x_ir.type}")
        sort = bool(cx.attr("sorted", 1))
        if cx.attr("axis", None) is None:
            return data_dims.unique_at_run_time(cx, cx.op("reshape", [x_ir], shape=(n,)), sort)
        # the slices along the axis as rows: [d, the other elements], back to the input's layout
        r = x_ir.type.rank
        ax = norm_axis(cx, cx.attr("axis"), r)
        perm = (ax,) + tuple(k for k in range(r) if k != ax)
        d = x_ir.shape[ax]
        moved = cx.op("transpose", [x_ir], perm=perm) if ax else x_ir
        values, index, inverse, counts = data_dims.unique_at_run_time(
            cx, cx.op("reshape", [moved], shape=(d, n // d)), sort)
        values = cx.op("reshape", [values], shape=(values.shape[0],) + tuple(moved.shape[1:]))
        if ax:
            values = cx.op("transpose", [values], perm=tuple(int(p) for p in np.argsort(perm)))
        return [values, index, inverse, counts]
    x = cx.const_input(0, "input (Unique's output shape depends on its values)", required=True)
    axis = cx.attr("axis", None)
    if axis is None:
        data, ax = x.reshape(-1), 0
    else:
        data, ax = x, norm_axis(cx, axis, x.ndim)
    y, first, inverse, counts = np.unique(data, return_index=True, return_inverse=True, return_counts=True,
                                          axis=ax)
    inverse = np.asarray(inverse).reshape(-1)
    if not cx.attr("sorted", 1):
        # in order of first occurrence
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        first, counts, inverse = first[order], counts[order], rank[inverse]
        y = np.take(data, first, axis=ax)
    as_i64 = lambda a: cx.const(np.asarray(a, dtype=np.int64))  # noqa: E731
    return [cx.const(np.ascontiguousarray(y), x_ir.dtype), as_i64(first), as_i64(inverse), as_i64(counts)]


def _corners(box: np.ndarray, center: bool) -> tuple[float, float, float, float]:
    """(y_min, x_min, y_max, x_max) of one box."""
    if center:
        xc, yc, w, h = (float(v) for v in box)
        return yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2
    y1, x1, y2, x2 = (float(v) for v in box)
    return min(y1, y2), min(x1, x2), max(y1, y2), max(x1, x2)


def _overlaps(a, b, threshold: float) -> bool:
    """IoU of corner boxes a and b above ``threshold`` (boxes without area never overlap)."""
    iy = min(a[2], b[2]) - max(a[0], b[0])
    ix = min(a[3], b[3]) - max(a[1], b[1])
    if iy <= 0 or ix <= 0:
        return False
    inter = iy * ix
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    union = area_a + area_b - inter
    if area_a <= 0 or area_b <= 0 or union <= 0:
        return False
    return inter / union > threshold


MAX_RUN_TIME_BOXES = 128


def _nms_at_run_time(cx):
    """NonMaxSuppression of boxes and scores read at run time (B, C and N static): every box
    ranked per class by score (the lower index first among equal ones), the overlaps of every
    pair (IoU above the threshold, boxes without area never overlapping) reordered by rank,
    then the greedy pass unrolled over the N ranks: the box of rank t is kept when it passes
    the score threshold, no kept box of a lower rank overlaps it and fewer than
    max_output_boxes_per_class are kept.  The kept (b, c, rank) positions are found as
    NonZero's (their count bound at run time) and give (b, c, box) triples."""
    from .arith import T

    boxes, scores = cx.input(0), cx.input(1)
    if boxes.type.rank != 3 or scores.type.rank != 3 or not (boxes.type.is_static and scores.type.is_static):
        raise cx.fail(f"boxes {boxes.type} and scores {scores.type} read at run time must be [B, N, 4] and "
                      f"[B, C, N] of static sizes")
    b_n, n, four = boxes.shape
    _, c_n, n2 = scores.shape
    if four != 4 or scores.shape[0] != b_n or n2 != n:
        raise cx.fail(f"boxes {boxes.type} and scores {scores.type} must be [B, N, 4] and [B, C, N]")
    if n > MAX_RUN_TIME_BOXES:
        raise cx.fail(f"{n} boxes read at run time: the greedy pass is unrolled over them, at most "
                      f"{MAX_RUN_TIME_BOXES}; pass boxes and scores as constants")
    f64, i64 = "float64", "int64"

    def operand(i, dtype, default):
        v = cx.input(i, required=False)
        if v is None or v.type.num_elements == 0:
            return None if default is None else T(cx, cx.scalar(default, dtype))
        if v.type.num_elements != 1:
            raise cx.fail(f"input {i} must hold one value, got {v.type}")
        return T(cx, data_dims.scalar_of(cx, v)).cast(dtype)

    limit = operand(2, i64, 0)
    iou = operand(3, f64, 0.0)
    floor = operand(4, f64, None)
    bx = T(cx, boxes).cast(f64)
    coord = [T(cx, cx.op("slice", [bx.v], starts=(0, 0, k), ends=(b_n, n, k + 1), steps=(1, 1, 1))).reshape((b_n, n))
         for k in range(4)]
    if cx.attr("center_point_box", 0):
        xc, yc, w, h = coord
        y1, x1, y2, x2 = yc - h * 0.5, xc - w * 0.5, yc + h * 0.5, xc + w * 0.5
    else:
        a, b_, c_, d = coord
        y1, x1, y2, x2 = a.min(c_), b_.min(d), a.max(c_), b_.max(d)
    col = lambda v: v.reshape((b_n, n, 1))  # noqa: E731
    row = lambda v: v.reshape((b_n, 1, n))  # noqa: E731
    iy = col(y2).min(row(y2)) - col(y1).max(row(y1))
    ix = col(x2).min(row(x2)) - col(x1).max(row(x1))
    inter = iy * ix
    area = (y2 - y1) * (x2 - x1)
    union = col(area) + row(area) - inter
    over = (iy > 0.0) & (ix > 0.0) & (col(area) > 0.0) & (row(area) > 0.0) & (union > 0.0)
    over = over & ((inter / (over.where(union, 1.0))) > iou)                       # [B, N, N]
    # rank of each box per class: better score, or the same at a lower index
    s = T(cx, scores).cast(f64)
    si, sj = s.reshape((b_n, c_n, n, 1)), s.reshape((b_n, c_n, 1, n))
    earlier = T(cx, cx.const(np.arange(n)[None, :] < np.arange(n)[:, None]))
    rank = ((sj > si) | (sj.eq(si) & earlier)).cast(i64).sum((3,))               # [B, C, N]
    ranks = T(cx, cx.const(np.arange(n, dtype=np.int64).reshape(n, 1)))
    at = rank.reshape((b_n, c_n, 1, n)).eq(ranks)                                 # [B, C, t, i]
    order = (at.cast(i64) * T(cx, cx.const(np.arange(n, dtype=np.int64)))).sum((3,))   # [B, C, N]
    # overlaps and candidates in rank order
    ov = T(cx, cx.op("cast", [over.v], to=i64)).reshape((b_n, 1, n, n))
    ov_r = (at.cast(i64).reshape((b_n, c_n, n, n, 1)) * ov.reshape((b_n, 1, 1, n, n))).sum((3,))   # [B,C,t,j]
    ov_r = (ov_r.reshape((b_n, c_n, n, 1, n)) * at.cast(i64).reshape((b_n, c_n, 1, n, n))).sum((4,))  # [B,C,t,u]
    cand = None
    if floor is not None:
        cand = ((s > floor).cast(i64).reshape((b_n, c_n, 1, n)) * at.cast(i64)).sum((3,))      # [B, C, t]
    kept = None
    for t in range(n):
        lower = [1 if u < t else 0 for u in range(n)]
        ok = limit > 0 if t == 0 else None
        if t:
            ov_t = T(cx, cx.op("slice", [ov_r.v], starts=(0, 0, t, 0), ends=(b_n, c_n, t + 1, n),
                               steps=(1, 1, 1, 1))).reshape((b_n, c_n, n))
            hit = (ov_t * kept * T(cx, cx.const(np.array(lower, np.int64)))).sum((2,))
            count = kept.sum((2,))
            ok = hit.eq(0) & (count < limit)
        if cand is not None:
            c_t = T(cx, cx.op("slice", [cand.v], starts=(0, 0, t), ends=(b_n, c_n, t + 1), steps=(1, 1, 1)))
            ok = ok & c_t.reshape((b_n, c_n)).eq(1)
        if not ok.shape:
            ok = T(cx, cx.op("broadcast_to", [ok.v], shape=(b_n, c_n)))
        onehot = T(cx, cx.const((np.arange(n) == t).astype(np.int64)))
        step = ok.cast(i64).reshape((b_n, c_n, 1)) * onehot
        kept = step if kept is None else kept + step
    total = b_n * c_n * n
    flat = kept.reshape((total,))
    pos, _ = data_dims.nonzero_positions(cx, flat.v)
    p = T(cx, pos)
    box = T(cx, order.reshape((total,)).v).gather(p, 0)
    trip = [T(cx, cx.op("div", [pos, cx.scalar(c_n * n, i64)])),
            T(cx, cx.op("fmod", [cx.op("div", [pos, cx.scalar(n, i64)]), cx.scalar(c_n, i64)])), box]
    return cx.op("concat", [v.reshape((v.shape[0], 1)).v for v in trip], axis=1)


@translates("NonMaxSuppression")
def non_max_suppression(cx):
    if data_dims.runtime_operand(cx, 0) is not None or data_dims.runtime_operand(cx, 1) is not None or any(
            data_dims.runtime_operand(cx, i) is not None for i in (2, 3, 4) if cx.has_input(i)):
        return _nms_at_run_time(cx)
    what = "{} (NonMaxSuppression's output shape depends on the boxes and scores)"
    boxes = cx.const_input(0, what.format("boxes"), required=True)
    scores = cx.const_input(1, what.format("scores"), required=True)
    limit = cx.const_input(2, "max_output_boxes_per_class")
    iou = cx.const_input(3, "iou_threshold")
    floor = cx.const_input(4, "score_threshold")
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or scores.shape[::2] != boxes.shape[:2]:
        raise cx.fail(f"boxes {list(boxes.shape)} and scores {list(scores.shape)} must be [B, N, 4] and [B, C, N]")
    limit = 0 if limit is None or limit.size == 0 else max(int(limit.reshape(-1)[0]), 0)
    iou = 0.0 if iou is None or iou.size == 0 else float(iou.reshape(-1)[0])
    floor = None if floor is None or floor.size == 0 else float(floor.reshape(-1)[0])
    center = bool(cx.attr("center_point_box", 0))
    picked = []
    for b in range(boxes.shape[0]):
        corners = [_corners(box, center) for box in boxes[b]]
        for c in range(scores.shape[1]):
            s = scores[b, c]
            candidates = [i for i in range(s.size) if floor is None or s[i] > floor]
            # best score first; equal scores: the lower box index first
            candidates.sort(key=lambda i: (-float(s[i]), i))
            kept: list[int] = []
            for i in candidates:
                if len(kept) >= limit:
                    break
                if not any(_overlaps(corners[i], corners[j], iou) for j in kept):
                    kept.append(i)
                    picked.append((b, c, i))
    return cx.const(np.array(picked, dtype=np.int64).reshape(len(picked), 3))
