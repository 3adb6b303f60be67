"""From QDQ form to integer arithmetic: the quantized model runs 8-bit kernels.

A QDQ model spells integer arithmetic in float: ``dequantize`` on the activations and weights,
the float op, ``quantize`` on its result.  This pass rewrites such groups into what the
quantization intends, and does it the way onnxruntime's CPU execution provider does (its QDQ
transformer and kernels), so that the two agree bit for bit where onnxruntime is integer:

* **uint8 activations.**  An int8 ``quantize`` whose result feeds one ``dequantize`` and nothing
  else (which in turn feeds one node) becomes a uint8 one with the zero point moved by 128: the
  same numbers, and onnxruntime's faster uint8 x int8 kernels apply after it.  One read by
  several nodes stays int8, as in onnxruntime (which gives each reader a dequantize of its
  own, so the quantize has several); its products run in float there and exactly here
  (``pack_int_matmul`` then runs them on uint8, shifted by 128, with an exact correction).
* **Convolution, matmul (Gemm, MatMul).**  dequantize(x) and dequantize(w: constant, zero point
  0, per tensor or per output channel) -> conv2d / matmul [-> + dequantize(int32 constant bias
  at scale x_scale * w_scale, what quantizers write; at another scale the group stays float)]
  [-> relu / clip] -> quantize becomes ``conv2d_int`` / ``matmul_int`` on the integers (padding
  with x's zero point), + (bias - x_zp * sum(w)) per channel, ``requantize`` by
  x_scale * w_scale / y_scale, and the activation as a clip of the integers (exact, since
  quantize is monotone).  Products saturate in pairs (``ember.ops.quant``) where onnxruntime's
  kernel does on x86 without VNNI: uint8 activations, int8 weights and a uint8 result, not
  depthwise (``passes.pair_saturation`` makes the sums exact for other targets).  Elsewhere
  onnxruntime computes in float and Ember exactly in integers, which differs only where a value
  falls within float rounding of a rounding tie.
* **Global average pool.**  dequantize -> mean over H, W -> quantize of one dtype becomes an
  int32 sum less x_zp * H * W, requantized by x_scale / (y_scale * H * W).
* **Max pool, reshape, transpose** between a dequantize and a quantize of the same parameters
  run on the integers (exact).

Everything else (additions, for one) keeps its float form, as in onnxruntime when its operands'
types differ.  Unlike the other passes this one changes results, within the rounding of the
quantized values: it replaces float arithmetic by the integer arithmetic the model was quantized
for.  It must run before constant folding, which would fold the weights' dequantize away.
"""

from __future__ import annotations

import numpy as np

from ..graph.builder import GraphBuilder
from ..graph.ir import Graph, Node, Value, constant
from ..graph.types import TensorType
from ..ops import get_op
from ..ops.quant import QUANT_RANGES
from .base import Names, Pass, resolve
from .dead_code import dead_code

LAYOUT_OPS = ("reshape", "transpose")
EXACT_OPS = ("max_pool2d", "reshape", "transpose")


def _scalar(v: Value):
    """The value of a one-element constant, else None."""
    if not v.is_const or v.const.size != 1:
        return None
    return v.const.reshape(-1)[0]


def wq_scale(scale: np.ndarray, channels: int) -> np.ndarray:
    """A weight's scale per output channel as float64 (one scale stands for every channel)."""
    return np.broadcast_to(np.asarray(scale, np.float64).reshape(-1), (channels,))


def _same_params(a: Node, b: Node) -> bool:
    return all(x.is_const and y.is_const and x.const.size == 1 and y.const.size == 1 and
               x.const.reshape(-1)[0] == y.const.reshape(-1)[0] and x.dtype == y.dtype
               for x, y in ((a.inputs[1], b.inputs[1]), (a.inputs[2], b.inputs[2])))


