"""Type rules of the core ops over symbolic dimensions, and the reference interpreter binding
the symbols from the inputs."""

from __future__ import annotations

import numpy as np
import pytest

from ember.errors import InputError, ShapeError, TypeInferenceError
from ember.graph.builder import GraphBuilder
from ember.graph.interpreter import run_graph
from ember.graph.text import parse_graph, print_graph
from ember.graph.types import TensorType, broadcast_shapes
from ember.graph.verify import verify
from ember.symbolic import parse, symbol

B, S = symbol("batch"), symbol("seq")


def infer(op, *types, **attrs):
    b = GraphBuilder()
    ins = [b.input(f"x{k}", t) for k, t in enumerate(types)]
    return b.op(op, ins, name="n", **attrs).type


def f32(*shape):
    return TensorType(shape, "float32")


def test_tensor_types_hold_expressions():
    t = TensorType(("batch", "seq*64", 12), "float32")
    assert t.shape == (B, 64 * S, 12) and not t.is_static
    assert t.symbols == {"batch", "seq"} and t.num_elements == 768 * B * S
    assert t.concrete({"batch": 2, "seq": 3}) == (2, 192, 12)
    assert t.nbytes_at({"batch": 2, "seq": 3}) == 2 * 192 * 12 * 4
    with pytest.raises(ShapeError):
        t.size
    with pytest.raises(ShapeError, match="symbolic"):
        TensorType(("seq len",), "float32")


def test_broadcast():
    assert broadcast_shapes((B, 1, S), (12, 1)) == (B, 12, S)
    assert broadcast_shapes((B, S), (B, S)) == (B, S)
    with pytest.raises(ShapeError, match="symbolic dimensions broadcast only"):
        broadcast_shapes((B, S), (B, 7))
    with pytest.raises(ShapeError):
        broadcast_shapes((S,), (B,))
    assert infer("add", f32(B, 12, S, S), f32(B, 1, 1, S)).shape == (B, 12, S, S)
    assert infer("where", TensorType((B, 1, S, S), "bool"), f32(), f32(1)).shape == (B, 1, S, S)


def test_matmul_transpose_reductions():
    assert infer("matmul", f32(B, 12, S, 64), f32(B, 12, 64, S)).shape == (B, 12, S, S)
    assert infer("matmul", f32(B, S, 768), f32(768, 3072)).shape == (B, S, 3072)
    with pytest.raises(TypeInferenceError, match="inner dimensions"):
        infer("matmul", f32(B, S, S), f32(B, 64, S))
    assert infer("transpose", f32(B, S, 12, 64), perm=(0, 2, 1, 3)).shape == (B, 12, S, 64)
    assert infer("reduce_sum", f32(B, S, 768), axes=(1,), keepdims=False).shape == (B, 768)
    assert infer("reduce_mean", f32(B, S, 768), axes=(1, 2)).shape == (B, 1, 1)
    assert infer("argmax", f32(B, S), axis=1, keepdims=False) == TensorType((B,), "int64")
    assert infer("softmax", f32(B, 12, S, S), axis=-1).shape == (B, 12, S, S)
    assert infer("layer_norm", f32(B, S, 768), f32(768), f32(768), axis=-1).shape == (B, S, 768)


def test_reshape_checks_the_element_count():
    assert infer("reshape", f32(B, S, 768), shape=(B, S, 12, 64)).shape == (B, S, 12, 64)
    assert infer("reshape", f32(B, S), shape=(B * S, 1)).shape == (B * S, 1)
    with pytest.raises(TypeInferenceError, match="element counts differ"):
        infer("reshape", f32(B, S, 768), shape=(B, S, 12, 65))
    with pytest.raises(TypeInferenceError):
        infer("reshape", f32(B, S), shape=(S, S))


