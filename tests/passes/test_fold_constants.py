"""Constant folding: before/after pairs in the text form, and differential tests."""

from __future__ import annotations

import numpy as np
import pytest

from ember.graph.text import parse_graph, print_graph
from ember.passes.fold_constants import fold_constants
from graphgen import assert_rewrites, assert_same_results, random_graph, random_inputs


def test_folds_a_constant_subexpression():
    assert_rewrites(fold_constants, """
        graph g(%x: float32[2]) {
          %a = const float32[2] [1.0, 2.0]
          %b = const float32[2] [3.0, 4.5]
          %s = add(%a, %b)
          %n = neg(%s)
          %y = mul(%x, %n)
          return %y
        }""", """
        graph g(%x: float32[2]) {
          %n = const float32[2] [-4.0, -6.5]
          %y = mul(%x, %n)
          return %y
        }""")


def test_folds_through_layout_ops_and_keeps_other_nodes():
    out = assert_rewrites(fold_constants, """
        graph g(%x: float32[3, 2]) {
          %w = const int64[2, 3] [1, 2, 3, 4, 5, 6]
          %t = transpose(%w) {perm=[1, 0]}
          %f = cast(%t) {to="float32"}
          %y = add(%x, %f)
          %z = relu(%y)
          return %z
        }""", """
        graph g(%x: float32[3, 2]) {
          %f = const float32[3, 2] [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
          %y = add(%x, %f)
          %z = relu(%y)
          return %z
        }""")
    assert not out.constants()[0].const.flags.writeable


def test_folded_graph_output_keeps_its_name():
    assert_rewrites(fold_constants, """
        graph g(%x: float32[1]) {
          %a = const float32[1] [2.0]
          %b = sqrt(%a)
          return %b, %x
        }""", f"""
        graph g(%x: float32[1]) {{
          %b = const float32[1] [{np.sqrt(np.float32(2.0))}]
          return %b, %x
        }}""")


def test_keeps_a_huge_cheap_broadcast():
    text = """
        graph g(%x: float32[2048, 1024]) {
          %one = const float32[] 1.0
          %big = broadcast_to(%one) {shape=[2048, 1024]}
          %y = add(%x, %big)
          return %y
        }"""
    g = parse_graph(text)
    out = fold_constants(g)
    assert [n.op for n in out.nodes] == ["broadcast_to", "add"]


def test_folds_large_results_that_are_not_larger_than_their_inputs():
    w = np.arange(2048 * 1024, dtype=np.float32).reshape(2048, 1024)
    from ember.graph import GraphBuilder, TensorType

    b = GraphBuilder("g")
    x = b.input("x", TensorType((1024, 2048), "float32"))
    t = b.op("transpose", [b.const(w, "w")], perm=(1, 0))
    g = b.finish([b.op("add", [x, t])])
    out = fold_constants(g)
    assert [n.op for n in out.nodes] == ["add"]
    np.testing.assert_array_equal(out.nodes[0].inputs[1].const, w.T)


def test_leaves_nodes_whose_reference_fails():
    g = parse_graph("""
        graph g(%x: float32[2]) {
          %d = const float32[3] [1.0, 2.0, 3.0]
          %i = const int64[1] [7]
          %y = gather(%d, %i)
          return %y
        }""")
    out = fold_constants(g)
    assert [n.op for n in out.nodes] == ["gather"]


def test_integer_and_bool_folding_is_exact():
    assert_rewrites(fold_constants, """
        graph g(%x: bool[3]) {
          %a = const int32[3] [7, -7, 2147483647]
          %b = const int32[] 2
          %q = div(%a, %b)
          %z = const int32[] 3
          %c = greater(%q, %z)
          %y = logical_and(%x, %c)
          return %y, %q
        }""", """
        graph g(%x: bool[3]) {
          %q = const int32[3] [3, -3, 1073741823]
          %c = const bool[3] [false, false, true]
          %y = logical_and(%x, %c)
          return %y, %q
        }""")


@pytest.mark.parametrize("seed", range(80))
def test_random_graphs_compute_the_same(seed):
    g = random_graph(seed)
    before = print_graph(g)
    out = fold_constants(g)
    assert print_graph(g) == before
    from ember.graph.verify import verify

    verify(out)
    # nothing left to fold
    assert not any(n.inputs and all(v.is_const for v in n.inputs) for n in out.nodes)
    assert_same_results(g, out, random_inputs(g, seed), rtol=0, atol=0)