class _Rewriter:
    def __init__(self, graph: Graph):
        self.g = graph
        self.uses: dict[Value, int] = {}
        for n in graph.nodes:
            for v in n.inputs:
                self.uses[v] = self.uses.get(v, 0) + 1
        for v in graph.outputs:
            self.uses[v] = self.uses.get(v, 0) + 1
        self.b = GraphBuilder.rewriting(graph)
        self.subst: dict[Value, Value] = {}

    # ---- looking back from a quantize ---------------------------------------------------------

    def producer(self, v: Value, op: str | tuple[str, ...], single_use: bool = True) -> Node | None:
        p = v.producer
        ops = (op,) if isinstance(op, str) else op
        if p is None or p.op not in ops or (single_use and self.uses.get(v, 0) != 1):
            return None
        return p

    def dequantized(self, v: Value, const: bool):
        """``v`` as (layout nodes outermost first, the dequantize node) when it is a chain of
        reshape/transpose over a dequantize (of a constant when ``const``), else None."""
        chain = []
        while v.producer is not None and v.producer.op in LAYOUT_OPS:
            chain.append(v.producer)
            v = v.producer.inputs[0]
        d = v.producer
        if d is None or d.op != "dequantize" or (const and not all(x.is_const for x in d.inputs)):
            return None
        return chain, d

    @staticmethod
    def apply_chain(chain: list[Node], arr: np.ndarray) -> np.ndarray:
        for n in reversed(chain):
            arr = get_op(n.op).run_reference(n.attrs, [arr])[0]
        return arr

    def weight(self, v: Value, channel_axis: int):
        """The integer weight behind ``v`` and its per-channel scale (along ``channel_axis`` of
        the weight as ``v`` sees it), when its zero point is 0; else None."""
        got = self.dequantized(v, const=True)
        if got is None:
            return None
        chain, d = got
        q, s, z = d.inputs
        if q.dtype not in ("int8", "uint8") or np.any(z.const):
            return None
        wq = self.apply_chain(chain, q.const)
        scale = self.apply_chain(chain, np.broadcast_to(s.const, q.shape).copy())
        ax = channel_axis % scale.ndim
        per_channel = np.moveaxis(scale, ax, 0).reshape(scale.shape[ax], -1)
        if not np.all(per_channel == per_channel[:, :1]):
            return None
        return wq, per_channel[:, 0].astype(np.float32)

    def activation(self, d_x: Node):
        """(x's integers, scale, zero point) of an activation's dequantize with scalar parameters."""
        sx, zx = _scalar(d_x.inputs[1]), _scalar(d_x.inputs[2])
        xq = d_x.inputs[0]
        if sx is None or zx is None or xq.dtype not in ("int8", "uint8"):
            return None
        return xq, np.float32(sx), int(zx)

    # ---- emitting ---------------------------------------------------------------------------------

    def op(self, op: str, inputs, name: str, **attrs) -> Value:
        return self.b.op(op, inputs, name=name, **attrs)

    def const(self, arr, name: str) -> Value:
        return constant(arr, self.b.fresh(name))

    def replay(self, chain: list[Node], v: Value) -> Value:
        """The layout nodes of ``chain`` (outermost first) applied to ``v``."""
        for n in reversed(chain):
            v = self.op(n.op, [v], n.name, **n.attrs)
        return v

    # ---- the groups ---------------------------------------------------------------------------------

    def product_group(self, q: Node) -> Value | None:
        """conv2d / matmul [+ bias] [relu / clip] -> quantize, as integers."""
        sy, zy = _scalar(q.inputs[1]), _scalar(q.inputs[2])
        if sy is None or zy is None or q.output.dtype not in ("int8", "uint8"):
            return None
        v = q.inputs[0]
        act = self.producer(v, ("relu", "clip"))
        if act is not None:
            v = act.inputs[0]
        bias_node = self.producer(v, "add")
        bias = None
        if bias_node is not None:
            for k in (0, 1):
                anchor = self.producer(bias_node.inputs[k], ("conv2d", "matmul"))
                if anchor is not None:
                    bias = bias_node.inputs[1 - k]
                    break
            else:
                return None
        else:
            anchor = self.producer(v, ("conv2d", "matmul"))
        if anchor is None:
            return None
        conv = anchor.op == "conv2d"
        out_shape = anchor.output.shape
        if not conv and (len(anchor.inputs[1].shape) != 2):
            return None
        got_x = self.dequantized(anchor.inputs[0], const=False)
        if got_x is None:
            return None
        x_chain, d_x = got_x
        xa = self.activation(d_x)
        if xa is None:
            return None
        # onnxruntime runs the group on integers when activation and result share a type that
        # its x86 kernels take (uint8; int8 only for Gemm's int8 x int8) and quantize makes an
        # activation redundant; else in float
        ort_int = (xa[0].dtype == q.output.dtype and (xa[0].dtype == "uint8" or not conv)
                   and (act is None or self.redundant(act, q)))
        if conv and not ort_int and not x_chain and self.is_pointwise(anchor):
            # float in onnxruntime too, summed in its order (a group of one block is left as it is)
            return self.float_blocks(q, anchor, act, bias, d_x)
        w = self.weight(anchor.inputs[1], 0 if conv else -1)
        if w is None:
            return None
        xq, sx, zx = xa
        wq, sw = w
        channels = out_shape[1] if conv else out_shape[-1]
        bq = np.zeros(channels, np.int64)
        if bias is not None:
            got_b = self.dequantized(bias, const=True)
            if got_b is None or got_b[1].inputs[0].dtype != "int32" or np.any(got_b[1].inputs[2].const):
                return None
            b_full = np.broadcast_to(self.apply_chain(got_b[0], got_b[1].inputs[0].const), out_shape)
            b_ch = np.moveaxis(b_full, 1 if conv else -1, 0).reshape(channels, -1)
            if not np.all(b_ch == b_ch[:, :1]):
                return None
            bq = b_ch[:, 0].astype(np.int64)
            # the integer bias is added at the products' scale: only a bias quantized at x_scale *
            # w_scale (what quantizers write) means the same there
            b_int = got_b[1].inputs[0]
            s_full = np.broadcast_to(self.apply_chain(got_b[0], np.broadcast_to(
                got_b[1].inputs[1].const, b_int.shape).astype(np.float64)), out_shape)
            s_ch = np.moveaxis(s_full, 1 if conv else -1, 0).reshape(channels, -1)[:, 0]
            if not np.allclose(s_ch, np.float64(sx) * wq_scale(sw, channels), rtol=1e-6, atol=0):
                return None
        # onnxruntime's u8 x s8 kernels saturate pairs (not its depthwise one); where it computes
        # in float the sums here are exact
        depthwise = conv and anchor.attrs["groups"] > 1 and wq.shape[1] == 1
        sat = ort_int and xq.dtype == "uint8" and wq.dtype == "int8" and not depthwise
        name = anchor.name
        xv = self.replay(x_chain, xq)
        wv = self.const(wq, f"{name}_wq")
        if conv:
            acc = self.op("conv2d_int", [xv, wv], name, pad_value=zx, saturate_pairs=sat,
                          **{k: anchor.attrs[k] for k in ("strides", "pads", "dilations", "groups")})
            wsum = wq.astype(np.int64).reshape(wq.shape[0], -1).sum(axis=1)
            param_shape = (channels, 1, 1)
        else:
            acc = self.op("matmul_int", [xv, wv], name, saturate_pairs=sat)
            wsum = wq.astype(np.int64).sum(axis=0)
            param_shape = (channels,)
        corr = bq - zx * wsum
        if np.any(corr):
            if np.any(np.abs(corr) >= 2 ** 31):
                return None
            acc = self.op("add", [acc, self.const(corr.astype(np.int32).reshape(param_shape), f"{name}_bias")],
                          f"{name}_bias")
        mult = (sx * sw) / np.float32(sy)
        mult_v = self.const(mult.astype(np.float32).reshape(param_shape) if mult.size > 1 else
                            np.float32(mult[0]), f"{name}_multiplier")
        y = self.op("requantize", [acc, mult_v, q.inputs[2]], q.name)
        if act is not None:
            y = self.integer_activation(act, y, q)
        return y

    def float_blocks(self, q: Node, anchor: Node, act: Node | None, bias: Value | None, d_x: Node):
        """A 1x1 convolution onnxruntime runs in float, summed as its SGEMM sums: the input
        channels in blocks (:func:`sgemm_k_block`), each block's products added in order from
        zero, the blocks' sums added in order, then the bias: ``conv2d_split_k``.  None when
        the reduction fits one block (the group is then already summed that way)."""
        a = anchor.attrs
        got_w = self.dequantized(anchor.inputs[1], const=True)
        if got_w is None:
            return None
        chain, d_w = got_w
        w_f = self.apply_chain(chain, get_op("dequantize").run_reference({}, [v.const for v in d_w.inputs])[0])
        c = d_x.output.shape[1]
        out = anchor.output.shape
        kb = sgemm_k_block(out[2] * out[3], c)
        if c <= kb:
            return None
        acc = self.op("conv2d_split_k", [anchor.inputs[0], self.const(w_f, f"{anchor.name}_w")], anchor.name,
                      strides=a["strides"], pads=a["pads"], dilations=a["dilations"], k_block=kb)
        if bias is not None:
            acc = self.op("add", [acc, bias], f"{anchor.name}_bias")
        if act is not None:
            acc = self.op(act.op, [acc], act.name, **act.attrs)
        return self.op("quantize", [acc, q.inputs[1], q.inputs[2]], q.name)

    @staticmethod
    def is_pointwise(anchor: Node) -> bool:
        """A 1x1 convolution without groups, pads or dilation (a matrix product per image)."""
        a = anchor.attrs
        return (a["groups"] == 1 and not any(a["pads"]) and tuple(a["dilations"]) == (1, 1)
                and tuple(anchor.inputs[1].shape[2:]) == (1, 1))

    @staticmethod
    def quantized_bounds(act: Node, q: Node) -> tuple[int | None, int | None]:
        """The integer bounds that relu / clip ``act`` before quantize ``q`` amounts to, None
        where quantize's own saturation already bounds the result."""
        qop = get_op("quantize")

        def quantized(bound):
            arr = np.array(bound, np.float32)
            return int(qop.reference({}, arr, q.inputs[1].const, q.inputs[2].const).reshape(-1)[0])

        lo = quantized(0.0) if act.op == "relu" else (None if act.attrs["lo"] is None else quantized(act.attrs["lo"]))
        hi = None if act.op == "relu" or act.attrs["hi"] is None else quantized(act.attrs["hi"])
        qmin, qmax = QUANT_RANGES[q.output.dtype]
        return (None if lo is not None and lo <= qmin else lo), (None if hi is not None and hi >= qmax else hi)

    def redundant(self, act: Node, q: Node) -> bool:
        return self.quantized_bounds(act, q) == (None, None)

    def integer_activation(self, act: Node, y: Value, q: Node) -> Value:
        """relu / clip after the product as a clip of the quantized result."""
        lo, hi = self.quantized_bounds(act, q)
        if lo is None and hi is None:
            return y
        return self.op("clip", [y], act.name, lo=lo, hi=hi)

    def average_pool_group(self, q: Node) -> Value | None:
        """mean over H, W of a dequantized 4-D tensor -> quantize (same dtype): the int32 sum."""
        sy, zy = _scalar(q.inputs[1]), _scalar(q.inputs[2])
        mean = self.producer(q.inputs[0], "reduce_mean")
        if sy is None or zy is None or mean is None or mean.output.type.rank != 4:
            return None
        if tuple(sorted(a % 4 for a in mean.attrs["axes"])) != (2, 3) or not mean.attrs["keepdims"]:
            return None
        d_x = mean.inputs[0].producer
        if d_x is None or d_x.op != "dequantize":
            return None
        xa = self.activation(d_x)
        if xa is None or xa[0].dtype != q.output.dtype:
            return None
        xq, sx, zx = xa
        hw = xq.shape[2] * xq.shape[3]
        x32 = self.op("cast", [xq], f"{mean.name}_int", to="int32")
        acc = self.op("reduce_sum", [x32], mean.name, axes=(2, 3), keepdims=True)
        if zx:
            acc = self.op("add", [acc, self.const(np.int32(-zx * hw), f"{mean.name}_bias")], f"{mean.name}_bias")
        mult = sx / (np.float32(sy) * np.float32(hw))
        return self.op("requantize", [acc, self.const(np.float32(mult), f"{mean.name}_multiplier"), q.inputs[2]],
                       q.name)

    def exact_group(self, q: Node) -> Value | None:
        """max pool / reshape / transpose between a dequantize and a quantize of the same
        parameters: the op on the integers."""
        p = self.producer(q.inputs[0], EXACT_OPS)
        if p is None:
            return None
        d_x = p.inputs[0].producer
        if d_x is None or d_x.op != "dequantize" or d_x.inputs[0].dtype != q.output.dtype or not _same_params(d_x, q):
            return None
        return self.op(p.op, [d_x.inputs[0]], q.name, **p.attrs)

    # ---- driver ---------------------------------------------------------------------------------

    def run(self) -> Graph:
        for node in self.g.nodes:
            node.inputs = [resolve(self.subst, v) for v in node.inputs]
            if node.op == "quantize":
                for rewrite in (self.product_group, self.average_pool_group, self.exact_group):
                    new = rewrite(node)
                    if new is not None:
                        self.subst[node.output] = new
                        break
                else:
                    self.b.add_node(node)
                continue
            self.b.add_node(node)
        return dead_code(self.b.finish([resolve(self.subst, v) for v in self.g.outputs]))


