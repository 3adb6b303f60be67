"""Classical machine-learning ops that are tensor arithmetic: Binarizer, ArrayFeatureExtractor and
TreeEnsemble (``ai.onnx.ml``), TfIdfVectorizer (n-gram counting by comparing shifted slices), and
LabelEncoder (a chain of selects between numbers; the host op ``label_encode`` when keys or
values are strings)."""

from __future__ import annotations

import numpy as np

import math

from ...graph.types import is_float, is_int, is_string, np_dtype
from ...symbolic import Sym, product
from . import translates
from .arith import T
from .tensor import reshape

_ML = "ai.onnx.ml"


@translates(f"{_ML}:Binarizer")
def binarizer(cx):
    x = T(cx, cx.input(0))
    return (x > float(cx.attr("threshold", 0.0))).cast(x.dtype).v


@translates(f"{_ML}:ArrayFeatureExtractor")
def array_feature_extractor(cx):
    # x[..., indices], with the indices flattened; a 1-D x gives one row
    x, idx = cx.input(0), cx.input(1)
    dims, idims = tuple(x.shape), tuple(idx.shape)
    if not is_int(idx.dtype):
        raise cx.fail(f"indices must be integers, got {idx.type}")
    flat = reshape(cx, idx, (product(idims),))
    out = cx.op("gather", [x, flat], axis=len(dims) - 1)
    if len(dims) == 1:
        out = reshape(cx, out, (1, product(idims)))
    return out


@translates("TfIdfVectorizer")
def tfidf_vectorizer(cx):
    # For every n-gram of the pool (lengths in [min_gram_length, max_gram_length]) and every skip
    # distance d (only d = 1 for unigrams), count the windows X[s], X[s + d], ... that equal it:
    # one comparison of shifted slices of X against the pool per (n, d).
    x = cx.input(0)
    dims = tuple(x.shape)
    if len(dims) not in (1, 2) or not is_int(x.dtype):
        raise cx.fail(f"expects integer input [C] or [B, C], got {x.type}")
    if cx.has_attr("pool_strings"):
        raise cx.unsupported("pool_strings (string tensors)")
    lo, hi = cx.attr("min_gram_length"), cx.attr("max_gram_length")
    max_skip = cx.attr("max_skip_count")
    counts = list(cx.attr("ngram_counts"))
    indexes = list(cx.attr("ngram_indexes"))
    pool = list(cx.attr("pool_int64s", []))
    weights = cx.attr("weights", None)
    mode = cx.attr("mode")
    if mode not in ("TF", "IDF", "TFIDF"):
        raise cx.fail(f"unknown mode {mode!r}")
    out_size = max(indexes) + 1
    rows = T(cx, x if len(dims) == 2 else reshape(cx, x, (1, dims[0]))).cast("int64")
    b, c = rows.shape
    if isinstance(c, Sym):
        # a symbolic length: every window starts at every position of the row extended by a
        # value no n-gram holds, so the windows that run past the end never match
        reach = (hi - 1) * (max_skip + 1)
        if reach:
            outside = cx.op("broadcast_to", [cx.scalar(min(pool, default=0) - 1, "int64")], shape=(b, reach))
            rows = T(cx, cx.op("concat", [rows.v, outside], axis=1))
    # the pool's n-grams, in order: (length, tokens, output column)
    grams, gid = [], 0
    for n, start in enumerate(counts, start=1):
        end = counts[n] if n < len(counts) else len(pool)
        for k in range(start, end, n):
            if lo <= n <= hi:
                grams.append((n, pool[k:k + n], indexes[gid]))
            gid += 1
    total = None
    for n in sorted({g[0] for g in grams}):
        sel = [g for g in grams if g[0] == n]
        tokens = np.array([g[1] for g in sel], dtype=np.int64)                # [P, n]
        onehot = np.zeros((len(sel), out_size), dtype=np.float32)
        onehot[np.arange(len(sel)), [g[2] for g in sel]] = 1.0
        for d in ([1] if n == 1 else range(1, max_skip + 2)):
            w = c if isinstance(c, Sym) else c - (n - 1) * d
            if isinstance(w, int) and w <= 0:
                continue
            match = None
            for j in range(n):
                part = T(cx, cx.op("slice", [rows.v], starts=(0, j * d), ends=(b, j * d + w), steps=(1, 1)))
                eq = part.reshape((b, w, 1)).eq(T(cx, cx.const(tokens[:, j])))  # [B, W, P]
                match = eq if match is None else match & eq
            found = match.cast("float32").sum((1,))                               # [B, P]
            cols = T(cx, cx.op("matmul", [found.v, cx.const(onehot)]))
            total = cols if total is None else total + cols
    if total is None:
        total = T(cx, _full(cx, (b, out_size), 0.0, "float32"))
    wv = T(cx, cx.const(np.asarray(weights, dtype=np.float32))) if weights else None
    if mode == "IDF":
        total = (total > 0).where(wv if wv is not None else T(cx, cx.scalar(1.0, "float32")), 0.0)
    elif mode == "TFIDF" and wv is not None:
        total = total * wv
    return total.reshape((out_size,)).v if len(dims) == 1 else total.v


