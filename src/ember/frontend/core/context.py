"""What a translation sees of one node, whatever the framework: the node's name and op, the
graph builder, core ops emitted under the node's name (folded when their inputs are constant),
constants, and the errors that name the node and op.

Each frontend's node context derives from :class:`NodeContext` and adds how its framework hands
over operands and attributes.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np

from ...errors import EmberError, InvalidModelError, LimitError, UnsupportedOpError
from ...graph.builder import GraphBuilder
from ...graph.ir import Value
from ...graph.types import np_dtype
from ...symbolic import Sym
from .emit import dim_tensor, emit
from .unsupported import unsupported_feature


class NodeContext:
    """One node being translated.  ``name`` names the values it emits; ``label`` names the node
    in error messages (its name, unless the framework's nodes have none: TFLite's
    ``operator 12``); ``framework`` names the framework in UnsupportedOpError."""

    framework = "?"

    def __init__(self, b: GraphBuilder, name: str, op_type: str, label: str | None = None):
        self.b = b
        self.name = name
        self.op_type = op_type
        self.label = name if label is None else label

    # -- emitting --------------------------------------------------------------------------

    def op(self, core: str, inputs: Sequence[Value], **attrs: Any) -> Any:
        """Core op ``core`` named after this node, or its value when every input is constant."""
        return emit(self.b, core, inputs, self.name, **attrs)

    def const(self, array: Any, dtype: str | None = None) -> Value:
        """A constant holding ``array`` (as ``dtype`` when given)."""
        arr = np.asarray(array, dtype=np_dtype(dtype) if dtype else None)
        return self.b.const(arr, name=self.name + "_const")

    def scalar(self, value: Any, dtype: str) -> Value:
        """A rank-0 tensor of ``dtype``: a constant, or a symbolic dimension computed at run time."""
        if isinstance(value, Sym):
            return self.cast(dim_tensor(self.b, value, self.name), dtype)
        return self.const(np.array(value).astype(np_dtype(dtype)), dtype)

    def cast(self, v: Value, dtype: str) -> Value:
        return v if v.dtype == dtype else self.op("cast", [v], to=dtype)

    # -- errors ----------------------------------------------------------------------------

    def fail(self, message: str) -> InvalidModelError:
        """The error of a node that breaks the framework's rules (to raise)."""
        return InvalidModelError(message, node=self.label, op=self.op_type)

    def unsupported(self, feature: str) -> UnsupportedOpError:
        """The error of a node whose op is supported, but not with ``feature`` (to raise)."""
        return unsupported_feature(self.op_type, feature, self.label, self.framework)

    def not_constant(self, what: str, k: int) -> UnsupportedOpError:
        """The error of operand ``k`` (``what``: a shape, axes, ...), which the translation needs
        while translating, but the model computes at run time (to raise)."""
        return self.unsupported(f"a {what} computed at run time (input {k})")

    def out_of_memory(self) -> LimitError:
        """The error of numpy running out of memory while translating this node (to raise)."""
        return LimitError("ran out of memory translating this node (numpy's MemoryError); lower limits "
                          "(tensor_bytes, fold_bytes) make Ember refuse such a model before it allocates",
                          node=self.label, op=self.op_type)

    @contextlib.contextmanager
    def translating(self, damaged: tuple = (), what: str = "inconsistent operands"):
        """Around the node's translation: the Python errors of the kinds ``damaged`` (those that
        a damaged model, or operands that contradict each other, make translation code raise)
        become this node's InvalidModelError ``what: error``, and numpy running out of memory
        its LimitError; Ember's own errors pass."""
        try:
            yield
        except EmberError:
            raise
        except MemoryError:
            raise self.out_of_memory() from None
        except damaged as e:
            raise self.fail(f"{what}: {e}") from None
