"""Kernels as C files of their own, their objects cached by content: a kernel seen in any earlier
model is not compiled again, a damaged cached object is compiled again (never a crash or a
wrong result), and processes compiling the same kernel at once are safe."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import ember
from ember.driver.compile import generate
from ember.graph import GraphBuilder, TensorType, run_graph
from ember.target import resolve

FLAGS = ("-O1",)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("EMBER_CACHE_DIR", str(root))
    return root


def dense_model(name: str, tail: str, seed: int):
    """x @ w then relu (one kernel: the same in every model of this family, whatever the
    weights and names), then ``tail`` of the result (a kernel of its own)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(name)
    x = b.input(f"{name}_x", TensorType((4, 16), "float32"))
    w = b.const(rng.standard_normal((16, 32)).astype(np.float32))
    h = b.op("relu", [b.op("matmul", [x, w])])
    y = b.op(tail, [h], axes=(1,), keepdims=False)
    return b.finish([y])


def compile_steps(graph):
    steps: list[str] = []
    module = ember.compile(graph, cflags=FLAGS, progress=steps.append)
    feed = {graph.inputs[0].name: np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)}
    np.testing.assert_allclose(next(iter(module.run(feed).values())), run_graph(graph, feed)[0],
                               rtol=1e-5, atol=1e-5)
    return steps


def compiled_kernels(steps):
    return {s.split()[1] for s in steps if s.startswith("compile ember_k_")}


def test_a_kernel_shared_by_two_models_is_compiled_once(cache):
    a, b = dense_model("first", "reduce_sum", 0), dense_model("second", "reduce_max", 1)
    units_a = set(generate(a, resolve("cpu")).units)
    units_b = set(generate(b, resolve("cpu")).units)
    shared = {n for n in units_a & units_b if n.startswith("ember_k_")}
    assert len(shared) == 1            # the matmul + relu kernel, under other names in each
    steps_a = compile_steps(a)
    steps_b = compile_steps(b)
    assert shared <= compiled_kernels(steps_a)
    assert not shared & compiled_kernels(steps_b)          # the second model did not compile it
    assert len(compiled_kernels(steps_b)) == 1             # only its own reduction
    # (compiled in the background while Python generated the kernels: the build finds both)
    assert [s for s in steps_b if s.startswith("compile ember_k_")][0].endswith("(in the background)")
    assert any("found compiled in the cache: 2 of 2 kernels" in s for s in steps_b), steps_b


def test_the_readable_names_stay_in_the_c(cache):
    cm = generate(dense_model("named", "reduce_sum", 0), resolve("cpu"))
    (unit,) = [t for n, t in cm.units.items() if "matmul" in t and n.startswith("ember_k_")]
    name = next(k for k in cm.kernel_files if "matmul" in k)
    sym = cm.kernel_files[name][:-2]
    assert f"#define {name} {sym}\n" in unit and f"EMBER_HIDDEN void {name}(" in unit
    assert "fuses matmul" in unit and "named_x" in unit           # the comment and the tensor's name
    assert f"#define {name} {sym}\n" in cm.units["model.c"] and f"  {name}(" in cm.units["model.c"]
    assert cm.object_keys[f"{sym}.c"] in {k for k in cm.object_keys.values()}
    assert "named_x" not in cm.object_keys[f"{sym}.c"]            # the key has no model's names


def test_groups_alike_share_their_lowering():
    """The same C whether alike groups are lowered once (a compile) or each (a dump)."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("blocks")
    h = b.input("x", TensorType((4, 16), "float32"))
    for _ in range(3):
        h = b.op("reduce_sum", [b.op("relu", [b.op("matmul", [h, b.const(rng.standard_normal((16, 16)).astype(np.float32))])])],
                 axes=(1,), keepdims=True)
        h = b.op("add", [h, b.const(np.zeros((4, 16), np.float32))])
    g = b.finish([h])
    once = generate(g, resolve("cpu"))
    each = generate(g, resolve("cpu"), dump=lambda *a: None)
    assert once.units == each.units
    assert len(once.kernel_files) > len(once.object_keys)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_damaged_cached_objects_are_compiled_again(cache, damage):
    g = dense_model("damaged", "reduce_sum", 0)
    first = compile_steps(g)
    objects = sorted((cache / "obj").glob("*.obj"))
    assert len(objects) >= 3
    for p in objects:
        data = p.read_bytes()
        p.write_bytes({"truncate": data[: len(data) // 2], "flip": data[:100] + bytes([data[100] ^ 1]) + data[101:],
                       "garbage": b"garbage", "empty": b""}[damage])
    for p in (cache / "lib").glob("*"):
        if p.is_file():
            p.unlink()
    again = compile_steps(g)                   # compiles what was damaged, and runs right
    assert compiled_kernels(again) == compiled_kernels(first)
    third = compile_steps_after_lib_removed(cache, g)
    assert not compiled_kernels(third)         # the cache holds good objects again


def compile_steps_after_lib_removed(cache: Path, g):
    for p in (cache / "lib").glob("*"):
        if p.is_file():
            p.unlink()
    return compile_steps(g)


def test_concurrent_compiles_of_the_same_kernels(cache):
    """Processes compiling the same new kernels into one cache at once all succeed; the cache
    holds whole entries and no temporaries."""
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_kernel_cache import compile_steps, dense_model
        compile_steps(dense_model("race" + sys.argv[1], "reduce_sum", int(sys.argv[1])))
    """)
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(k)], stderr=subprocess.PIPE, text=True, env=env)
             for k in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    names = [p.name for p in (cache / "obj").iterdir()]
    assert not [n for n in names if n.endswith(".tmp")]
    steps = compile_steps_after_lib_removed(cache, dense_model("race9", "reduce_sum", 9))
    assert not compiled_kernels(steps)         # every kernel's object is in the cache, whole


def test_checks_of_several_kernels_name_their_own_node(cache):
    """Each kernel numbers its run-time checks from 0; the entry reports a failure by the
    kernel's place in the model's table."""
    from ember.errors import IndexOutOfRangeError

    b = GraphBuilder("two_gathers")
    x = b.input("x", TensorType((5, 3), "float32"))
    i = b.input("i", TensorType((4,), "int64"))
    j = b.input("j", TensorType((4,), "int64"))
    g1 = b.op("gather", [x, i], axis=0, name="first_gather")
    g2 = b.op("gather", [b.op("exp", [x]), j], axis=0, name="second_gather")
    graph = b.finish([g1, g2])
    m = ember.compile(graph, cflags=FLAGS)
    xs = np.ones((5, 3), np.float32)
    m.run({"x": xs, "i": np.array([0, 1, 2, 3]), "j": np.array([0, 1, 2, 3])})
    with pytest.raises(IndexOutOfRangeError, match="second_gather"):
        m.run({"x": xs, "i": np.array([0, 1, 2, 3]), "j": np.array([0, 9, 2, 3])})
    with pytest.raises(IndexOutOfRangeError, match="first_gather"):
        m.run({"x": xs, "i": np.array([0, 1, 7, 3]), "j": np.array([0, 1, 2, 3])})