@translates(f"{_ML}:TreeEnsemble")
def tree_ensemble(cx):
    # every tree reaches exactly one leaf: a leaf's indicator is the conjunction of the decisions
    # on its path, and the result per target combines indicator-weighted leaf values (a graph that
    # grows with the number of leaves: meant for small ensembles)
    x = T(cx, cx.input(0))
    dims = x.shape
    if len(dims) != 2 or not x.dtype.startswith("float"):
        raise cx.fail(f"expects floating-point X [N, F], got {x.v.type}")
    n = dims[0]
    a = {k: cx.attr(k, None) for k in ("nodes_splits", "nodes_featureids", "nodes_modes", "nodes_truenodeids",
                                       "nodes_falsenodeids", "nodes_trueleafs", "nodes_falseleafs", "leaf_targetids",
                                       "leaf_weights", "tree_roots", "membership_values",
                                       "nodes_missing_value_tracks_true")}
    splits = np.asarray(a["nodes_splits"], dtype=np.float64).reshape(-1)
    modes = np.asarray(a["nodes_modes"]).reshape(-1).astype(int)
    weights = np.asarray(a["leaf_weights"], dtype=np.float64).reshape(-1)
    members = [] if a["membership_values"] is None else list(np.asarray(a["membership_values"]).reshape(-1))
    tracks = a["nodes_missing_value_tracks_true"] or [0] * len(modes)
    n_targets = cx.attr("n_targets")
    agg, post = cx.attr("aggregate_function", 1), cx.attr("post_transform", 0)
    if agg not in (0, 1, 2, 3) or post != 0:
        raise cx.unsupported(f"aggregate_function={agg}, post_transform={post}")
    # the members of each set-membership node, in node order (each set ends with a NaN)
    sets, it = {}, iter(members)
    for i, m in enumerate(modes):
        if m == 6:
            s = []
            for v in it:
                if np.isnan(v):
                    break
                s.append(float(v))
            sets[i] = s
    conds: dict[int, T] = {}

    def cond(i):
        if i not in conds:
            f = x.gather(cx.scalar(int(a["nodes_featureids"][i]), "int64"), axis=1)        # [N]
            m, v = modes[i], float(splits[i])
            if m == 6:
                c = None
                for s in sets[i]:
                    e = f.eq(s)
                    c = e if c is None else c | e
                c = c if c is not None else T(cx, _full(cx, (n,), False, "bool"))
            else:
                c = [f <= v, f < v, f >= v, f > v, f.eq(v), f.ne(v)][m]
            if tracks[i]:
                c = c | f.unary("isnan")
            conds[i] = c
        return conds[i]

    leaves: list[tuple[T | None, int]] = []          # (indicator, leaf index)

    def walk(i, is_leaf, path):
        if is_leaf:
            leaves.append((path, i))
            return
        c = cond(i)
        walk(a["nodes_truenodeids"][i], a["nodes_trueleafs"][i], c if path is None else path & c)
        nc = ~c
        walk(a["nodes_falsenodeids"][i], a["nodes_falseleafs"][i], nc if path is None else path & nc)

    roots = list(a["tree_roots"])
    for r in roots:
        root_is_leaf = bool(a["nodes_trueleafs"][r] and a["nodes_falseleafs"][r]
                            and a["nodes_truenodeids"][r] == a["nodes_falsenodeids"][r])
        walk(r, root_is_leaf, None)
    dt = x.dtype
    big = float(np.finfo(np_dtype(dt)).max)
    cols = []
    for t in range(n_targets):
        acc = None
        for ind, leaf in leaves:
            if int(a["leaf_targetids"][leaf]) != t:
                continue
            wv = float(weights[leaf]) / (len(roots) if agg == 0 else 1)
            val = T(cx, _full(cx, (n,), wv, dt)) if ind is None else ind.where(T(cx, cx.scalar(wv, dt)), 0.0)
            if agg in (0, 1):
                acc = val if acc is None else acc + val
            else:
                fill = big if agg == 2 else -big
                val = val if ind is None else ind.where(T(cx, cx.scalar(wv, dt)), fill)
                acc = val if acc is None else (acc.min(val) if agg == 2 else acc.max(val))
        if acc is None:
            init = 0.0 if agg in (0, 1) else (big if agg == 2 else -big)
            acc = T(cx, _full(cx, (n,), init, dt))
        cols.append(acc.reshape((n, 1)).v)
    return cols[0] if len(cols) == 1 else cx.op("concat", cols, axis=1)


