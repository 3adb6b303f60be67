"""Layout conversion to the blocked NCHW[x]c layout for CPU convolution networks.

Convolutions with constant weights become ``conv2d_nchwc`` (integer ones ``conv2d_int_nchwc``,
those summed in blocks of channels ``conv2d_split_k_nchwc``) on [N, C/cb, H, W, cb] activations
(weights packed at compile time).  A dense convolution's zero padding becomes a ``pad`` node in
front of it (its inner loops then need no bounds checks); a depthwise convolution, which does
little arithmetic per load, reads its input unpadded and checks bounds itself, which costs less
than copying the whole activation into a padded buffer first.  The blocked layout is then kept
through the elementwise and broadcast ops, pads, pools and spatial reductions that follow, and
converted back to NCHW only where an op needs it (a reshape, a matmul, a graph output).  Conversions are ordinary
``reshape``/``transpose`` nodes: on constants (biases, scales) they fold away, on activations
they fuse into the neighbouring kernels.

**Padded channels.**  A float convolution whose channel count is not a multiple of the vector
(MobileNetV2's 24 channels with 16-lane vectors) is blocked with its channels padded up to one
(``padded_channels``): its weight gets zero filters for the extra outputs, and the next
convolution zero weights for the extra inputs, so whatever the extra channels hold is multiplied
by zero.  They hold zeros and finite values only: bias and scale constants are padded with
zeros, and a padded tensor is kept blocked only through ops that map finite values to finite
values (``FINITE_OPS``), pools and pads; anything else gets the NCHW form, sliced back to the
real channels.
"""

from __future__ import annotations

import numpy as np

from ..graph.builder import GraphBuilder
from ..graph.ir import Graph, Node, Value, constant
from ..ops import Pattern, get_op
from ..ops.nn import Conv2dNCHWc
from ..ops.quant import Conv2dIntNCHWc
from .base import Pass


#: elementwise ops that keep the extra channels of a padded tensor finite (module doc)
FINITE_OPS = frozenset({"add", "sub", "mul", "neg", "relu", "clip", "maximum", "minimum", "sigmoid", "tanh"})


def channel_block(c: int, lanes: int) -> int:
    """Channels per block for a tensor of ``c`` channels (0: do not block)."""
    for cb in (2 * lanes, lanes):
        if c % cb == 0:
            return cb
    return 0


