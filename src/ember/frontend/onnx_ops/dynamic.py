"""ONNX ops whose output *shape* depends on input values: Unique and NonMaxSuppression (NonZero
lives in ``indexing.py``).  Unique without an axis runs at run time (``data_dims``); with an
axis, and NonMaxSuppression, their data operands must be known at compile time (constants, or
inputs the ONNX backend specializes on) and are evaluated while translating, with numpy."""

from __future__ import annotations

import numpy as np

from ...symbolic import product
from . import data_dims, translates
from .tensor import norm_axis


@translates("Unique")
def unique(cx):
    x_ir = cx.input(0)
    if data_dims.runtime_operand(cx, 0) is not None and cx.attr("axis", None) is None:
        n = product(x_ir.shape)
        if not isinstance(n, int) or n == 0 or x_ir.dtype in ("string",):
            raise cx.fail(f"a Unique computed at run time needs a static, non-empty element count, got {x_ir.type}")
        return data_dims.unique_at_run_time(cx, cx.op("reshape", [x_ir], shape=(n,)), bool(cx.attr("sorted", 1)))
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


@translates("NonMaxSuppression")
def non_max_suppression(cx):
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
