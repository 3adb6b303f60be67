"""The WebGPU target: WGSL generated from the GPU loop IR, run through the ``wgpu`` package (in CI:
Mesa's software Vulkan driver, lavapipe), against the numpy reference (ops) and onnxruntime's
outputs (models).  Tests that run kernels skip with the reason when wgpu or an adapter is missing
(``pip install ember[webgpu]``, ``apt install mesa-vulkan-drivers``)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
from ember import te
from ember.codegen.gpu import generator
from ember.codegen.lang_wgsl import split_modules
from ember.errors import CodegenError, EmberRuntimeError, IndexOutOfRangeError, TargetError
from ember.runtime import webgpu
from ember.schedules import default
from ember.target import resolve
from ember.te.lower import lower
from ember.te.schedule import create_schedule
from ember.tir.gpu import optimize

from ops.harness import Batch
from ops.test_ops import CASES
from targets.test_gpu import _model, _reference, run_marked_in_child, small_cnn

#: lavapipe's LLVM and TensorFlow's cannot share a process (runtime.webgpu.llvm_conflict): where
#: the suite has imported tensorflow, these tests run in a fresh process instead
LLVM_CONFLICT = webgpu.llvm_conflict()
WHY = webgpu.unavailable()


def needs_webgpu(test):
    """Marks a test that runs on a WebGPU adapter (marker ``webgpu``)."""
    return pytest.mark.webgpu(pytest.mark.skipif(bool(WHY), reason=(
        "run in a fresh process by test_webgpu_tests_in_a_fresh_process" if LLVM_CONFLICT else WHY))(test))


@pytest.mark.skipif(not LLVM_CONFLICT, reason="the WebGPU tests run in this process")
def test_webgpu_tests_in_a_fresh_process(request):
    """The WebGPU tests of this file, run by a child pytest that does not import tensorflow."""
    from pathlib import Path

    run_marked_in_child(request, Path(__file__), "webgpu", skips=True)     # the large models skip


def test_target():
    t = resolve("webgpu")
    assert (t.kind, t.family, t.spec, t.lanes) == ("webgpu", "gpu", "webgpu", 1)
    with pytest.raises(TargetError, match="webgpu takes no option"):
        resolve("webgpu -arch=sm_80")


# ---- the generated WGSL -------------------------------------------------------------------------

def _kernel(out, inputs, name="k"):
    target = resolve("webgpu")
    s = create_schedule(out)
    default(target)(s, target)
    return optimize(lower(s, name, inputs + [s.output]))


def test_wgsl_has_no_64_bit_types_and_refuses_what_needs_them():
    X = te.placeholder((8,), "int64", "X")
    Y = te.compute((8,), lambda i: X[i] * te.const(3, "int64") + te.const(1, "int64"), name="Y")
    src = generator("wgsl").kernel(_kernel(Y, [X]))
    assert "i64" not in src and "ember_ld64_" in src and "var<storage" in src
    big = te.compute((8,), lambda i: X[i] + te.const(1 << 40, "int64"), name="big")
    with pytest.raises(CodegenError, match="does not fit in 32 bits"):
        generator("wgsl").kernel(_kernel(big, [X], "big"))
    D = te.placeholder((8,), "float64", "D")
    with pytest.raises(CodegenError, match="float64"):
        generator("wgsl").kernel(_kernel(te.compute((8,), lambda i: D[i] + D[i], name="Z"), [D], "f64"))


def test_large_grids_are_dispatched_in_two_dimensions():
    """More than 65535 blocks on an axis: a 2-D dispatch of the linear block number."""
    n = 256 * 70000
    X = te.placeholder((n,), "float32", "X")
    f = _kernel(te.compute((n,), lambda i: X[i] + te.const(1.0, "float32"), name="Y"), [X])
    src = generator("wgsl").kernel(f)
    grid = f.attrs["launch"]["grid"]
    assert grid[0] <= 65535 and grid[1] > 1 and grid[0] * grid[1] >= 70000
    assert "ember_blk >= 70000i" in src


def test_many_operands_share_few_bindings(tmp_path):
    """A kernel of many constants binds one window of the constants buffer, not one binding each
    (WebGPU's default is 8 storage buffers per shader stage)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), f"c{k}") for k in range(12)]
    nodes, prev = [], "x"
    for k in range(12):
        nodes.append(helper.make_node("Add", [prev, f"c{k}"], [f"s{k}"], name=f"add{k}"))
        prev = f"s{k}"
    g = helper.make_graph(nodes, "many", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 5])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [4, 5])], inits)
    path = tmp_path / "many.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    m = ember.compile(path, target="webgpu")
    assert m.metadata["kernels"] == 1
    (lau,) = m.metadata["gpu"]["launches"]
    assert sorted(a[0] for a in lau["args"]) == ["const", "input", "output"]
    modules = split_modules(m.source)
    assert list(modules) == [lau["kernel"]] and modules[lau["kernel"]].count("@binding(") == 3
    if not WHY:
        x = rng.standard_normal((4, 5)).astype(np.float32)
        np.testing.assert_allclose(m.run({"x": x})[prev], _reference(path, {"x": x})[0], rtol=1e-6, atol=1e-6)


