"""Every unsupported op of a model, listed at once before any translation.

A frontend walks its model's nodes and hands :func:`check_supported` the ``(op, node)`` pairs of
those its translation table lacks (the op as the framework names it, possibly with the feature
that is missing, and the node as messages name it); the pairs are grouped by op, each op with
its nodes in model order, and raised as one :class:`~ember.errors.UnsupportedOpError`, whose
message lists each op with its count and first nodes.
"""

from __future__ import annotations

from typing import Iterable

from ...errors import UnsupportedOpError


def group_unsupported(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """``(op, node)`` pairs as op -> the nodes using it, in the order they come."""
    missing: dict[str, list[str]] = {}
    for op, node in pairs:
        missing.setdefault(op, []).append(node)
    return missing


def check_supported(pairs: Iterable[tuple[str, str]], framework: str) -> None:
    """Raise one UnsupportedOpError for all the ``(op, node)`` pairs, if there are any."""
    missing = group_unsupported(pairs)
    if missing:
        raise UnsupportedOpError(missing, framework)


def unsupported_feature(op: str, feature: str, node: str, framework: str) -> UnsupportedOpError:
    """The error for one node whose op is supported but not with ``feature`` (an attribute
    value, an operand computed at run time, ...): listed as the op ``op (feature)``."""
    return UnsupportedOpError({f"{op} ({feature})": [node]}, framework)
