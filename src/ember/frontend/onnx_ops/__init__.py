"""ONNX op translations, one module per op family.

A translation is a function of a :class:`~ember.frontend.onnx.NodeContext` that emits core ops
and returns the node's outputs (a Value, or a list with None for outputs it does not produce).
``@translates("OpA", "OpB")`` registers one for the ops it names (``"domain:Op"`` outside the
default domain).
"""

from __future__ import annotations

from ..core import TranslationTable

TRANSLATIONS = TranslationTable("ONNX")
translates = TRANSLATIONS.translates


def supported_ops() -> list[str]:
    """Every ONNX op type the frontend translates, sorted."""
    return TRANSLATIONS.names()


# importing the modules registers their translations
from . import (bitwise, contrib, contrib_quant, control, dynamic, einsum, elementwise, indexing, linalg, ml, nn, quant,  # noqa: E402,F401
               reduce, resize, rnn, sampling, sequence, spectral, strings, tensor, training)
