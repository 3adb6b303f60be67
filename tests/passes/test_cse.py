"""Common-subexpression elimination."""

from __future__ import annotations

import pytest

from ember.graph.text import print_graph
from ember.graph.verify import verify
from ember.passes.cse import cse
from graphgen import assert_rewrites, assert_same_results, random_graph, random_inputs


def test_merges_duplicate_nodes():
    assert_rewrites(cse, """
        graph g(%x: float32[2, 3]) {
          %a = relu(%x)
          %b = relu(%x)
          %c = add(%a, %b)
          %d = transpose(%c) {perm=[1, 0]}
          %e = transpose(%c) {perm=[1, 0]}
          %f = mul(%d, %e)
          return %f
        }""", """
        graph g(%x: float32[2, 3]) {
          %a = relu(%x)
          %c = add(%a, %a)
          %d = transpose(%c) {perm=[1, 0]}
          %f = mul(%d, %d)
          return %f
        }""")


def test_merges_transitively_and_commutative_operands():
    assert_rewrites(cse, """
        graph g(%x: float32[2], %y: float32[2]) {
          %a = add(%x, %y)
          %b = add(%y, %x)
          %s = sub(%x, %y)
          %t = sub(%y, %x)
          %na = neg(%a)
          %nb = neg(%b)
          %o = maximum(%na, %nb)
          %st = mul(%s, %t)
          return %o, %st
        }""", """
        graph g(%x: float32[2], %y: float32[2]) {
          %a = add(%x, %y)
          %s = sub(%x, %y)
          %t = sub(%y, %x)
          %na = neg(%a)
          %o = maximum(%na, %na)
          %st = mul(%s, %t)
          return %o, %st
        }""")


def test_different_attributes_are_not_merged():
    text = """
        graph g(%x: float32[2, 3]) {
          %a = reduce_sum(%x) {axes=[0], keepdims=true}
          %b = reduce_sum(%x) {axes=[0], keepdims=false}
          %c = reduce_sum(%x) {axes=[1], keepdims=true}
          %d = clip(%x) {lo=0.0, hi=none}
          %e = clip(%x) {lo=-0.0, hi=none}
          %f = clip(%x) {lo=0, hi=none}
          return %a, %b, %c, %d, %e, %f
        }"""
    assert_rewrites(cse, text, text)


def test_merges_equal_constants_and_then_their_users():
    assert_rewrites(cse, """
        graph g(%x: float32[2]) {
          %k1 = const float32[2] [1.0, 2.0]
          %k2 = const float32[2] [1.0, 2.0]
          %k3 = const float64[2] [1.0, 2.0]
          %k4 = const float32[1, 2] [1.0, 2.0]
          %a = mul(%x, %k1)
          %b = mul(%x, %k2)
          %c = add(%a, %b)
          %d = add(%c, %k4)
          %e = cast(%x) {to="float64"}
          %f = add(%e, %k3)
          return %d, %f
        }""", """
        graph g(%x: float32[2]) {
          %k1 = const float32[2] [1.0, 2.0]
          %k4 = const float32[1, 2] [1.0, 2.0]
          %k3 = const float64[2] [1.0, 2.0]
          %a = mul(%x, %k1)
          %c = add(%a, %a)
          %d = add(%c, %k4)
          %e = cast(%x) {to="float64"}
          %f = add(%e, %k3)
          return %d, %f
        }""")


def test_graph_outputs_keep_their_names():
    text = """
        graph g(%x: float32[2]) {
          %a = relu(%x)
          %b = relu(%x)
          return %a, %b
        }"""
    assert_rewrites(cse, text, text)
    # but a later duplicate of an output is merged into it
    assert_rewrites(cse, """
        graph g(%x: float32[2]) {
          %a = relu(%x)
          %b = relu(%x)
          %c = neg(%b)
          return %a, %c
        }""", """
        graph g(%x: float32[2]) {
          %a = relu(%x)
          %c = neg(%a)
          return %a, %c
        }""")


@pytest.mark.parametrize("seed", range(60))
def test_random_graphs(seed):
    g = random_graph(seed)
    before = print_graph(g)
    out = cse(g)
    assert print_graph(g) == before
    verify(out)
    assert_same_results(g, out, random_inputs(g, seed), rtol=0, atol=0)
    # idempotent, and no two remaining nodes are the same computation
    assert print_graph(cse(out)) == print_graph(out)
