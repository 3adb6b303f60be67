"""Dead-code elimination."""

from __future__ import annotations

import pytest

from ember.graph.text import print_graph
from ember.graph.verify import verify
from ember.passes.dead_code import dead_code
from graphgen import assert_rewrites, assert_same_results, random_graph, random_inputs


def test_removes_what_the_outputs_do_not_need():
    assert_rewrites(dead_code, """
        graph g(%x: float32[2], %unused: float32[3]) {
          %k = const float32[2] [1.0, 2.0]
          %a = relu(%x)
          %b = neg(%a)
          %c = add(%b, %k)
          %d = exp(%unused)
          %e = tanh(%a)
          return %e, %a
        }""", """
        graph g(%x: float32[2], %unused: float32[3]) {
          %a = relu(%x)
          %e = tanh(%a)
          return %e, %a
        }""")


def test_keeps_everything_that_is_needed():
    text = """
        graph g(%x: float32[2]) {
          %a = relu(%x)
          %b = neg(%a)
          %c = add(%a, %b)
          return %c
        }"""
    assert_rewrites(dead_code, text, text)


def test_graph_without_nodes_needed():
    assert_rewrites(dead_code, """
        graph g(%x: float32[2]) {
          %a = relu(%x)
          return %x
        }""", """
        graph g(%x: float32[2]) {
          return %x
        }""")


@pytest.mark.parametrize("seed", range(60))
def test_random_graphs(seed):
    g = random_graph(seed)
    before = print_graph(g)
    out = dead_code(g)
    assert print_graph(g) == before
    verify(out)
    assert_same_results(g, out, random_inputs(g, seed), rtol=0, atol=0)
    # every remaining node is needed: removing any one breaks an output's definition
    users = out.users()
    outs = set(out.outputs)
    for n in out.nodes:
        assert any(o in outs or users.get(o) for o in n.outputs), n
