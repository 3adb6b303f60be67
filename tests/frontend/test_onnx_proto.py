"""ember.frontend.onnx_proto: ONNX's protobuf messages read without the onnx package.

Differential against onnx's own parser (every field of every message, on the repo's models and
on models with every attribute kind, subgraphs, functions, external data and sparse
initializers), hostile bytes (only ember.errors exceptions, never a hang or crash), and that
compiling a model file imports neither onnx nor ml_dtypes."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ember.errors import EmberError, ModelLoadError
from ember.frontend import from_onnx, onnx_proto
from ember.frontend.onnx import _from_fields

MODELS = os.environ.get("EMBER_MODELS_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build", "models"))


# ---- differential ------------------------------------------------------------------------------

def assert_same(light, pb, where="model"):
    """Every field onnx's message ``pb`` has, read alike from ``light``."""
    for f in pb.DESCRIPTOR.fields:
        name = f.name
        if type(light)._BY_NAME.get(name) is None:
            assert all(fd.name != name for fd, _ in pb.ListFields()), f"{where}.{name}: set, unknown to the reader"
            continue
        got, want = getattr(light, name), getattr(pb, name)
        here = f"{where}.{name}"
        repeated = f.is_repeated if hasattr(f, "is_repeated") else f.label == f.LABEL_REPEATED
        if repeated:
            assert len(got) == len(want), here
            for k, (g, w) in enumerate(zip(got, want)):
                if f.message_type is not None:
                    assert_same(g, w, f"{here}[{k}]")
                else:
                    assert g == w, f"{here}[{k}]: {g!r} != {w!r}"
            continue
        assert light.HasField(name) == pb.HasField(name), here
        if f.message_type is not None:
            if pb.HasField(name):
                assert_same(got, want, here)
        elif name == "raw_data":
            assert isinstance(got, (bytes, memoryview)) and bytes(got) == want, here
        else:
            assert got == want, f"{here}: {got!r} != {want!r}"
    for oneof in pb.DESCRIPTOR.oneofs:
        assert light.WhichOneof(oneof.name) == pb.WhichOneof(oneof.name), f"{where} oneof {oneof.name}"


def check_model_bytes(data: bytes):
    pb = onnx.ModelProto()
    pb.ParseFromString(data)
    light = onnx_proto.parse_model(data)
    assert_same(light, pb)
    again = onnx.ModelProto()
    again.ParseFromString(onnx_proto.encode(light))      # and written back, the same message
    assert again == pb
    return light


def _vi(name, elem=TensorProto.FLOAT, shape=(2, 3)):
    return helper.make_tensor_value_info(name, elem, shape)


