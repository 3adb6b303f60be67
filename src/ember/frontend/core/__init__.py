"""The frontend core: what every frontend needs, so that a frontend is its model reader and its
translation table.

- :mod:`.emit`: core ops emitted node by node, folded to constants when all their inputs are
  constant; a dimension as a tensor; a value computed from constants alone.
- :mod:`.context`: the base of every frontend's node context (name, op, emitting, constants,
  errors naming the node and op).
- :mod:`.table`: the translation table (op name -> translation) and its ``translates``
  decorator.
- :mod:`.unsupported`: every unsupported op of a model listed at once (op, nodes, count)
  before any translation.
- :mod:`.shape_values`: shape arithmetic over symbolic dimensions, evaluated while translating.
- :mod:`.layout`: the NHWC/NCHW layout of the operands of NHWC frameworks (TFLite, TensorFlow).
"""

from .context import NodeContext
from .emit import computed_from_constants, dim_tensor, emit
from .layout import TO_NCHW, TO_NHWC, elementwise_layout, layout_operand
from .table import TranslationTable
from .unsupported import check_supported, group_unsupported, unsupported_feature

__all__ = ["NodeContext", "computed_from_constants", "dim_tensor", "emit", "TO_NCHW", "TO_NHWC",
           "elementwise_layout", "layout_operand", "TranslationTable", "check_supported", "group_unsupported",
           "unsupported_feature"]
