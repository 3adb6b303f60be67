"""ember tune on a Ray cluster (``tune/ray_runner.py``): a local cluster of two nodes of one CPU
each (the head and a worker) tunes a small model with a kernel whose
candidates crash; the trials run on both nodes, the crashes are recorded while the search goes
on, and the records replay to the untuned outputs.  Both nodes share this machine, so the times
measured here are worthless: the test checks where trials run and what comes back."""

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.benchmark import random_inputs
from ember.driver import records
from ember.driver.compile import generate, to_graph
from ember.errors import EmberError
from ember.target import resolve
from ember.tune import Tuner

HERE = Path(__file__).resolve().parent


def mlp() -> onnx.ModelProto:
    """Gemm, ReLU, Gemm: 16x64 -> 16x32; two matmul kernels with knobs (each as wide as a vector
    of 16 floats at least: narrower ones are not blocked, and have none)."""
    rng = np.random.default_rng(0)

    def init(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)

    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 32])],
                              [init("w1", (48, 64)), init("b1", (48,)), init("w2", (32, 48)), init("b2", (32,))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ray") / "mlp.onnx"
    onnx.save(mlp(), str(path))
    return str(path)


def test_without_ray_the_error_says_what_to_install(model_file, monkeypatch, capsys):
    from ember.cli import main
    from ember.tune.ray_runner import RayRunner

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(EmberError, match=r"pip install ember\[tune-ray\]"):
        RayRunner()
    assert main(["tune", model_file, "--ray", "--trials", "1"]) == 1
    assert "pip install ember[tune-ray]" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install ember[tune-ray])")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 80 << 20,
                                                      "include_dashboard": False})
    c.add_node(num_cpus=1, object_store_memory=80 << 20)
    ray.init(address=c.address, logging_level="WARNING", log_to_driver=False)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.mark.slow
def test_tune_on_two_ray_nodes(cluster, model_file, tmp_path):
    from ember.tune.ray_runner import RayRunner

    tgt = resolve("cpu")
    untuned = generate(to_graph(model_file), tgt, kernel_knobs={})
    # the second Gemm's candidates crash the child that measures them
    bad = next(k for k, w in untuned.workloads.items() if w.name.startswith("Gemm_2"))
    assert "matmul.rows" in untuned.workloads[bad].knobs
    rec, lines = tmp_path / "records.jsonl", []
    runner = RayRunner(child=[sys.executable, str(HERE / "crash_on_workload_child.py"), bad])
    with pytest.raises(EmberError, match="target is 'cpu'"):
        Tuner(model_file, "aarch64-linux", runner=runner)
    # two candidate trials at once, both crash; their halves: the good kernel's first, then a crash
    result = Tuner(model_file, budget_s=120, max_trials=6, records=rec, runs=3, final_rounds=1, say=lines.append,
                   runner=runner).run()
    assert any("measuring on 2 Ray nodes" in line for line in lines), lines[0]
    assert len(result.nodes) == 2 and all(n >= 1 for n in result.nodes.values()), result.nodes
    assert result.trials >= 7
    all_recs = list(records.read(rec))
    crashed = [r for r in all_recs if r["status"] == "crash"]
    assert crashed and result.failures == len(crashed)
    assert all(r["workload"] == bad and "signal" in r["detail"] for r in crashed)
    # the other kernel's candidates were measured around the crashes
    assert any(r["status"] == "ok" and not r["defaults"] and r["workload"] != bad for r in all_recs)
    assert result.tuned_ms is not None
    # the records replay here (the nodes are this machine's processor) to the untuned outputs
    plain, tuned = ember.compile(model_file, cache=False), ember.compile(model_file, records=rec, cache=False)
    feeds = random_inputs(plain, seed=1)
    want, got = plain.run(feeds), tuned.run(feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=1e-4)
    best = records.replay_knobs(rec, tgt)
    assert best.get(bad, {}).items() <= untuned.workloads[bad].knobs.items()     # its defaults