# ---- ops against the numpy reference --------------------------------------------------------------

#: the ops of test_ops whose cases run on WebGPU too (every op the shared models use, and more)
OPS = ["add", "sub", "mul", "div", "maximum", "minimum", "pow", "fmod", "exp", "log", "sqrt", "reciprocal", "tanh",
       "sigmoid", "erf", "relu", "neg", "abs", "sign", "floor", "ceil", "round", "sin", "cos", "tan", "asin", "acos",
       "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "isnan", "where", "clip", "cast", "softmax", "layer_norm",
       "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin", "matmul", "conv2d",
       "max_pool2d", "avg_pool2d", "attention", "transpose", "reshape", "concat", "slice", "gather", "pad",
       "broadcast_to", "equal", "not_equal", "less", "less_equal", "logical_and", "logical_or", "logical_xor",
       "logical_not", "quantize", "dequantize", "requantize", "matmul_int", "conv2d_int", "arange", "check_index"]

#: cases left out on WebGPU, by a word of their label: WGSL has no float64, float16 or 64-bit
#: integers (uint64 is refused; the narrow float and 2- and 4-bit types are computed through float16
#: or bytes the backend does not have), and the WGSL spec lets a driver assume that no NaN or
#: infinity arises (lavapipe's comparisons miss NaN: argmax over NaN, NaN quantized to the zero
#: point; 0 / 0 is 0 there: the mean over an empty axis; pow and fmod of NaN and infinity pairs)
LEFT_OUT = ("float64", "float16", "float8", "float4", "int4", "int2", "uint64", "NaN", "edges", "empty axis",
            "special pairs")


class WebGPUBatch(Batch):
    def case(self, label, fn, rtol=None, atol=None):
        if not any(w in label for w in LEFT_OUT):
            super().case(label, fn, rtol, atol)


@needs_webgpu
@pytest.mark.parametrize("op", OPS)
def test_op(op):
    """test_ops' cases of ``op`` on the adapter against the numpy reference, as for the CPU."""
    if op not in CASES:
        pytest.skip(f"no op {op} in this Ember")
    batch = WebGPUBatch(f"webgpu_{op}", seed=0, target="webgpu")
    CASES[op](batch)
    if not batch.cases:
        pytest.skip(f"every case of {op} needs a dtype or NaN that WebGPU does not have")
    batch.check()


# ---- whole models ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    path = tmp_path_factory.mktemp("webgpu") / "small_cnn.onnx"
    onnx.save(small_cnn(), path)
    return path


@needs_webgpu
def test_small_cnn(cnn, tmp_path):
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    refs = _reference(cnn, {"x": x})
    m = ember.compile(cnn, target="webgpu")
    assert m.metadata["target"] == "webgpu" and m.metadata["gpu"]["language"] == "wgsl"
    assert "@compute @workgroup_size(" in m.source and "workgroupBarrier();" in m.source
    for _ in range(2):
        outs = m.run({"x": x})
        for got, ref in zip(outs.values(), refs):
            assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
    again = ember.load(m.save(tmp_path / "cnn.ember"))
    np.testing.assert_array_equal(again(x)[0], outs["y"])


