"""ONNX ops that the frontend decomposes into core ops (bit operations, sampling, spectral
transforms, unrolled control flow, ...), compiled and run, against onnx's reference evaluator.
The data are graph inputs, so the generated kernels compute them."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as TP, helper

from onnx_models import check, make_model, onnxruntime_outputs, rand, reference

INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]


def run(op, inputs: dict, attrs=None, n_out=1, opset=21, const=None, domain="", extra_opsets=(), oracle=None,
        **tol):
    """Check one node; ``oracle="onnxruntime"`` where onnx's reference evaluator is the odd one out."""
    node = helper.make_node(op, list(inputs), [f"y{k}" for k in range(n_out)], domain=domain, **(attrs or {}))
    const = const or {}
    feeds = {k: v for k, v in inputs.items() if k not in const}
    model = make_model([node], feeds, [f"y{k}" for k in range(n_out)], initializers=const, opset=opset,
                       extra_opsets=extra_opsets)
    expected = onnxruntime_outputs(model, feeds) if oracle == "onnxruntime" else None
    return check(model, feeds, expected=expected, **tol)


# ---- bit operations ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
def test_bit_shift(dtype, direction):
    info = np.iinfo(dtype)
    bits = info.bits
    x = np.array([info.min, info.max, 0, 1, 5, info.min // 3 if info.min else 7, 100 % info.max, 3], dtype)
    y = np.array([1, 3, bits - 1, bits, 0, 2, bits + 5, (-1 if info.min else 2)], dtype)
    run("BitShift", {"x": x, "y": y}, {"direction": direction}, opset=_bitshift_opset(dtype))


def _bitshift_opset(dtype: str) -> int:
    """The first opset whose BitShift takes ``dtype`` (signed types came with opset 28)."""
    import onnx.defs

    want = "tensor(" + dtype + ")"
    for v in range(11, onnx.defs.onnx_opset_version() + 1):
        if want in onnx.defs.get_schema("BitShift", v, "").type_constraints[0].allowed_type_strs:
            return v
    pytest.skip(f"the installed onnx's BitShift does not take {dtype}")


@pytest.mark.parametrize("dtype", ["int8", "int32", "uint16", "uint64"])
@pytest.mark.parametrize("op", ["BitwiseAnd", "BitwiseOr", "BitwiseXor"])
def test_bitwise_binary(op, dtype):
    info = np.iinfo(dtype)
    x = np.array([[info.min, info.max, 0, 0x55], [1, 2, 3, 4]], dtype)
    y = np.array([info.max, info.min, 0x0F, 0x33], dtype)          # broadcast over rows
    run(op, {"x": x, "y": y}, opset=18)


@pytest.mark.parametrize("dtype", ["int16", "uint32"])
def test_bitwise_not(dtype):
    info = np.iinfo(dtype)
    run("BitwiseNot", {"x": np.array([info.min, info.max, 0, 7], dtype)}, opset=18)


@pytest.mark.parametrize("src, dst", [("float32", "int32"), ("int32", "float32"), ("float64", "uint64"),
                                      ("uint64", "float64"), ("float16", "int16"), ("int16", "float16"),
                                      ("uint8", "int8"), ("bool", "uint8")])
def test_bit_cast(src, dst):
    if src.startswith("float"):
        fi = np.finfo(src)
        x = np.array([0.0, -0.0, 1.0, -2.5, fi.tiny, fi.tiny / 4, -fi.smallest_subnormal, fi.max, -fi.max,
                      np.inf, -np.inf, 0.1], src)
    elif src == "bool":
        x = np.array([True, False, True])
    else:
        x = np.array([1.5, -2.0, 0.1, 65504.0, np.inf, -np.inf, 1e-7, 0.0, -0.0, 2.0 ** -14], "float64")
        x = x.astype(dst).view(src) if dst.startswith("float") else \
            np.array([0, 1, -1, 127, -128], "int64").astype(src)
    to = helper.np_dtype_to_tensor_dtype(np.dtype(dst))
    run("BitCast", {"x": x}, {"to": to}, opset=26, rtol=0, atol=0)


# ---- scans --------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["CumSum", "CumProd"])
@pytest.mark.parametrize("exclusive, reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumulative(op, exclusive, reverse):
    x = rand(3, 5, lo=0.5, hi=1.5)
    run(op, {"x": x, "axis": np.array(1, "int64")}, {"exclusive": exclusive, "reverse": reverse},
        opset=26, const={"axis": np.array(1, "int64")})


# ---- sampling -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align", [0, 1])
def test_grid_sample_2d(mode, padding, align):
    x = rand(2, 3, 4, 5)
    grid = rand(2, 3, 6, 2, lo=-1.3, hi=1.3)
    run("GridSample", {"x": x, "grid": grid}, {"mode": mode, "padding_mode": padding, "align_corners": align},
        opset=22, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_grid_sample_3d(mode):
    x = rand(1, 2, 3, 4, 5)
    grid = rand(1, 2, 3, 4, 3, lo=-1.2, hi=1.2)
    run("GridSample", {"x": x, "grid": grid}, {"mode": mode}, opset=22, atol=1e-5, rtol=1e-4)


# ---- spectral -----------------------------------------------------------------------------------

@pytest.mark.parametrize("inverse, onesided, complex_in", [(0, 0, False), (0, 1, False), (0, 0, True),
                                                          (1, 0, True), (1, 1, True)])
@pytest.mark.parametrize("length", [None, 6, 10])
def test_dft(inverse, onesided, complex_in, length):
    x = rand(2, 8, 3, 2 if complex_in else 1)
    inputs = {"x": x, "len": np.array(length or 0, "int64"), "axis": np.array(1, "int64")}
    const = {"axis": inputs["axis"]}
    if length is None:
        node = helper.make_node("DFT", ["x", "", "axis"], ["y0"], inverse=inverse, onesided=onesided)
        model = make_model([node], {"x": x}, ["y0"], initializers=const, opset=20)
        check(model, {"x": x}, atol=1e-4, rtol=1e-4)
        return
    const["len"] = inputs["len"]
    run("DFT", inputs, {"inverse": inverse, "onesided": onesided}, opset=20, const=const, atol=1e-4, rtol=1e-4)


def test_stft():
    x = rand(2, 20, 1)
    window = np.hanning(8).astype("float32")
    const = {"step": np.array(3, "int64"), "len": np.array(8, "int64")}
    run("STFT", {"x": x, "step": const["step"], "w": window, "len": const["len"]}, {"onesided": 1}, opset=17,
        const=const, atol=1e-4, rtol=1e-4)


# ---- 3-D convolutions --------------------------------------------------------------------------

@pytest.mark.parametrize("op, attrs", [
    ("Conv", {"pads": [1, 0, 1, 2, 1, 0], "strides": [2, 1, 1]}),
    ("Conv", {"group": 2, "dilations": [2, 1, 2], "auto_pad": "SAME_LOWER"}),
    ("ConvTranspose", {"strides": [2, 1, 2], "pads": [1, 0, 0, 0, 1, 1], "output_padding": [1, 0, 0]}),
    ("ConvTranspose", {"group": 2, "dilations": [1, 2, 1]}),
])
@pytest.mark.parametrize("weight_const", [True, False])
def test_conv_3d(op, attrs, weight_const):
    g = attrs.get("group", 1)
    w = rand(4, 6 // g, 3, 2, 3) if op == "ConvTranspose" else rand(6, 4 // g, 3, 2, 3)
    inputs = {"x": rand(2, 4, 5, 4, 6), "w": w, "b": rand(6)}
    # (onnx's reference evaluator cannot run grouped 3-D ConvTranspose; onnxruntime has no dilated
    # SAME_LOWER Conv)
    run(op, inputs, attrs, opset=21, const={"w": w} if weight_const else None,
        oracle="onnxruntime" if op == "ConvTranspose" else None, atol=1e-4, rtol=1e-4)


# ---- pooling ------------------------------------------------------------------------------------

@pytest.mark.parametrize("op, attrs", [
    ("MaxPool", {"kernel_shape": [2, 3, 2], "strides": [1, 2, 2], "pads": [1, 0, 1, 0, 1, 1]}),
    ("MaxPool", {"kernel_shape": [2, 2, 2], "dilations": [2, 1, 2], "ceil_mode": 1, "strides": [2, 2, 2]}),
    ("AveragePool", {"kernel_shape": [3, 2, 2], "pads": [1, 1, 0, 1, 0, 1], "count_include_pad": 0}),
    ("AveragePool", {"kernel_shape": [3, 2, 2], "pads": [1, 1, 0, 1, 0, 1], "count_include_pad": 1,
                     "strides": [2, 1, 2], "ceil_mode": 1}),
    ("LpPool", {"kernel_shape": [2, 2, 3], "p": 3, "pads": [0, 1, 1, 1, 0, 1]}),
])
def test_pool_3d(op, attrs):
    run(op, {"x": rand(1, 2, 5, 6, 7)}, attrs, opset=19, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attrs", [{"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
                                   {"kernel_shape": [2, 2], "strides": [2, 2], "storage_order": 1},
                                   {"kernel_shape": [2, 3], "strides": [1, 2], "dilations": [2, 1]}])
def test_max_pool_indices(attrs):
    # (onnx's reference evaluator counts the indices of padded windows in the padded tensor)
    run("MaxPool", {"x": rand(2, 3, 6, 7)}, attrs, n_out=2, opset=12, oracle="onnxruntime")


def test_max_unpool():
    x = rand(1, 2, 4, 4)
    pool = helper.make_node("MaxPool", ["x"], ["p", "i"], kernel_shape=[2, 2], strides=[2, 2])
    unpool = helper.make_node("MaxUnpool", ["p", "i", "shape"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    model = make_model([pool, unpool], {"x": x}, ["y"], initializers={"shape": np.array([1, 2, 5, 5], "int64")},
                       opset=12)
    check(model, {"x": x})


# ---- indexing and rearranging -------------------------------------------------------------------

@pytest.mark.parametrize("attrs", [{}, {"dilations": [2, 1], "pads": [1, 0, 1, 2], "strides": [1, 2]}])
def test_col2im(attrs):
    image, block = np.array([5, 6], "int64"), np.array([2, 3], "int64")
    dil, pads, strides = attrs.get("dilations", [1, 1]), attrs.get("pads", [0] * 4), attrs.get("strides", [1, 1])
    n_blocks = [(image[d] + pads[d] + pads[d + 2] - dil[d] * (block[d] - 1) - 1) // strides[d] + 1 for d in range(2)]
    x = rand(2, 3 * 6, int(np.prod(n_blocks)))
    run("Col2Im", {"x": x, "image": image, "block": block}, attrs, opset=18,
        const={"image": image, "block": block})


@pytest.mark.parametrize("time_axis", [0, 1])
def test_reverse_sequence(time_axis):
    x = rand(4, 5, 3) if time_axis == 0 else rand(5, 4, 3)
    lens = np.array([1, 4, 2, 3, 0], "int64")
    run("ReverseSequence", {"x": x, "lens": lens}, {"time_axis": time_axis, "batch_axis": 1 - time_axis},
        opset=10)


@pytest.mark.parametrize("mode", ["linear", "circular"])
def test_tensor_scatter(mode):
    past, upd = rand(2, 3, 6, 4), rand(2, 3, 3, 4)
    w = np.array([1, 3] if mode == "linear" else [4, 5], "int64")
    run("TensorScatter", {"past": past, "upd": upd, "w": w}, {"mode": mode}, opset=24)


def test_det():
    x = rand(3, 4, 4)
    x[1, :, 2] = x[1, :, 0]                    # singular
    x[2] = np.eye(4)[[1, 0, 3, 2]]             # a permutation: pivoting needed
    run("Det", {"x": x}, opset=22, atol=1e-5, rtol=1e-4)


def test_tfidf_vectorizer():
    x = np.array([[1, 1, 3, 3, 3, 7], [8, 6, 7, 5, 6, 8]], "int32")
    attrs = dict(mode="TFIDF", min_gram_length=1, max_gram_length=2, max_skip_count=2, ngram_counts=[0, 4],
                 ngram_indexes=[0, 1, 2, 3, 4, 5, 6], pool_int64s=[2, 3, 5, 4, 5, 6, 7, 8, 6, 7],
                 weights=[0.5, 1, 2, 1, 1, 3, 1])
    run("TfIdfVectorizer", {"x": x}, attrs, opset=9)


# ---- control flow, sequences, optimizers ----------------------------------------------------------

def test_scan_with_reversed_input_and_output():
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]), helper.make_node("Mul", ["s_out", "x_t"], ["y_t"])],
        "body", [helper.make_tensor_value_info("s_in", TP.FLOAT, [3]), helper.make_tensor_value_info("x_t", TP.FLOAT, [3])],
        [helper.make_tensor_value_info("s_out", TP.FLOAT, [3]), helper.make_tensor_value_info("y_t", TP.FLOAT, [3])])
    node = helper.make_node("Scan", ["s", "x"], ["s_final", "y"], body=body, num_scan_inputs=1,
                            scan_input_axes=[1], scan_input_directions=[1], scan_output_axes=[1])
    s, x = rand(3), rand(3, 5)
    model = make_model([node], {"s": s, "x": x}, ["s_final", "y"], opset=16)
    # (onnx's reference evaluator does not implement reversed scan inputs)
    check(model, {"s": s, "x": x}, expected=onnxruntime_outputs(model, {"s": s, "x": x}))


def test_sequence_map_and_concat():
    body = helper.make_graph([helper.make_node("Mul", ["a", "a"], ["b"])], "body",
                             [helper.make_tensor_value_info("a", TP.FLOAT, None)],
                             [helper.make_tensor_value_info("b", TP.FLOAT, None)])
    nodes = [helper.make_node("SplitToSequence", ["x"], ["s"], axis=1),
             helper.make_node("SequenceMap", ["s"], ["t"], body=body),
             helper.make_node("ConcatFromSequence", ["t"], ["y"], axis=0, new_axis=1)]
    x = rand(2, 4)
    check(make_model(nodes, {"x": x}, ["y"], opset=17), {"x": x})


@pytest.mark.parametrize("op, n_state, attrs", [
    ("Adagrad", 1, {"decay_factor": 0.1, "epsilon": 1e-6, "norm_coefficient": 0.01}),
    ("Adam", 2, {"alpha": 0.8, "beta": 0.9, "epsilon": 1e-6, "norm_coefficient": 0.01,
                 "norm_coefficient_post": 0.02}),
    ("Momentum", 1, {"alpha": 0.9, "beta": 0.5, "mode": "nesterov", "norm_coefficient": 0.01}),
])
@pytest.mark.parametrize("step", [0, 3])
def test_optimizers(op, n_state, attrs, step):
    inputs = {"r": np.array(0.1, "float32"), "t": np.array(step, "int64"), "x": rand(3, 2), "g": rand(3, 2)}
    for k in range(n_state):
        inputs[f"s{k}"] = rand(3, 2, lo=0.1, hi=1.0)
    node = helper.make_node(op, list(inputs), [f"y{k}" for k in range(1 + n_state)],
                            domain="ai.onnx.preview.training", **attrs)
    model = make_model([node], inputs, [f"y{k}" for k in range(1 + n_state)], opset=17,
                       extra_opsets=[("ai.onnx.preview.training", 1)])
    # (onnx's reference evaluator returns some results in float64)
    want = [np.asarray(w).astype("float32") for w in reference(model, inputs)]
    check(model, inputs, expected=want, rtol=1e-5, atol=1e-6)


def _gradient_model(with_gradient: bool):
    """y = -(sigmoid(relu(x @ w + b)) * tanh(x @ w + b) / sqrt(exp(s)) - log(exp(s))), float64; the
    Gradient node asks for dy/d(x, w, b, s, c), and y does not depend on c."""
    n = helper.make_node
    nodes = [n("MatMul", ["x", "w"], ["h"]), n("Add", ["h", "b"], ["h2"]), n("Relu", ["h2"], ["r"]),
             n("Sigmoid", ["r"], ["sg"]), n("Tanh", ["h2"], ["th"]), n("Mul", ["sg", "th"], ["u"]),
             n("Exp", ["s"], ["e"]), n("Sqrt", ["e"], ["q"]), n("Div", ["u", "q"], ["v"]), n("Log", ["e"], ["l"]),
             n("Sub", ["v", "l"], ["z"]), n("Neg", ["z"], ["y"]), n("Identity", ["c"], ["c2"])]
    outs = ["y", "c2"]
    if with_gradient:
        outs += ["dx", "dw", "db", "ds", "dc"]
        nodes.append(n("Gradient", ["x", "w", "b", "s", "c"], outs[2:], domain="ai.onnx.preview.training",
                       xs=["x", "w", "b", "s", "c"], y="y"))
    feeds = {"x": rand(3, 4, dtype="float64"), "w": rand(4, 2, dtype="float64"), "b": rand(2, dtype="float64"),
             "s": rand(1, dtype="float64"), "c": rand(2, dtype="float64")}
    return make_model(nodes, feeds, outs, opset=17, extra_opsets=[("ai.onnx.preview.training", 1)]), feeds


def test_gradient_against_central_differences():
    model, feeds = _gradient_model(True)
    forward, _ = _gradient_model(False)
    from onnx.reference import ReferenceEvaluator

    ev = ReferenceEvaluator(forward)
    total = lambda f: float(np.sum(ev.run(["y"], f)[0]))   # noqa: E731  (Gradient seeds y with ones)
    want = [np.asarray(a) for a in ev.run(None, feeds)]
    for name in ["x", "w", "b", "s", "c"]:
        d = np.zeros_like(feeds[name])
        for i in np.ndindex(d.shape):
            up, down = dict(feeds), dict(feeds)
            up[name], down[name] = feeds[name].copy(), feeds[name].copy()
            up[name][i] += 1e-6
            down[name][i] -= 1e-6
            d[i] = (total(up) - total(down)) / 2e-6
        want.append(d)
    assert not np.any(want[-1]) and np.all(np.abs(want[2]) > 0)
    check(model, feeds, expected=want, rtol=1e-5, atol=1e-7)


def test_gradient_through_an_op_without_a_rule_is_an_error():
    from ember.errors import UnsupportedOpError

    n = helper.make_node
    nodes = [n("Softmax", ["x"], ["y"]),
             n("Gradient", ["x"], ["dx"], domain="ai.onnx.preview.training", xs=["x"], y="y")]
    model = make_model(nodes, {"x": rand(2, 3)}, ["dx"], opset=17, extra_opsets=[("ai.onnx.preview.training", 1)])
    with pytest.raises(UnsupportedOpError, match="Gradient.*gradient through Softmax"):
        check(model, {"x": rand(2, 3)})


def test_batch_norm_training_mode():
    x, s, b, m, v = rand(2, 3, 4), rand(3), rand(3), rand(3), rand(3, lo=0.5, hi=1.5)
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], training_mode=1,
                            momentum=0.8)
    feeds = {"x": x, "s": s, "b": b, "m": m, "v": v}
    check(make_model([node], feeds, ["y", "rm", "rv"], opset=15), feeds, atol=1e-5, rtol=1e-4)


def test_unique_and_non_max_suppression_of_specialized_inputs():
    x = np.array([2, 1, 1, 3, 4, 3], "int64")
    node = helper.make_node("Unique", ["x"], ["y", "i", "inv", "c"], sorted=0)
    check(make_model([node], {"x": x}, ["y", "i", "inv", "c"], opset=11), {"x": x})
    boxes = np.array([[[0, 0, 1, 1], [0, 0.1, 1, 1.1], [0, -0.1, 1, 0.9], [0, 10, 1, 11], [0, 10.1, 1, 11.1]]],
                     "float32")
    scores = np.array([[[0.9, 0.75, 0.6, 0.95, 0.5]]], "float32")
    node = helper.make_node("NonMaxSuppression", ["b", "s", "n", "iou", "thr"], ["sel"])
    feeds = {"b": boxes, "s": scores}
    model = make_model([node], feeds, ["sel"], opset=11,
                       initializers={"n": np.array([3], "int64"), "iou": np.array([0.5], "float32"),
                                     "thr": np.array([0.0], "float32")})
    check(model, feeds, expected=onnxruntime_outputs(model, feeds))
