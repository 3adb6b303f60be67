"""The resource policy (``ember.limits``): hostile models are refused with E105/E304 before
anything is allocated, quickly, and the limits are configurable.

Each hostile model is compiled in a child process under a hard timeout and an address-space
limit (``RLIMIT_AS``), so that a regression fails the test instead of hanging or exhausting
the machine's memory.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import ember
from ember import limits
from ember.errors import EmberError, LimitError, RuntimeLimitError
from ember.graph import run_graph

SRC = str(Path(ember.__file__).resolve().parents[1])

#: address space of the child (Python, numpy and onnx take about 1 GiB of it)
CHILD_MEMORY = 3 << 30


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = h.make_graph(nodes, "hostile", inputs, outputs, list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)])


def _vi(name, dt, shape):
    return h.make_tensor_value_info(name, dt, shape)


def _sum_plus(nodes, big, inits, dtype=T.FLOAT):
    """``big`` summed and added to an input, so that nothing but the model's own constants
    decides its size."""
    nodes = nodes + [h.make_node("ReduceSum", [big], ["s"], keepdims=0), h.make_node("Add", ["s", "a"], ["y"])]
    return _model(nodes, [_vi("a", dtype, [])], [_vi("y", dtype, None)], inits)


def loop_doubling(carried_from_input: bool, trip: int = 64):
    """A Loop whose carried tensor doubles every iteration (Concat of itself)."""
    body = h.make_graph([h.make_node("Concat", ["x_in", "x_in"], ["x_out"], axis=0),
                         h.make_node("Identity", ["c_in"], ["c_out"])], "body",
                        [_vi("i", T.INT64, []), _vi("c_in", T.BOOL, []), _vi("x_in", T.FLOAT, None)],
                        [_vi("c_out", T.BOOL, []), _vi("x_out", T.FLOAT, None)])
    inits = [nh.from_array(np.array(trip, np.int64), "M"), nh.from_array(np.array(True), "C")]
    loop = h.make_node("Loop", ["M", "C", "x0"], ["big"], body=body, name="doubling")
    if carried_from_input:
        return _model([loop], [_vi("x0", T.FLOAT, [1])], [_vi("big", T.FLOAT, None)], inits)
    inits.append(nh.from_array(np.ones(1, np.float32), "x0"))
    return _sum_plus([loop], "big", inits)


def chain(n: int):
    """Add and Relu alternating on a tensor of 4 floats, ``n`` nodes."""
    nodes, prev = [], "x"
    for k in range(n):
        nodes.append(h.make_node("Add", [prev, "c"], [f"t{k}"]) if k % 2 == 0 else
                     h.make_node("Relu", [prev], [f"t{k}"]))
        prev = f"t{k}"
    nodes.append(h.make_node("Identity", [prev], ["y"]))
    return _model(nodes, [_vi("x", T.FLOAT, [4])], [_vi("y", T.FLOAT, [4])],
                  [nh.from_array(np.full(4, 0.5, np.float32), "c")])


def huge(op: str, constant: bool):
    """``op`` (Expand, Tile, ConstantOfShape, Range) making 2**40 elements."""
    n = np.array([1 << 40], np.int64)
    if op == "ConstantOfShape":
        node = h.make_node(op, ["n"], ["big"], value=nh.from_array(np.ones(1, np.float32)), name="huge")
        return _sum_plus([node], "big", [nh.from_array(n, "n")])
    if op == "Range":
        inits = [nh.from_array(np.array(0, np.int64), "lo"), nh.from_array(n.reshape(()), "hi"),
                 nh.from_array(np.array(1, np.int64), "step")]
        return _sum_plus([h.make_node(op, ["lo", "hi", "step"], ["big"], name="huge")], "big", inits, T.INT64)
    node = h.make_node(op, ["x", "n"], ["big"], name="huge")
    if constant:
        return _sum_plus([node], "big", [nh.from_array(n, "n"), nh.from_array(np.ones(1, np.float32), "x")])
    return _model([node], [_vi("x", T.FLOAT, [1])], [_vi("big", T.FLOAT, None)], [nh.from_array(n, "n")])


def resize_huge():
    """16x16 resized to 1.6e6 x 1.6e6."""
    return _model([h.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest", name="huge")],
                  [_vi("x", T.FLOAT, [1, 1, 16, 16])], [_vi("y", T.FLOAT, None)],
                  [nh.from_array(np.array([1, 1, 1e5, 1e5], np.float32), "scales")])


def matmul_huge():
    """[100000, 1] x [1, 100000]: a 40 GB output."""
    return _model([h.make_node("MatMul", ["a", "b"], ["y"], name="huge")],
                  [_vi("a", T.FLOAT, [100000, 1]), _vi("b", T.FLOAT, [1, 100000])], [_vi("y", T.FLOAT, None)])


_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, ({mem}, {mem}))
    import ember
    from ember.errors import EmberError
    t = time.perf_counter()
    try:
        ember.compile(sys.argv[1], cache=False, limits={limits!r})
        out = {{"code": None}}
    except EmberError as e:
        out = {{"code": e.code, "node": e.node, "op": e.op, "limit": getattr(e, "limit", None),
               "message": str(e)}}
    except MemoryError as e:
        out = {{"code": "MemoryError", "message": str(e)}}
    out["seconds"] = time.perf_counter() - t
    print(json.dumps(out))
""")


