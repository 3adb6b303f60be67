"""Invalid ONNX models refused at the frontend's door, and model paths read safely: each invalid
kind built with onnx.helper, refused with its ember.errors class, code and a message that names
the node or tensor; valid models of the same shapes still accepted."""

from __future__ import annotations

import contextlib
import os
import re
import signal

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP, helper, numpy_helper

from ember.errors import (DeclaredShapeWarning, DeclaredTypeError, DuplicateNameError, EmberError, ExternalDataError,
                          InvalidModelError, ModelFileError, ModelLoadError, ModelVersionError, OpSchemaError,
                          TensorDataError, UnsupportedOpError)
from ember.frontend import from_onnx
from ember.graph import run_graph
from onnx_harness import make_model, rand


@contextlib.contextmanager
def deadline(seconds: int = 10):
    """Fail instead of hanging when a regression makes a read block (a FIFO, /dev/zero)."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def refused(model, cls, code: str, *fragments: str, **kw):
    with deadline():
        with pytest.raises(cls) as info:
            from_onnx(model, **kw)
    err = info.value
    assert err.code == code and str(err).startswith(f"[{code}]"), str(err)
    for frag in fragments:
        assert frag in str(err), str(err)
    return err


def vi(name, elem=TP.FLOAT, shape=(2, 3)):
    return helper.make_tensor_value_info(name, elem, list(shape) if shape is not None else None)


def graph_model(nodes, inputs, outputs, inits=(), opset=17, value_info=()):
    g = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), initializer=list(inits),
                          value_info=list(value_info))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


def relu_model(**node_kw):
    node = helper.make_node("Relu", ["x"], ["y"], name="r", **node_kw)
    return graph_model([node], [vi("x")], [vi("y")])


W = numpy_helper.from_array(np.ones((2, 3), np.float32), "w")


def add_model(inits=(W,), out=None, value_info=()):
    return graph_model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [vi("x")],
                       [out or vi("y")], inits, value_info=value_info)


# ---- versions -------------------------------------------------------------------------------

def test_opset_beyond_the_known_ones():
    m = relu_model()
    m.opset_import[0].version = 999
    refused(m, ModelVersionError, "E012", "opset 999", "domain 'ai.onnx'")


def test_opset_below_one_and_domain_imported_twice():
    m = relu_model()
    m.opset_import[0].version = 0
    refused(m, ModelVersionError, "E012", "opset 0")
    m = relu_model()
    m.opset_import.append(helper.make_opsetid("ai.onnx", 13))
    refused(m, DuplicateNameError, "E013", "imports the opset of domain 'ai.onnx' twice")


def test_ir_version_beyond_any_release():
    m = relu_model()
    m.ir_version = 10**6
    refused(m, ModelVersionError, "E012", f"IR version {10**6}")


# ---- names defined twice --------------------------------------------------------------------

def test_initializer_given_twice():
    refused(add_model(inits=(W, W)), DuplicateNameError, "E013", "initializer 'w' is given twice")


def test_output_produced_twice():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="a"), helper.make_node("Neg", ["x"], ["y"], name="b")]
    refused(graph_model(nodes, [vi("x")], [vi("y")]), DuplicateNameError, "E013", "node 'b'",
            "output 'y' is also produced by node 'a'")


def test_output_named_like_an_input_or_an_initializer():
    m = graph_model([helper.make_node("Relu", ["x"], ["x"], name="r")], [vi("x")], [vi("x")])
    refused(m, DuplicateNameError, "E013", "node 'r'", "name of a graph input")
    nodes = [helper.make_node("Relu", ["x"], ["w"], name="r"), helper.make_node("Add", ["x", "w"], ["y"])]
    refused(graph_model(nodes, [vi("x")], [vi("y")], [W]), DuplicateNameError, "E013", "name of an initializer")


def test_graph_input_declared_twice():
    m = graph_model([helper.make_node("Relu", ["x"], ["y"])], [vi("x"), vi("x")], [vi("y")])
    refused(m, DuplicateNameError, "E013", "graph input 'x' is declared twice")


# ---- nodes against their schema -------------------------------------------------------------

def test_more_inputs_or_outputs_than_the_schema_allows():
    m = graph_model([helper.make_node("Relu", ["x", "x"], ["y"], name="r")], [vi("x")], [vi("y")])
    refused(m, OpSchemaError, "E014", "Relu node 'r'", "has 2 input(s); the op takes 1")
    m = graph_model([helper.make_node("Relu", ["x"], ["y", "z"], name="r")], [vi("x")], [vi("y")])
    refused(m, OpSchemaError, "E014", "Relu node 'r'", "has 2 output(s); the op takes 1")
    m = graph_model([helper.make_node("Add", ["x"], ["y"], name="a")], [vi("x")], [vi("y")])
    refused(m, OpSchemaError, "E014", "Add node 'a'", "has 1 input(s); the op takes 2")


def test_attribute_given_twice():
    node = helper.make_node("Softmax", ["x"], ["y"], name="s", axis=1)
    node.attribute.append(helper.make_attribute("axis", 0))
    refused(graph_model([node], [vi("x")], [vi("y")]), OpSchemaError, "E014", "Softmax node 's'",
            "attribute 'axis' is given twice")


def test_attribute_the_op_does_not_have():
    refused(relu_model(alpha=0.5), OpSchemaError, "E014", "Relu node 'r'", "attribute 'alpha'",
            "does not define")


def test_attribute_of_the_wrong_type():
    node = helper.make_node("Softmax", ["x"], ["y"], name="s", axis=1.0)
    refused(graph_model([node], [vi("x")], [vi("y")]), OpSchemaError, "E014", "Softmax node 's'",
            "attribute 'axis' is of type FLOAT; the op takes INT")


def test_int32_shape_for_reshape():
    shape = numpy_helper.from_array(np.array([3, 2], np.int32), "shape")
    m = graph_model([helper.make_node("Reshape", ["x", "shape"], ["y"], name="rs")], [vi("x")],
                    [vi("y", shape=(3, 2))], [shape])
    refused(m, OpSchemaError, "E014", "Reshape node 'rs'", "input 1 ('shape') is tensor(int32)",
            "tensor(int64)")


def test_operand_type_outside_the_constraint_and_mixed_types():
    m = graph_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", TP.STRING)],
                    [vi("y", TP.STRING)])
    refused(m, OpSchemaError, "E014", "Relu node 'r'", "input 0 ('X') is tensor(string)")
    m = graph_model([helper.make_node("Add", ["x", "i"], ["y"], name="a")], [vi("x"), vi("i", TP.INT64)],
                    [vi("y")])
    refused(m, OpSchemaError, "E014", "Add node 'a'", "input 1 ('B') is tensor(int64) but input 0 is tensor(float)")


def test_schema_checks_reach_into_subgraphs():
    bad = helper.make_graph([helper.make_node("Relu", ["x", "x"], ["o"], name="inner")], "then", [],
                            [vi("o")])
    good = helper.make_graph([helper.make_node("Neg", ["x"], ["o2"])], "else", [], [vi("o2")])
    nodes = [helper.make_node("If", ["c"], ["y"], name="if", then_branch=bad, else_branch=good)]
    m = graph_model(nodes, [vi("x"), vi("c", TP.BOOL, ())], [vi("y")])
    refused(m, OpSchemaError, "E014", "if/then_branch: inner", "has 2 input(s)")


# ---- tensors --------------------------------------------------------------------------------

def test_tensor_with_raw_data_and_float_data():
    w = numpy_helper.from_array(np.ones((2, 3), np.float32), "w")
    w.float_data.extend([1.0] * 6)
    refused(add_model(inits=(w,)), TensorDataError, "E015", "initializer 'w'", "both raw_data and float_data")


def test_data_length_not_matching_dims():
    w = numpy_helper.from_array(np.ones((2, 3), np.float32), "w")
    w.raw_data = w.raw_data[:-4]
    refused(add_model(inits=(w,)), TensorDataError, "E015", "initializer 'w'", "needs 24 bytes of raw_data",
            "holds 20")
    w = onnx.TensorProto(name="w", data_type=TP.FLOAT, dims=[2, 3], float_data=[1.0] * 5)
    refused(add_model(inits=(w,)), TensorDataError, "E015", "needs 6 values of float_data, but holds 5")
    # a Constant node's tensor too, naming the node
    bad = onnx.TensorProto(name="k", data_type=TP.FLOAT, dims=[4], float_data=[1.0, 2.0])
    m = graph_model([helper.make_node("Constant", [], ["y"], name="const", value=bad)], [], [vi("y", shape=(4,))])
    refused(m, TensorDataError, "E015", "Constant node 'const'", "attribute 'value' 'k'")


def test_data_field_of_another_element_type_and_no_data():
    w = onnx.TensorProto(name="w", data_type=TP.INT64, dims=[2])
    w.float_data.extend([1.0, 2.0])
    refused(add_model(inits=(w,)), TensorDataError, "E015", "element type INT64 but stores its data in float_data")
    w = onnx.TensorProto(name="w", data_type=TP.FLOAT, dims=[2, 3])
    refused(add_model(inits=(w,)), TensorDataError, "E015", "initializer 'w'", "no data")


def test_negative_dims_in_an_initializer_and_a_graph_input():
    w = onnx.TensorProto(name="w", data_type=TP.FLOAT, dims=[-2, -3])
    w.raw_data = np.ones(6, np.float32).tobytes()
    refused(add_model(inits=(w,)), TensorDataError, "E015", "initializer 'w' has dims [-2, -3]")
    m = graph_model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", shape=(2, -3))], [vi("y", shape=None)])
    refused(m, DeclaredTypeError, "E016", "graph input 'x' declares dimension 1 as -3")


def test_a_dimension_of_minus_one_is_an_unknown_size():
    """paddle2onnx writes open sizes as -1 or "?" (onnxruntime reads both as unknown): one artifact
    runs every size there, and a declared output of -1 matches any computed size."""
    import ember

    m = graph_model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", shape=(-1, 3, "?", "?"))],
                    [vi("y", shape=(-1, 3, "?", "?"))])
    module = ember.compile(m)
    for size in ((1, 3, 2, 5), (4, 3, 3, 3)):    # and "?" twice: two sizes of their own
        x = np.linspace(-1, 1, np.prod(size), dtype=np.float32).reshape(size)
        np.testing.assert_array_equal(module.run({"x": x})["y"], np.maximum(x, 0))


# ---- declared types against computed ones ---------------------------------------------------

def test_graph_output_declared_with_another_dtype():
    refused(add_model(out=vi("y", TP.INT64)), DeclaredTypeError, "E016",
            "graph output 'y' is declared INT64, but the graph computes float32")


@pytest.mark.parametrize("shape,why", [((3, 2), "with dimension 0 = 3 ([3, 2])"), ((2, 3, 1), "of rank 3"),
                                       ((1, "seqlen"), "with dimension 0 = 1 ([1, seqlen])")])
def test_graph_output_declared_with_another_shape_is_a_warning(shape, why):
    # onnxruntime ignores a declared output shape that the graph contradicts (its lenient
    # merge): the computed shape is the output's, the declaration is warned about
    with pytest.warns(DeclaredShapeWarning, match=re.escape(f"graph output 'y' is declared {why}")):
        g = from_onnx(add_model(out=vi("y", shape=shape)))
    assert tuple(g.outputs[0].type.shape) == (2, 3)


def test_value_info_contradicting_the_computed_type():
    nodes = [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Neg", ["h"], ["y"])]
    m = graph_model(nodes, [vi("x")], [vi("y")], value_info=[vi("h", TP.DOUBLE)])
    refused(m, DeclaredTypeError, "E016", "value_info 'h' is declared DOUBLE")
    m = graph_model(nodes, [vi("x")], [vi("y")], value_info=[vi("h", shape=(5,))])
    with pytest.warns(DeclaredShapeWarning, match="value_info 'h' is declared of rank 1"):
        from_onnx(m)


# ---- names that are not text ----------------------------------------------------------------

def test_names_that_are_not_utf8():
    m = relu_model()
    m.graph.node[0].name = "nm"
    data = m.SerializeToString().replace(b"\x1a\x02nm", b"\x1a\x02n\xff")   # node name 'nm' -> b'n\xff'
    err = refused(data, InvalidModelError, "E004", "node name", "not valid UTF-8")
    assert "\\xff" in str(err)
    # errors format bytes names instead of raising TypeError
    e = UnsupportedOpError({b"Op\xfe": [b"n\xff"]})
    assert "Op\\xfe x1" in str(e) and "n\\\\xff" in str(e)       # names shown with repr()
    assert "n\\xff" in str(InvalidModelError("bad", node=b"n\xff", op=b"Op"))


# ---- model paths ----------------------------------------------------------------------------

def test_model_path_that_is_a_fifo(tmp_path):
    fifo = tmp_path / "m.onnx"
    os.mkfifo(fifo)
    refused(fifo, ModelFileError, "E010", "FIFO")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_model_path_that_is_a_device_or_a_symlink_to_one(tmp_path, device):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    refused(device, ModelFileError, "E010", "character device")
    link = tmp_path / "m.onnx"
    link.symlink_to(device)
    refused(link, ModelFileError, "E010", "character device")


def test_model_path_that_is_a_directory(tmp_path):
    refused(tmp_path, ModelFileError, "E010", "a directory")


def test_model_file_over_protobufs_limit_is_not_read(tmp_path):
    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:
        f.truncate(2**31)                      # sparse: takes no space, and must not be read
    refused(big, ModelFileError, "E010", "2147483648 bytes", "external data")


def test_truncated_and_garbage_files_are_load_errors(tmp_path):
    data = add_model().SerializeToString()
    for k, cut in enumerate((len(data) - 3, len(data) // 2, 7)):
        p = tmp_path / f"t{k}.onnx"
        p.write_bytes(data[:cut])
        with deadline():
            with pytest.raises(ModelLoadError):
                from_onnx(p)
    p = tmp_path / "g.onnx"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelLoadError):
        from_onnx(p)


# ---- external data --------------------------------------------------------------------------

def external_model(tmp_path, *, location="w.bin", offset=None, length=None, extra=(), write=True):
    """The Add model with 'w' kept in external file ``location`` of ``tmp_path``."""
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = onnx.TensorProto(name="w", data_type=TP.FLOAT, dims=[2, 3], data_location=TP.EXTERNAL)
    for key, value in [("location", location), ("offset", offset), ("length", length), *extra]:
        if value is not None:
            e = t.external_data.add()
            e.key, e.value = key, str(value)
    if write:
        (tmp_path / "w.bin").write_bytes(w.tobytes())
    path = tmp_path / "m.onnx"
    path.write_bytes(add_model(inits=(t,)).SerializeToString())
    return path, w


def test_external_data_read_safely_when_valid(tmp_path):
    path, w = external_model(tmp_path, offset=0, length=24)
    x = rand(2, 3)
    np.testing.assert_array_equal(run_graph(from_onnx(path), {"x": x})[0], x + w)
    # a data file in a subfolder, and a symlink that stays inside the model's folder
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.bin").write_bytes(w.tobytes())
    (tmp_path / "inside.bin").symlink_to(tmp_path / "sub" / "data.bin")
    for loc in ("sub/data.bin", "inside.bin", "./sub/data.bin"):
        path, _ = external_model(tmp_path, location=loc)
        np.testing.assert_array_equal(run_graph(from_onnx(path), {"x": x})[0], x + w)


def test_external_data_unknown_key(tmp_path):
    path, _ = external_model(tmp_path, extra=[("evil_attribute", "1")])
    refused(path, ExternalDataError, "E011", "initializer 'w'", "external-data key 'evil_attribute'")


@pytest.mark.parametrize("location", ["/etc/passwd", "../w.bin", "sub/../../w.bin", "..\\w.bin"])
def test_external_data_location_escaping_the_folder(tmp_path, location):
    path, _ = external_model(tmp_path, location=location)
    refused(path, ExternalDataError, "E011", "initializer 'w'", "no absolute path, no '..'")


def test_external_data_symlinks_leading_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(b"\x00" * 24)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "w.bin").symlink_to(outside / "secret.bin")
    (model_dir / "d").symlink_to(outside)           # a symlinked folder on the way
    path, _ = external_model(model_dir, write=False)
    refused(path, ExternalDataError, "E011", "leads outside the model's folder")
    path, _ = external_model(model_dir, location="d/secret.bin", write=False)
    refused(path, ExternalDataError, "E011", "leads outside the model's folder")


def test_external_data_offset_or_length_past_the_end(tmp_path):
    path, _ = external_model(tmp_path, offset=8)
    refused(path, ExternalDataError, "E011", "needs 24 bytes at offset 8", "which has 24 bytes")
    path, _ = external_model(tmp_path, offset=10**12)
    refused(path, ExternalDataError, "E011", "at offset 1000000000000")
    path, _ = external_model(tmp_path, length=48)
    refused(path, ExternalDataError, "E011", "length 48 does not match", "24 bytes")
    path, _ = external_model(tmp_path, offset=-4)
    refused(path, ExternalDataError, "E011", "offset '-4' is not a non-negative integer")


def test_external_data_location_that_is_not_a_regular_file(tmp_path):
    (tmp_path / "dir").mkdir()
    path, _ = external_model(tmp_path, location="dir")
    refused(path, ModelFileError, "E010", "a directory")
    os.mkfifo(tmp_path / "fifo")
    path, _ = external_model(tmp_path, location="fifo")
    refused(path, ModelFileError, "E010", "FIFO")
    if os.path.exists("/dev/zero"):
        (tmp_path / "zero").symlink_to("/dev/zero")
        path, _ = external_model(tmp_path, location="zero")
        # resolved outside the folder, and a device besides: refused before it is opened
        refused(path, ExternalDataError, "E011", "leads outside")


def test_external_data_with_data_of_its_own(tmp_path):
    t = onnx.TensorProto(name="w", data_type=TP.FLOAT, dims=[2, 3], data_location=TP.EXTERNAL)
    t.raw_data = np.ones(6, np.float32).tobytes()
    e = t.external_data.add()
    e.key, e.value = "location", "w.bin"
    refused(add_model(inits=(t,)), TensorDataError, "E015", "keeps its data in an external file and also sets raw_data")


# ---- valid models are still accepted --------------------------------------------------------

def test_valid_models_pass():
    # optional inputs left out (trailing and in the middle), an If with subgraphs, value_info
    # that agrees, symbolic output dims, an attribute with a default left out, a graph input
    # that an initializer also gives
    x = rand(2, 3)
    clip = helper.make_node("Clip", ["x", "", "hi"], ["c"], name="clip")
    then_g = helper.make_graph([helper.make_node("Relu", ["c"], ["o"])], "then", [], [vi("o")])
    else_g = helper.make_graph([helper.make_node("Neg", ["c"], ["o2"])], "else", [], [vi("o2")])
    nodes = [clip, helper.make_node("Constant", [], ["t"], value=numpy_helper.from_array(np.array(True), "tv")),
             helper.make_node("If", ["t"], ["i"], then_branch=then_g, else_branch=else_g),
             helper.make_node("Softmax", ["i"], ["y"])]
    m = graph_model(nodes, [vi("x", shape=("n", 3)), vi("hi", shape=())], [vi("y", shape=("n", 3))],
                    [numpy_helper.from_array(np.array(1.0, np.float32), "hi")],
                    opset=13, value_info=[vi("c", shape=("n", 3)), vi("i", shape=None)])
    got = run_graph(from_onnx(m), {"x": x})[0]
    e = np.exp(np.maximum(np.minimum(x, 1.0), 0))
    np.testing.assert_allclose(got, e / e.sum(-1, keepdims=True), rtol=1e-6)
    # helper-made models of every tensor data field
    model = make_model([helper.make_node("Add", ["x", "w"], ["y"])], {"x": x}, ["y"],
                       {"w": np.ones((2, 3), np.float32)})
    model.graph.initializer[0].CopyFrom(helper.make_tensor("w", TP.FLOAT, [2, 3], [1.0] * 6))
    np.testing.assert_allclose(run_graph(from_onnx(model), {"x": x})[0], x + 1)


def test_errors_are_all_ember_errors():
    for cls in (ModelFileError, ExternalDataError, ModelVersionError, DuplicateNameError, OpSchemaError,
                TensorDataError, DeclaredTypeError):
        assert issubclass(cls, EmberError)
    assert issubclass(ModelFileError, ModelLoadError) and issubclass(ExternalDataError, ModelLoadError)
    assert issubclass(OpSchemaError, InvalidModelError) and issubclass(DeclaredTypeError, InvalidModelError)


# ---- ember.compile reads paths the same way -------------------------------------------------

def test_compile_refuses_special_files_without_reading_them(tmp_path):
    import ember

    os.mkfifo(tmp_path / "m.onnx")
    for path in (tmp_path / "m.onnx", "/dev/zero"):
        if not os.path.exists(path):
            continue
        with deadline():
            with pytest.raises(ModelFileError):
                ember.compile(path)


def test_compile_cache_key_covers_external_data(tmp_path):
    """New weights saved beside an unchanged model file are a new model, not a cache hit."""
    import hashlib

    from ember.frontend.onnx_files import hash_model_files

    path, w = external_model(tmp_path)
    before = hashlib.sha256()
    hash_model_files(str(path), before)
    (tmp_path / "w.bin").write_bytes((w + 1).tobytes())
    after = hashlib.sha256()
    hash_model_files(str(path), after)
    assert before.hexdigest() != after.hexdigest()


def test_graph_input_contradicting_its_initializer():
    ok = add_model()
    ok.graph.input.append(vi("w", shape=("a", 3)))        # a default value that agrees
    from_onnx(ok)
    m = add_model()
    m.graph.input.append(vi("w", TP.INT64))
    refused(m, DeclaredTypeError, "E016", "graph input 'w' is declared INT64, but the initializer of that name is FLOAT")
    m = add_model()
    m.graph.input.append(vi("w", shape=(3, 2)))
    refused(m, DeclaredTypeError, "E016", "declared with shape [3, 2], but the initializer of that name has dims [2, 3]")


def test_window_attributes_below_one():
    """Strides, dilations and pooling kernels below 1 would count windows reaching outside the
    input (a 7x7 output of a 4x4 image, read out of bounds): the op's type rule refuses them."""
    from ember.errors import TypeInferenceError

    x4 = vi("x", shape=(1, 3, 4, 4))
    w = numpy_helper.from_array(np.ones((3, 3, 2, 2), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="c", dilations=[-3, -3])
    refused(graph_model([conv], [x4], [vi("y", shape=None)], [w]), TypeInferenceError, "E103", "node 'c'",
            "dilations [-3, -3] must all be at least 1")
    pool = helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[0, 0])
    refused(graph_model([pool], [x4], [vi("y", shape=None)]), TypeInferenceError, "E103", "node 'p'",
            "kernel [0, 0] must be at least 1")
    pool = helper.make_node("AveragePool", ["x"], ["y"], name="p", kernel_shape=[2, 2], strides=[0, 1])
    refused(graph_model([pool], [x4], [vi("y", shape=None)]), TypeInferenceError, "E103", "strides [0, 1]")


