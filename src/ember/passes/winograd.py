"""Rewrite stride-1 3x3 convolutions in the blocked layout to Winograd's algorithm.

Runs after ``layout_nchwc``.  A ``conv2d_nchwc`` with a constant 3x3 filter, stride 1, no
dilation and no grouping becomes (see ``ember.ops.winograd``)::

    winograd_input(x, m, pads) -> matmul(., U) -> winograd_output(., m, tiles, block)

with U, the filter in the transformed domain, computed here at compile time.  The zero padding
that ``layout_nchwc`` split off into a ``pad`` node is folded back into ``winograd_input``,
which reads the unpadded input.  The output tile size m is 4 (F(4x4, 3x3): 4x fewer
multiplications) when it divides the output, else 2 (2.25x fewer); convolutions whose output
divides by neither, or whose filters would grow too large in the transformed domain, keep the
direct kernel.  A symbolic output height or width takes the m a size it divides would take, and
the transforms handle a last row and column of partial tiles at run time.
"""

from __future__ import annotations

from ..graph.builder import GraphBuilder
from ..graph.ir import Graph, Value, constant
from ..ops.nn import Conv2dNCHWc
from ..ops.winograd import padded_rows, tile_count, transform_filters
from .base import Pass
from .dead_code import dead_code

#: Largest transformed filter (alpha^2 * C * O floats) worth streaming once per image: beyond it
#: the convolution is bound by reading filters, and the direct kernel reads 9 * C * O instead.
MAX_TRANSFORMED_FILTER = 1 << 21


def tile_size(out_h: int, out_w: int, cin: int, cout: int, batch: int) -> int:
    """m of F(m x m, 3 x 3) for a convolution of this shape, or 0 for the direct kernel."""
    for m in (4, 2):
        if out_h % m or out_w % m:
            continue
        tiles = batch * (out_h // m) * (out_w // m)
        # the batched matmul needs rows to fill its register tiles, and the transformed filters
        # must not outweigh the multiplications they save
        if tiles >= 8 and (m + 2) ** 2 * cin * cout <= MAX_TRANSFORMED_FILTER * max(1, batch):
            return m
    return 0


def open_tile_size(cin: int, cout: int) -> int:
    """m for a convolution whose output height or width is symbolic: the largest whose
    transformed filters are small enough (as ``tile_size``), so at any size that m divides the
    choice is the static one; the last row and column of tiles may be partial."""
    for m in (4, 2):
        if (m + 2) ** 2 * cin * cout <= MAX_TRANSFORMED_FILTER:
            return m
    return 0


def _eligible(node) -> bool:
    if node.op != "conv2d_nchwc":
        return False
    a = node.attrs
    x, wp = node.inputs
    return (wp.is_const and x.dtype == "float32" and a["groups"] == 1 and tuple(a["strides"]) == (1, 1)
            and tuple(a["dilations"]) == (1, 1) and wp.shape[2:4] == (3, 3))


def run(graph: Graph, lanes: int = 8) -> Graph:
    g = graph.copy()
    producer = {o: n for n in g.nodes for o in n.outputs}
    uses: dict[Value, int] = {}
    for n in g.nodes:
        for v in n.inputs:
            uses[v] = uses.get(v, 0) + 1
    for v in g.outputs:
        uses[v] = uses.get(v, 0) + 1

    b = GraphBuilder.rewriting(g)
    vmap: dict[Value, Value] = {}

    def m_(v: Value) -> Value:
        return vmap.get(v, v)

    for node in g.nodes:
        node.inputs = [m_(v) for v in node.inputs]
        if not _eligible(node):
            b.add_node(node)
            continue
        x, wp = node.inputs
        pads = tuple(node.attrs["pads"])
        src = producer.get(x)
        if (src is not None and src.op == "pad" and uses.get(x, 0) == 1 and not any(pads)
                and src.attrs["mode"] == "constant" and src.attrs["value"] == 0.0):
            p = src.attrs["pads"]        # 10 pads of [N, C/cb, H, W, cb]
            if not (p[0] or p[1] or p[4] or p[5] or p[6] or p[9]):
                x, pads = src.inputs[0], (p[2], p[3], p[7], p[8])
        n, _, h, w, cb = x.shape
        oh, ow = h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2
        if cb % lanes or wp.shape[-1] % lanes:
            b.add_node(node)
            continue
        filt = Conv2dNCHWc.unpack(wp.const, depthwise=False)
        cout, cin = filt.shape[:2]
        open_size = not (isinstance(oh, int) and isinstance(ow, int))
        # an open batch is planned for one image: what pays off at batch 1 pays off at more; an
        # open height or width gets a tail of partial tiles
        mt = open_tile_size(cin, cout) if open_size else tile_size(oh, ow, cin, cout, n if isinstance(n, int) else 1)
        if not mt:
            b.add_node(node)
            continue
        th, tw = tile_count(oh, mt), tile_count(ow, mt)
        rows = padded_rows(n * th * tw, (cin, cout), (mt + 2) ** 2) \
            if isinstance(n, int) and not open_size else 0
        v = b.op("winograd_input", [x], name=f"{node.name}_wino_in", m=mt, pads=pads, rows=rows)
        u = constant(transform_filters(filt, mt), f"{wp.name}_wino")
        prod = b.op("matmul", [v, u], name=f"{node.name}_wino_mm")
        size = {"size": (oh, ow)} if open_size else {}
        out = b.op("winograd_output", [prod], name=node.name, m=mt,
                   tiles=(n, th, tw), block=wp.shape[-1], **size)
        vmap[node.output] = out
    return dead_code(b.finish([m_(v) for v in g.outputs]))


PASS = Pass("winograd", 3, run)
