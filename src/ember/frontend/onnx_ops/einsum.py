"""ONNX Einsum, decomposed into diagonals (reshape + strided slice), reduce_sum, transpose and
batched matmul, contracting the operands left to right."""

from __future__ import annotations

import string

from ...symbolic import Sym, product
from . import translates
from .tensor import reshape

_LETTERS = set(string.ascii_letters)


class _Term:
    """An operand during the contraction: its value and one label per axis."""

    def __init__(self, value, labels):
        self.value = value
        self.labels = list(labels)

    @property
    def sizes(self):
        return dict(zip(self.labels, self.value.shape))


def _parse(cx, equation: str, ranks: list[int]):
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise cx.fail(f"equation {equation!r} has {len(terms)} operands, the node {len(ranks)}")
    n_ell = 0
    for t, r in zip(terms, ranks):
        if "..." in t:
            n_ell = max(n_ell, r - (len(t) - 3))
    ell = [chr(0x3B1 + k) for k in range(n_ell)]  # labels for the broadcast (ellipsis) axes

    def expand(t, r):
        if "..." in t:
            k = r - (len(t) - 3)
            if k < 0:
                raise cx.fail(f"term {t!r} has more labels than its operand has axes")
            head, _, tail = t.partition("...")
            labels = list(head) + ell[n_ell - k:] + list(tail)
        else:
            labels = list(t)
        if any(c not in _LETTERS for c in labels if c not in ell) or len(labels) != r:
            raise cx.fail(f"term {t!r} does not label the {r} axes of its operand")
        return labels

    ins = [expand(t, r) for t, r in zip(terms, ranks)]
    if arrow:
        if "..." in rhs:
            head, _, tail = rhs.partition("...")
            out = list(head) + ell + list(tail)
        else:
            out = list(rhs)
    else:
        counts: dict[str, int] = {}
        for labels in ins:
            for c in labels:
                counts[c] = counts.get(c, 0) + 1
        out = ell + sorted(c for c, k in counts.items() if k == 1 and c not in ell)
    return ins, out


def _diagonals(cx, term: _Term) -> _Term:
    """Take the diagonal over every label that repeats within one operand."""
    while len(set(term.labels)) != len(term.labels):
        labels = term.labels
        c = next(l for l in labels if labels.count(l) > 1)
        p = labels.index(c)
        q = labels.index(c, p + 1)
        n = term.value.shape[p]
        if term.value.shape[q] != n:
            raise cx.fail(f"label {c!r} has sizes {n} and {term.value.shape[q]}")
        others = [k for k in range(len(labels)) if k not in (p, q)]
        v = cx.op("transpose", [term.value], perm=tuple(others + [p, q]))
        lead = [term.value.shape[k] for k in others]
        v = reshape(cx, v, lead + [n * n])
        r = len(lead) + 1
        if isinstance(n, Sym):
            # every (n + 1)-th element, at positions computed at run time
            at = cx.op("arange", [], length=n, start=0, delta=n + 1, dtype="int64")
            v = cx.op("gather", [v, at], axis=r - 1)
        else:
            v = cx.op("slice", [v], starts=(0,) * r, ends=tuple(lead) + (n * n,), steps=(1,) * (r - 1) + (n + 1,))
        term = _Term(v, [labels[k] for k in others] + [c])
    return term


def _sum_out(cx, term: _Term, keep: set) -> _Term:
    axes = tuple(k for k, l in enumerate(term.labels) if l not in keep)
    if not axes:
        return term
    v = cx.op("reduce_sum", [term.value], axes=axes, keepdims=False)
    return _Term(v, [l for l in term.labels if l in keep])


def _arranged(cx, term: _Term, order: list[str], sizes: dict):
    """The operand transposed to ``order`` and broadcast to the common sizes."""
    perm = [term.labels.index(l) for l in order]
    v = term.value
    if perm != list(range(len(perm))):
        v = cx.op("transpose", [v], perm=tuple(perm))
    want = tuple(sizes[l] for l in order)
    if tuple(v.shape) != want:
        v = cx.op("broadcast_to", [v], shape=want)
    return v


def _contract(cx, a: _Term, b: _Term, later: set) -> _Term:
    a = _sum_out(cx, a, later | set(b.labels))
    b = _sum_out(cx, b, later | set(a.labels))
    sizes = {}
    for t in (a, b):
        for l, s in t.sizes.items():
            if sizes.get(l, 1) != 1 and s not in (1, sizes[l]):
                raise cx.fail(f"label {l!r} has sizes {sizes[l]} and {s}")
            if s != 1:
                sizes[l] = s
            sizes.setdefault(l, 1)
    batch = [l for l in a.labels if l in b.labels and l in later]
    summed = [l for l in a.labels if l in b.labels and l not in later]
    a_only = [l for l in a.labels if l not in b.labels]
    b_only = [l for l in b.labels if l not in a.labels]
    bt = product(sizes[l] for l in batch)
    m, k, n = product(sizes[l] for l in a_only), product(sizes[l] for l in summed), product(sizes[l] for l in b_only)
    av = reshape(cx, _arranged(cx, a, batch + a_only + summed, sizes), (bt, m, k))
    bv = reshape(cx, _arranged(cx, b, batch + summed + b_only, sizes), (bt, k, n))
    y = cx.op("matmul", [av, bv])
    labels = batch + a_only + b_only
    return _Term(reshape(cx, y, [sizes[l] for l in labels]), labels)


@translates("Einsum")
def einsum(cx):
    xs = cx.inputs()
    ins, out = _parse(cx, cx.attr("equation"), [x.type.rank for x in xs])
    terms = [_diagonals(cx, _Term(x, labels)) for x, labels in zip(xs, ins)]
    acc = terms[0]
    for k in range(1, len(terms)):
        later = set(out).union(*[set(t.labels) for t in terms[k + 1:]])
        acc = _contract(cx, acc, terms[k], later)
    acc = _sum_out(cx, acc, set(out))
    missing = [l for l in out if l not in acc.labels]
    if missing or len(set(out)) != len(out):
        raise cx.fail(f"output labels {''.join(out)!r} are repeated or not in any operand")
    perm = [acc.labels.index(l) for l in out]
    if perm == list(range(len(perm))):
        return acc.value
    return cx.op("transpose", [acc.value], perm=tuple(perm))
