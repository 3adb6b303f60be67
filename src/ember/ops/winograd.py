"""Winograd's minimal filtering algorithm for 3x3 convolutions, F(m x m, 3 x 3).

A stride-1 3x3 convolution computes each m x m output tile from an (m+2) x (m+2) input tile.
Winograd (as applied to convolution networks by Lavin and Gray, 2016) moves both into a
transformed domain where the convolution is an elementwise product:

    Y = A^T [ (G g G^T) (.) (B^T d B) ] A

``g`` is a 3x3 filter, ``d`` an input tile, ``(.)`` the elementwise product over the
alpha x alpha points (alpha = m + 2).  Summed over input channels, the elementwise products
become alpha^2 independent matrix products, one per point, which need alpha^2 / (9 m^2) of the
direct convolution's multiplications: 4x fewer for F(4x4, 3x3), 2.25x for F(2x2, 3x3).

A convolution is therefore rewritten (``ember.passes.winograd``) into three kernels:

1. ``winograd_input``: input tiles to the transformed domain, V[point, tile, channel];
2. a batched ``matmul`` of V with the filters transformed at compile time, U[point, C, O];
3. ``winograd_output``: back to output tiles in the blocked layout; the convolution's epilogue
   (bias, activation, residual add) fuses into this kernel.

The transforms are sparse constant matrices.  The computes below spell out the nonzero terms of
each transformed point, a chain of selects on the point index; the schedules unroll the point
loops, so selects fold and the C compiler sees one straight-line block per tile in which the
partial sums shared by several points are computed once.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .. import te
from ..graph.types import TensorType
from ..symbolic import compare, is_symbolic
from .base import Op, Pattern, register
from .nn import from_blocked_array, to_blocked_array

#: Interpolation points of the Cook-Toom construction, in the order they are used
POINTS = (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2), Fraction(1, 2), Fraction(-1, 2))


def _poly_mul(p: list, q: list) -> list:
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


def winograd_matrices(m: int, r: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A^T, G, B^T) of F(m, r) from alpha - 1 finite points and the point at infinity.

    With points p_0 .. p_{alpha-2}:  A^T[i, j] = p_j^i;  G[j, k] = p_j^k / prod_{l != j} (p_j - p_l);
    row j of B^T holds the coefficients of prod_{l != j} (x - p_l), and its last row those of
    prod_l (x - p_l).  The point at infinity contributes the highest-order coefficients.
    """
    alpha = m + r - 1
    if alpha - 1 > len(POINTS):
        raise ValueError(f"F({m}, {r}) needs {alpha - 1} interpolation points; {len(POINTS)} are known")
    pts = POINTS[:alpha - 1]
    at = [[Fraction(0)] * alpha for _ in range(m)]
    g = [[Fraction(0)] * r for _ in range(alpha)]
    bt = [[Fraction(0)] * alpha for _ in range(alpha)]
    for j, p in enumerate(pts):
        for i in range(m):
            at[i][j] = p ** i
        others = [q for q in pts if q != p]
        denom = Fraction(1)
        poly = [Fraction(1)]
        for q in others:
            denom *= p - q
            poly = _poly_mul(poly, [-q, Fraction(1)])
        for k in range(r):
            g[j][k] = p ** k / denom
        bt[j][:len(poly)] = poly
    at[m - 1][alpha - 1] = Fraction(1)
    g[alpha - 1][r - 1] = Fraction(1)
    full = [Fraction(1)]
    for q in pts:
        full = _poly_mul(full, [-q, Fraction(1)])
    bt[alpha - 1][:] = full
    as_array = lambda rows: np.array([[float(v) for v in row] for row in rows])  # noqa: E731
    return as_array(at), as_array(g), as_array(bt)


def transform_filters(w: np.ndarray, m: int) -> np.ndarray:
    """U[point, C, O] = (G w[o, c] G^T) flattened over the alpha x alpha points, in float64
    and then cast to ``w``'s dtype."""
    _, g, _ = winograd_matrices(m)
    alpha = m + 2
    u = np.einsum("ak,ockl,bl->abco", g, w.astype(np.float64), g)
    return np.ascontiguousarray(u.reshape(alpha * alpha, w.shape[1], w.shape[0]).astype(w.dtype))


def _combination(coefs, terms):
    """sum_k coefs[k] * terms[k] over the nonzero coefficients, with +-1 as plain adds."""
    acc = None
    for c, t in zip(coefs, terms):
        if c == 0:
            continue
        neg = c < 0
        mag = -c if neg else c
        term = t if mag == 1 else te.const(float(mag), t.dtype) * t
        if acc is None:
            acc = -term if neg else term
        else:
            acc = acc - term if neg else acc + term
    return acc


def _select_chain(index, exprs):
    """exprs[index] for an index expression in [0, len(exprs))."""
    out = exprs[-1]
    for k in range(len(exprs) - 2, -1, -1):
        out = te.select(te.eq(index, te.const(k, index.dtype)), exprs[k], out)
    return out


