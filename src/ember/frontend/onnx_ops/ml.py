"""Ops of the ``ai.onnx.ml`` domain that are tensor arithmetic: Binarizer, ArrayFeatureExtractor."""

from __future__ import annotations

from ...graph.types import is_int
from . import translates
from .arith import T
from .tensor import prod, reshape, static_shape

_ML = "ai.onnx.ml"


@translates(f"{_ML}:Binarizer")
def binarizer(cx):
    x = T(cx, cx.input(0))
    return (x > float(cx.attr("threshold", 0.0))).cast(x.dtype).v


@translates(f"{_ML}:ArrayFeatureExtractor")
def array_feature_extractor(cx):
    # x[..., indices], with the indices flattened; a 1-D x gives one row
    x, idx = cx.input(0), cx.input(1)
    dims, idims = static_shape(cx, x), static_shape(cx, idx, "indices")
    if not is_int(idx.dtype):
        raise cx.fail(f"indices must be integers, got {idx.type}")
    flat = reshape(cx, idx, (prod(idims),))
    out = cx.op("gather", [x, flat], axis=len(dims) - 1)
    if len(dims) == 1:
        out = reshape(cx, out, (1, prod(idims)))
    return out