def _full(cx, shape, value, dtype: str):
    """A tensor of ``shape`` (which may be symbolic) filled with ``value``."""
    if any(isinstance(d, Sym) for d in shape):
        return cx.op("broadcast_to", [cx.scalar(value, dtype)], shape=tuple(shape))
    return cx.const(np.full(shape, value, dtype=np_dtype(dtype)), dtype)


def _label_items(cx, which: str) -> tuple[list, str]:
    """LabelEncoder's keys or values (``which``) as Python values, and their IR dtype."""
    given = [(k, dt) for k, dt in ((f"{which}_strings", "string"), (f"{which}_int64s", "int64"),
                                   (f"{which}_floats", "float32"), (f"{which}_tensor", None)) if cx.has_attr(k)]
    if len(given) != 1:
        raise cx.fail(f"needs exactly one of {which}_strings, {which}_int64s, {which}_floats, "
                      f"{which}_tensor; got {', '.join(k for k, _ in given) or 'none'}")
    attr, dtype = given[0]
    if dtype is None:
        arr = cx.attr(attr)
        return np.asarray(arr).reshape(-1).tolist(), str(arr.dtype) if arr.dtype != object else "string"
    items = list(cx.attr(attr))
    return ([str(v) for v in items] if dtype == "string" else [int(v) for v in items] if dtype == "int64"
            else [float(v) for v in items]), dtype


def _label_default(cx, dtype: str):
    if cx.has_attr("default_tensor"):
        arr = np.asarray(cx.attr("default_tensor")).reshape(-1)
        if arr.size != 1:
            raise cx.fail(f"default_tensor must hold one value, got {arr.size}")
        return arr.tolist()[0]
    if is_string(dtype):
        return cx.attr("default_string", "_Unused")
    if is_int(dtype):
        return int(cx.attr("default_int64", -1))
    return float(cx.attr("default_float", -0.0))


@translates(f"{_ML}:LabelEncoder")
def label_encoder(cx):
    x = cx.input(0)
    keys, kdt = _label_items(cx, "keys")
    values, vdt = _label_items(cx, "values")
    if len(keys) != len(values):
        raise cx.fail(f"has {len(keys)} keys but {len(values)} values")
    if is_string(x.dtype) != is_string(kdt) or (is_float(kdt) and not is_float(x.dtype)):
        raise cx.fail(f"keys of dtype {kdt} cannot be looked up in {x.type}")
    default = _label_default(cx, vdt)
    if is_string(x.dtype) or is_string(vdt) or not keys:
        return cx.op("label_encode", [x], keys=tuple(keys), values=tuple(values), default=default, dtype=vdt)
    # numbers to numbers: compiled as selects, the first key that matches wins
    xt = T(cx, x)
    out = T(cx, cx.scalar(default, vdt))
    for k, v in reversed(list(zip(keys, values))):
        hit = xt.unary("isnan") if isinstance(k, float) and math.isnan(k) else xt.eq(k)
        out = hit.where(T(cx, cx.scalar(v, vdt)), out)
    return out.v