def tile_grid(out_h, out_w, m: int) -> tuple:
    """Tile rows and columns covering an out_h x out_w output; where m does not divide a size
    (or it is symbolic) the last row or column of tiles is partial: its input reads past the
    edge are zeros and its outputs past it are not written."""
    return tile_count(out_h, m), tile_count(out_w, m)


def tile_count(d, m: int):
    """ceil(d / m) of an output dimension (int or symbolic)."""
    return -(-d // m) if isinstance(d, int) else (d + (m - 1)) // m


def padded_rows(tiles: int, widths, points: int, line: int = 64, sets: int = 64, ways: int = 8) -> int:
    """Rows for the [points, rows, width] buffers between the transforms and the matmul.

    A transform reads or writes all ``points`` planes of one tile at once, ``rows * width``
    floats apart.  When that distance is a multiple of a large power of two (64 tiles of 32
    channels: 8 KiB), every access falls in the same few sets of the L1 cache and they evict
    each other at every tile.  A few padding rows spread them: the smallest row count >= tiles
    that puts at most half a set's ways on any one set (for a ``sets`` x ``ways`` cache of
    ``line``-byte lines) for every plane width in ``widths``.
    """
    for rows in range(tiles, tiles + sets):
        ok = True
        for w in widths:
            stride = rows * w * 4
            per_set: dict[int, int] = {}
            for k in range(points):
                st = (k * stride // line) % sets
                per_set[st] = per_set.get(st, 0) + 1
            ok = ok and max(per_set.values()) <= ways // 2
        if ok:
            return rows
    return tiles


@register
class WinogradInput(Op):
    """Input tiles of a blocked activation x [N, C/cb, H, W, cb] in the transformed domain:
    V[a * alpha + b, (n * TH + ty) * TW + tx, c] = (B^T d B)[a, b] for the (m+2)^2 tile d at
    (ty * m, tx * m) of x zero-padded by ``pads`` (top, left, bottom, right).  ``rows`` (0: the
    number of tiles) pads the tile dimension with zero rows (see ``padded_rows``)."""

    name = "winograd_input"
    pattern = Pattern.OPAQUE
    attrs = {"m": 4, "pads": (0, 0, 0, 0), "rows": 0}
    num_inputs = 1

    def infer(self, a, x):
        if x.rank != 5:
            raise self.fail(f"expects a blocked 5-D input, got {x}")
        m = a["m"]
        n, cblk, h, w, cb = x.shape
        pt, pl, pb, pr = a["pads"]
        oh, ow = h + pt + pb - 2, w + pl + pr - 2
        if m not in (2, 4) or compare(oh, "<=", 0) or compare(ow, "<=", 0):
            raise self.fail(f"F({m}x{m}, 3x3) needs m 2 or 4 and a nonempty output; {x} with pads "
                            f"{a['pads']} gives {oh}x{ow}")
        th, tw = tile_grid(oh, ow, m)
        tiles = n * th * tw
        if a["rows"] and (is_symbolic(tiles) or a["rows"] < tiles):
            raise self.fail(f"rows={a['rows']} cannot hold the {tiles} tiles of {x}")
        return TensorType(((m + 2) ** 2, a["rows"] or tiles, cblk * cb), x.dtype)

    def reference(self, a, x):
        m = a["m"]
        alpha = m + 2
        _, _, bt = winograd_matrices(m)
        pt, pl, pb, pr = a["pads"]
        # a last row or column of partial tiles reads zeros past the padded input
        oh, ow = x.shape[2] + pt + pb - 2, x.shape[3] + pl + pr - 2
        eh, ew = -oh % m, -ow % m
        xp = np.pad(from_blocked_array(x), ((0, 0), (0, 0), (pt, pb + eh), (pl, pr + ew))).astype(np.float64)
        tiles = np.lib.stride_tricks.sliding_window_view(xp, (alpha, alpha), axis=(2, 3))[:, :, ::m, ::m]
        v = np.einsum("ai,bj,nchwij->abnhwc", bt, bt, tiles).reshape(alpha * alpha, -1, xp.shape[1])
        out = np.zeros((alpha * alpha, a["rows"] or v.shape[1], v.shape[2]), x.dtype)
        out[:, :v.shape[1]] = v
        return out

    def compute(self, a, x):
        m = a["m"]
        alpha = m + 2
        _, _, bt = winograd_matrices(m)
        n, cblk, h, w, cb = x.shape
        pt, pl, pb, pr = a["pads"]
        th, tw = th_dim, tw_dim = tile_grid(h + pt + pb - 2, w + pl + pr - 2, m)
        tiles = n * th * tw
        rows = a["rows"] or tiles
        zero_i, h_i, w_i = te.const(0, "int64"), te.const(h, "int64"), te.const(w, "int64")
        grid = is_symbolic(tw)
        th, tw = (te.const(d) if is_symbolic(d) else d for d in (th, tw))

        def f(t, p, c, tx=None):
            if tx is None:
                tx, ty, nn = p % tw, (p // tw) % th, p // (tw * th)
            else:             # p counts tile rows
                ty, nn = p % th, p // th
            cc, ci = c // cb, c % cb

            def d(i, j):
                y, xx = ty * m + (i - pt), tx * m + (j - pl)
                load = x[nn, cc, y, xx, ci]
                ok = te.logical_and(te.logical_and(te.ge(y, zero_i), te.lt(y, h_i)),
                                    te.logical_and(te.ge(xx, zero_i), te.lt(xx, w_i)))
                return te.select(ok, load, te.const(0.0, x.dtype))

            tile = [[d(i, j) for j in range(alpha)] for i in range(alpha)]
            # column sums first, (B^T d)[a, j], each shared by the alpha points of row a
            cols = [[_combination(bt[ar], [tile[i][j] for i in range(alpha)]) for j in range(alpha)]
                    for ar in range(alpha)]
            points = [_combination(bt[bc], cols[ar]) for ar in range(alpha) for bc in range(alpha)]
            value = _select_chain(t, points)
            if a["rows"] > tiles:   # padding rows (see ``padded_rows``) hold zeros
                value = te.select(te.lt(p, te.const(tiles, "int64")), value, te.const(0.0, x.dtype))
            return value

        if grid:
            # a symbolic grid: the same buffer computed as [points, N * TH, TW, C], so the tile
            # column is a loop of its own (a split by the symbolic TW, which schedules cannot
            # make): only the tile row is divided by the grid, once per row of tiles
            return te.compute(((m + 2) ** 2, n * th_dim, tw_dim, cblk * cb),
                              lambda t, r, tx, c: f(t, r, c, tx), name="winograd_input")
        return te.compute(((m + 2) ** 2, rows, cblk * cb), f, name="winograd_input")


def blocked_input(v):
    """The blocked input tensor a winograd_input tensor reads."""
    from ..te.tensor import TensorLoad, walk

    for e in walk(v.body):
        if isinstance(e, TensorLoad) and len(e.tensor.shape) == 5:
            return e.tensor
    raise AssertionError("winograd_input reads no blocked tensor")


@register
class WinogradOutput(Op):
    """Transformed products M[point, tile, O] back to the blocked output [N, O/ob, H, W, ob]:
    each m x m tile is A^T M A.  ``tiles`` = (N, TH, TW), ``block`` = ob; M may have padding
    rows after the N * TH * TW tiles.  ``size`` = (H, W), by default (TH*m, TW*m); a smaller
    (symbolic) size drops the outputs of the last tiles past it."""

    name = "winograd_output"
    pattern = Pattern.OUT_ELEMWISE_FUSABLE
    attrs = {"m": 4, "tiles": (1, 1, 1), "block": 8, "size": ()}
    num_inputs = 1

    @staticmethod
    def _size(a):
        m, (_, th, tw) = a["m"], a["tiles"]
        return tuple(a["size"]) or (th * m, tw * m)

    def infer(self, a, mm):
        m, (n, th, tw), ob = a["m"], a["tiles"], a["block"]
        tiles = n * th * tw
        short = compare(mm.shape[1], "<", tiles) if mm.rank == 3 else None
        if mm.rank != 3 or mm.shape[0] != (m + 2) ** 2 or short or mm.shape[2] % ob:
            raise self.fail(f"expects [{(m + 2) ** 2}, >= {tiles}, O] with O a multiple of {ob}, got {mm}")
        h, w = self._size(a)
        if compare(h, ">", th * m) or compare(w, ">", tw * m) or compare(h, "<=", th * m - m) \
                or compare(w, "<=", tw * m - m):
            raise self.fail(f"size {h}x{w} is not covered by {th}x{tw} tiles of {m}x{m}")
        return TensorType((n, mm.shape[2] // ob, h, w, ob), mm.dtype)

    def reference(self, a, mm):
        m, (n, th, tw), ob = a["m"], a["tiles"], a["block"]
        alpha = m + 2
        at, _, _ = winograd_matrices(m)
        o = mm.shape[2]
        h, w = self._size(a)
        t = mm[:, :n * th * tw].astype(np.float64).reshape(alpha, alpha, n, th, tw, o)
        y = np.einsum("ya,xb,abnhwo->nohywx", at, at, t).reshape(n, o, th * m, tw * m)[:, :, :h, :w]
        return to_blocked_array(y.astype(mm.dtype), ob)

    def compute(self, a, mm):
        m, (n, th, tw), ob = a["m"], a["tiles"], a["block"]
        alpha = m + 2
        at, _, _ = winograd_matrices(m)
        h, w = self._size(a)
        th, tw = (te.const(d) if is_symbolic(d) else d for d in (th, tw))

        def f(nn, oc, y, x, o):
            p = (nn * th + y // m) * tw + x // m
            ch = oc * ob + o
            pts = [[mm[ar * alpha + bc, p, ch] for bc in range(alpha)] for ar in range(alpha)]
            # (M A)[a, xi], shared by the m output rows of the tile
            rows = [[_combination(at[xi], pts[ar]) for xi in range(m)] for ar in range(alpha)]
            outs = [[_combination(at[yi], [rows[ar][xi] for ar in range(alpha)]) for xi in range(m)]
                    for yi in range(m)]
            return _select_chain(y % m, [_select_chain(x % m, row) for row in outs])

        return te.compute((n, mm.shape[2] // ob, h, w, ob), f, name="winograd_output")