def test_gather_concat_slice_pad_arange_conv():
    t = TensorType((B, S), "int64")
    assert infer("gather", f32(30522, 768), t).shape == (B, S, 768)
    assert infer("concat", f32(B, S), f32(B, 3), f32(B, S), axis=1).shape == (B, 2 * S + 3)
    with pytest.raises(TypeInferenceError, match="differ outside"):
        infer("concat", f32(B, S), f32(S, S), axis=1)
    assert infer("slice", f32(1, 512), starts=(0, 0), ends=(1, S), steps=(1, 1)).shape == (1, S)
    with pytest.raises(TypeInferenceError, match="may be negative"):     # seq may be 0
        infer("slice", f32(B, S), starts=(0, 1), ends=(B, S), steps=(1, 1))
    n = (S + 64) // 128 - 1                          # its sign unproven, but the whole axis keeps it
    assert infer("slice", f32(B, n), starts=(0, 0), ends=(B, n), steps=(1, 1)).shape == (B, n)
    assert infer("reshape", f32(B, 4), shape=(B // 2, 8), checked=True).shape == (B // 2, 8)
    assert infer("pad", f32(B, S), pads=(0, 1, 0, 2)).shape == (B, S + 3)
    assert infer("arange", length=S, start=0, delta=1, dtype="int64").shape == (S,)
    assert infer("arange", length=1, start=2 * S, delta=0, dtype="int64").shape == (1,)
    with pytest.raises(TypeInferenceError, match="integer dtype"):
        infer("arange", length=1, start=S, delta=0, dtype="float32")
    w = f32(8, 3, 3, 3)
    h = symbol("h")
    assert infer("conv2d", f32(B, 3, h, h), w, pads=(1, 1, 1, 1)).shape == (B, 8, h, h)
    assert infer("conv2d", f32(B, 3, h, h), w, strides=(2, 2)).shape == (B, 8, (h - 3) // 2 + 1,
                                                                         (h - 3) // 2 + 1)


def test_errors_name_the_node():
    with pytest.raises(TypeInferenceError) as info:
        infer("slice", f32(B, S), starts=(0, 4), ends=(B, S), steps=(1, 1))
    assert "seq" in str(info.value)
    assert "node 'n'" in str(info.value) and "slice" in str(info.value)


def test_text_form_round_trips_symbolic_types_and_attributes():
    b = GraphBuilder("dyn")
    x = b.input("x", f32(B, S, 768))
    y = b.op("reshape", [x], shape=(B, S, 12, 64))
    z = b.op("reshape", [y], shape=(B * S, 768))
    r = b.op("arange", [], length=S, start=0, delta=1, dtype="int64")
    g = b.finish([z, r])
    text = print_graph(g)
    assert '"768*batch*seq"' not in text and 'dim"batch*seq"' in text and '"batch*seq"' in text
    g2 = parse_graph(text)
    verify(g2)
    assert [v.type for v in g2.outputs] == [v.type for v in g.outputs]
    assert g2.nodes[1].attrs["shape"] == (B * S, 768)


def test_interpreter_binds_symbols_from_the_inputs():
    b = GraphBuilder("dyn")
    x = b.input("x", f32(B, S))
    m = b.input("m", TensorType((B, S), "int64"))
    r = b.op("arange", [], length=S, start=0, delta=1, dtype="int64")
    y = b.op("reshape", [x], shape=(B * S,))
    z = b.op("add", [b.op("cast", [m], to="float32"), b.op("cast", [r], to="float32")])
    g = b.finish([y, z])
    xv, mv = np.random.rand(3, 5).astype(np.float32), np.arange(15).reshape(3, 5)
    yv, zv = run_graph(g, {"x": xv, "m": mv})
    np.testing.assert_array_equal(yv, xv.reshape(-1))
    np.testing.assert_array_equal(zv, mv + np.arange(5))
    with pytest.raises(InputError, match="'seq' is 5"):
        run_graph(g, {"x": xv, "m": mv[:, :4]})
    assert parse("batch*seq") == B * S