def compile_in_child(model, tmp_path, timeout: float, limits_=None, memory: int = CHILD_MEMORY) -> dict:
    """Compiles ``model`` in a fresh process under ``memory`` bytes of address space and
    ``timeout`` seconds; returns what it raised (``code`` None when it compiled)."""
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "EMBER_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("EMBER_LIMITS", None)
    code = _CHILD.format(mem=memory, limits=limits_)
    try:
        r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"compiling the model took more than {timeout} s (hang)")
    assert r.returncode == 0, f"the child died (status {r.returncode}): {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


HOSTILE = {      # the model, the ONNX node and op named, the core op in the message
    "loop_doubling_constant": (lambda: loop_doubling(False), "Concat", "concat"),
    "loop_doubling_input": (lambda: loop_doubling(True), "Concat", "concat"),
    "expand_2_40": (lambda: huge("Expand", False), "Expand", "broadcast_to"),
    "expand_2_40_constant": (lambda: huge("Expand", True), "Expand", "broadcast_to"),
    "tile_2_40": (lambda: huge("Tile", False), "Tile", "broadcast_to"),
    "tile_2_40_constant": (lambda: huge("Tile", True), "Tile", "broadcast_to"),
    "constant_of_shape_2_40": (lambda: huge("ConstantOfShape", True), "ConstantOfShape", "broadcast_to"),
    "range_2_40": (lambda: huge("Range", True), "Range", "arange"),
    "resize_to_1.6e6_squared": (resize_huge, "Resize", "gather"),
    "matmul_40GB": (matmul_huge, "MatMul", "matmul"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_model_is_refused_before_allocating(case, tmp_path):
    make, op, core = HOSTILE[case]
    got = compile_in_child(make(), tmp_path, timeout=60)
    assert got["code"] == "E105", got
    assert got["limit"] == "tensor_bytes" and got["op"] == op, got
    assert got["node"] == "huge" or got["node"].startswith("doubling/body"), got
    assert f"its core op {core}" in got["message"] and "tensor_bytes" in got["message"], got
    assert "TiB" in got["message"] or "GiB" in got["message"], got
    assert got["seconds"] < 30, got


def test_long_chain_is_refused_by_a_graph_size_limit_quickly(tmp_path):
    got = compile_in_child(chain(100_000), tmp_path, timeout=120, limits_={"nodes": 50_000})
    assert got["code"] == "E105" and got["limit"] == "nodes", got
    assert "50,000" in got["message"], got


@pytest.mark.slow
def test_long_chain_compiles_in_linear_time(tmp_path):
    """10,000 elementwise nodes: no RecursionError, no quadratic pass, gcc not blown up by
    nested macros; the result is right."""
    n = 10_000
    path = tmp_path / "chain.onnx"
    onnx.save(chain(n), path)
    env = {**os.environ, "PYTHONPATH": SRC, "EMBER_CACHE_DIR": str(tmp_path / "cache")}
    code = textwrap.dedent(f"""
        import resource, sys, numpy as np, ember
        resource.setrlimit(resource.RLIMIT_AS, ({CHILD_MEMORY * 2}, {CHILD_MEMORY * 2}))
        m = ember.compile(sys.argv[1], cache=False, cflags=("-O1",))
        x = np.linspace(-1, 1, 4).astype(np.float32)
        ref = x.copy()
        for k in range({n}):
            ref = ref + np.float32(0.5) if k % 2 == 0 else np.maximum(ref, 0)
        np.testing.assert_array_equal(m.run({{"x": x}})["y"], ref)
        print("ok")
    """)
    try:
        r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                           timeout=300, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("compiling a chain of 10,000 nodes took more than 300 s")
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


def test_loop_trip_count_limit(tmp_path):
    got = compile_in_child(loop_doubling(False, trip=10_000), tmp_path, timeout=60,
                           limits_={"loop_iterations": 20})
    assert got["code"] == "E105" and got["limit"] == "loop_iterations", got


# ---- in process: the limits' edges and their configuration -----------------------------------

def _matmul(m, k, n):
    return _model([h.make_node("MatMul", ["a", "b"], ["y"], name="mm")],
                  [_vi("a", T.FLOAT, [m, k]), _vi("b", T.FLOAT, [k, n])], [_vi("y", T.FLOAT, [m, n])])


def test_a_model_at_the_tensor_limit_compiles_and_one_byte_less_refuses():
    model = _matmul(8, 4, 16)                       # the largest tensor: 8 x 16 floats = 512 bytes
    m = ember.compile(model, cache=False, limits={"tensor_bytes": 512})
    a = np.ones((8, 4), np.float32)
    b = np.ones((4, 16), np.float32)
    np.testing.assert_allclose(m.run({"a": a, "b": b})["y"], a @ b)
    with pytest.raises(LimitError, match=r"MatMul node 'mm': its core op matmul: .*512 B.*511 B") as e:
        ember.compile(model, cache=False, limits={"tensor_bytes": 511})
    assert (e.value.code, e.value.limit, e.value.size, e.value.maximum) == ("E105", "tensor_bytes", 512, 511)


def test_memory_limit_counts_arena_and_constants():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 64)).astype(np.float32)          # 16 KiB of constants
    model = _model([h.make_node("MatMul", ["x", "w"], ["t"]), h.make_node("Relu", ["t"], ["u"]),
                    h.make_node("MatMul", ["u", "w"], ["y"])],
                   [_vi("x", T.FLOAT, [1, 64])], [_vi("y", T.FLOAT, [1, 64])], [nh.from_array(w, "w")])
    ember.compile(model, cache=False, limits={"memory_bytes": "1M"})
    with pytest.raises(LimitError, match="memory_bytes") as e:
        ember.compile(model, cache=False, limits={"memory_bytes": 16 << 10})
    assert e.value.size > 16 << 10