def sgemm_k_block(n: int, k: int) -> int:
    """The reduction block of onnxruntime's float GEMM (MLAS, one thread) for an [M, k] x [k, n]
    product: 128, halved while the half still covers k when n >= k, doubled while the column
    block (128, halved alongside, at least 16) still covers n otherwise."""
    stride_n, stride_k = 128, 128
    if n >= k:
        while stride_k // 2 >= k:
            stride_n, stride_k = stride_n * 2, stride_k // 2
    else:
        while stride_n > 16 and stride_n // 2 >= n:
            stride_n, stride_k = stride_n // 2, stride_k * 2
    return stride_k


def uint8_activations(graph: Graph) -> Graph:
    """int8 quantize -> one dequantize -> one use becomes uint8 with the zero point + 128 (in
    place on ``graph``, a copy)."""
    uses: dict[Value, int] = {}
    for n in graph.nodes:
        for v in n.inputs:
            uses[v] = uses.get(v, 0) + 1
    outputs = set(graph.outputs)
    users = graph.users()
    names = Names(graph)
    shifted: dict[Value, Value] = {}     # int8 zero point -> its uint8 counterpart
    for q in graph.nodes:
        if q.op != "quantize" or q.output.dtype != "int8" or uses.get(q.output, 0) != 1 or q.output in outputs:
            continue
        d = users[q.output][0]
        if d.op != "dequantize" or d.inputs[0] is not q.output or not _same_params(q, d):
            continue
        # one consumer of the dequantized value (a graph output beside it would take another)
        n_uses = uses.get(d.output, 0)
        if n_uses > 1 or (n_uses == 1 and d.output in outputs):
            continue
        z8 = q.inputs[2]
        if z8 not in shifted:
            shifted[z8] = constant(np.array(int(_scalar(z8)) + 128, np.uint8).reshape(z8.shape),
                                   names.fresh(f"{z8.name}_u8"))
        zp = shifted[z8]
        q.inputs[2] = zp
        d.inputs[2] = zp
        q.output.type = TensorType(q.output.shape, "uint8")
    return graph


def qdq_to_integer(graph: Graph) -> Graph:
    g = uint8_activations(graph.copy())
    return _Rewriter(g).run()


PASS = Pass("qdq_to_integer", 1, qdq_to_integer, "run QDQ groups as integer kernels, as onnxruntime does")
