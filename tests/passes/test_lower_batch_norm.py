"""Lowering batch_norm to elementwise arithmetic."""

from __future__ import annotations

import pytest

from ember.graph.text import print_graph
from ember.graph.verify import verify
from ember.passes.fold_constants import fold_constants
from ember.passes.lower_batch_norm import lower_batch_norm
from graphgen import assert_rewrites, assert_same_results, random_graph, random_inputs


def test_constant_parameters_fold_into_a_scale_and_a_shift():
    # inv = scale / sqrt(var + eps) = [2, 1, 0.5]; shift = bias - mean * inv
    assert_rewrites(lower_batch_norm, """
        graph g(%x: float32[2, 3, 4]) {
          %scale = const float32[3] [4.0, 1.0, 1.0]
          %bias = const float32[3] [0.5, -1.0, 0.0]
          %mean = const float32[3] [1.0, 2.0, -4.0]
          %var = const float32[3] [3.0, 0.0, 3.0]
          %bn = batch_norm(%x, %scale, %bias, %mean, %var) {epsilon=1.0}
          %y = relu(%bn)
          return %y
        }""", """
        graph g(%x: float32[2, 3, 4]) {
          %bn_inv = const float32[1, 3, 1] [2.0, 1.0, 0.5]
          %bn_shift = const float32[1, 3, 1] [-1.5, -3.0, 2.0]
          %bn_scaled = mul(%x, %bn_inv)
          %bn = add(%bn_scaled, %bn_shift)
          %y = relu(%bn)
          return %y
        }""")


def test_rank_two_input():
    assert_rewrites(lower_batch_norm, """
        graph g(%x: float32[5, 2]) {
          %p = const float32[2] [1.0, 1.0]
          %z = const float32[2] [0.0, 0.0]
          %bn = batch_norm(%x, %p, %z, %z, %p) {epsilon=3.0}
          return %bn
        }""", """
        graph g(%x: float32[5, 2]) {
          %bn_inv = const float32[1, 2] [0.5, 0.5]
          %bn_shift = const float32[1, 2] [0.0, 0.0]
          %bn_scaled = mul(%x, %bn_inv)
          %bn = add(%bn_scaled, %bn_shift)
          return %bn
        }""")


def test_runtime_parameters_are_written_out_in_ops():
    out = assert_rewrites(lower_batch_norm, """
        graph g(%x: float32[1, 2, 3, 3], %scale: float32[2]) {
          %bias = const float32[2] [0.5, -1.0]
          %mean = const float32[2] [1.0, 2.0]
          %var = const float32[2] [3.0, 0.0]
          %bn = batch_norm(%x, %scale, %bias, %mean, %var) {epsilon=1.0}
          return %bn
        }""", """
        graph g(%x: float32[1, 2, 3, 3], %scale: float32[2]) {
          %var = const float32[2] [3.0, 0.0]
          %bn_eps = const float32[] 1.0
          %mean = const float32[2] [1.0, 2.0]
          %bias = const float32[2] [0.5, -1.0]
          %bn_var_eps = add(%var, %bn_eps)
          %bn_std = sqrt(%bn_var_eps)
          %bn_inv = div(%scale, %bn_std)
          %bn_mean_r = reshape(%mean) {shape=[1, 2, 1, 1]}
          %bn_centered = sub(%x, %bn_mean_r)
          %bn_inv_r = reshape(%bn_inv) {shape=[1, 2, 1, 1]}
          %bn_scaled = mul(%bn_centered, %bn_inv_r)
          %bn_bias_r = reshape(%bias) {shape=[1, 2, 1, 1]}
          %bn = add(%bn_scaled, %bn_bias_r)
          return %bn
        }""")
    folded = fold_constants(out)
    assert [n.op for n in folded.nodes] == ["div", "sub", "reshape", "mul", "add"]


@pytest.mark.parametrize("seed", range(80))
def test_random_graphs(seed):
    g = random_graph(seed)
    before = print_graph(g)
    out = lower_batch_norm(g)
    assert print_graph(g) == before
    verify(out)
    assert "batch_norm" not in out.op_histogram()
    assert_same_results(g, out, random_inputs(g, seed), rtol=1e-5, atol=1e-5)