def test_node_limit_edge():
    ember.compile(chain(10), cache=False, limits={"nodes": 11})      # 10 + the Identity
    with pytest.raises(LimitError, match="nodes"):
        ember.compile(chain(10), cache=False, limits={"nodes": 9})


def test_loop_limit_edge():
    ember.compile(loop_doubling(False, trip=5), cache=False, limits={"loop_iterations": 5})
    with pytest.raises(LimitError, match="loop_iterations") as e:
        ember.compile(loop_doubling(False, trip=5), cache=False, limits={"loop_iterations": 4})
    assert e.value.op == "Loop" and e.value.node == "doubling"


def test_subgraph_depth_limit():
    def nested(depth):
        inner = None
        for level in range(depth):
            nodes = [h.make_node("Relu", [f"v{level}"], [f"o{level}"])] if inner is None else \
                [h.make_node("If", ["cond"], [f"o{level}"], then_branch=inner, else_branch=inner)]
            inner = h.make_graph(nodes, f"g{level}", [], [_vi(f"o{level}", T.FLOAT, [2])])
        return _model([h.make_node("Identity", ["x"], ["v0"]),
                       h.make_node("If", ["cond"], ["y"], then_branch=inner, else_branch=inner)],
                      [_vi("x", T.FLOAT, [2])], [_vi("y", T.FLOAT, [2])], [nh.from_array(np.array(True), "cond")])

    m = ember.compile(nested(3), cache=False, limits={"subgraph_depth": 3})
    np.testing.assert_array_equal(m.run({"x": np.array([-1, 2], np.float32)})["y"], [0, 2])
    with pytest.raises(LimitError, match="subgraph_depth"):
        ember.compile(nested(3), cache=False, limits={"subgraph_depth": 2})


