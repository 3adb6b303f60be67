"""Tensor expressions (what a kernel computes) and schedules (how its loops run)."""

from .tensor import (ArgReduce, IterVar, Reduce, Tensor, TensorLoad, arg_reduce, call, cast, checked_index, compute,
                     const, eq, ge, gt, le, logical_and, logical_not, logical_or, lt, max_value, maximum, min_value,
                     minimum, ne, placeholder, reduce, reduce_axis, select, sum, walk)

__all__ = ["ArgReduce", "IterVar", "Reduce", "Tensor", "TensorLoad", "arg_reduce", "call", "cast", "checked_index",
           "compute", "const", "eq", "ge", "gt", "le", "logical_and", "logical_not", "logical_or", "lt", "max_value",
           "maximum", "min_value", "minimum", "ne", "placeholder", "reduce", "reduce_axis", "select", "sum", "walk"]
