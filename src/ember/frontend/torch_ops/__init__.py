"""ATen op translations for the PyTorch frontend, one module per op family.

``TRANSLATIONS`` maps an ATen overload's name (``"aten.add.Tensor"``) to a function
``f(cx, *args, **kwargs)`` that receives the node's context (:class:`ember.frontend.torch.NodeContext`)
and its arguments (tensors as graph Values, sizes as ints or symbolic dimensions, lists as lists)
and returns the node's value: a Value, a tuple of them, or None for a node without one.
"""

from __future__ import annotations

from typing import Callable

TRANSLATIONS: dict[str, Callable] = {}


def translates(*names: str):
    def deco(fn):
        for n in names:
            TRANSLATIONS[n] = fn
        return fn
    return deco


from . import elementwise, tensor, nn, reduce  # noqa: E402,F401  (registers the translations)

__all__ = ["TRANSLATIONS", "translates"]