def padded_channels(c: int, lanes: int) -> int:
    """The channel count a float convolution's ``c`` channels are padded to when they do not
    divide into vectors: the next multiple of ``lanes``, if that adds at most half again
    (24 -> 32 with 16 lanes); else 0 (the convolution stays in NCHW)."""
    if c < lanes or channel_block(c, lanes):
        return 0
    cp = -(-c // lanes) * lanes
    return cp if 2 * cp <= 3 * c else 0


class _Layout:
    def __init__(self, graph: Graph, lanes: int, int8_dot: bool = False):
        self.g = graph
        self.lanes = lanes
        self.int8_dot = int8_dot
        self.b = GraphBuilder.rewriting(graph)
        self.blocked: dict[Value, tuple[Value, int]] = {}   # NCHW value -> (blocked value, cb)
        self.plain: dict[Value, Value] = {}                  # value -> its NCHW form
        self.packs: dict[tuple, Value] = {}                  # (weight, packing) -> packed constant

    def packed(self, w: Value, array: np.ndarray, *packing) -> Value:
        """The packed form of constant ``w``: one value per weight and packing (a weight two
        convolutions share and pack alike is packed once; packed unlike, each gets its own
        name)."""
        key = (w, array.shape, array.dtype.str) + packing
        if key not in self.packs:
            n = sum(k[0] is w for k in self.packs)
            self.packs[key] = constant(array, f"{w.name}_nchwc" + (f"{n}" if n else ""))
        return self.packs[key]

    # ---- conversions ------------------------------------------------------------------------

    def to_blocked(self, v: Value, cb: int, hint: str) -> Value:
        got = self.blocked.get(v)
        if got is not None and got[1] == cb:
            return got[0]
        out = self._block_reshaped(self.nchw(v), cb, hint)
        if got is None:
            self.blocked[v] = (out, cb)
        return out

    def nchw(self, v: Value) -> Value:
        """The NCHW form of ``v`` (converting a blocked value back, once)."""
        if v in self.plain:
            return self.plain[v]
        got = self.blocked.get(v)
        if got is None or got[0] is v:
            return v
        bv, cb = got
        n, cblk, h, w, _ = bv.shape
        t = self.b.op("transpose", [bv], name=f"{v.name}_unblock_t", perm=(0, 1, 4, 2, 3))
        out = self.b.op("reshape", [t], name=f"{v.name}_unblock", shape=(n, cblk * cb, h, w))
        c = v.shape[1]
        if cblk * cb != c:      # padded channels: the real ones
            out = self.b.op("slice", [out], name=f"{v.name}_unpad", starts=(0, 0, 0, 0), ends=(n, c, h, w),
                            steps=(1, 1, 1, 1))
        self.plain[v] = out
        return out

    def broadcast_operand(self, v: Value, c: int, cb: int, hint: str) -> Value | None:
        """``v`` (broadcastable to [N, C, H, W]) in the blocked layout, or None if it cannot be."""
        if v in self.blocked and self.blocked[v][1] == cb:
            return self.blocked[v][0]
        shape = (1,) * (4 - v.type.rank) + tuple(v.shape) if v.type.rank <= 4 else None
        if shape is None:
            return None
        if shape[1] == c and v.type.rank >= 3:
            if v.type.rank == 4:
                return self.to_blocked(v, cb, hint)
            return self._block_reshaped(self.b.op("reshape", [v], name=f"{hint}_4d", shape=shape), cb, hint)
        if shape[1] == 1:
            return self.b.op("reshape", [v], name=f"{hint}_b", shape=shape + (1,))
        return None

    def _block_reshaped(self, src: Value, cb: int, hint: str) -> Value:
        """NCHW ``src`` in blocks of ``cb`` channels, padded with zero channels to whole blocks."""
        n, c, h, w = src.shape
        if c % cb:
            src = self.b.op("pad", [src], name=f"{hint}_chpad", pads=(0, 0, 0, 0, 0, -c % cb, 0, 0))
            c += -c % cb
        r = self.b.op("reshape", [src], name=f"{hint}_block", shape=(n, c // cb, cb, h, w))
        return self.b.op("transpose", [r], name=f"{hint}_block_t", perm=(0, 1, 3, 4, 2))

    # ---- nodes ------------------------------------------------------------------------------

    def emit_plain(self, node: Node) -> None:
        """Keep ``node`` in NCHW, converting any blocked operands back first."""
        node.inputs = [self.nchw(v) for v in node.inputs]
        self.b.add_node(node)

    def conv(self, node: Node) -> bool:
        x, w = node.inputs
        a = dict(node.attrs)
        if not w.is_const or x.dtype != "float32" or x.type.rank != 4 or not isinstance(x.shape[1], int):
            return False
        o, ci, kh, kw = w.shape
        c = x.shape[1]
        g = a["groups"]
        depthwise = g > 1 and g == c == o and ci == 1
        if g > 1 and not depthwise:
            return False
        op = padded_channels(o, self.lanes) or o          # output channels, padded (module doc)
        ob = channel_block(op, self.lanes)
        if not ob:
            return False
        if depthwise:
            cb = ob
        elif x in self.blocked:
            cb = self.blocked[x][1]
        else:
            cb = channel_block(padded_channels(c, self.lanes) or c, self.lanes) or (c if c < self.lanes else 0)
        cp = -(-c // cb) * cb if cb else 0                  # input channels, padded
        if not cb or (depthwise and cp != op):
            return False
        xb = self.to_blocked(x, cb, node.name)
        if any(a["pads"]) and not depthwise:
            t, l, bt, r = a["pads"]
            xb = self.b.op("pad", [xb], name=f"{node.name}_pad", pads=(0, 0, t, l, 0, 0, 0, bt, r, 0))
            a["pads"] = (0, 0, 0, 0)
        wc = w.const
        if (op, cp) != (o, c):                               # zero filters and zero weights
            wc = np.zeros((op, cp if not depthwise else 1) + wc.shape[2:], wc.dtype)
            wc[:o, :w.shape[1]] = w.const
            if depthwise:
                a["groups"] = op
        wp = self.packed(w, Conv2dNCHWc.pack(wc, cb, ob, depthwise), "conv", cb, ob, depthwise)
        out = self.b.op("conv2d_nchwc", [xb, wp], name=node.name, **a)
        self.blocked[node.output] = (out, ob)
        return True

    def conv_split_k(self, node: Node) -> bool:
        """A float convolution summed in blocks of channels: ``conv2d_split_k_nchwc`` when the
        blocks are whole channel blocks."""
        x, w = node.inputs
        a = node.attrs
        if not w.is_const or x.type.rank != 4 or not isinstance(x.shape[1], int):
            return False
        o, c = w.shape[0], x.shape[1]
        ob = channel_block(o, self.lanes)
        cb = self.blocked[x][1] if x in self.blocked else channel_block(c, self.lanes)
        if not ob or not cb or c % cb or a["k_block"] % cb:
            return False
        xb = self.to_blocked(x, cb, node.name)
        if any(a["pads"]):
            t, l, bt, r = a["pads"]
            xb = self.b.op("pad", [xb], name=f"{node.name}_pad", pads=(0, 0, t, l, 0, 0, 0, bt, r, 0))
        wp = self.packed(w, Conv2dNCHWc.pack(w.const, cb, ob), "split_k", cb, ob)
        out = self.b.op("conv2d_split_k_nchwc", [xb, wp], name=node.name, strides=a["strides"],
                        dilations=a["dilations"], k_block=a["k_block"])
        self.blocked[node.output] = (out, ob)
        return True

    def conv_int(self, node: Node) -> bool:
        """An integer convolution with a constant weight, one group: ``conv2d_int_nchwc``."""
        x, w = node.inputs
        a = node.attrs
        if not w.is_const or x.type.rank != 4 or not isinstance(x.shape[1], int) or a["groups"] != 1:
            return False
        o, c = w.shape[0], x.shape[1]
        ob = channel_block(o, self.lanes)
        if x in self.blocked:
            cb = self.blocked[x][1]
        else:
            cb = channel_block(c, self.lanes) or (c if c < self.lanes else 0)
        sat = a["saturate_pairs"]
        if not ob or not cb or c % cb or (sat and cb % 4 and c != cb):
            return False
        # products in groups of four: x86's multiply-add where pairs saturate, VNNI's exact dot
        # product where the target has one (uint8 x int8)
        fours = sat or (self.int8_dot and x.dtype == "uint8" and w.dtype == "int8" and (cb % 4 == 0 or c == cb))
        xb = self.to_blocked(x, cb, node.name)
        if any(a["pads"]):
            t, l, bt, r = a["pads"]
            xb = self.b.op("pad", [xb], name=f"{node.name}_pad", pads=(0, 0, t, l, 0, 0, 0, bt, r, 0),
                           value=a["pad_value"])
        wp = self.packed(w, Conv2dIntNCHWc.pack(w.const, cb, ob, fours), "int", cb, ob, fours)
        out = self.b.op("conv2d_int_nchwc", [xb, wp], name=node.name, strides=a["strides"],
                        dilations=a["dilations"], kernel=tuple(w.shape[2:]),
                        pairs="saturate" if sat else "exact")
        self.blocked[node.output] = (out, ob)
        return True

    def elementwise(self, node: Node) -> bool:
        out = node.output
        if out.type.rank != 4 or not isinstance(out.shape[1], int):
            return False
        lead = next((v for v in node.inputs if v in self.blocked and v.shape == out.shape), None)
        if lead is None:
            return False
        bv, cb = self.blocked[lead]
        c = out.shape[1]
        if bv.shape[1] * cb != c and node.op not in FINITE_OPS:
            return False
        ins = []
        for v in node.inputs:
            bv = self.broadcast_operand(v, c, cb, f"{node.name}_{len(ins)}")
            if bv is None:
                return False
            ins.append(bv)
        new = self.b.op(node.op, ins, name=node.name, **node.attrs)
        self.blocked[out] = (new, cb)
        return True

    def pool(self, node: Node) -> bool:
        (x,) = node.inputs
        if x not in self.blocked or node.attrs.get("layout", "NCHW") != "NCHW":
            return False
        xb, cb = self.blocked[x]
        new = self.b.op(node.op, [xb], name=node.name, **dict(node.attrs, layout="NCHWc"))
        self.blocked[node.output] = (new, cb)
        return True

    def spatial_reduce(self, node: Node) -> bool:
        (x,) = node.inputs
        axes = tuple(sorted(a % 4 for a in node.attrs["axes"]))
        if x not in self.blocked or x.type.rank != 4 or axes not in ((2,), (3,), (2, 3)) or not node.attrs["keepdims"]:
            return False
        xb, cb = self.blocked[x]
        new = self.b.op(node.op, [xb], name=node.name, **node.attrs)
        self.blocked[node.output] = (new, cb)
        return True

    def pad(self, node: Node) -> bool:
        (x,) = node.inputs
        p = node.attrs["pads"]
        if x not in self.blocked or len(p) != 8 or p[0] or p[1] or p[4] or p[5] or node.attrs["mode"] != "constant":
            return False
        xb, cb = self.blocked[x]
        pads = (0, 0, p[2], p[3], 0, 0, 0, p[6], p[7], 0)
        new = self.b.op("pad", [xb], name=node.name, pads=pads, mode="constant", value=node.attrs["value"])
        self.blocked[node.output] = (new, cb)
        return True

    def run(self) -> Graph:
        for node in self.g.nodes:
            op = get_op(node.op)
            done = False
            if node.op == "conv2d":
                done = self.conv(node)
            elif node.op == "conv2d_int":
                done = self.conv_int(node)
            elif node.op == "conv2d_split_k":
                done = self.conv_split_k(node)
            elif node.op in ("max_pool2d", "avg_pool2d"):
                done = self.pool(node)
            elif node.op in ("reduce_mean", "reduce_sum", "reduce_max", "reduce_min"):
                done = self.spatial_reduce(node)
            elif node.op == "pad":
                done = self.pad(node)
            elif op.pattern in (Pattern.ELEMWISE, Pattern.BROADCAST) and len(node.outputs) == 1:
                done = self.elementwise(node)
            if not done:
                self.emit_plain(node)
        outputs = [self.nchw(v) for v in self.g.outputs]
        return self.b.finish(outputs)


def run(graph: Graph, lanes: int = 8, int8_dot: bool = False) -> Graph:
    """``graph`` in the blocked layout for ``lanes``-wide vectors; ``int8_dot``: the target has
    an exact uint8 x int8 dot product of four (``Target.int8_dot``)."""
    return _Layout(graph.copy(), lanes, int8_dot).run()


PASS = Pass("layout_nchwc", 3, run)
