"""onnxruntime's own ops (domain ``com.microsoft``), which its graph optimizations and its
quantization tools write into the models they save, decomposed into core ops with the semantics
of onnxruntime's CPU kernels.

Fused forms: FusedConv, FusedGemm, FusedMatMul, Gelu, BiasGelu, FastGelu, QuickGelu, BiasAdd,
SkipLayerNormalization, SimplifiedLayerNormalization, SkipSimplifiedLayerNormalization,
EmbedLayerNormalization, RotaryEmbedding, Attention, MultiHeadAttention, GroupQueryAttention.
The quantized ops (the QOperator forms, the dynamically quantized products, MatMulNBits) live
in :mod:`.contrib_quant`.

What each translation supports is stated where it is defined; an input, output or attribute
outside it is refused with an UnsupportedOpError naming it, never approximated.
"""

from __future__ import annotations

import math

import numpy as np

from ...graph.types import np_dtype
from ...symbolic import Sym
from . import translates
from .arith import T
from .nn import _add_bias, _normalize, convolution, gemm_values, matmul_values
from .tensor import _dim_tensor, norm_axis, reshape, static_shape

MS = "com.microsoft:"


def ms(*names: str):
    """Register a translation for ops of the com.microsoft domain."""
    return translates(*(MS + n for n in names))


def refuse_attrs(cx, **defaults) -> None:
    """Refuse an attribute set to anything but its default (the forms Ember does not translate)."""
    for name, default in defaults.items():
        if cx.has_attr(name) and cx.attr(name) != default:
            raise cx.unsupported(f"attribute {name}={cx.attr(name)!r}")


def refuse_inputs(cx, **indices) -> None:
    for name, k in indices.items():
        if cx.has_input(k):
            raise cx.unsupported(f"input {k} '{name}'")


def refuse_outputs(cx, **indices) -> None:
    for name, k in indices.items():
        if cx.output_used(k):
            raise cx.unsupported(f"output {k} '{name}'")


# ---- activations of the fused ops -----------------------------------------------------------

def activation(cx, x, name: str, alpha=None, beta=None, gamma=None):
    """onnxruntime's fused activations (MLAS's for FusedConv, the element-wise functors for
    FusedGemm); a parameter left None takes the activation's default (Clip: alpha is the
    minimum, beta the maximum)."""
    t = T(cx, x)

    def dflt(v, d):
        return d if v is None else float(v)

    if name in ("", "Identity"):
        return x
    if name == "Relu":
        return cx.op("relu", [x])
    if name == "Tanh":
        return cx.op("tanh", [x])
    if name == "Sigmoid":
        return cx.op("sigmoid", [x])
    if name == "LeakyRelu":
        return (t >= 0).where(t, t * dflt(alpha, 0.01)).v
    if name == "Clip":
        return cx.op("clip", [x], lo=dflt(alpha, -np.inf), hi=dflt(beta, np.inf))
    if name == "HardSigmoid":
        return cx.op("clip", [(t * dflt(alpha, 0.2) + dflt(beta, 0.5)).v], lo=0.0, hi=1.0)
    if name == "Elu":
        return (t >= 0).where(t, (t.unary("exp") - 1) * dflt(alpha, 1.0)).v
    if name == "Selu":
        a, g = dflt(alpha, 1.67326319217681884765625), dflt(gamma, 1.05070102214813232421875)
        return ((t > 0).where(t, t.unary("exp") * a - a) * g).v
    if name == "Softsign":
        return (t / (t.abs() + 1)).v
    if name == "ThresholdedRelu":
        return (t > dflt(alpha, 1.0)).where(t, 0).v
    raise cx.unsupported(f"activation {name!r}")


@ms("FusedConv")
def fused_conv(cx):
    """Conv, plus the optional input Z added to its result, then ``activation`` with
    ``activation_params`` (LeakyRelu: alpha; Clip: min, max; HardSigmoid: alpha, beta)."""
    x, w, bias = cx.input(0), cx.input(1), cx.input(2, required=False)
    y = _add_bias(cx, convolution(cx, x, w), bias, x.type.rank - 2)
    z = cx.input(3, required=False)
    if z is not None:
        y = cx.op("add", [y, z])
    params = list(cx.attr("activation_params", [])) + [None, None]
    return activation(cx, y, cx.attr("activation", ""), params[0], params[1])


@ms("FusedGemm")
def fused_gemm(cx):
    """Gemm (alpha, beta, transA, transB, C broadcast), then ``activation`` with
    activation_alpha / activation_beta / activation_gamma."""
    y = gemm_values(cx, cx.input(0), cx.input(1), cx.input(2, required=False))
    return activation(cx, y, cx.attr("activation", ""), cx.attr("activation_alpha", None),
                      cx.attr("activation_beta", None), cx.attr("activation_gamma", None))


