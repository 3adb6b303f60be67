"""ATen op translations for the PyTorch frontend, one module per op family.

``TRANSLATIONS`` maps an ATen overload's name (``"aten.add.Tensor"``) to a function
``f(cx, *args, **kwargs)`` that receives the node's context (:class:`ember.frontend.torch.NodeContext`)
and its arguments (tensors as graph Values, sizes as ints or symbolic dimensions, lists as lists)
and returns the node's value: a Value, a tuple of them, or None for a node without one.
"""

from __future__ import annotations

from ..core import TranslationTable

TRANSLATIONS = TranslationTable("PyTorch")
translates = TRANSLATIONS.translates

from . import elementwise, tensor, nn, reduce  # noqa: E402,F401  (registers the translations)

__all__ = ["TRANSLATIONS", "translates"]
