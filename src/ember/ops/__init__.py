"""The core ops: every op's type rule, numpy reference and tensor compute, one family a module."""

from .base import OPS, Op, Pattern, REQUIRED, get_op, register
from . import cast, elementwise, reduce, transform, nn, quant, strings, images, winograd, dynamic, control  # noqa: F401  (registers the ops)

__all__ = ["OPS", "Op", "Pattern", "REQUIRED", "get_op", "register"]