@ms("FusedMatMul")
def fused_matmul(cx):
    """alpha * op(A) @ op(B): transA / transB swap the last two axes; transBatchA / transBatchB
    move the first axis to just before the last (the batch taken from the leading axis)."""
    a, b = cx.input(0), cx.input(1)

    def prepared(v, trans, trans_batch, what):
        r = v.type.rank
        if not (trans or trans_batch):
            return v
        if r < 2:
            raise cx.fail(f"{what} {v.type} must have rank >= 2 to be transposed")
        perm = list(range(r))
        if trans_batch:
            perm = list(range(1, r - 1)) + [0, r - 1]
        if trans:
            perm[-1], perm[-2] = perm[-2], perm[-1]
        return cx.op("transpose", [v], perm=tuple(perm))

    a = prepared(a, cx.attr("transA", 0), cx.attr("transBatchA", 0), "A")
    b = prepared(b, cx.attr("transB", 0), cx.attr("transBatchB", 0), "B")
    y = matmul_values(cx, a, b)
    alpha = float(cx.attr("alpha", 1.0))
    return y if alpha == 1.0 else cx.op("mul", [y, cx.scalar(alpha, y.dtype)])


# ---- GELU family --------------------------------------------------------------------------------

def gelu(cx, x):
    """0.5 x (1 + erf(x / sqrt(2)))."""
    t = T(cx, x)
    return (t * ((t * float(np.float32(1 / math.sqrt(2)))).unary("erf") + 1) * 0.5).v


def fast_gelu(cx, x):
    """x (0.5 + 0.5 tanh(x (a + b x^2))), a = sqrt(2 / pi), b = 0.044715 a, as onnxruntime writes it."""
    t = T(cx, x)
    a = 0.7978845608028654
    b = 0.044715 * a
    inner = (t * (t * t * b + a)).unary("tanh")
    return (t * (inner * 0.5 + 0.5)).v


@ms("Gelu")
def gelu_op(cx):
    return gelu(cx, cx.input(0))


@ms("BiasGelu")
def bias_gelu(cx):
    return gelu(cx, cx.op("add", [cx.input(0), cx.input(1)]))


@ms("FastGelu")
def fast_gelu_op(cx):
    x, bias = cx.input(0), cx.input(1, required=False)
    return fast_gelu(cx, x if bias is None else cx.op("add", [x, bias]))


@ms("QuickGelu")
def quick_gelu(cx):
    """x * sigmoid(alpha x), alpha 1.702 by default."""
    x = cx.input(0)
    alpha = float(cx.attr("alpha", 1.702))
    z = x if alpha == 1.0 else cx.op("mul", [x, cx.scalar(alpha, x.dtype)])
    return cx.op("mul", [x, cx.op("sigmoid", [z])])


@ms("BiasAdd")
def bias_add(cx):
    """X + bias + skip."""
    return cx.op("add", [cx.op("add", [cx.input(0), cx.input(1)]), cx.input(2)])


# ---- normalizations -----------------------------------------------------------------------------

def _skip_sum(cx, x, skip, bias):
    s = cx.op("add", [x, skip])
    if s.shape != x.shape:
        raise cx.fail(f"skip {skip.type} does not broadcast to the input {x.type}")
    return s if bias is None else cx.op("add", [s, bias])


def _rms(cx, x, axis: int, eps: float):
    """x / sqrt(mean(x^2) + eps) over the axes from ``axis`` on, and 1 / sqrt(mean(x^2) + eps)."""
    r = x.type.rank
    ms_ = cx.op("reduce_mean", [cx.op("mul", [x, x])], axes=tuple(range(axis, r)), keepdims=True)
    inv = cx.op("reciprocal", [cx.op("sqrt", [cx.op("add", [ms_, cx.scalar(eps, x.dtype)])])])
    return cx.op("mul", [x, inv]), inv


def _layer_norm(cx, x, gamma, beta, eps: float):
    if beta is None:
        beta = cx.const(np.zeros(gamma.shape, dtype=np_dtype(gamma.dtype)), gamma.dtype)
    return cx.op("layer_norm", [x, gamma, beta], axis=x.type.rank - 1, epsilon=eps)


