"""``ember.passes``: the pass registry, the pipeline per opt level, ``optimize``."""

from __future__ import annotations

import numpy as np
import pytest

from ember.errors import GraphError
from ember.graph.text import parse_graph, print_graph
from ember.passes import PASSES, Pass, optimize, pipeline
from graphgen import assert_same_results, random_graph, random_inputs

RESBLOCK = """
graph block(%x: float32[1, 2, 5, 5]) {
  %w = const float32[3, 2, 3, 3] [WEIGHTS]
  %scale = const float32[3] [1.0, 2.0, 0.5]
  %bias = const float32[3] [0.1, 0.2, 0.3]
  %mean = const float32[3] [0.0, -1.0, 1.0]
  %var = const float32[3] [1.0, 4.0, 0.25]
  %one = const float32[] 1.0
  %k = const float32[3] [1.0, 2.0, 3.0]
  %k2 = const float32[3] [1.0, 2.0, 3.0]
  %kk = mul(%k, %k2)
  %kr = reshape(%kk) {shape=[1, 3, 1, 1]}
  %c = conv2d(%x, %w) {pads=[1, 1, 1, 1]}
  %bn = batch_norm(%c, %scale, %bias, %mean, %var)
  %r1 = relu(%bn)
  %r2 = relu(%bn)
  %s = add(%r1, %r2)
  %m = mul(%s, %one)
  %t = transpose(%m) {perm=[0, 2, 3, 1]}
  %u = transpose(%t) {perm=[0, 3, 1, 2]}
  %v = add(%u, %kr)
  %dead = exp(%v)
  return %v
}
""".replace("WEIGHTS", ", ".join(str(float(x)) for x in np.linspace(-1, 1, 54)))


def test_registry():
    assert set(PASSES) == {"qdq_to_integer", "fold_constants", "dead_code", "cse", "simplify", "fold_batch_norm",
                           "lower_batch_norm"}
    for name, p in PASSES.items():
        assert isinstance(p, Pass) and p.name == name and p.opt_level in (1, 2)


def test_levels():
    assert pipeline(0) == []
    assert [p.name for p in pipeline(1)] == ["qdq_to_integer", "fold_constants", "dead_code"]
    two = [p.name for p in pipeline(2)]
    assert set(two) == set(PASSES) and two[-1] == "dead_code"
    assert two.index("fold_batch_norm") < two.index("lower_batch_norm")
    assert [p.name for p in pipeline(3)] == two
    for bad in (-1, 4, 1.5, "2"):
        with pytest.raises(ValueError):
            pipeline(bad)


def test_level_0_changes_nothing_and_copies():
    g = parse_graph(RESBLOCK)
    out = optimize(g, 0)
    assert out is not g and print_graph(out) == print_graph(g)


def test_level_1_folds_and_removes_dead_code():
    g = parse_graph(RESBLOCK)
    out = optimize(g, 1)
    ops = out.op_histogram()
    assert "exp" not in ops and "reshape" not in ops and ops["relu"] == 2 and ops["batch_norm"] == 1
    assert_same_results(g, out, random_inputs(g))


def test_level_2_end_to_end():
    g = parse_graph(RESBLOCK)
    before = print_graph(g)
    seen = []
    out = optimize(g, 2, dump=lambda name, graph: seen.append((name, print_graph(graph))))
    assert print_graph(g) == before
    assert [s[0] for s in seen] == [p.name for p in pipeline(2)]
    assert seen[-1][1] == print_graph(out)
    # conv + folded batch norm, one relu, add, then the folded residual constant
    assert [n.op for n in out.nodes] == ["conv2d", "add", "relu", "add", "add"]
    assert_same_results(g, out, random_inputs(g), rtol=1e-5, atol=1e-5)


def test_a_pass_that_breaks_the_graph_is_named(monkeypatch):
    def broken(g):
        g = g.copy()
        n = g.nodes[0]
        n.outputs[0].producer = None
        return g

    monkeypatch.setitem(PASSES, "cse", Pass("cse", 2, broken))
    with pytest.raises(GraphError, match="pass 'cse' produced a malformed graph") as e:
        optimize(parse_graph(RESBLOCK), 2)
    assert e.value.node is not None


def test_input_is_verified_first():
    g = parse_graph(RESBLOCK)
    g.nodes[0].attrs["bogus"] = 1
    with pytest.raises(GraphError, match="bogus"):
        optimize(g, 0)


@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize("seed", range(60))
def test_random_graphs(level, seed):
    g = random_graph(seed)
    before = print_graph(g)
    dumps = []
    out = optimize(g, level, dump=lambda name, graph: dumps.append(name))
    assert print_graph(g) == before
    assert len(dumps) == len(pipeline(level))
    assert_same_results(g, out, random_inputs(g, seed), rtol=1e-5, atol=1e-5)
    # the optimized graph is a fixed point of folding, CSE and dead code
    if level >= 2:
        again = optimize(out, level)
        assert print_graph(again) == print_graph(out)
        assert "batch_norm" not in out.op_histogram()
    assert not any(all(v.is_const for v in n.inputs) and n.op != "broadcast_to" for n in out.nodes)
