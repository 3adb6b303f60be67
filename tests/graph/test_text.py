"""The text form: exact round trips (structure, constants bit for bit, attributes), readable
output, and parse errors that name the line."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from ember.errors import ParseError
from ember.graph import Graph, GraphBuilder, Node, TensorType, Value, constant, run_graph
from ember.graph.text import format_attr, parse_attr, parse_graph, print_graph
from ember.graph.verify import verify

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "passes"))
from graphgen import random_graph, random_inputs  # noqa: E402


def roundtrip(g: Graph) -> Graph:
    text = print_graph(g)
    g2 = parse_graph(text)
    verify(g2)
    assert print_graph(g2) == text
    return g2


RESNET = """\
graph resnet(%input: float32[1, 3, 16, 16]) {
  %w1 = const float32[4, 3, 7, 7] b64"PAYLOAD"
  %conv1 = conv2d(%input, %w1) {strides=[2, 2], pads=[3, 3, 3, 3], dilations=[1, 1], groups=1} : float32[1, 4, 8, 8]
  %relu1 = relu(%conv1) : float32[1, 4, 8, 8]
  return %relu1
}
"""


def test_readable_form_is_exactly_as_documented():
    import base64

    w = np.arange(4 * 3 * 7 * 7, dtype=np.float32).reshape(4, 3, 7, 7) / 7
    text = RESNET.replace("PAYLOAD", base64.b64encode(w.tobytes()).decode())
    g = parse_graph(text)
    assert print_graph(g) == text
    assert [n.op for n in g.nodes] == ["conv2d", "relu"]
    assert g.nodes[0].name == "conv1" and g.nodes[0].attrs["strides"] == (2, 2)
    np.testing.assert_array_equal(g.nodes[0].inputs[1].const, w)
    assert str(g) == text


def test_types_and_default_attrs_may_be_left_out():
    g = parse_graph("""
        graph g(%x: float32[1, 2, 5, 5], %w: float32[3, 2, 3, 3]) {   # a comment
          %c = conv2d(%x, %w) {pads=[1, 1, 1, 1]}
          %m = reduce_mean(%c) {axes=[2, 3]}
          return %m
        }""")
    conv, mean = g.nodes
    assert conv.attrs == {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "groups": 1}
    assert conv.output.type == TensorType((1, 3, 5, 5), "float32")
    assert mean.attrs == {"axes": (2, 3), "keepdims": True}
    assert print_graph(g, types=False).splitlines()[1] == \
        "  %c = conv2d(%x, %w) {strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], groups=1}"
    roundtrip(g)


def test_node_names_that_differ_from_their_value():
    b = GraphBuilder("g")
    x = b.input("x", TensorType((2,), "float32"))
    y = b.op("relu", [x], name="relu1")
    y.name = "relu1_out"
    g = b.finish([y])
    assert g.nodes[0].name != y.name
    text = print_graph(g)
    assert "@relu1" in text
    g2 = roundtrip(g)
    assert g2.nodes[0].name == "relu1" and g2.nodes[0].output.name == y.name


def test_names_that_need_quotes_and_symbolic_dims():
    x = Value("input:0", TensorType(("batch", "2*seq", 4), "float32"))
    n = Node("relu", [x], [], {}, "my node")
    n.outputs = [Value("onnx::Relu_1", x.type, n)]
    m = Node("reduce_sum", [n.output], [], {"axes": (2,), "keepdims": False}, "/layer.1/sum")
    m.outputs = [Value("/layer.1/sum", TensorType(("batch", "2*seq"), "float32"), m)]
    g = Graph([x], [n, m], [m.output], "my model")
    verify(g)
    text = print_graph(g)
    assert 'graph "my model"(%"input:0": float32[batch, "2*seq", 4])' in text
    assert '%"onnx::Relu_1" = relu(%"input:0") @"my node"' in text
    assert "%/layer.1/sum = reduce_sum" in text
    g2 = roundtrip(g)
    assert g2.inputs[0].type.shape == ("batch", "2*seq", 4)
    assert [v.name for v in g2.values()] == [v.name for v in g.values()]


def test_symbolic_shapes_through_ops():
    b = GraphBuilder("dyn")
    x = b.input("x", TensorType(("n", 3, "h", "w"), "float32"))
    w = b.const(np.ones((2, 3, 3, 3), np.float32), "w")
    y = b.op("conv2d", [x, w], pads=(1, 1, 1, 1))
    g = b.finish([b.op("concat", [y, y], axis=2)])
    g2 = roundtrip(g)
    assert g2.outputs[0].type == g.outputs[0].type


SPECIAL = {
    "float16": [0.0, -0.0, 1.5, -2.25, 65504.0, 6e-08, np.inf, -np.inf, np.nan, 0.1],
    "float32": [0.0, -0.0, 0.1, 1e-45, 3.4028235e38, -np.inf, np.inf, np.nan, 1 / 3, 16777217.0],
    "float64": [0.0, -0.0, 0.1, 5e-324, 1.7976931348623157e308, np.inf, np.nan, 1 / 3, -1e-300, 2.0 ** 60],
    "int8": [-128, 127, 0, -1, 5],
    "int16": [-32768, 32767, 0, 1],
    "int32": [-2 ** 31, 2 ** 31 - 1, 0, 7],
    "int64": [-2 ** 63, 2 ** 63 - 1, 0, 12345678901234],
    "uint8": [0, 255, 1],
    "uint16": [0, 65535],
    "uint32": [0, 2 ** 32 - 1],
    "uint64": [0, 2 ** 64 - 1, 2 ** 63],
    "bool": [True, False, True],
}


def _const_graph(arrays: list[np.ndarray]) -> Graph:
    consts = [constant(a, f"c{k}") for k, a in enumerate(arrays)]
    return Graph([], [], consts, "consts")


@pytest.mark.parametrize("dtype", sorted(SPECIAL))
@pytest.mark.parametrize("size", ["scalar", "small", "large", "empty"])
def test_constants_roundtrip_bit_exactly(dtype, size):
    vals = np.array(SPECIAL[dtype], dtype=dtype)
    if size == "scalar":
        arrays = [vals[k].reshape(()) for k in range(len(vals))]
    elif size == "small":
        arrays = [vals, vals.reshape(1, -1)[:, ::-1].copy()]
    elif size == "large":
        rng = np.random.default_rng(0)
        arrays = [np.resize(vals, (7, 13)), rng.permutation(np.resize(vals, 300)).reshape(3, 100)]
    else:
        arrays = [np.zeros((0,), dtype), np.zeros((2, 0, 3), dtype)]
    g = _const_graph(arrays)
    text = print_graph(g)
    if size == "large":
        assert 'b64"' in text
    elif size != "empty":
        assert 'b64"' not in text, text  # literals, since they round-trip
    g2 = roundtrip(g)
    for a, v in zip(arrays, g2.outputs):
        assert v.const.dtype == a.dtype and v.const.shape == a.shape
        assert v.const.tobytes() == a.tobytes()
        assert not v.const.flags.writeable


def test_nan_payloads_and_signed_zero_survive():
    bits = np.array([0x7FC00001, 0xFFC00000, 0x7F800001, 0x80000000], dtype=np.uint32)
    a = bits.view(np.float32)
    g2 = roundtrip(_const_graph([a]))
    assert g2.outputs[0].const.view(np.uint32).tolist() == bits.tolist()


def test_literal_is_used_for_small_constants():
    g = _const_graph([np.array([1.0, 0.1, np.nan, -np.inf], np.float32), np.array(3, np.int64),
                      np.array([True, False])])
    text = print_graph(g)
    assert "%c0 = const float32[4] [1.0, 0.1, nan, -inf]" in text
    assert "%c1 = const int64[] 3" in text
    assert "%c2 = const bool[2] [true, false]" in text


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
                                   "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn", "int4", "uint4",
                                   "int2", "uint2"])
def test_ml_dtypes_constants(dtype):
    """bfloat16 and the narrow types are held as ml_dtypes arrays and round-trip bit-exactly,
    as literals when small (NaN and -0 included) and as base64 when large."""
    from ember.graph.types import np_dtype

    dt = np_dtype(dtype)
    if dtype.startswith(("int", "uint")):
        small = np.array([1, 0, -1, -2] if dtype.startswith("int") else [0, 1, 3, 2]).astype(dt)
    else:
        small = np.array([1.0, -0.0, 0.5, np.nan, 4.0]).astype(dt)
    if dt.itemsize == 1:     # every code, one byte each
        mask = 0x3 if dtype in ("int2", "uint2") else 0xF if dtype in ("int4", "uint4", "float4_e2m1fn") else 0xFF
        big = (np.arange(300) & mask).astype(np.uint8).view(dt)
    else:
        big = np.arange(300, dtype=np.float32).astype(dt)
    for arr in (small, big):
        v = constant(arr, "c")
        assert v.type.dtype == dtype
        g = Graph([], [], [v], "t")
        verify(g)
        text = print_graph(g)
        assert ('b64"' in text) == (arr is big)
        g2 = roundtrip(g)
        assert g2.outputs[0].type.dtype == dtype
        assert g2.outputs[0].const.dtype == dt
        assert g2.outputs[0].const.tobytes() == arr.tobytes()


ATTRS = [0, -7, 2 ** 70, 0.1, -0.0, 1e-300, 5e-324, 1e22, 3.0, float("inf"), float("-inf"), True, False,
         None, "constant", 'quo"te\\ and\nnewline é', "", (), (1, 2), (1.5, (2, (None, "x")), True), ((),)]


@pytest.mark.parametrize("value", ATTRS, ids=repr)
def test_attr_values_roundtrip_exactly(value):
    text = format_attr(value)
    back = parse_attr(text)
    assert repr(back) == repr(value)
    assert type(back) is type(value)


def test_attr_nan():
    assert math.isnan(parse_attr(format_attr(float("nan"))))


def test_attrs_in_a_graph():
    g = parse_graph("""
        graph g(%x: float32[2, 3]) {
          %c = clip(%x) {lo=-0.5, hi=none}
          %p = pad(%c) {pads=[0, 1, 0, 2], mode="edge", value=-0.0}
          %t = cast(%p) {to="float16"}
          %a = argmax(%t) {axis=-1, keepdims=false, select_last_index=true}
          return %a
        }""")
    assert g.nodes[0].attrs == {"lo": -0.5, "hi": None}
    assert math.copysign(1, g.nodes[1].attrs["value"]) == -1
    assert g.nodes[3].attrs["keepdims"] is False
    roundtrip(g)


def test_multiple_outputs_and_outputs_that_are_inputs_or_constants():
    g = parse_graph("""
        graph g(%x: int32[3]) {
          %k = const int32[3] [1, 2, 3]
          %y = add(%x, %k)
          return %y, %x, %k, %y
        }""")
    assert [v.name for v in g.outputs] == ["y", "x", "k", "y"]
    assert g.outputs[0] is g.outputs[3]
    g2 = roundtrip(g)
    out = run_graph(g2, [np.array([1, 1, 1], np.int32)])
    assert out[0].tolist() == [2, 3, 4]


@pytest.mark.parametrize("seed", range(60))
def test_random_graphs_roundtrip(seed):
    g = random_graph(seed)
    g2 = roundtrip(g)
    assert [n.op for n in g2.nodes] == [n.op for n in g.nodes]
    assert [n.name for n in g2.nodes] == [n.name for n in g.nodes]
    assert [n.attrs for n in g2.nodes] == [n.attrs for n in g.nodes]
    inputs = random_inputs(g, seed)
    for a, b in zip(run_graph(g, inputs), run_graph(g2, inputs)):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()  # bit for bit


def test_elided_constants_are_for_people_only():
    b = GraphBuilder("g")
    x = b.input("x", TensorType((100,), "float32"))
    big = b.const(np.arange(100, dtype=np.float32), "big")
    small = b.const(np.float32(2), "two")
    g = b.finish([b.op("mul", [b.op("add", [x, big]), small])])
    text = print_graph(g, elide_constants=True)
    assert "%big = const float32[100] ...\n" in text
    assert "%two = const float32[] 2.0" in text
    assert "b64" not in text
    with pytest.raises(ParseError, match="line 2: .*elided"):
        parse_graph(text)


BAD = [
    ("graph g(%x: float32[2]) {\n  %y = frob(%x)\n  return %y\n}", 2, "unknown op 'frob'"),
    ("graph g(%x: float32[2]) {\n  %y = relu(%x)\n  %z = relu(%q)\n  return %z\n}", 3, "%q is used before"),
    ("graph g(%x: float32[2]) {\n  %y = relu(%x)\n  %y = neg(%x)\n  return %y\n}", 3, "defined twice"),
    ("graph g(%x: float32[2]) {\n  %x = relu(%x)\n  return %x\n}", 2, "defined twice"),
    ("graph g(%x: float33[2]) {\n  return %x\n}", 1, "unknown dtype"),
    ("graph g(%x: float32[2]) {\n  %y = relu(%x) : float32[3]\n  return %y\n}", 2, "infers float32\\[2\\]"),
    ("graph g(%x: float32[2]) {\n\n  %y = add(%x)\n  return %y\n}", 3, "takes 2 input"),
    ("graph g(%x: float32[2]) {\n  %y = transpose(%x)\n  return %y\n}", 2, "missing required attribute 'perm'"),
    ("graph g(%x: float32[2]) {\n  %y = relu(%x) {alpha=1}\n  return %y\n}", 2, "unknown attribute"),
    ("graph g(%x: float32[2]) {\n  %y = relu(%x) {alpha=1, alpha=2}\n  return %y\n}", 2, "given twice"),
    ("graph g(%x: float32[2]) {\n  %c = const float32[3] [1.0, 2.0]\n  return %c\n}", 2, "needs 3 element"),
    ("graph g(%x: float32[2]) {\n  %c = const int8[1] [300]\n  return %c\n}", 2, "not a valid int8"),
    ("graph g(%x: float32[2]) {\n  %c = const int8[1] [1.5]\n  return %c\n}", 2, "not a valid int8"),
    ('graph g(%x: float32[2]) {\n  %c = const float32[1] b64"AAAA"\n  return %c\n}', 2, "payload has 3 bytes"),
    ("graph g(%x: float32[2]) {\n  %y = relu(%x)\n  return %nope\n}", 3, "undefined value %nope"),
    ("graph g(%x: float32[2]) {\n  %y = relu(%x)\n", 3, "missing 'return'"),
    ("graph g(%x: float32[2]) {\n  %y = relu(%x)\n  return %y\n}\nextra", 5, "unexpected text"),
    ("graph g(%x: float32[2]) {\n  %y = relu(%x) {x=[1, 2}\n  return %y\n}", 2, "',' or ']'"),
    ("graph g(%x: float32[2]) {\n  y = relu(%x)\n  return %y\n}", 2, "statement"),
    ("graph g(%x: float32[2]) {\n  %a = relu(%x) @n\n  %b = relu(%a) @n\n  return %b\n}", 3, "used twice"),
    ("graph g(%x: float32[2, 3]) {\n  %y = reshape(%x) {shape=[5]}\n  return %y\n}", 2, "cannot reshape"),
    ("graph g(%x: float32[n]) {\n  %c = const float32[n] [1.0]\n  return %c\n}", 2, "static shape"),
]


@pytest.mark.parametrize("text,line,message", BAD, ids=[m for _, _, m in BAD])
def test_parse_errors_name_the_line(text, line, message):
    with pytest.raises(ParseError, match=f"line {line}: .*{message}"):
        parse_graph(text)


def test_parse_error_is_an_ember_error_with_code():
    with pytest.raises(ParseError) as e:
        parse_graph("graph")
    assert str(e.value).startswith("[E102]")


@pytest.mark.parametrize("seed", range(10))
def test_corrupted_text_raises_parse_error_only(seed):
    import random

    rnd = random.Random(seed)
    text = print_graph(random_graph(seed))
    for _ in range(100):
        chars = list(text)
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(len(chars))
            kind = rnd.random()
            if kind < 0.4:
                del chars[i]
            elif kind < 0.7:
                chars.insert(i, rnd.choice('%[](){},=:@"#-0123456789abcxyz .e\n'))
            else:
                chars[i] = rnd.choice('%[](){},=:@"#-019az .\n')
        try:
            g = parse_graph("".join(chars))
        except ParseError:
            continue
        verify(g)  # what parses is well formed


def test_string_constants_round_trip():
    text = ('graph g(%x: string[2]) {\n  %s = const string[2] ["-a", "é\\"\\n"]\n'
            '  %y = string_concat(%x, %s) : string[2]\n  return %y\n}\n')
    g = parse_graph(text)
    assert list(g.constants()[0].const) == ["-a", 'é"\n']
    assert print_graph(g) == text and print_graph(parse_graph(print_graph(g))) == text