@ms("SkipLayerNormalization")
def skip_layer_norm(cx):
    """LayerNormalization over the last axis of input + skip (+ bias); outputs 1 and 2 are the
    mean and 1 / sqrt(variance + epsilon) per row ([..., 1]), output 3 the sum."""
    x, skip, gamma = cx.input(0), cx.input(1), cx.input(2)
    beta, bias = cx.input(3, required=False), cx.input(4, required=False)
    s = _skip_sum(cx, x, skip, bias)
    eps = float(cx.attr("epsilon", 1e-12))
    y = _layer_norm(cx, s, gamma, beta, eps)
    mean = inv = None
    if cx.output_used(1) or cx.output_used(2):
        _, mean, inv = _normalize(cx, s, (s.type.rank - 1,), eps)
    return [y, mean, inv, s]


@ms("SkipSimplifiedLayerNormalization")
def skip_simplified_layer_norm(cx):
    """RMS normalization over the last axis of input + skip (+ bias), times gamma; output 2 is
    1 / sqrt(mean(sum^2) + epsilon) per row ([..., 1]), output 1 (the mean) zeros as
    onnxruntime gives, output 3 the sum."""
    x, skip, gamma = cx.input(0), cx.input(1), cx.input(2)
    s = _skip_sum(cx, x, skip, cx.input(3, required=False))
    y, inv = _rms(cx, s, s.type.rank - 1, float(cx.attr("epsilon", 1e-12)))
    zeros = None
    if cx.output_used(1):
        zeros = cx.op("broadcast_to", [cx.scalar(0, inv.dtype)], shape=tuple(inv.shape))
    return [cx.op("mul", [y, gamma]), zeros, inv, s]


@translates("SimplifiedLayerNormalization")
def simplified_layer_norm(cx):
    """RMSNorm: x / sqrt(mean(x^2 over the axes from ``axis``) + epsilon) * scale; output 1 is
    1 / sqrt(mean + epsilon) with the reduced axes kept as 1.  onnxruntime registers it in the
    default ONNX domain (its optimizer writes it there), not in com.microsoft."""
    refuse_attrs(cx, stash_type=1)
    x, scale = cx.input(0), cx.input(1)
    axis = norm_axis(cx, cx.attr("axis", -1), x.type.rank)
    y, inv = _rms(cx, x, axis, float(cx.attr("epsilon", 1e-5)))
    return [cx.op("mul", [y, scale]), inv]


@ms("EmbedLayerNormalization")
def embed_layer_norm(cx):
    """LayerNorm(word[input_ids] + position[position_ids or 0..S-1] + segment[segment_ids]);
    output 1 is the mask index (per batch, the number of non-zero entries of the mask, int32;
    zeros without a mask), output 2 the sum before normalization."""
    refuse_attrs(cx, mask_index_type=1)
    return embed_core(cx, cx.input(0), cx.input(1, required=False), cx.input(2), cx.input(3),
                      cx.input(4, required=False), cx.input(5), cx.input(6), cx.input(7, required=False),
                      cx.input(8, required=False))


def embed_core(cx, ids, seg, word, pos_table, seg_table, gamma, beta, mask, pos_ids):
    """EmbedLayerNormalization's outputs from its (float) tables."""
    if ids.type.rank != 2:
        raise cx.fail(f"input_ids must be [batch, sequence], got {ids.type}")
    b, s = ids.shape
    emb = cx.op("gather", [word, ids], axis=0)
    if pos_ids is None:
        if not cx.assume_at_most(s, pos_table.shape[0], "position_embedding"):
            raise cx.fail(f"{s} tokens need more positions than position_embedding {pos_table.type} has")
        pos = cx.op("gather", [pos_table, iota(cx, s)], axis=0)
        emb = cx.op("add", [emb, reshape(cx, pos, (1, s, pos_table.shape[1]))])
    else:
        emb = cx.op("add", [emb, cx.op("gather", [pos_table, pos_ids], axis=0)])
    if seg is not None:
        if seg_table is None:
            raise cx.fail("segment_ids are given without a segment_embedding")
        emb = cx.op("add", [emb, cx.op("gather", [seg_table, seg], axis=0)])
    y = _layer_norm(cx, emb, gamma, beta, float(cx.attr("epsilon", 1e-12)))
    if mask is None:
        mask_index = cx.op("arange", [], length=b, start=0, delta=0, dtype="int32")
    else:
        nz = cx.op("cast", [cx.op("not_equal", [mask, cx.scalar(0, mask.dtype)])], to="int32")
        mask_index = cx.op("reduce_sum", [nz], axes=(1,), keepdims=False)
    return [y, mask_index, emb]


# ---- rotary embeddings --------------------------------------------------------------------------

