"""Artifacts with symbolic dimensions: one compile runs many shapes; the runtime binds the
symbols from the inputs, refuses shapes that disagree or exceed the bounds, and sizes the
outputs.  Also from C (ctypes on the public API of ember_runtime.h)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import ember
from ember.errors import EmberError, EmberRuntimeError, InputError, ShapeError
from ember.graph.builder import GraphBuilder
from ember.graph.interpreter import run_graph
from ember.graph.types import TensorType
from ember.symbolic import symbol

B, S = symbol("batch"), symbol("seq")


def dyn_graph():
    """x [batch, seq, 16] @ w, + per-position bias, softmax over seq; mask [batch, seq] int."""
    b = GraphBuilder("dyn")
    x = b.input("x", TensorType((B, S, 16), "float32"))
    m = b.input("mask", TensorType((B, S), "int64"))
    w = b.const(np.random.default_rng(0).standard_normal((16, 24)).astype(np.float32), "w")
    h = b.op("relu", [b.op("matmul", [x, w])])
    pos = b.op("cast", [b.op("arange", [], length=S, start=0, delta=1, dtype="int64")], to="float32")
    h = b.op("add", [h, b.op("reshape", [pos], shape=(1, S, 1))])
    keep = b.op("cast", [b.op("reshape", [m], shape=(B, S, 1))], to="float32")
    h = b.op("mul", [h, keep])
    t = b.op("softmax", [b.op("transpose", [h], perm=(0, 2, 1))], axis=-1)      # [batch, 24, seq]
    flat = b.op("reshape", [h], shape=(B * S, 24))
    g = b.finish([t, flat])
    g.bounds = {"batch": 3, "seq": 40}
    return g


@pytest.fixture(scope="module")
def module():
    return ember.compile(dyn_graph(), cflags=("-O1",))


def feeds(batch, seq, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, seq, 16)).astype(np.float32),
            "mask": (rng.random((batch, seq)) < 0.8).astype(np.int64)}


def test_one_artifact_runs_every_size(module):
    g = dyn_graph()
    for batch, seq in ((1, 1), (2, 7), (3, 40), (1, 33), (2, 16)):
        f = feeds(batch, seq)
        got = module.run(f)
        want = run_graph(g, f)
        assert [a.shape for a in got.values()] == [(batch, 24, seq), (batch * seq, 24)]
        for a, w in zip(got.values(), want):
            np.testing.assert_allclose(a, w, rtol=2e-5, atol=2e-6)
    assert module.output_shapes({"x": (2, 7, 16), "mask": (2, 7)}) == [(2, 24, 7), (14, 24)]


def test_signature_and_metadata(module):
    assert module.symbols == {"batch": 3, "seq": 40} and module.is_dynamic
    assert module.input_types[0] == TensorType((B, S, 16), "float32")
    meta = module.metadata
    assert meta["symbols"] == [{"name": "batch", "bound": 3, "limit": 3}, {"name": "seq", "bound": 40, "limit": 40}]
    assert module.limits == {"batch": 3, "seq": 40}
    assert meta["inputs"][0]["shape"] == ["batch", "seq", 16]
    assert meta["outputs"][1]["shape"] == ["batch*seq", 24]
    # the arena is planned with every symbol at its bound: one allocation serves every size
    assert module.arena_bytes >= 3 * 40 * 24 * 4
    assert "seq" in repr(module)


def test_input_errors(module):
    with pytest.raises(InputError, match="seq = 41, above its limit 40"):
        module.run(feeds(1, 41))
    with pytest.raises(InputError, match="batch = 4, above its limit 3"):
        module.run(feeds(4, 2))
    f = feeds(2, 5)
    f["mask"] = f["mask"][:, :4]
    with pytest.raises(InputError, match="'seq' is 5"):
        module.run(f)
    f = feeds(2, 5)
    f["x"] = f["x"][..., :15]
    with pytest.raises(InputError, match="expected 16"):
        module.run(f)
    f = feeds(2, 5)
    f["x"] = f["x"][0]
    with pytest.raises(InputError, match="rank"):
        module.run(f)
    f = feeds(2, 5)
    f["mask"] = f["mask"].astype(np.int32)
    with pytest.raises(InputError, match="int64"):
        module.run(f)


def test_saved_artifact_and_threads(module, tmp_path):
    path = module.save(tmp_path / "dyn.so")
    again = ember.load(path)
    f = feeds(3, 29, seed=4)
    want = module.run(f)
    for threads in (1, 2):
        again.num_threads = threads
        for a, w in zip(again.run(f).values(), want.values()):
            np.testing.assert_array_equal(a, w)


def test_c_api(module):
    lib = ctypes.CDLL(str(module.path), mode=ctypes.RTLD_LOCAL)
    lib.ember_symbol_name.restype = ctypes.c_char_p
    lib.ember_symbol_bound.restype = ctypes.c_int64
    lib.ember_last_error.restype = ctypes.c_char_p
    lib.ember_model_create.restype = ctypes.c_void_p
    assert lib.ember_num_symbols() == 2
    assert lib.ember_symbol_name(1) == b"seq" and lib.ember_symbol_bound(1) == 40
    assert lib.ember_symbol_name(2) is None
    Dims = ctypes.POINTER(ctypes.c_int64)
    xs, ms = (ctypes.c_int64 * 3)(2, 9, 16), (ctypes.c_int64 * 2)(2, 9)
    shapes = (Dims * 2)(ctypes.cast(xs, Dims), ctypes.cast(ms, Dims))
    out = (ctypes.c_int64 * 2)()
    assert lib.ember_output_shape(shapes, 1, out) == 0 and list(out) == [18, 24]
    ms[1] = 8
    assert lib.ember_output_shape(shapes, 1, out) == -1
    assert b"'seq' is 9" in lib.ember_last_error()
    # the shape-less entry point refuses a model with symbols
    m = ctypes.c_void_p(lib.ember_model_create())
    try:
        ins, outs = (ctypes.c_void_p * 2)(), (ctypes.c_void_p * 2)()
        lib.ember_model_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        assert lib.ember_model_run(m, ins, outs) != 0
        assert b"symbolic" in lib.ember_last_error()
        f = feeds(2, 9)
        res = [np.empty((2, 24, 9), np.float32), np.empty((18, 24), np.float32)]
        ms[1] = 9
        for k, a in enumerate(list(f.values())):
            ins[k] = a.ctypes.data
        for k, a in enumerate(res):
            outs[k] = a.ctypes.data
        lib.ember_model_run_dynamic.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        assert lib.ember_model_run_dynamic(m, shapes, ins, outs) == 0
        for a, w in zip(res, module.run(f).values()):
            np.testing.assert_array_equal(a, w)
        xs[1] = 41
        ms[1] = 41
        assert lib.ember_model_run_dynamic(m, shapes, ins, outs) != 0
        assert b"above its limit 40" in lib.ember_last_error()
    finally:
        lib.ember_model_destroy.argtypes = [ctypes.c_void_p]
        lib.ember_model_destroy(m)


def test_planning_sizes_grow_the_arena():
    """Without limits the bounds are planning sizes: a larger run places the buffers again in a
    larger arena (Python and C alike), and smaller runs afterwards still fit."""
    g = dyn_graph()
    g.bounds = {}
    m = ember.compile(g, bounds={"batch": 1, "seq": 4}, cflags=("-O1",))
    assert m.symbols == {"batch": 1, "seq": 4} and m.limits == {}
    planned = m.arena_bytes
    for batch, seq in ((1, 3), (3, 50), (2, 7), (5, 130), (1, 1)):
        f = feeds(batch, seq, seed=seq)
        for a, w in zip(m.run(f).values(), run_graph(g, f)):
            np.testing.assert_allclose(a, w, rtol=2e-5, atol=2e-6)
    assert planned < 5 * 130 * 24 * 4
    lib = ctypes.CDLL(str(m.path), mode=ctypes.RTLD_LOCAL)
    lib.ember_model_create.restype = ctypes.c_void_p
    lib.ember_model_run_dynamic.argtypes = [ctypes.c_void_p] * 4
    lib.ember_model_destroy.argtypes = [ctypes.c_void_p]
    inst = ctypes.c_void_p(lib.ember_model_create())
    try:
        for batch, seq in ((2, 90), (1, 5)):
            f = feeds(batch, seq, seed=1)
            res = [np.empty((batch, 24, seq), np.float32), np.empty((batch * seq, 24), np.float32)]
            dims = [np.array(a.shape, np.int64) for a in f.values()]
            Dims = ctypes.POINTER(ctypes.c_int64)
            shapes = (Dims * 2)(*[d.ctypes.data_as(Dims) for d in dims])
            ins = (ctypes.c_void_p * 2)(*[a.ctypes.data for a in f.values()])
            outs = (ctypes.c_void_p * 2)(*[a.ctypes.data for a in res])
            assert lib.ember_model_run_dynamic(inst, shapes, ins, outs) == 0
            for a, w in zip(res, run_graph(g, f)):
                np.testing.assert_allclose(a, w, rtol=2e-5, atol=2e-6)
    finally:
        lib.ember_model_destroy(inst)


def test_default_and_invalid_bounds():
    from ember.driver.compile import DEFAULT_BOUND

    g = dyn_graph()
    g.bounds = {}
    m = ember.compile(g, cflags=("-O1",))
    assert m.symbols == {"batch": DEFAULT_BOUND, "seq": DEFAULT_BOUND} and m.limits == {}
    with pytest.raises(EmberError, match="'nope'"):
        ember.compile(dyn_graph(), bounds={"nope": 3}, cflags=("-O1",))
    b = GraphBuilder("expr_only")
    x = b.input("x", TensorType((2 * S,), "float32"))
    g = b.finish([b.op("relu", [x])])
    with pytest.raises(ShapeError, match="not a whole dimension"):
        ember.compile(g, cflags=("-O1",))


def test_static_models_keep_the_static_interface():
    b = GraphBuilder("static")
    x = b.input("x", TensorType((2, 3), "float32"))
    m = ember.compile(b.finish([b.op("relu", [x])]), cflags=("-O1",))
    assert m.symbols == {} and not m.is_dynamic and "symbols" not in m.metadata
    np.testing.assert_array_equal(m.run({"x": -np.ones((2, 3), np.float32)})["relu"], np.zeros((2, 3)))
    with pytest.raises(InputError):
        m.run({"x": np.ones((3, 3), np.float32)})
    with pytest.raises(EmberRuntimeError):
        ember.compile(dyn_graph(), cflags=("-O1",)).pattern_inputs()
