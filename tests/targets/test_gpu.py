"""GPU targets: the gpu schedules checked by the interpreter, the generated CUDA compiled to PTX
by NVRTC, and whole models run on an OpenCL device (in CI: Debian's CPU driver, pocl) against
onnxruntime.  Tests that need pyopencl with a device, or NVRTC, skip with the reason when those
are not installed (``pip install ember[opencl]`` / ``ember[cuda]``, ``apt install pocl-opencl-icd``)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
from ember import te
from ember.errors import ArtifactError, CodegenError, TargetError
from ember.codegen.gpu import GPUGenerator
from ember.schedules import default
from ember.target import resolve
from ember.te.lower import lower
from ember.te.schedule import create_schedule
from ember.tir import intrinsics
from ember.tir.gpu import check_kernel, optimize
from ember.runtime import opencl
from ember.toolchain import nvrtc

from tir.interp import run_kernel

#: TensorFlow's LLVM and pocl's cannot share a process (runtime.opencl.llvm_conflict): where the
#: whole suite has imported tensorflow, the OpenCL tests run in a fresh process instead
#: (test_opencl_tests_in_a_fresh_process)
LLVM_CONFLICT = opencl.llvm_conflict()
_skip_opencl = pytest.mark.skipif(not opencl.available(), reason=(
    "run in a fresh process by test_opencl_tests_in_a_fresh_process" if LLVM_CONFLICT else
    "pyopencl with an OpenCL device is not installed (pip install pyopencl; apt install pocl-opencl-icd)"))


def needs_opencl(test):
    """Marks a test that runs on an OpenCL device (marker ``opencl``)."""
    return pytest.mark.opencl(_skip_opencl(test))


def run_marked_in_child(request, here, mark: str, skips: bool = False) -> None:
    """Runs the tests of file ``here`` marked ``mark`` in a child pytest (one that does not import
    tensorflow) and asserts they pass (and that none is skipped, unless ``skips``)."""
    import os
    import subprocess
    import sys

    marks = request.config.getoption("markexpr") or ""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(here),
           "-m", f"{mark} and ({marks})" if marks else mark]
    r = subprocess.run(cmd, cwd=here.parents[2], capture_output=True, text=True, timeout=3600,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    tail = (r.stdout + r.stderr)[-3000:]
    assert r.returncode == 0, tail
    assert " passed" in r.stdout and (skips or "skipped" not in r.stdout), tail


@pytest.mark.skipif(not LLVM_CONFLICT, reason="the OpenCL tests run in this process")
def test_opencl_tests_in_a_fresh_process(request):
    """The OpenCL tests of this file, run by a child pytest that does not import tensorflow."""
    from pathlib import Path

    run_marked_in_child(request, Path(__file__), "opencl")


needs_nvrtc = pytest.mark.skipif(not nvrtc.available(), reason="NVRTC is not installed "
                                 "(pip install nvidia-cuda-nvrtc-cu12)")


def test_targets():
    cuda = resolve("cuda")
    assert (cuda.kind, cuda.arch, cuda.family, cuda.lanes, cuda.spec) == ("cuda", "sm_80", "gpu", 1, "cuda -arch=sm_80")
    assert resolve("cuda -arch=sm_90").arch == "sm_90"
    assert resolve("opencl").family == "gpu"
    assert resolve("cpu").family == "cpu"
    with pytest.raises(TargetError, match="-arch=sm_XX"):
        resolve("cuda -arch=80")
    with pytest.raises(TargetError, match="opencl takes -dtype=float16 or -dtype=float32"):
        resolve("opencl -arch=sm_80")


# ---- the gpu schedules, run by the checking interpreter ---------------------------------------

RNG = np.random.default_rng(3)


def _matmul_relu():
    A, B = te.placeholder((13, 9), "float32", "A"), te.placeholder((9, 30), "float32", "B")
    k = te.reduce_axis(9, "k")
    C = te.compute((13, 30), lambda i, j: te.sum(A[i, k] * B[k, j], [k]), name="C")
    D = te.compute((13, 30), lambda i, j: te.maximum(C[i, j], te.const(0.0, "float32")), name="D")
    return [A, B], D, lambda a, b: np.maximum(a @ b, 0)


def _softmax():
    X = te.placeholder((5, 11), "float32", "X")
    k1, k2 = te.reduce_axis(11, "k1"), te.reduce_axis(11, "k2")
    M = te.compute((5,), lambda i: te.reduce("max", X[i, k1], [k1]), name="M")
    E = te.compute((5, 11), lambda i, j: te.call("exp", X[i, j] - M[i]), name="E")
    S = te.compute((5,), lambda i: te.sum(E[i, k2], [k2]), name="S")
    Y = te.compute((5, 11), lambda i, j: E[i, j] / S[i], name="Y")

    def ref(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return [X], Y, ref


def _elementwise_uneven():
    X = te.placeholder((3, 7, 31), "float32", "X")
    Y = te.compute((3, 7, 31), lambda a, b, c: X[a, b, c] * te.const(2.0, "float32") + te.const(1.0, "float32"),
                   name="Y")
    return [X], Y, lambda x: x * 2 + 1


@pytest.mark.parametrize("program", [_matmul_relu, _softmax, _elementwise_uneven])
@pytest.mark.parametrize("threads", [32, 256])
def test_default_gpu_schedule(program, threads):
    inputs, out, ref = program()
    target = resolve("opencl").with_knobs({"gpu.threads": threads})
    s = create_schedule(out)
    default(target)(s, target)
    f = optimize(lower(s, "k", inputs + [s.output]))
    launch = check_kernel(f)
    assert launch.block[0] <= threads and launch.grid[0] * launch.block[0] >= int(np.prod(out.shape))
    arrays = [RNG.standard_normal(t.shape).astype(np.float32) for t in inputs]
    got = run_kernel(f, arrays + [np.zeros(out.shape, np.float32)])[-1]
    np.testing.assert_allclose(got.reshape(out.shape), ref(*arrays), rtol=1e-5, atol=1e-6)
    for lang in ("cuda", "opencl"):
        src = GPUGenerator(lang).kernel(f)
        assert ("blockIdx.x" if lang == "cuda" else "get_group_id(0)") in src


# ---- whole models -------------------------------------------------------------------------------

def small_cnn() -> onnx.ModelProto:
    """conv + relu, max pool, depthwise conv + clip, global average pool, gemm, softmax."""
    rng = np.random.default_rng(0)

    def init(name, arr):
        return numpy_helper.from_array(np.asarray(arr, np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="dwconv", pads=[1, 1, 1, 1], group=8),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["r2"], name="relu6"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=1),
    ]
    inits = [init("w1", rng.standard_normal((8, 3, 3, 3)) * .3), init("b1", rng.standard_normal(8) * .1),
             init("w2", rng.standard_normal((8, 1, 3, 3)) * .3), init("b2", rng.standard_normal(8) * .1),
             init("lo", 0.0), init("hi", 6.0),
             init("wf", rng.standard_normal((10, 8)) * .3), init("bf", rng.standard_normal(10) * .1)]
    g = helper.make_graph(nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10]),
                           helper.make_tensor_value_info("r1", TensorProto.FLOAT, [2, 8, 16, 16])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpu") / "small_cnn.onnx"
    onnx.save(small_cnn(), path)
    return path


def _reference(path, feeds):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path)).run(None, feeds)


@needs_opencl
def test_small_cnn_on_opencl(cnn, tmp_path):
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    refs = _reference(cnn, {"x": x})
    m = ember.compile(cnn, target="opencl")
    assert m.metadata["target"] == "opencl" and m.metadata["kernels"] >= 5
    assert "__kernel" in m.source and "conv1" in m.source       # kernel names from the model
    for _ in range(2):                                           # a second run reuses the device buffers
        outs = m.run({"x": x})
        for got, ref in zip(outs.values(), refs):
            assert np.abs(got - ref).max() <= 1e-3 * np.abs(ref).max()
    # the artifact saves, loads by its content and runs again; a damaged one is refused
    saved = m.save(tmp_path / "cnn.ember")
    again = ember.load(saved)
    np.testing.assert_array_equal(again(x)[0], outs["y"])
    with pytest.raises(ember.errors.InputError):
        again.run({"x": x[:1]})
    data = bytearray(saved.read_bytes())
    data[-10] ^= 1
    (tmp_path / "bad.ember").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="damaged"):
        ember.load(tmp_path / "bad.ember")


@needs_nvrtc
def test_small_cnn_cuda_to_ptx(cnn, tmp_path):
    m = ember.compile(cnn, target="cuda -arch=sm_86")
    assert 'extern "C" __global__' in m.source
    assert ".target sm_86" in m.ptx
    assert m.ptx.count(".entry") == m.metadata["kernels"]
    with pytest.raises(ember.errors.EmberRuntimeError, match="not supported yet"):
        m.run({"x": np.zeros((2, 3, 16, 16), np.float32)})


@needs_nvrtc
def test_cli_compiles_for_cuda(cnn, tmp_path):
    from ember.cli import main

    out = tmp_path / "cnn.ember"
    assert main(["compile", str(cnn), "--target", "cuda", "-o", str(out)]) == 0
    loaded = ember.load(out)
    assert loaded.metadata["target"] == "cuda -arch=sm_80" and ".entry" in loaded.ptx


def test_nvrtc_reports_errors():
    if not nvrtc.available():
        pytest.skip("NVRTC is not installed")
    with pytest.raises(ember.errors.ToolchainError, match="compilation"):
        nvrtc.compile_ptx('extern "C" __global__ void k() { undeclared = 1; }')


def test_gpu_needs_static_shapes(tmp_path):
    m = small_cnn()
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    path = tmp_path / "dyn.onnx"
    onnx.save(m, path)
    with pytest.raises(CodegenError, match="static shapes"):
        ember.compile(path, target="opencl")


def _row_softmax():
    return _softmax()


def _layer_norm():
    X = te.placeholder((4, 50), "float32", "X")
    k1, k2 = te.reduce_axis(50, "k1"), te.reduce_axis(50, "k2")
    n = te.const(50.0, "float32")
    S = te.compute((4, 1), lambda i, _: te.sum(X[i, k1], [k1]), name="S")
    V = te.compute((4, 1), lambda i, _: te.sum((X[i, k2] - S[i, 0] / n) * (X[i, k2] - S[i, 0] / n), [k2]), name="V")
    Y = te.compute((4, 50), lambda i, j: (X[i, j] - S[i, 0] / n) / te.call("sqrt", V[i, 0] / n
                                                                           + te.const(1e-5, "float32")), name="Y")

    def ref(x):
        m = x.mean(axis=1, keepdims=True)
        return (x - m) / np.sqrt(((x - m) ** 2).mean(axis=1, keepdims=True) + 1e-5)
    return [X], Y, ref


def _row_sum():
    X = te.placeholder((6, 3, 77), "float32", "X")
    a, b = te.reduce_axis(3, "a"), te.reduce_axis(77, "b")
    Y = te.compute((6,), lambda i: te.sum(X[i, a, b], [a, b]), name="Y")
    return [X], Y, lambda x: x.sum(axis=(1, 2))


@pytest.mark.parametrize("program", [_row_softmax, _layer_norm, _row_sum])
def test_row_schedule_shares_the_block(program):
    """The ``rows`` schedule: a block per row, its reductions combined by a tree in shared memory."""
    from ember.schedules.gpu import rows

    inputs, out, ref = program()
    target = resolve("cuda")
    s = create_schedule(out)
    rows({}, s, out, target)
    f = optimize(lower(s, "k", inputs + [s.output]))
    launch = check_kernel(f)
    assert launch.shared and launch.block[0] >= 32
    assert launch.grid[0] == out.shape[0]
    arrays = [RNG.standard_normal(t.shape).astype(np.float32) for t in inputs]
    got = run_kernel(f, arrays + [np.zeros(out.shape, np.float32)])[-1]
    np.testing.assert_allclose(got.reshape(out.shape), ref(*arrays), rtol=1e-4, atol=1e-5)
    assert "__syncthreads();" in GPUGenerator("cuda").kernel(f)


@pytest.mark.parametrize("m,k,n", [(16, 32, 32), (20, 21, 9), (5, 16, 20)])
def test_matmul_stages_tiles_in_shared_memory(m, k, n):
    """The matmul schedule: 16 x 16 output tiles, operands staged through shared memory
    (``tir.gpu_threads.stage_tiles``) where the tile has 8 rows at least; uneven sizes load zeros."""
    from ember.schedules.gpu import matmul

    A, B = te.placeholder((2, m, k), "float32", "A"), te.placeholder((k, n), "float32", "B")
    r = te.reduce_axis(k, "k")
    C = te.compute((2, m, n), lambda b, i, j: te.sum(A[b, i, r] * B[r, j], [r]), name="C")
    D = te.compute((2, m, n), lambda b, i, j: C[b, i, j] + te.const(1.0, "float32"), name="D")
    s = create_schedule(D)
    matmul({}, s, C, resolve("cuda"))
    f = optimize(lower(s, "mm", [A, B, s.output]))
    launch = check_kernel(f)
    assert bool(launch.shared) == (min(m, 16) >= 8)
    a = RNG.standard_normal((2, m, k)).astype(np.float32)
    b = RNG.standard_normal((k, n)).astype(np.float32)
    got = run_kernel(f, [a, b, np.zeros((2, m, n), np.float32)])[-1]
    np.testing.assert_allclose(got.reshape(2, m, n), a @ b + 1, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pads,stride,size", [((1, 1, 1, 1), 1, 6), ((0, 0, 0, 0), 2, 9)])
def test_conv2d_stages_tiles_in_shared_memory(pads, stride, size):
    from ember.ops import get_op
    from ember.schedules.gpu import conv2d

    X, W = te.placeholder((1, 3, size, size), "float32", "X"), te.placeholder((17, 3, 3, 3), "float32", "W")
    attrs = {"strides": (stride, stride), "pads": pads, "dilations": (1, 1), "groups": 1}
    C = get_op("conv2d").compute(attrs, X, W)
    R = te.compute(C.shape, lambda *i: te.maximum(C[i], te.const(0.0, "float32")), name="R")
    s = create_schedule(R)
    conv2d(attrs, s, C, resolve("cuda"))
    f = optimize(lower(s, "conv", [X, W, s.output]))
    assert check_kernel(f).shared
    x = RNG.standard_normal((1, 3, size, size)).astype(np.float32)
    w = RNG.standard_normal((17, 3, 3, 3)).astype(np.float32)
    got = run_kernel(f, [x, w, np.zeros(R.shape, np.float32)])[-1].reshape(R.shape)
    ref = np.maximum(get_op("conv2d").reference(attrs, x, w), 0)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def _image_kernel(op, attrs, x_shape, w_shape=None):
    """The kernel of ``op`` (conv2d, max_pool2d, avg_pool2d) scheduled by its gpu schedule."""
    from ember.ops import get_op
    from ember.schedules import lookup

    target = resolve("cuda")
    a = dict(get_op(op).attrs, **attrs)
    ins = [te.placeholder(x_shape, "float32", "X")] + ([te.placeholder(w_shape, "float32", "W")] if w_shape else [])
    out = get_op(op).compute(a, *ins)
    s = create_schedule(out)
    lookup(target, op)(a, s, out, target)
    f = optimize(lower(s, "k", ins + [s.output]))
    arrays = [RNG.standard_normal(t.shape).astype(np.float32) for t in ins]
    return f, a, arrays, out.shape


@pytest.mark.parametrize("op,attrs,x_shape,w_shape", [
    ("conv2d", {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "groups": 6}, (2, 6, 7, 7), (6, 1, 3, 3)),
    ("conv2d", {"strides": (2, 2), "pads": (1, 1, 1, 1), "dilations": (1, 1), "groups": 3}, (1, 6, 19, 21), (6, 2, 3, 3)),
    ("max_pool2d", {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)}, (1, 4, 18, 17), None),
    ("avg_pool2d", {"kernel": (2, 3), "strides": (1, 2), "pads": (0, 1, 1, 0)}, (2, 3, 9, 20), None),
    ("avg_pool2d", {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1), "count_include_pad": True},
     (1, 2, 8, 8), None),
])
def test_image_tile_schedule(op, attrs, x_shape, w_shape):
    """Grouped convolutions and pooling: a block per tile of an output plane, a thread per position
    (tile sides rounded up to a power of two, the rest bounds-checked), no shared memory."""
    from ember.ops import get_op

    f, a, arrays, shape = _image_kernel(op, attrs, x_shape, w_shape)
    launch = check_kernel(f)
    assert not launch.shared and launch.block[1] > 1            # 2-D blocks (threadIdx.y rows)
    assert launch.block[0] <= 16 and launch.block[1] <= 16
    got = run_kernel(f, arrays + [np.zeros(shape, np.float32)])[-1].reshape(shape)
    np.testing.assert_allclose(got, get_op(op).reference(a, *arrays), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op,shape", [("softmax", (2, 3, 128)), ("layer_norm", (3, 768)), ("softmax", (5, 200))])
def test_row_schedule_with_partial_results(op, shape):
    """Rows long enough for ``ops.reduce.row_reduce``'s P partials per row still get a block per row
    (BERT-base's layer norms and softmaxes fell back to the default schedule before), the
    partials computed by all the block's threads (``tir.gpu_threads``' lanes)."""
    from ember.ops import get_op
    from ember.schedules.gpu import rows

    a = dict(get_op(op).attrs)
    ins = [te.placeholder(shape, "float32", "X")]
    if op == "layer_norm":
        ins += [te.placeholder(shape[-1:], "float32", "S"), te.placeholder(shape[-1:], "float32", "B")]
    out = get_op(op).compute(a, *ins)
    s = create_schedule(out)
    rows(a, s, out, resolve("opencl"))
    f = optimize(lower(s, "k", ins + [s.output]))
    launch = check_kernel(f)
    assert launch.shared and launch.grid[0] == int(np.prod(shape[:-1]))
    arrays = [RNG.standard_normal(t.shape).astype(np.float32) for t in ins]
    got = run_kernel(f, arrays + [np.zeros(shape, np.float32)])[-1].reshape(shape)
    np.testing.assert_allclose(got, get_op(op).reference(a, *arrays), rtol=1e-4, atol=1e-5)
    # the P partials are shared too: thread t takes lane t % P (not the whole row per thread)
    from ember.ops.reduce import PARTIAL_LANES
    assert f"_partial_acc[(tr % {PARTIAL_LANES})] = " in GPUGenerator("opencl").kernel(f)


def pools_model() -> onnx.ModelProto:
    """Max and average pooling (padded, strided, with and without the pads counted), a depthwise
    convolution with two channels per group and a 2x3 global average pool."""
    rng = np.random.default_rng(4)
    w = numpy_helper.from_array((rng.standard_normal((6, 2, 3, 3)) * .3).astype(np.float32), "w")
    nodes = [
        helper.make_node("MaxPool", ["x"], ["m"], name="maxpool", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["m"], ["a"], name="avgpool", kernel_shape=[3, 2], strides=[1, 1],
                         pads=[1, 0, 1, 1]),
        helper.make_node("AveragePool", ["x"], ["b"], name="avgpool_pads", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1], count_include_pad=1),
        helper.make_node("Conv", ["b", "w"], ["c"], name="groupconv", pads=[1, 1, 1, 1], group=3),
        helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
    ]
    g = helper.make_graph(nodes, "pools", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6, 13, 11])],
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("c", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("g", TensorProto.FLOAT, None)], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@needs_opencl
def test_pools_and_grouped_conv_on_opencl(tmp_path):
    path = tmp_path / "pools.onnx"
    onnx.save(pools_model(), path)
    x = np.random.default_rng(5).standard_normal((2, 6, 13, 11)).astype(np.float32)
    refs = _reference(path, {"x": x})
    m = ember.compile(path, target="opencl")
    # the image-tile schedule: a 7 x 6 output plane is one block of 6 x 7 threads
    assert m.source.count("reqd_work_group_size(6, 7, 1)") == 4
    for got, ref in zip(m.run({"x": x}).values(), refs):
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


@needs_opencl
def test_knobs_change_the_schedule_not_the_result(cnn):
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    tiled = ember.compile(cnn, target="opencl")
    plain = ember.compile(cnn, target="opencl", knobs={"gpu.tiles": 0, "gpu.threads": 64})
    assert "_acc_a[" in tiled.source and "_acc_a[" not in plain.source     # the conv's shared tiles
    assert "reqd_work_group_size(64, 1, 1)" in plain.source
    np.testing.assert_allclose(plain(x)[0], tiled(x)[0], rtol=1e-6, atol=1e-7)
    with pytest.raises(TargetError, match="gpu.threads"):
        ember.compile(cnn, target="opencl", knobs={"gpu.threads": 100})
    with pytest.raises(TargetError, match="unknown GPU schedule knob"):
        ember.compile(cnn, target="opencl", knobs={"matmul.rows": 4})


# ---- the shared test models ----------------------------------------------------------------------

def _model(name):
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    models = Path(os.environ.get("EMBER_MODELS_DIR", root / "build" / "models"))
    path = models / f"{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} not built (make models)")
    inputs = dict(np.load(models / f"{name}.inputs.npz"))
    return path, inputs, dict(np.load(models / f"{name}.outputs.npz"))


@needs_nvrtc
@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "bert_base"])
def test_shared_models_compile_to_ptx(name):
    """The generated CUDA of ResNet-50 and BERT-base compiles to PTX (about 10 s and 35 s here)."""
    path, inputs, _ = _model(name)
    m = ember.compile(path, target="cuda", shapes={k: v.shape for k, v in inputs.items()})
    assert m.ptx.count(".entry") == m.metadata["kernels"] > 50


@needs_opencl
@pytest.mark.slow
def test_mobilenet_v2_on_opencl():
    """MobileNetV2 on the OpenCL device against onnxruntime's outputs (ResNet-50 and BERT-base
    match too, but take 15 to 70 s a run on pocl with two cores: not in CI)."""
    path, inputs, want = _model("mobilenet_v2")
    m = ember.compile(path, target="opencl", shapes={k: v.shape for k, v in inputs.items()},
                      knobs={"gpu.tiles": 0})
    got = m.run(inputs)
    for key in want:
        assert np.abs(got[key] - want[key]).max() <= 1e-3 * np.abs(want[key]).max()


@needs_opencl
def test_index_out_of_range_is_reported(tmp_path):
    """A run-time index check that fails in a kernel sets the flag the runtime reads after the run."""
    table = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "table")
    node = helper.make_node("Gather", ["table", "ids"], ["y"], name="lookup", axis=0)
    g = helper.make_graph([node], "gather", [helper.make_tensor_value_info("ids", TensorProto.INT64, [5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 3])], [table])
    path = tmp_path / "gather.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    m = ember.compile(path, target="opencl")
    ids = np.array([0, 3, -1, 2, -4], np.int64)
    np.testing.assert_array_equal(m.run({"ids": ids})["y"], np.arange(12, dtype=np.float32).reshape(4, 3)[ids])
    with pytest.raises(ember.errors.IndexOutOfRangeError):
        m.run({"ids": np.array([0, 4, 1, 1, 1], np.int64)})
    np.testing.assert_array_equal(m.run({"ids": ids})["y"][1], [9, 10, 11])     # the flag is reset


#: the one-argument float intrinsics (``no_contract`` is the value itself)
FLOAT_FNS = [i.name for i in intrinsics.INTRINSICS.values()
             if i.arity == 1 and i.args in ("float", "number") and i.result == "same" and i.name != "no_contract"]


def _intrinsics(wide_dtype="float64"):
    """One kernel using every intrinsic, integer division and remainder by a variable, integer
    powers (negative exponents too), max and min, casts, float64 (``wide_dtype``: Metal has no float64) and a run-time
    index check."""
    X = te.placeholder((8,), "float32", "X")
    N = te.placeholder((8,), "int64", "N")
    D = te.placeholder((8,), wide_dtype, "D")

    def f(i):
        x, n, d = X[i], N[i], D[i]
        acc = te.const(0.0, "float32")
        for fn in FLOAT_FNS:
            arg = te.call("abs", x) + te.const(1.5, "float32") if fn in ("log", "sqrt", "acosh") else \
                x * te.const(0.1, "float32") if fn in ("asin", "acos", "atanh") else x
            acc = acc + te.call(fn, arg)
        acc = acc + te.call("pow", te.call("abs", x), te.const(0.5, "float32")) + te.call("fmod", x, te.const(0.7, "float32"))
        acc = acc + te.cast("float32", te.call("isnan", x))
        ints = n // (n - te.const(3, "int64")) + n % (n + te.const(2, "int64")) + te.call("pow", n, te.const(2, "int64"))
        # negative exponents, of -1 and 1 too: the integer part of the real power, as on CPUs
        ints = ints + te.call("pow", n - te.const(2, "int64"), n - te.const(4, "int64"))
        ints = te.maximum(ints, te.const(-5, "int64")) + te.minimum(n, te.const(4, "int64"))
        k = te.checked_index(n, 8, "the test's index")
        wide = te.cast("float32", te.call("exp", d) + te.cast(wide_dtype, X[k]))
        return acc + te.cast("float32", ints) + wide + te.cast("float32", te.gt(x, te.const(0.0, "float32")))
    return [X, N, D], te.compute((8,), f, name="intrinsics")


@pytest.mark.parametrize("lang", ["cuda", pytest.param("opencl", marks=pytest.mark.opencl)])
def test_every_intrinsic_compiles(lang):
    """The generated source of every intrinsic builds with the language's compiler: NVRTC for
    CUDA, the OpenCL driver for OpenCL (and runs there against the interpreter)."""
    inputs, out = _intrinsics()
    target = resolve(lang)
    s = create_schedule(out)
    default(target)(s, target)
    f = optimize(lower(s, "intrinsics", inputs + [s.output]))
    gen = GPUGenerator(lang)
    gen.kernel(f)
    if lang == "cuda":
        if not nvrtc.available():
            pytest.skip("NVRTC is not installed")
        assert ".entry intrinsics" in nvrtc.compile_ptx(gen.source())
        return
    if not opencl.available():
        pytest.skip("run in a fresh process by test_opencl_tests_in_a_fresh_process" if LLVM_CONFLICT
                    else "pyopencl with an OpenCL device is not installed")
    import pyopencl as cl

    x = np.linspace(-2, 2, 8).astype(np.float32)
    n = np.array([0, 1, 2, 3, 5, -1, 7, -8], np.int64)
    d = np.linspace(-1, 1, 8)
    want = run_kernel(f, [x, n, d, np.zeros(8, np.float32)])[-1]
    ctx = cl.Context([opencl._device()])
    q = cl.CommandQueue(ctx)
    prog = cl.Program(ctx, gen.source()).build()
    mf = cl.mem_flags
    bufs = [cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=a) for a in (x, n, d)]
    out_buf = cl.Buffer(ctx, mf.READ_WRITE, 32)
    flag = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=np.zeros(1, np.int32))
    launch = f.attrs["launch"]
    prog.intrinsics(q, (launch["grid"][0] * launch["block"][0],), (launch["block"][0],), *bufs, out_buf, flag)
    got = np.empty(8, np.float32)
    cl.enqueue_copy(q, got, out_buf)
    q.finish()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@needs_opencl
def test_topk_integer_reductions_on_opencl(tmp_path):
    """TopK lowers to integer counting reductions (block per row, shared-memory tree on int64)."""
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk", axis=1)
    g = helper.make_graph([node], "topk", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 10])],
                          [helper.make_tensor_value_info("v", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("i", TensorProto.INT64, None)],
                          [numpy_helper.from_array(np.array([3], np.int64), "k")])
    path = tmp_path / "topk.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = np.random.default_rng(5).standard_normal((3, 10)).astype(np.float32)
    got = ember.compile(path, target="opencl").run({"x": x})
    for a, b in zip(got.values(), _reference(path, {"x": x})):
        np.testing.assert_array_equal(a, b)


def test_malformed_gpu_metadata_is_refused(tmp_path):
    from ember.runtime.gpu import GPUArtifact

    meta = {"format": 1, "name": "m", "inputs": [], "outputs": [], "arena_bytes": 0,
            "gpu": {"language": "opencl", "launches": [{"kernel": "k", "grid": [1, 1, 1], "block": [0, 1, 1],
                                                        "args": []}], "copies": []}}
    (tmp_path / "m.ember").write_bytes(GPUArtifact(meta, "", b"").to_bytes())
    with pytest.raises(ArtifactError, match="malformed GPU metadata"):
        ember.load(tmp_path / "m.ember")
    meta["gpu"] = {"language": "vulkan"}
    (tmp_path / "m.ember").write_bytes(GPUArtifact(meta, "", b"").to_bytes())
    with pytest.raises(ArtifactError, match="malformed GPU metadata"):
        ember.load(tmp_path / "m.ember")


# ---- float16 (-dtype=float16) --------------------------------------------------------------------

def test_fp16_target_option():
    assert resolve("opencl -dtype=float16").features == {"fp16"}
    assert resolve("cuda -arch=sm_86 -dtype=float16").spec == "cuda -arch=sm_86 -dtype=float16"
    assert resolve("cuda -dtype=float32").features == frozenset()
    with pytest.raises(TargetError, match="-dtype=float16"):
        resolve("opencl -dtype=bfloat16")


def test_fp16_graph_keeps_the_interface(cnn):
    """Weights become float16, the input is cast after it and the outputs back: same names and
    dtypes outside."""
    from ember.driver.compile import to_graph
    from ember.passes.half_precision import to_half

    g = to_half(to_graph(str(cnn), None, None))
    assert [(v.name, v.dtype) for v in g.inputs] == [("x", "float32")]
    assert [(v.name, v.dtype) for v in g.outputs] == [("y", "float32"), ("r1", "float32")]
    assert {v.dtype for v in g.constants() if v.shape} == {"float16"}
    assert g.nodes[0].op == "cast" and g.nodes[-1].op == "cast"


@needs_opencl
def test_fp16_matches_fp32_on_opencl(cnn):
    """Activations and weights in half, arithmetic and sums in float: within float16's precision
    of the float32 build."""
    x = np.random.default_rng(6).standard_normal((2, 3, 16, 16)).astype(np.float32)
    full = ember.compile(cnn, target="opencl")
    half = ember.compile(cnn, target="opencl -dtype=float16")
    assert "__global const half*" in half.source and "vload_half(" in half.source
    assert half.metadata["target"] == "opencl -dtype=float16"
    for a, b in zip(full(x), half(x)):
        assert b.dtype == np.float32
        err = np.abs(a - b).max() / np.abs(a).max()
        assert 0 < err <= 2e-3, err


def _cast_pair_model(tmp_path, keep_half=True):
    nodes = [helper.make_node("Cast", ["x"], ["h"], name="to_half", to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["h"], ["y"], name="to_float", to=TensorProto.FLOAT)]
    g = helper.make_graph(nodes, "cast_pair", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])]
                          + [helper.make_tensor_value_info("h", TensorProto.FLOAT16, [64])] * keep_half)
    path = tmp_path / f"cast_pair{int(keep_half)}.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@needs_opencl
def test_float16_rounding_on_opencl(tmp_path):
    """Casts to float16 (ember_round_half inside a kernel, vstore_half_rte into memory) round as
    numpy does: ties to even, subnormals, overflow to infinity, NaN."""
    x = np.array([0, -0.0, 1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65519.9, 65520, -1e6, 2 ** -24, 2 ** -25,
                  3 * 2 ** -26, 2 ** -14 - 2 ** -25, 6.1e-5, np.inf, -np.inf, np.nan, 0.1, -0.3, 1e-8]
                 + list(np.random.default_rng(7).standard_normal(44) * 100), np.float32)
    m = ember.compile(_cast_pair_model(tmp_path), target="opencl")
    got = m.run({"x": x})
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    np.testing.assert_array_equal(got["h"], want)
    np.testing.assert_array_equal(got["y"], want.astype(np.float32))
    fused = ember.compile(_cast_pair_model(tmp_path, keep_half=False), target="opencl")
    assert fused.metadata["kernels"] == 1 and "ember_round_half(" in fused.source
    np.testing.assert_array_equal(fused.run({"x": x})["y"], want.astype(np.float32))


def _fp16_nvrtc():
    return nvrtc.available() and nvrtc.fp16_include() is not None


@pytest.mark.skipif(not _fp16_nvrtc(), reason="NVRTC and cuda_fp16.h are not installed "
                    "(pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12)")
def test_fp16_cuda_to_ptx(cnn):
    m = ember.compile(cnn, target="cuda -dtype=float16")
    assert "#include <cuda_fp16.h>" in m.source and "const __half*" in m.source
    assert m.ptx.count(".entry") == m.metadata["kernels"] and "cvt.rn.f16.f32" in m.ptx


@needs_nvrtc
def test_fp16_cuda_without_the_header_is_refused(cnn, monkeypatch):
    from ember.errors import ToolchainError

    monkeypatch.setattr(nvrtc, "fp16_include", lambda: None)
    with pytest.raises(ToolchainError, match="nvidia-cuda-runtime-cu12"):
        ember.compile(cnn, target="cuda -dtype=float16")


@pytest.mark.skipif(not _fp16_nvrtc(), reason="NVRTC and cuda_fp16.h are not installed")
@pytest.mark.slow
def test_resnet50_fp16_compiles_to_ptx():
    path, inputs, _ = _model("resnet50")
    m = ember.compile(path, target="cuda -dtype=float16", shapes={k: v.shape for k, v in inputs.items()})
    assert m.ptx.count(".entry") == m.metadata["kernels"] > 50