def rotate(cx, x, cos, sin, rot: int, interleaved: bool):
    """x's first ``rot`` features along the last axis rotated by (cos, sin), whose last axis has
    rot / 2 entries and which broadcast against x: pairs (i, i + rot/2), or (2i, 2i + 1) when
    interleaved; the features past ``rot`` pass through."""
    shape = tuple(x.shape)
    h = shape[-1]
    half = rot // 2
    lead = shape[:-1]

    def cut(v, a, b_, step=1):
        starts = (0,) * (len(shape) - 1) + (a,)
        ends = lead + (b_,)
        return cx.op("slice", [v], starts=starts, ends=ends, steps=(1,) * (len(shape) - 1) + (step,))

    if interleaved:
        x1, x2 = cut(x, 0, rot, 2), cut(x, 1, rot, 2)
    else:
        x1, x2 = cut(x, 0, half), cut(x, half, rot)
    t1, t2, c, s_ = T(cx, x1), T(cx, x2), T(cx, cos), T(cx, sin)
    o1 = (t1 * c - t2 * s_).v
    o2 = (t2 * c + t1 * s_).v
    if interleaved:
        pairs = cx.op("concat", [reshape(cx, o1, lead + (half, 1)), reshape(cx, o2, lead + (half, 1))], axis=-1)
        parts = [reshape(cx, pairs, lead + (rot,))]
    else:
        parts = [o1, o2]
    if rot < h:
        parts.append(cut(x, rot, h))
    return cx.op("concat", parts, axis=-1)


def rotary_tables(cx, cos_cache, sin_cache, pos):
    """cos and sin at positions ``pos`` (an int tensor): pos.shape + [rot / 2]."""
    pos = pos if pos.dtype == "int64" else cx.op("cast", [pos], to="int64")
    return cx.op("gather", [cos_cache, pos], axis=0), cx.op("gather", [sin_cache, pos], axis=0)