def test_fold_bytes_keeps_large_expansions_for_run_time():
    """A constant expanded past fold_bytes is computed at run time, with the same result."""
    model = _model([h.make_node("Expand", ["x", "n"], ["big"]), h.make_node("Add", ["big", "a"], ["y"])],
                   [_vi("a", T.FLOAT, [4096])], [_vi("y", T.FLOAT, [4096])],
                   [nh.from_array(np.array([4096], np.int64), "n"), nh.from_array(np.ones(1, np.float32), "x")])
    small = ember.compile(model, cache=False, limits={"fold_bytes": 1024})
    folded = ember.compile(model, cache=False)
    a = np.arange(4096, dtype=np.float32)
    np.testing.assert_array_equal(small.run({"a": a})["y"], a + 1)
    np.testing.assert_array_equal(folded.run({"a": a})["y"], a + 1)
    assert small.metadata["constants_bytes"] < 1024 < 4096 * 4 <= folded.metadata["constants_bytes"]


def test_run_time_sizes_are_checked_before_allocating():
    """An output whose size the input shapes decide: the module and the interpreter refuse it
    with E304 before allocating."""
    model = _model([h.make_node("MatMul", ["a", "b"], ["y"], name="outer")],
                   [_vi("a", T.FLOAT, ["n", 1]), _vi("b", T.FLOAT, [1, "n"])], [_vi("y", T.FLOAT, ["n", "n"])])
    m = ember.compile(model, cache=False, bounds={"n": 1 << 17})
    small = {"a": np.ones((3, 1), np.float32), "b": np.ones((1, 3), np.float32)}
    np.testing.assert_array_equal(m.run(small)["y"], np.ones((3, 3)))
    big = {"a": np.ones((100_000, 1), np.float32), "b": np.ones((1, 100_000), np.float32)}
    with limits.using({"tensor_bytes": "1G"}):
        with pytest.raises(RuntimeLimitError, match="output 'y'.*37.3 GiB") as e:
            m.run(big)
        assert e.value.code == "E304"
        g = ember.from_onnx(model)
        with pytest.raises(RuntimeLimitError, match="matmul node 'outer'"):   # the interpreter: core ops
            run_graph(g, big)
        np.testing.assert_array_equal(run_graph(g, small)[0], np.ones((3, 3)))


def test_limits_api():
    assert limits.parse_size("2G") == 2 << 30 and limits.parse_size("512M") == 512 << 20
    assert limits.parse_size("1KiB") == 1024 and limits.parse_size(77) == 77
    for bad in ("-1", "lots", 1.5, True):
        with pytest.raises(ValueError):
            limits.parse_size(bad)
    base = limits.current()
    assert base.tensor_bytes <= limits.available_memory()
    lim = base.updated("nodes=10, tensor_bytes=1K")
    assert (lim.nodes, lim.tensor_bytes, lim.fold_bytes) == (10, 1024, base.fold_bytes)
    with pytest.raises(ValueError, match="unknown limit"):
        base.updated({"tensors": 1})
    with pytest.raises(EmberError, match="unknown limit"):
        ember.compile(chain(2), cache=False, limits={"tensors": 1})
    with limits.using({"nodes": 3}) as inner:
        assert limits.current() is inner and inner.nodes == 3
        with limits.using({"loop_iterations": 2}):
            assert (limits.current().nodes, limits.current().loop_iterations) == (3, 2)
    assert limits.current() == base


def test_environment_variable_sets_the_defaults(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC, "EMBER_LIMITS": "nodes=7,tensor_bytes=1M"}
    r = subprocess.run([sys.executable, "-c", "from ember import limits; l = limits.current(); "
                        "print(l.nodes, l.tensor_bytes)"], capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.split() == ["7", str(1 << 20)], r.stderr


def test_cli_limit_flag(tmp_path, capsys):
    from ember.cli import main

    path = tmp_path / "mm.onnx"
    onnx.save(_matmul(8, 4, 16), path)
    assert main(["compile", str(path), "-o", str(tmp_path / "mm.so"), "--limit", "tensor_bytes=100"]) == 1
    err = capsys.readouterr().err
    assert "[E105]" in err and "tensor_bytes" in err
    assert main(["compile", str(path), "-o", str(tmp_path / "mm.so"), "--limit", "tensor_bytes=1K"]) == 0