def everything_model() -> onnx.ModelProto:
    """A model using every attribute kind, If/Loop subgraphs, typed tensor fields, a sparse
    initializer, a function, metadata and names that are not ASCII."""
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [], [_vi("t")])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [_vi("e")])
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["acc", "x"], ["acc_out"])],
        "body", [_vi("i", TensorProto.INT64, []), _vi("cond_in", TensorProto.BOOL, []), _vi("acc")],
        [_vi("cond_out", TensorProto.BOOL, []), _vi("acc_out")])
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array([1.5, -2.0], np.float32), "sv"),
                                       numpy_helper.from_array(np.array([1, 4], np.int64), "si"), [2, 3])
    seq_type = helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, ["n", 3]))
    opt_type = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.INT64, [None]))
    map_type = helper.make_map_type_proto(TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.DOUBLE, []))
    tensors = [
        helper.make_tensor("f", TensorProto.FLOAT, [3], [1.0, -0.5, 3.25]),
        helper.make_tensor("h", TensorProto.FLOAT16, [2], np.array([1.5, -2], np.float16)),
        helper.make_tensor("b", TensorProto.BOOL, [3], [True, False, True]),
        helper.make_tensor("i8", TensorProto.INT8, [2], [-128, 127]),
        helper.make_tensor("i64", TensorProto.INT64, [3], [-(2**63), 2**63 - 1, -1]),
        helper.make_tensor("d", TensorProto.DOUBLE, [2], [1e300, -1e-300]),
        helper.make_tensor("u64", TensorProto.UINT64, [2], [2**64 - 1, 7]),
        helper.make_tensor("s", TensorProto.STRING, [2], [b"a\xc3\xa9", b""]),
        helper.make_tensor("raw", TensorProto.FLOAT, [2, 2], np.arange(4, dtype=np.float32).tobytes(), raw=True),
        helper.make_tensor("c64", TensorProto.COMPLEX64, [1], [complex(1.0, 2.0)]),
    ]
    node = helper.make_node(
        "Custom", ["x", "", "y"], ["z"], name="ünïcode", domain="test.domain",
        f=0.1, i=-3, s="text", t=tensors[0], g=then_g, floats=[1.0, 2.5, -0.0], ints=[0, -1, 2**40],
        strings=["a", "b"], tensors=tensors, graphs=[then_g, else_g], sparse_tensor=sparse, sparse_tensors=[sparse],
        tp=seq_type, type_protos=[opt_type, map_type])
    node.attribute.append(helper.make_attribute_ref("ref", onnx.AttributeProto.FLOAT))
    node.doc_string = "doc"
    if_node = helper.make_node("If", ["c"], ["r"], then_branch=then_g, else_branch=else_g)
    loop_node = helper.make_node("Loop", ["m", "c", "x"], ["acc_final"], body=body)
    fn = helper.make_function("test.domain", "Fn", ["a"], ["b"], [helper.make_node("Relu", ["a"], ["b"])],
                              [helper.make_opsetid("", 17)], attributes=["alpha"])
    graph = helper.make_graph(
        [node, if_node, loop_node], "g ✓", [_vi("x"), _vi("c", TensorProto.BOOL, []), _vi("m", TensorProto.INT64, []),
                                            helper.make_value_info("sq", seq_type)],
        [_vi("z"), _vi("r"), helper.make_tensor_value_info("acc_final", TensorProto.FLOAT, ["batch", None])],
        initializer=tensors, sparse_initializer=[sparse],
        value_info=[helper.make_value_info("o", opt_type)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("test.domain", 1)],
                              functions=[fn], producer_name="tests", producer_version="1.0")
    helper.set_model_props(model, {"k": "v", "ключ": "значение"})
    model.model_version = 7
    return model


def test_every_field_matches_onnx_parser():
    model = everything_model()
    light = check_model_bytes(model.SerializeToString())
    a = {x.name: x for x in light.graph.node[0].attribute}
    assert onnx_proto.attribute_value(a["ints"]) == [0, -1, 2**40]
    assert onnx_proto.attribute_value(a["i"]) == -3
    assert onnx_proto.attribute_value(a["s"]) == b"text"
    assert a["ref"].ref_attr_name == "ref"
    for la, pa in zip(light.graph.node[0].attribute, model.graph.node[0].attribute):
        if pa.ref_attr_name:
            continue
        got, want = onnx_proto.attribute_value(la), helper.get_attribute_value(pa)
        for g, w in zip(got, want) if isinstance(want, list) else [(got, want)]:
            if isinstance(w, (int, float, bytes)):
                assert g == w, la.name
            else:
                assert_same(g, w, la.name)


def test_unknown_fields_kept_and_written_back():
    model = everything_model()
    model.training_info.add().algorithm.name = "train"       # a field the reader does not know
    data = model.SerializeToString()
    light = onnx_proto.parse_model(data)
    again = onnx.ModelProto()
    again.ParseFromString(onnx_proto.encode(light))
    assert again == model


def test_invalid_utf8_name_is_bytes():
    model = everything_model()
    model.graph.node[0].output[0] = "z"
    data = model.SerializeToString().replace(b"\x12\x01z", b"\x12\x01\xff", 1)
    light = onnx_proto.parse_model(data)
    assert b"\xff" in [o for n in light.graph.node for o in n.output]


@pytest.mark.parametrize("name", ["mobilenet_v2.onnx", "resnet50.onnx"])
def test_repo_models_match_onnx_parser(name):
    path = os.path.join(MODELS, name)
    if not os.path.exists(path):
        pytest.skip(f"{name} not built")
    with open(path, "rb") as f:
        data = f.read()
    light = check_model_bytes(data)
    t = max(light.graph.initializer, key=lambda t: len(t.raw_data))
    assert isinstance(t.raw_data, memoryview) and t.raw_data.readonly     # a view, not a copy
    assert t.raw_data.obj is data


