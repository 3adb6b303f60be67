"""Batch-norm folding into a preceding conv2d."""

from __future__ import annotations

import numpy as np
import pytest

from ember.graph import GraphBuilder, TensorType
from ember.graph.text import print_graph
from ember.graph.verify import verify
from ember.passes.dead_code import dead_code
from ember.passes.fold_batch_norm import fold_batch_norm
from graphgen import assert_rewrites, assert_same_results, random_graph, random_inputs

# inv = scale / sqrt(var + eps) = [4 / 2, 1 / 1] = [2, 1]; shift = bias - mean * inv
BN_PARAMS = """
          %scale = const float32[2] [4.0, 1.0]
          %bias = const float32[2] [0.5, -1.0]
          %mean = const float32[2] [1.0, 2.0]
          %var = const float32[2] [3.0, 0.0]"""


def test_folds_into_conv_weights_and_a_channel_add():
    assert_rewrites(fold_batch_norm, f"""
        graph g(%x: float32[1, 1, 3, 3]) {{
          %w = const float32[2, 1, 1, 1] [1.5, -3.0]{BN_PARAMS}
          %c = conv2d(%x, %w)
          %bn = batch_norm(%c, %scale, %bias, %mean, %var) {{epsilon=1.0}}
          %y = relu(%bn)
          return %y
        }}""", """
        graph g(%x: float32[1, 1, 3, 3]) {
          %w_bn = const float32[2, 1, 1, 1] [3.0, -3.0]
          %bn_shift = const float32[1, 2, 1, 1] [-1.5, -3.0]
          %c = conv2d(%x, %w_bn)
          %bn = add(%c, %bn_shift)
          %y = relu(%bn)
          return %y
        }""")


def test_folds_a_conv_bias_too():
    # shift = (b - mean) * inv + bias = [(1 - 1) * 2 + 0.5, (4 - 2) * 1 - 1]
    assert_rewrites(fold_batch_norm, f"""
        graph g(%x: float32[1, 1, 3, 3]) {{
          %w = const float32[2, 1, 1, 1] [1.5, -3.0]
          %b = const float32[1, 2, 1, 1] [1.0, 4.0]{BN_PARAMS}
          %c = conv2d(%x, %w)
          %cb = add(%c, %b)
          %bn = batch_norm(%cb, %scale, %bias, %mean, %var) {{epsilon=1.0}}
          return %bn
        }}""", """
        graph g(%x: float32[1, 1, 3, 3]) {
          %w_bn = const float32[2, 1, 1, 1] [3.0, -3.0]
          %bn_shift = const float32[1, 2, 1, 1] [0.5, 1.0]
          %c = conv2d(%x, %w_bn)
          %bn = add(%c, %bn_shift)
          return %bn
        }""")


NOT_FOLDABLE = {
    "conv output has another user": """
        graph g(%x: float32[1, 1, 3, 3]) {
          %w = const float32[2, 1, 1, 1] [1.5, -3.0]PARAMS
          %c = conv2d(%x, %w)
          %bn = batch_norm(%c, %scale, %bias, %mean, %var) {epsilon=1.0}
          %y = add(%bn, %c)
          return %y
        }""",
    "conv output is a graph output": """
        graph g(%x: float32[1, 1, 3, 3]) {
          %w = const float32[2, 1, 1, 1] [1.5, -3.0]PARAMS
          %c = conv2d(%x, %w)
          %bn = batch_norm(%c, %scale, %bias, %mean, %var) {epsilon=1.0}
          return %bn, %c
        }""",
    "weight is not constant": """
        graph g(%x: float32[1, 1, 3, 3], %w: float32[2, 1, 1, 1]) {PARAMS
          %c = conv2d(%x, %w)
          %bn = batch_norm(%c, %scale, %bias, %mean, %var) {epsilon=1.0}
          return %bn
        }""",
    "parameters are not constant": """
        graph g(%x: float32[1, 1, 3, 3], %scale: float32[2]) {
          %w = const float32[2, 1, 1, 1] [1.5, -3.0]
          %bias = const float32[2] [0.5, -1.0]
          %mean = const float32[2] [1.0, 2.0]
          %var = const float32[2] [3.0, 0.0]
          %c = conv2d(%x, %w)
          %bn = batch_norm(%c, %scale, %bias, %mean, %var) {epsilon=1.0}
          return %bn
        }""",
    "not after a conv": """
        graph g(%x: float32[1, 2, 3, 3]) {PARAMS
          %c = relu(%x)
          %bn = batch_norm(%c, %scale, %bias, %mean, %var) {epsilon=1.0}
          return %bn
        }""",
    "biased conv with another user of the sum": """
        graph g(%x: float32[1, 1, 3, 3]) {
          %w = const float32[2, 1, 1, 1] [1.5, -3.0]
          %b = const float32[1, 2, 1, 1] [1.0, 4.0]PARAMS
          %c = conv2d(%x, %w)
          %cb = add(%c, %b)
          %bn = batch_norm(%cb, %scale, %bias, %mean, %var) {epsilon=1.0}
          return %bn, %cb
        }""",
}


@pytest.mark.parametrize("case", sorted(NOT_FOLDABLE))
def test_leaves_unfoldable_batch_norms(case):
    text = NOT_FOLDABLE[case].replace("PARAMS", BN_PARAMS)
    assert_rewrites(fold_batch_norm, text, text)


def test_grouped_conv_with_realistic_numbers():
    rng = np.random.default_rng(0)
    b = GraphBuilder("g")
    x = b.input("x", TensorType((2, 4, 6, 6), "float32"))
    w = b.const(rng.standard_normal((8, 2, 3, 3)).astype(np.float32), "w")
    c = b.op("conv2d", [x, w], groups=2, pads=(1, 1, 1, 1), strides=(2, 2))
    params = [b.const(rng.standard_normal(8).astype(np.float32)) for _ in range(3)]
    var = b.const((rng.random(8) + 0.1).astype(np.float32))
    g = b.finish([b.op("batch_norm", [c, *params, var])])
    out = dead_code(fold_batch_norm(g))
    verify(out)
    assert [n.op for n in out.nodes] == ["conv2d", "add"]
    assert_same_results(g, out, random_inputs(g), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(80))
def test_random_graphs(seed):
    g = random_graph(seed)
    before = print_graph(g)
    out = fold_batch_norm(g)
    assert print_graph(g) == before
    verify(out)
    assert_same_results(g, out, random_inputs(g, seed), rtol=1e-5, atol=1e-5)