def _gather_model(tmp_path, ids_type=TensorProto.INT64):
    table = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "table")
    node = helper.make_node("Gather", ["table", "ids"], ["y"], name="lookup", axis=0)
    g = helper.make_graph([node], "gather", [helper.make_tensor_value_info("ids", ids_type, [5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 3])], [table])
    path = tmp_path / "gather.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@needs_webgpu
def test_index_and_int64_range_are_reported(tmp_path):
    """A failed index check and an int64 input outside 32 bits each raise after the run; the next
    good run is right again."""
    m = ember.compile(_gather_model(tmp_path), target="webgpu")
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    ids = np.array([0, 3, -1, 2, -4], np.int64)
    np.testing.assert_array_equal(m.run({"ids": ids})["y"], table[ids])
    with pytest.raises(IndexOutOfRangeError):
        m.run({"ids": np.array([0, 4, 1, 1, 1], np.int64)})
    with pytest.raises(EmberRuntimeError, match="32-bit"):
        m.run({"ids": np.array([0, 1 << 33, 1, 1, 1], np.int64)})
    np.testing.assert_array_equal(m.run({"ids": ids})["y"], table[ids])


@needs_webgpu
def test_narrow_and_wide_integer_outputs(tmp_path):
    """uint8 and bool outputs (packed four to a word, stored with atomics) and int64 ones (two words)."""
    nodes = [helper.make_node("Greater", ["x", "zero"], ["pos"], name="gt"),
             helper.make_node("Cast", ["x"], ["u8"], name="to_u8", to=TensorProto.UINT8),
             helper.make_node("Cast", ["x"], ["i64"], name="to_i64", to=TensorProto.INT64)]
    g = helper.make_graph(nodes, "ints", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [7, 5])],
                          [helper.make_tensor_value_info("pos", TensorProto.BOOL, [7, 5]),
                           helper.make_tensor_value_info("u8", TensorProto.UINT8, [7, 5]),
                           helper.make_tensor_value_info("i64", TensorProto.INT64, [7, 5])],
                          [numpy_helper.from_array(np.array(0, np.float32), "zero")])
    path = tmp_path / "ints.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = np.random.default_rng(4).uniform(-100, 250, (7, 5)).astype(np.float32)
    got = ember.compile(path, target="webgpu").run({"x": x})
    np.testing.assert_array_equal(got["pos"], x > 0)
    np.testing.assert_array_equal(got["i64"], x.astype(np.int64))
    ok = (x >= 0) & (x < 256)      # float to uint8 outside the range is undefined in ONNX
    np.testing.assert_array_equal(got["u8"][ok], x[ok].astype(np.uint8))


#: the shared models: ResNet-50 and BERT-base take 4 and 10 minutes on lavapipe with two cores
#: (their first run, which compiles the shaders), so they run with EMBER_TEST_LARGE=1
_LARGE = pytest.mark.skipif(not os.environ.get("EMBER_TEST_LARGE"),
                            reason="4 to 10 minutes on a software adapter: EMBER_TEST_LARGE=1 runs it")
SHARED = ["mobilenet_v2", pytest.param("resnet50", marks=_LARGE), pytest.param("bert_base", marks=_LARGE)]


@needs_webgpu
@pytest.mark.slow
@pytest.mark.parametrize("name", SHARED)
def test_shared_models(name):
    """The shared test models on the WebGPU adapter against onnxruntime's outputs (relative to
    the largest output value, within 1e-3)."""
    path, inputs, want = _model(name)
    m = ember.compile(path, target="webgpu", shapes={k: v.shape for k, v in inputs.items()})
    got = m.run(inputs)
    for key in want:
        assert np.abs(got[key] - want[key]).max() <= 1e-3 * np.abs(want[key]).max(), key


# ---- the browser package -------------------------------------------------------------------------

_PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
import { loadModel } from "./ember_webgpu.js";
try {
  const d = await (await fetch("data.json")).json();
  const model = await loadModel(new URL("./", location.href));
  const r = await model.run({ x: new Float32Array(d.x) });
  let err = 0;
  r.y.forEach((v, i) => { err = Math.max(err, Math.abs(v - d.y[i])); });
  console.log("EMBER-RESULT " + err + " " + r.y.length);
} catch (e) { console.log("EMBER-ERROR " + e); }
</script>"""


def test_browser_package(cnn, tmp_path):
    """The WGSL with its JS loader runs in headless Chromium's WebGPU and gives the outputs of the
    Python runner (skipped without Chromium, or without wgpu for the reference outputs)."""
    import functools
    import http.server
    import json
    import shutil
    import subprocess
    import threading
    import time

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium to run the browser package in")
    if WHY:
        pytest.skip(WHY)
    m = ember.compile(cnn, target="webgpu")
    site = m.export_web(tmp_path / "site")
    assert sorted(p.name for p in site.iterdir()) == sorted(webgpu.WEB_FILES)
    x = np.random.default_rng(6).standard_normal((2, 3, 16, 16)).astype(np.float32)
    y = m(x)[0]
    (site / "data.json").write_text(json.dumps({"x": x.ravel().tolist(), "y": y.ravel().tolist()}))
    (site / "index.html").write_text(_PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proc = subprocess.Popen([browser, "--headless=new", "--no-sandbox", "--enable-unsafe-webgpu",
                             "--enable-features=Vulkan", "--ignore-gpu-blocklist", "--enable-logging=stderr", "--v=0",
                             f"--user-data-dir={tmp_path / 'profile'}", "--remote-debugging-port=0",
                             f"http://127.0.0.1:{server.server_address[1]}/index.html"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found, deadline = "", time.time() + 120
    try:
        for line in proc.stderr:
            if "EMBER-RESULT" in line or "EMBER-ERROR" in line or "Uncaught" in line:
                found = line
                break
            if time.time() > deadline:
                break
    finally:
        proc.kill()
        proc.wait()
        server.shutdown()
    if not found:
        pytest.skip("Chromium printed no result (no WebGPU adapter in this browser?)")
    assert "EMBER-RESULT" in found, found
    err, n = found.split("EMBER-RESULT ")[1].split()[:2]
    assert int(n.rstrip('",')) == y.size and float(err) <= 1e-5 * np.abs(y).max()


def test_cli_exports_the_browser_package(cnn, tmp_path):
    """``ember export --format web --target webgpu`` (no adapter needed): the package's files, the WGSL one shader
    module per launch."""
    import json

    from ember.cli import main

    assert main(["export", str(cnn), "--format", "web", "--target", "webgpu", "-o", str(tmp_path / "web")]) == 0
    files = {p.name: p for p in (tmp_path / "web").iterdir()}
    assert sorted(files) == sorted(webgpu.WEB_FILES)
    meta = json.loads(files["model.json"].read_text())
    modules = split_modules(files["model.wgsl"].read_text())
    assert meta["target"] == "webgpu" and [lau["kernel"] for lau in meta["gpu"]["launches"]] == list(modules)
    assert files["constants.bin"].stat().st_size == meta["constants_bytes"]
    assert "export async function loadModel" in files["ember_webgpu.js"].read_text()


@needs_webgpu
def test_integer_powers_with_negative_exponents(tmp_path):
    """An integer power to a negative exponent is the integer part of the real one (1 for a base
    of 1, +-1 for -1, else 0), the intrinsic's meaning (``tir.intrinsics``), as on CPUs."""
    from ember.tir import intrinsics

    nodes = [helper.make_node("Pow", ["a", "b"], ["y"], name="pow")]
    g = helper.make_graph(nodes, "ipow", [helper.make_tensor_value_info("a", TensorProto.INT32, [12]),
                                          helper.make_tensor_value_info("b", TensorProto.INT32, [12])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, [12])])
    path = tmp_path / "ipow.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    a = np.array([-1, -1, 1, 1, 2, -2, 0, 3, -3, 5, -1, 7], np.int32)
    b = np.array([-3, -2, -5, 4, -1, -2, 3, 2, 3, 0, 7, -1], np.int32)
    want = intrinsics.get("pow").numpy(a, b)
    np.testing.assert_array_equal(want[:4], [-1, 1, 1, 1])
    for target in ("webgpu", "cpu"):
        np.testing.assert_array_equal(ember.compile(path, target=target).run({"a": a, "b": b})["y"], want,
                                      err_msg=target)
