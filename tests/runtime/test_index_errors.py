"""Indices read from the inputs at run time: out of [-n, n) they are an error of the run
(``IndexOutOfRangeError``, ``EMBER_ERROR_INDEX`` from the C API) naming the node, the op, the
index and the range, whatever thread of a parallel loop meets them, and never a crash or a
read outside the data; in range the results agree with onnxruntime."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as TP, helper  # noqa: E402

import ember  # noqa: E402
from ember.errors import IndexOutOfRangeError, InvalidModelError  # noqa: E402

FLAGS = ("-O1",)


def _model(op, dshape, ishape, oshape, idt=TP.INT64, inits=(), extra=(), name="n1", **attrs):
    x = [helper.make_tensor_value_info("x", TP.FLOAT, list(dshape))] if dshape is not None else []
    i = helper.make_tensor_value_info("i", idt, list(ishape))
    y = helper.make_tensor_value_info("y", TP.FLOAT, list(oshape))
    nodes = [helper.make_node(op, ["x", "i"], ["y" if not extra else "g"], name=name, **attrs)] + list(extra)
    g = helper.make_graph(nodes, "g", x + [i], [y], initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _agree(model, m, feeds):
    want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    np.testing.assert_array_equal(m.run(feeds)["y"], want)


def _ort_fails(model, feeds):
    with pytest.raises(Exception):
        ort.InferenceSession(model.SerializeToString()).run(None, feeds)


# op, data shape, index shape, output shape, attrs, good index sets, bad (index set, value, extent)
CASES = {
    "gather_axis0": ("Gather", (5, 3), (4,), (4, 3), {}, [[0, 4, -5, -1]],
                     [([0, 5, 1, 1], 5, 5), ([1, 1, -6, 0], -6, 5), ([0, 0, 0, 1 << 40], 1 << 40, 5)]),
    "gather_axis1": ("Gather", (2, 6), (2, 2), (2, 2, 2), {"axis": 1}, [[[0, 5], [-6, -1]]],
                     [([[0, 6], [0, 0]], 6, 6), ([[0, 0], [-7, 0]], -7, 6)]),
    "gather_elements": ("GatherElements", (3, 4), (3, 2), (3, 2), {"axis": 1}, [[[0, 3], [-4, -1], [1, 2]]],
                        [([[0, 4], [0, 0], [0, 0]], 4, 4), ([[0, 0], [-5, 0], [0, 0]], -5, 4)]),
    "gather_nd": ("GatherND", (3, 4), (2, 2), (2,), {}, [[[0, 3], [-3, -4]]],
                  [([[0, 4], [0, 0]], 4, 4), ([[3, 0], [0, 0]], 3, 3), ([[0, 0], [-4, 0]], -4, 3)]),
    "gather_nd_batch": ("GatherND", (2, 3, 4), (2, 1), (2, 4), {"batch_dims": 1}, [[[2], [-3]]],
                        [([[3], [0]], 3, 3), ([[0], [-4]], -4, 3)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_index_ops_report_out_of_range_indices(case):
    op, dshape, ishape, oshape, attrs, goods, bads = CASES[case]
    model = _model(op, dshape, ishape, oshape, **attrs)
    m = ember.compile(model, cflags=FLAGS)
    x = np.arange(int(np.prod(dshape)), dtype=np.float32).reshape(dshape)
    for g in goods:
        _agree(model, m, {"x": x, "i": np.array(g, np.int64)})
    for bad, value, n in bads:
        feeds = {"x": x, "i": np.array(bad, np.int64)}
        _ort_fails(model, feeds)
        with pytest.raises(IndexOutOfRangeError) as e:
            m.run(feeds)
        msg = str(e.value)
        assert e.value.code == "E305" and "node 'n1'" in msg, msg
        assert f"index {value} is out of range [-{n}, {n})" in msg, msg
        assert " for axis " in msg and (op == "Gather" or f"of the {op} data" in msg), msg
    # a failed run leaves nothing behind: the next good run is right
    _agree(model, m, {"x": x, "i": np.array(goods[0], np.int64)})


def test_int32_indices_and_an_empty_axis():
    model = _model("Gather", (5, 3), (3,), (3, 3), idt=TP.INT32)
    m = ember.compile(model, cflags=FLAGS)
    x = np.arange(15, dtype=np.float32).reshape(5, 3)
    _agree(model, m, {"x": x, "i": np.array([-5, 4, 0], np.int32)})
    with pytest.raises(IndexOutOfRangeError, match=r"index -2147483648 is out of range \[-5, 5\)"):
        m.run({"x": x, "i": np.array([0, np.iinfo(np.int32).min, 0], np.int32)})

    # a 0-sized axis: every index is out of range, and nothing may be read
    for op, dshape, ishape, oshape, attrs in [("Gather", (0, 3), (2,), (2, 3), {}),
                                              ("GatherElements", (2, 0), (2, 1), (2, 1), {"axis": 1})]:
        model = _model(op, dshape, ishape, oshape, **attrs)
        m = ember.compile(model, cflags=FLAGS)
        feeds = {"x": np.zeros(dshape, np.float32), "i": np.zeros(ishape, np.int64)}
        _ort_fails(model, feeds)
        with pytest.raises(IndexOutOfRangeError, match=r"node 'n1'.*index 0 into axis \d of the .*which is empty"):
            m.run(feeds)


def test_embedding_lookup_in_parallel_loops():
    """A fused embedding lookup (gather from constant weights + add) large enough to run on
    the thread pool: a bad index anywhere, in any chunk, ends the run with the error; many
    bad ones report one of them; a good run after it is right."""
    rng = np.random.default_rng(0)
    vocab, width = 1000, 64
    w = rng.standard_normal((vocab, width)).astype(np.float32)
    pos = rng.standard_normal((128, width)).astype(np.float32)
    gather = helper.make_node("Gather", ["w", "i"], ["g"], name="embed")
    add = helper.make_node("Add", ["g", "pos"], ["y"], name="add_pos")
    g = helper.make_graph([gather, add], "emb", [helper.make_tensor_value_info("i", TP.INT64, [8, 128])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, [8, 128, width])],
                          initializer=[onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(pos, "pos")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m = ember.compile(model)
    good = rng.integers(-vocab, vocab, (8, 128))
    want = w[good % vocab] + pos
    for threads in (1, 2, 4):
        m.num_threads = threads
        np.testing.assert_allclose(m.run({"i": good})["y"], want, rtol=1e-6)
        for at in [(0, 0), (7, 127), (3, 64)]:
            bad = good.copy()
            bad[at] = vocab
            with pytest.raises(IndexOutOfRangeError, match=rf"gather node 'embed'.*index {vocab} is out of range"):
                m.run({"i": bad})
        many = good.copy()
        many[::2, ::3] = -vocab - 1 - np.arange(many[::2, ::3].size).reshape(many[::2, ::3].shape)
        with pytest.raises(IndexOutOfRangeError) as e:
            m.run({"i": many})
        value = int(str(e.value).split("index ")[1].split(" ")[0])
        assert value in set(many[::2, ::3].reshape(-1).tolist())
        np.testing.assert_allclose(m.run({"i": good})["y"], want, rtol=1e-6)


def test_symbolic_axis():
    """A gather from data whose indexed axis is symbolic: the range is the run's, and an empty
    axis at run time is an error too."""
    model = _model("Gather", ("n", 4), (3,), (3, 4))
    m = ember.compile(model, bounds={"n": 16}, cflags=FLAGS)
    for n in (1, 5, 16):
        x = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
        _agree(model, m, {"x": x, "i": np.array([0, n - 1, -n], np.int64)})
        with pytest.raises(IndexOutOfRangeError, match=rf"index {n} is out of range \[-{n}, {n}\) for axis 0 of the "
                                                        r"data \[n, 4\]"):
            m.run({"x": x, "i": np.array([0, n, 0], np.int64)})
    with pytest.raises(IndexOutOfRangeError, match="which is empty"):
        m.run({"x": np.zeros((0, 4), np.float32), "i": np.array([0, 0, 0], np.int64)})


def test_one_hot_out_of_range_is_an_all_off_row():
    """ONNX (and onnxruntime): indices outside [-depth, depth) give a row of off values."""
    depth = 5
    i = helper.make_tensor_value_info("i", TP.INT64, [7])
    y = helper.make_tensor_value_info("y", TP.FLOAT, [7, depth])
    node = helper.make_node("OneHot", ["i", "depth", "values"], ["y"], name="oh", axis=-1)
    g = helper.make_graph([node], "oh", [i], [y],
                          initializer=[onnx.numpy_helper.from_array(np.array(depth, np.int64), "depth"),
                                       onnx.numpy_helper.from_array(np.array([-1.0, 3.0], np.float32), "values")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m = ember.compile(model, cflags=FLAGS)
    idx = np.array([0, 4, -1, -5, 5, -6, 1 << 40], np.int64)
    _agree(model, m, {"i": idx})
    assert (m.run({"i": idx})["y"][4:] == -1.0).all()


@pytest.mark.parametrize("op, idx", [("ScatterND", [[0, 5]]), ("ScatterND", [[-4, 0]]),
                                     ("ScatterElements", [[0, 3, 0]])])
def test_constant_scatter_indices_out_of_range_are_refused(op, idx):
    """The scatters take constant indices: out of range (each axis on its own, not only the
    linear position) they are refused when the model is compiled."""
    data = helper.make_tensor_value_info("x", TP.FLOAT, [3, 3])
    y = helper.make_tensor_value_info("y", TP.FLOAT, [3, 3])
    upd_shape = [1] if op == "ScatterND" else [1, 3]
    u = helper.make_tensor_value_info("u", TP.FLOAT, upd_shape)
    node = helper.make_node(op, ["x", "idx", "u"], ["y"], name="sc", **({"axis": 1} if op != "ScatterND" else {}))
    g = helper.make_graph([node], "sc", [data, u], [y],
                          initializer=[onnx.numpy_helper.from_array(np.array(idx, np.int64), "idx")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(InvalidModelError, match=r"node 'sc'.*out of range"):
        ember.compile(model, cflags=FLAGS)


def test_reference_interpreter_raises_the_same_error():
    from ember.frontend import from_onnx
    from ember.graph import run_graph

    graph = from_onnx(_model("GatherElements", (3, 4), (3, 2), (3, 2), axis=1))
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(IndexOutOfRangeError, match=r"index 4 is out of range \[-4, 4\)"):
        run_graph(graph, {"x": x, "i": np.array([[0, 4], [0, 0], [0, 0]], np.int64)})


C_RUN = r"""
#include <dlfcn.h>
#include <stdio.h>
#include <stdint.h>
#include "ember_runtime.h"
int main(int argc, char** argv) {
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) { printf("dlopen failed\n"); return 3; }
  int (*cpu_check)(void) = (int (*)(void))dlsym(lib, "ember_cpu_check");
  ember_model* (*create)(void) = (ember_model* (*)(void))dlsym(lib, "ember_model_create");
  int (*run)(ember_model*, void* const*, void* const*) =
      (int (*)(ember_model*, void* const*, void* const*))dlsym(lib, "ember_model_run");
  const char* (*last_error)(void) = (const char* (*)(void))dlsym(lib, "ember_last_error");
  if (cpu_check() != 0) { printf("cpu: %s\n", last_error()); return 4; }
  float x[15];
  for (int k = 0; k < 15; k++) x[k] = (float)k;
  int64_t idx[4] = {0, -1, 2, 3};
  float y[12];
  void* in[] = {x, idx};
  void* out[] = {y};
  ember_model* m = create();
  int rc = run(m, in, out);
  printf("good %d %g %g\n", rc, y[3], y[6]);
  idx[2] = -6;
  rc = run(m, in, out);
  printf("bad %d %d [%s]\n", rc, rc == EMBER_ERROR_INDEX, last_error());
  idx[2] = 2;
  rc = run(m, in, out);
  printf("again %d %g\n", rc, y[6]);
  return 0;
}
"""


def test_c_api_returns_the_index_error(tmp_path):
    from ember.toolchain import find_compiler, runtime_dir

    m = ember.compile(_model("Gather", (5, 3), (4,), (4, 3)), cflags=FLAGS)
    src = tmp_path / "run.c"
    src.write_text(C_RUN)
    exe = tmp_path / "run"
    proc = subprocess.run([*find_compiler().command, "-O1", "-std=gnu11", "-Wall", "-Werror", "-I", str(runtime_dir()),
                           str(src), "-o", str(exe), "-ldl"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([str(exe), str(m.path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "good 0 12 6", lines
    assert lines[1].startswith("bad -2 1 [gather node 'n1'") and "index -6 is out of range [-5, 5)" in lines[1], lines
    assert lines[2] == "again 0 6", lines