def test_compile_cache_sees_new_external_weights(tmp_path, monkeypatch):
    import ember

    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    path, w = external_model(model_dir)
    x = rand(2, 3)
    np.testing.assert_array_equal(ember.compile(path).run({"x": x})["y"], x + w)
    steps: list[str] = []
    np.testing.assert_array_equal(ember.compile(path, progress=steps.append).run({"x": x})["y"], x + w)
    assert any("found in cache" in s for s in steps), steps
    (model_dir / "w.bin").write_bytes((w * 2).tobytes())       # new weights, the same .onnx file
    steps = []
    np.testing.assert_array_equal(ember.compile(path, progress=steps.append).run({"x": x})["y"], x + 2 * w)
    assert not any("found in cache" in s for s in steps), steps


def test_result_type_outside_the_constraint():
    """Constant gives float types only at opset 1: a bool value there is not a valid model."""
    value = numpy_helper.from_array(np.array([True, False]), "v")
    m = graph_model([helper.make_node("Constant", [], ["y"], name="k", value=value)], [], [vi("y", TP.BOOL, (2,))],
                    opset=1)
    m.ir_version = 3
    refused(m, OpSchemaError, "E014", "Constant node 'k'", "output 0 ('output') is tensor(bool)", "tensor(float)")
    m.opset_import[0].version = 13
    assert from_onnx(m).outputs[0].const.tolist() == [True, False]