def test_typed_fields_as_numpy_helper():
    for t in everything_model().graph.initializer:
        if t.data_type == TensorProto.COMPLEX64:
            continue
        light = onnx_proto.parse(onnx_proto.TensorProto, t.SerializeToString())
        from ember.frontend.onnx import onnx_dtype

        got = _from_fields(light, onnx_dtype(t.data_type)) if not light.HasField("raw_data") else None
        if got is None:
            continue
        want = numpy_helper.to_array(t)
        if t.data_type == TensorProto.STRING:
            want = np.array([s.decode() if isinstance(s, bytes) else s for s in want.reshape(-1)],
                            dtype=object).reshape(want.shape)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype or t.data_type == TensorProto.STRING


def test_external_data_and_sparse_translate_alike(tmp_path):
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [_vi("x", shape=(2, 3))], [_vi("y", shape=(2, 4))],
                              initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = str(tmp_path / "m.onnx")
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
                    size_threshold=0)
    with open(path, "rb") as f:
        light = check_model_bytes(f.read())
    assert light.graph.initializer[0].data_location == onnx_proto.T.EXTERNAL
    g = from_onnx(path)
    x = np.ones((2, 3), np.float32)
    from ember.graph import run_graph

    np.testing.assert_allclose(run_graph(g, {"x": x})[0], x @ w)


# ---- hostile bytes -----------------------------------------------------------------------------

def _must_refuse(data: bytes, match: str | None = None):
    with pytest.raises(ModelLoadError, match=match):
        onnx_proto.parse_model(data)


def test_malformed_bytes_named():
    _must_refuse(b"\x08\x80", "truncated varint")                              # ir_version, varint cut
    _must_refuse(b"\x08" + b"\xff" * 11, "longer than 10 bytes")
    _must_refuse(b"\x3a\x05\x0a\x01", "runs past the end")                    # graph of 5 bytes, 2 there
    _must_refuse(b"\x3a\x02\x0a\x09", "runs past the end")                    # inner field past the graph's end
    _must_refuse(b"\x0a\x01x", "wrong wire type")                             # ir_version length-delimited
    _must_refuse(b"\x3b", "wire type 3")                                      # a group
    _must_refuse(b"\x3d\x00\x00\x00\x00", "wrong wire type")                  # graph as fixed32
    _must_refuse(b"\x00\x01", "field number 0")


def test_deep_nesting_refused():
    inner = b""
    for _ in range(300):                        # graph -> node -> attribute -> graph -> ...
        attr = b"\x32" + _len(inner)
        node = b"\x2a" + _len(attr)
        inner = b"\x0a" + _len(node)
    _must_refuse(b"\x08\x07\x3a" + _len(inner), "nested more than")


def _len(b: bytes) -> bytes:
    out = bytearray()
    onnx_proto._varint(len(b), out)
    return bytes(out) + b


def test_truncations_and_flips_raise_ember_errors_only():
    data = everything_model().SerializeToString()
    rng = np.random.default_rng(0)
    cuts = sorted(set(rng.integers(1, len(data), 150).tolist()))
    for cut in cuts:
        try:
            onnx_proto.parse_model(data[:cut])
        except ModelLoadError:
            pass
    for _ in range(300):
        b = bytearray(data)
        for k in rng.integers(0, len(b), 3):
            b[k] = int(rng.integers(0, 256))
        try:
            from_onnx(bytes(b))
        except EmberError:
            pass


# ---- no onnx import ----------------------------------------------------------------------------

def test_compiling_a_file_imports_neither_onnx_nor_ml_dtypes(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "g", [_vi("x", shape=(1, 2, 5, 5))], [_vi("y", shape=(1, 3, 5, 5))],
        initializer=[numpy_helper.from_array(np.ones((3, 2, 3, 3), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import ember
        m = ember.compile({str(path)!r})
        y = m(np.ones((1, 2, 5, 5), np.float32))
        print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in ('onnx', 'ml_dtypes')
                                and not k.startswith('onnx.onnx_cpp2py_export'))))
        # onnx imported afterwards works as ever, on the extension the reader loaded
        import onnx, onnx.checker
        assert onnx.onnx_cpp2py_export is sys.modules["onnx.onnx_cpp2py_export"]
        onnx.checker.check_model(onnx.load({str(path)!r}), full_check=True)
        assert onnx.defs.get_schema("Softplus", 18, "").function_body.node
        """)
    env = {**os.environ, "EMBER_CACHE_DIR": str(tmp_path / "cache")}
    for run in ("cold", "warm"):
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1]) == [], run
    out = subprocess.run([sys.executable, "-c", f"import ember; ember.from_onnx({str(path)!r}); print('ok')"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