@ms("RotaryEmbedding")
def rotary_embedding(cx):
    """Input [B, S, hidden] or [B, N, S, head]; position_ids [B, S], or one element: the position
    of the first token (then s + that for token s).  Packed batching is refused."""
    refuse_attrs(cx, is_packed_batching=0)
    x, pos_ids, cos_cache, sin_cache = (cx.input(k) for k in range(4))
    shape = tuple(x.shape)
    half = cos_cache.shape[1] if cos_cache.type.rank == 2 else None
    if not isinstance(half, int) or isinstance(shape[-1], Sym):
        raise cx.fail(f"the rotary half-width (cos_cache {cos_cache.type}) and the last dimension of {x.type} "
                      f"must be static")
    n = cx.attr("num_heads", 0)
    rot = cx.attr("rotary_embedding_dim", 0) or 2 * half
    if len(shape) == 3:
        bsz, s, hidden = shape
        head = hidden // n if n else 2 * half
        if hidden % head:
            raise cx.fail(f"hidden size {hidden} is not a multiple of the head size {head}")
        xv = reshape(cx, x, (bsz, s, hidden // head, head))
        seq_axis = 1
    elif len(shape) == 4:
        bsz, _, s, head = shape
        xv = x
        seq_axis = 2
    else:
        raise cx.fail(f"input must be 3-D or 4-D, got {x.type}")
    if rot != 2 * half or rot > head:
        raise cx.fail(f"rotary_embedding_dim {rot} does not match cos_cache's {half} entries and head size {head}")
    if pos_ids.type.is_static and pos_ids.type.size == 1:
        first = reshape(cx, cx.op("cast", [pos_ids], to="int64"), ())
        pos = cx.op("add", [reshape(cx, iota(cx, s, "int64"), (1, s)), first])
    else:
        pos = pos_ids
    cos, sin = rotary_tables(cx, cos_cache, sin_cache, pos)                       # [B or 1, S, half]
    pb = cos.shape[0]
    tshape = (pb, s, 1, half) if seq_axis == 1 else (pb, 1, s, half)
    y = rotate(cx, xv, reshape(cx, cos, tshape), reshape(cx, sin, tshape), rot, bool(cx.attr("interleaved", 0)))
    return reshape(cx, y, shape)


# ---- attention ------------------------------------------------------------------------------------

def heads(cx, v, n: int, head: int):
    """[B, S, N * head] -> [B, N, S, head]."""
    b, s = v.shape[0], v.shape[1]
    return cx.op("transpose", [reshape(cx, v, (b, s, n, head))], perm=(0, 2, 1, 3))


def merge_heads(cx, v):
    """[B, N, S, head] -> [B, S, N * head]."""
    b, n, s, h = v.shape
    return reshape(cx, cx.op("transpose", [v], perm=(0, 2, 1, 3)), (b, s, n * h))


def iota(cx, n, dtype: str = "int32"):
    """0, 1, ..., n - 1 (n may be symbolic)."""
    if isinstance(n, int):
        return cx.const(np.arange(n, dtype=np_dtype(dtype)), dtype)
    return cx.op("arange", [], length=n, dtype=dtype)


def mask_bias(cx, mask, b, s, total, past, causal: bool, fill: float, dtype: str):
    """The additive mask of onnxruntime's attention kernels, [B or 1, 1, S, T], or None: ``fill``
    where a key is masked out (by mask_index: 1-D end positions [B] or end and start positions
    [2B], a 2-D [B, T] or 3-D [B, S, T] raw mask of 0/1), and -inf where it lies after the
    query (``causal``, query s at position ``past`` + s): onnxruntime's softmax leaves those
    keys out, so a row whose every visible key is masked spreads its weight over them.  B, S
    and T may be symbolic."""
    masked = None
    j = T(cx, reshape(cx, iota(cx, total), (1, 1, 1, total)))
    if mask is not None:
        r = mask.type.rank
        m32 = mask if mask.dtype == "int32" else cx.op("cast", [mask], to="int32")
        if r == 1 and mask.shape[0] in (b, 2 * b):
            end = T(cx, reshape(cx, cx.op("slice", [m32], starts=(0,), ends=(b,), steps=(1,)), (b, 1, 1, 1)))
            out = j >= end
            if mask.shape[0] == 2 * b and mask.shape[0] != b:
                start = T(cx, reshape(cx, cx.op("slice", [m32], starts=(b,), ends=(2 * b,), steps=(1,)), (b, 1, 1, 1)))
                out = out | (j < start)
            masked = out
        elif r == 2 and tuple(mask.shape) == (b, total):
            masked = T(cx, reshape(cx, m32, (b, 1, 1, total))) <= 0
        elif r == 3 and tuple(mask.shape) == (b, s, total):
            masked = T(cx, reshape(cx, m32, (b, 1, s, total))) <= 0
        else:
            raise cx.unsupported(f"mask of shape {list(mask.shape)} (batch {b}, sequence {s}, total {total})")
    zero = cx.const(np.zeros((1, 1, 1, 1), dtype=np_dtype(dtype)), dtype)
    out = None if masked is None else masked.where(cx.scalar(fill, dtype), zero)
    if causal:
        # keys after the query get no weight at all, whatever the mask says of the others
        i = T(cx, reshape(cx, iota(cx, s), (1, 1, s, 1)))
        i = i + (T(cx, _dim_tensor(cx, past)).cast("int32") if isinstance(past, Sym) else past)
        c = (j > i).where(cx.scalar(-np.inf, dtype), zero)
        out = c if out is None else out + c
    return None if out is None else out.v


def masked_attention(cx, q, k, v, mask, attn_bias, past):
    """Attention and MultiHeadAttention over [B, N, S, h] q and [B, N, P + L, h] k, v (past
    first): the node's scale (default 1 / sqrt(h)), mask_index, unidirectional,
    mask_filter_value and attention_bias; returns [B, S, N * hv]."""
    b, _, s, head = q.shape
    scale = float(cx.attr("scale", 0.0)) or 1.0 / math.sqrt(head)
    bias = mask_bias(cx, mask, b, s, k.shape[2], past, bool(cx.attr("unidirectional", 0)),
                     float(cx.attr("mask_filter_value", -10000.0)), q.dtype)
    if attn_bias is not None:
        bias = attn_bias if bias is None else cx.op("add", [bias, attn_bias])
    return merge_heads(cx, attend(cx, q, k, v, scale, bias))


def attend(cx, q, k, v, scale: float, bias=None):
    """softmax(scale * q @ k^T + bias) @ v over [B, N, S, head] operands (k and v may have
    fewer heads, repeated in groups)."""
    nq, nk = q.shape[1], k.shape[1]
    if nk != nq:
        k, v = repeat_heads(cx, k, nq // nk), repeat_heads(cx, v, nq // nk)
    kt = cx.op("transpose", [k], perm=(0, 1, 3, 2))
    logits = T(cx, cx.op("matmul", [q, kt])) * scale
    if bias is not None:
        logits = logits + bias
    return cx.op("matmul", [cx.op("softmax", [logits.v], axis=-1), v])


def repeat_heads(cx, v, g: int):
    """[B, Nkv, T, h] -> [B, Nkv * g, T, h], every head repeated g times in a row."""
    b, n, t, h = v.shape
    if g == 1:
        return v
    r = cx.op("broadcast_to", [reshape(cx, v, (b, n, 1, t, h))], shape=(b, n, g, t, h))
    return reshape(cx, r, (b, n * g, t, h))


@ms("Attention")
def attention(cx):
    """BERT-style self-attention over input [B, S, D] with packed weights [D, Q+K+V] and bias:
    mask_index ([B] end, [2B] end and start positions, [B, T] or [B, S, T] 0/1), past [2, B, N,
    P, h] with output 1 'present', attention_bias [B or 1, N or 1, S, T], unidirectional,
    qkv_hidden_sizes, scale, mask_filter_value.  Refused: do_rotary, past_present_share_buffer,
    past_sequence_length, 4-D masks."""
    refuse_attrs(cx, do_rotary=0, past_present_share_buffer=0)
    refuse_inputs(cx, past_sequence_length=6)
    x, w, bias = cx.input(0), cx.input(1), cx.input(2, required=False)
    total_w = static_shape(cx, w, "weights")[1]
    sizes = list(cx.attr("qkv_hidden_sizes", [total_w // 3] * 3))
    if len(sizes) != 3 or sum(sizes) != total_w:
        raise cx.fail(f"qkv_hidden_sizes {sizes} do not split the weights {w.type}")
    qkv = cx.op("matmul", [x, w])
    if bias is not None:
        qkv = cx.op("add", [qkv, bias])
    return attention_core(cx, qkv, sizes, cx.input(3, required=False), cx.input(4, required=False),
                          cx.input(5, required=False))


def attention_core(cx, qkv, sizes, mask, past, attn_bias):
    """Attention's (and QAttention's) computation from the packed projections qkv [B, S, Q+K+V]."""
    n = cx.attr("num_heads")
    if qkv.type.rank != 3:
        raise cx.fail(f"input must be [batch, sequence, hidden], got {qkv.type}")
    b, s, _ = qkv.shape
    if sizes[0] != sizes[1] or any(d % n for d in sizes):
        raise cx.fail(f"hidden sizes {sizes} do not split over {n} heads")
    offs = np.cumsum([0] + list(sizes))
    part = [cx.op("slice", [qkv], starts=(0, 0, int(offs[i])), ends=(b, s, int(offs[i + 1])), steps=(1, 1, 1))
            for i in range(3)]
    head, vhead = sizes[0] // n, sizes[2] // n
    q, k, v = heads(cx, part[0], n, head), heads(cx, part[1], n, head), heads(cx, part[2], n, vhead)
    p = 0
    if past is not None:
        pd = tuple(past.shape)
        if len(pd) != 5 or pd[0] != 2 or pd[1] != b or pd[2] != n or pd[4] != head or sizes[2] != sizes[0]:
            raise cx.fail(f"past {past.type} must be [2, {b}, {n}, P, {head}]")
        p = pd[3]
        pk = reshape(cx, cx.op("slice", [past], starts=(0, 0, 0, 0, 0), ends=(1,) + pd[1:], steps=(1,) * 5), pd[1:])
        pv = reshape(cx, cx.op("slice", [past], starts=(1, 0, 0, 0, 0), ends=pd, steps=(1,) * 5), pd[1:])
        k = cx.op("concat", [pk, k], axis=2)
        v = cx.op("concat", [pv, v], axis=2)
    out = masked_attention(cx, q, k, v, mask, attn_bias, p)
    present = None
    if cx.output_used(1):
        present = cx.op("concat", [reshape(cx, k, (1,) + tuple(k.shape)), reshape(cx, v, (1,) + tuple(v.shape))], axis=0)
    return [out, present]


@ms("MultiHeadAttention")
def multi_head_attention(cx):
    """Query [B, S, D], key [B, L, D] and value [B, L, Dv] (or both already split into heads,
    [B, N, L, h], the bias then added to the query only) with the optional bias [D + D + Dv],
    key_padding_mask ([B] end positions, [B, L + P] or [B, S, L + P] 0/1), attention_bias,
    past_key / past_value [B, N, P, h] with outputs present_key / present_value, unidirectional,
    scale, mask_filter_value.  Refused: packed QKV or KV, past_sequence_length,
    cache_indirection, the qk output."""
    refuse_inputs(cx, past_sequence_length=8, cache_indirection=9)
    refuse_outputs(cx, qk=3)
    q_in, k_in, v_in = cx.input(0), cx.input(1, required=False), cx.input(2, required=False)
    if k_in is None or v_in is None or q_in.type.rank != 3 or k_in.type.rank != v_in.type.rank or \
            k_in.type.rank not in (3, 4):
        raise cx.unsupported("packed QKV / KV (3-D query, and 3-D or [B, N, L, h] key and value only)")
    bias, mask, attn_bias = cx.input(3, required=False), cx.input(4, required=False), cx.input(5, required=False)
    past_k, past_v = cx.input(6, required=False), cx.input(7, required=False)
    n = cx.attr("num_heads")
    projected = k_in.type.rank == 4            # key and value already split into heads
    d = q_in.shape[2]
    dv = v_in.shape[1] * v_in.shape[3] if projected else v_in.shape[2]
    if bias is not None:
        parts = [(0, d), (d, 2 * d), (2 * d, 2 * d + dv)]
        q_in, k_in, v_in = (cx.op("add", [t, cx.op("slice", [bias], starts=(a,), ends=(e,), steps=(1,))])
                            if not (projected and t is not q_in) else t
                            for t, (a, e) in zip((q_in, k_in, v_in), parts))
    head, vhead = d // n, dv // n
    q = heads(cx, q_in, n, head)
    k, v = (k_in, v_in) if projected else (heads(cx, k_in, n, head), heads(cx, v_in, n, vhead))
    p = 0
    if (past_k is None) != (past_v is None):
        raise cx.fail("past_key and past_value are given together or not at all")
    if past_k is not None:
        p = past_k.shape[2]
        k = cx.op("concat", [past_k, k], axis=2)
        v = cx.op("concat", [past_v, v], axis=2)
    out = masked_attention(cx, q, k, v, mask, attn_bias, p)
    return [out, k if cx.output_used(1) else None, v if cx.output_used(2) else None]


@ms("GroupQueryAttention")
def group_query_attention(cx):
    """Causal attention with num_heads query heads over kv_num_heads key/value heads: query
    [B, S, D], key and value [B, S, Dkv], past_key / past_value [B, Nkv, P, h] right-padded,
    seqlens_k [B] (total length - 1 per batch, read at run time), total_sequence_length (a
    constant), do_rotary with cos_cache / sin_cache (rotary_interleaved), scale, softcap,
    local_window_size.  Present key/value are [B, Nkv, max(P, total), h], the new keys written
    after each batch's past, zeros past them.  Query, key and value may come packed in the
    query ([B, S, (N + 2 Nkv) h]); position_ids [B, S] give the rotary positions;
    attention_bias is added after the softcap; smooth_softmax and head_sink add one logit (0,
    or the head's sink) to every row's softmax.  Refused: qk_output."""
    refuse_attrs(cx, qk_output=0)
    refuse_outputs(cx, output_qk=3)
    q_in, k_in, v_in = cx.input(0), cx.input(1, required=False), cx.input(2, required=False)
    past_k, past_v = cx.input(3, required=False), cx.input(4, required=False)
    seqlens = cx.input(5)
    total = int(cx.const_input(6, "total_sequence_length", required=True).reshape(-1)[0])
    n, nkv = cx.attr("num_heads"), cx.attr("kv_num_heads")
    b, s, d = static_shape(cx, q_in, "query")
    if (k_in is None) != (v_in is None):
        raise cx.fail("key and value are given together or not at all")
    if k_in is None:
        # packed QKV: [B, S, (N + 2 Nkv) h]
        if d % (n + 2 * nkv):
            raise cx.fail(f"packed query {q_in.type} does not split into {n} + 2 x {nkv} heads")
        h = d // (n + 2 * nkv)
        q_in, k_in, v_in = (cx.op("slice", [q_in], starts=(0, 0, lo), ends=(b, s, hi), steps=(1, 1, 1))
                            for lo, hi in ((0, n * h), (n * h, (n + nkv) * h), ((n + nkv) * h, d)))
        d = n * h
    head = d // n
    if n % nkv or d % n or k_in.shape[2] != nkv * head:
        raise cx.fail(f"query {q_in.type} and key {k_in.type} do not split into {n} and {nkv} heads")
    p = 0 if past_k is None else past_k.shape[2]
    first_prompt = s == total
    if not first_prompt and s != 1 and b != 1:
        raise cx.fail("sequence_length must be 1 past the first prompt when the batch is larger than 1")
    tlen = max(total, p)
    q, k, v = heads(cx, q_in, n, head), heads(cx, k_in, nkv, head), heads(cx, v_in, nkv, head)
    i = np.arange(s, dtype=np.int32)
    total_b = T(cx, cx.op("add", [reshape(cx, cx.op("cast", [seqlens], to="int32"), (b, 1)), cx.scalar(1, "int32")]))
    # each batch's past length: 0 for the first prompt, else its total length less S
    past_b = T(cx, cx.const(np.zeros((b, 1), dtype=np.int32))) if first_prompt else total_b - s
    if cx.attr("do_rotary", 0):
        cos_cache, sin_cache = cx.input(7), cx.input(8)
        half = cos_cache.shape[1]
        pos = cx.input(9, required=False)                                               # [B, S]
        if pos is None:
            pos = (past_b + cx.const(i.reshape(1, s))).v
        cos, sin = rotary_tables(cx, cos_cache, sin_cache, pos)
        cos, sin = reshape(cx, cos, (b, 1, s, half)), reshape(cx, sin, (b, 1, s, half))
        inter = bool(cx.attr("rotary_interleaved", 0))
        q = rotate(cx, q, cos, sin, 2 * half, inter)
        k = rotate(cx, k, cos, sin, 2 * half, inter)
    # present: past[: past_b], then the new keys, then zeros, per batch (positions read at run time)
    t_ids = T(cx, cx.const(np.arange(tlen, dtype=np.int32).reshape(1, tlen)))
    rel = t_ids - past_b                                                                # [B, T]
    new_at = ((rel >= 0) & (rel < s))
    src_new = rel.clip(0, s - 1) + T(cx, cx.const((np.arange(b, dtype=np.int32) * s).reshape(b, 1)))

    def present(new, past):
        flat_new = reshape(cx, cx.op("transpose", [new], perm=(0, 2, 1, 3)), (b * s, nkv * head))
        rows = T(cx, cx.op("gather", [flat_new, src_new.cast("int64").v], axis=0))       # [B, T, Nkv*h]
        zero = cx.const(np.zeros((1, 1, 1), dtype=np_dtype(new.dtype)), new.dtype)
        out = T(cx, reshape(cx, new_at.v, (b, tlen, 1))).where(rows, zero)
        if past is not None:
            flat_past = reshape(cx, cx.op("transpose", [past], perm=(0, 2, 1, 3)), (b * p, nkv * head))
            src_past = (t_ids.clip(0, p - 1) + cx.const((np.arange(b, dtype=np.int32) * p).reshape(b, 1))).cast("int64")
            prow = cx.op("gather", [flat_past, src_past.v], axis=0)
            out = T(cx, reshape(cx, (t_ids < past_b).v, (b, tlen, 1))).where(prow, out)
        return cx.op("transpose", [reshape(cx, out.v, (b, tlen, nkv, head))], perm=(0, 2, 1, 3))

    pk, pv = present(k, past_k), present(v, past_v)
    scale = float(cx.attr("scale", 0.0)) or 1.0 / math.sqrt(head)
    # query s of batch b sees keys [0, past_b + s], and with a local window only the last
    # ``window`` of them (onnxruntime 1.2x's CPU kernel)
    qpos = past_b.reshape((b, 1, 1, 1)) + cx.const(i.reshape(1, 1, s, 1))
    kpos = T(cx, cx.const(np.arange(tlen, dtype=np.int32).reshape(1, 1, 1, tlen)))
    # (and none past its own length: onnxruntime leaves the rows of a padded prompt past a
    # batch's length undefined; here they see that batch's keys)
    visible = (kpos <= qpos) & (kpos < total_b.reshape((b, 1, 1, 1)))
    window = cx.attr("local_window_size", -1)
    if window > 0:
        visible = visible & (kpos > qpos - window)
    g = n // nkv
    kk, vv = repeat_heads(cx, pk, g), repeat_heads(cx, pv, g)
    logits = T(cx, cx.op("matmul", [q, cx.op("transpose", [kk], perm=(0, 1, 3, 2))])) * scale
    softcap = float(cx.attr("softcap", 0.0))
    if softcap > 0:
        logits = (logits / softcap).unary("tanh") * softcap
    attn_bias = cx.input(10, required=False)
    if attn_bias is not None:
        logits = logits + attn_bias
    neg = cx.scalar(-np.inf, q.dtype)
    logits = visible.where(logits, neg)
    sink = cx.input(11, required=False)
    if sink is not None or cx.attr("smooth_softmax", 0):
        # one more logit in every row's softmax, left out of the product: 0 (smooth_softmax),
        # or the head's sink
        extra = cx.const(np.zeros((1, 1, 1, 1), dtype=np_dtype(q.dtype))) if sink is None else \
            reshape(cx, sink, (1, n, 1, 1))
        extra = cx.op("broadcast_to", [extra], shape=(b, n, s, 1))
        wide = cx.op("softmax", [cx.op("concat", [logits.v, extra], axis=-1)], axis=-1)
        probs = cx.op("slice", [wide], starts=(0, 0, 0, 0), ends=(b, n, s, tlen), steps=(1, 1, 1, 1))
    else:
        probs = cx.op("softmax", [logits.v], axis=-1)
    out = merge_heads(cx, cx.op("matmul", [probs, vv]))
    return [out, pk, pv]
