"""Attention fusion: matmul -> [scale] -> [mask] -> softmax -> matmul becomes one node."""

from __future__ import annotations

import numpy as np
import pytest

from ember.graph.text import parse_graph, print_graph
from ember.passes.fuse_attention import run as fuse_attention
from graphgen import assert_rewrites, assert_same_results, random_inputs


def test_vit_form_scale_and_padded_keys():
    """ViT: a scalar scale; 20 keys are not whole pairs of vectors, so the transposed keys get
    zero columns up to 32 and the node keeps keys=20."""
    assert_rewrites(fuse_attention, """
        graph g(%q: float32[2, 20, 8], %kt: float32[2, 8, 20], %v: float32[2, 20, 16]) {
          %c = const float32[] 0.5
          %s = matmul(%q, %kt)
          %t = mul(%s, %c)
          %p = softmax(%t) {axis=2}
          %o = matmul(%p, %v)
          return %o
        }""", """
        graph g(%q: float32[2, 20, 8], %kt: float32[2, 8, 20], %v: float32[2, 20, 16]) {
          %o_keys_pad = pad(%kt) {pads=[0, 0, 0, 0, 0, 12], mode="constant", value=0.0}
          %o_1 = attention(%q, %o_keys_pad, %v) {scale=0.5, mask="none", fill=0.0, fill_when=true, keys=20}
          return %o_1
        }""")


def test_bert_form_additive_mask_and_division():
    assert_rewrites(fuse_attention, """
        graph g(%q: float32[1, 2, 16, 8], %kt: float32[1, 2, 8, 16], %v: float32[1, 2, 16, 8], %m: float32[1, 1, 1, 16]) {
          %c = const float32[] 4.0
          %s = matmul(%q, %kt)
          %t = div(%s, %c)
          %u = add(%t, %m)
          %p = softmax(%u) {axis=-1}
          %o = matmul(%p, %v)
          return %o
        }""", """
        graph g(%q: float32[1, 2, 16, 8], %kt: float32[1, 2, 8, 16], %v: float32[1, 2, 16, 8], %m: float32[1, 1, 1, 16]) {
          %o_1 = attention(%q, %kt, %v, %m) {scale=0.25, mask="add", fill=0.0, fill_when=true, keys=0}
          return %o_1
        }""")


def test_gpt2_form_causal_fill():
    before = """
        graph g(%q: float32[1, 2, 16, 8], %kt: float32[1, 2, 8, 16], %v: float32[1, 2, 16, 8]) {
          %c = const float32[] 0.125
          %causal = const bool[16, 16] CAUSAL
          %big = const float32[] -3.4028234663852886e+38
          %s = matmul(%q, %kt)
          %t = mul(%c, %s)
          %u = where(%causal, %big, %t)
          %p = softmax(%u) {axis=3}
          %o = matmul(%p, %v)
          return %o
        }"""
    causal = np.triu(np.ones((16, 16), bool), 1)
    before = before.replace("CAUSAL", "[" + ", ".join("true" if x else "false" for x in causal.ravel()) + "]")
    g = parse_graph(before)
    out = fuse_attention(g)
    text = print_graph(out)
    assert "attention(%q, %kt, %v, %causal)" in text
    assert 'mask="fill"' in text and "fill_when=true" in text and "scale=0.125" in text
    assert_same_results(g, out, random_inputs(g), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("why, graph", [
    ("the scores are also a graph output", """
        graph g(%q: float32[2, 4, 8], %kt: float32[2, 8, 4], %v: float32[2, 4, 8]) {
          %s = matmul(%q, %kt)
          %p = softmax(%s) {axis=2}
          %o = matmul(%p, %v)
          return %o, %s
        }"""),
    ("the probabilities have a second reader", """
        graph g(%q: float32[2, 4, 8], %kt: float32[2, 8, 4], %v: float32[2, 4, 8]) {
          %s = matmul(%q, %kt)
          %p = softmax(%s) {axis=2}
          %o = matmul(%p, %v)
          %r = relu(%p)
          return %o, %r
        }"""),
    ("the softmax is not over the keys", """
        graph g(%q: float32[2, 4, 8], %kt: float32[2, 8, 4], %v: float32[2, 4, 8]) {
          %s = matmul(%q, %kt)
          %p = softmax(%s) {axis=1}
          %o = matmul(%p, %v)
          return %o
        }"""),
    ("the scale is not a scalar", """
        graph g(%q: float32[2, 4, 8], %kt: float32[2, 8, 4], %v: float32[2, 4, 8], %c: float32[4]) {
          %s = matmul(%q, %kt)
          %t = mul(%s, %c)
          %p = softmax(%t) {axis=2}
          %o = matmul(%p, %v)
          return %o
        }"""),
    ("a log-softmax", """
        graph g(%q: float32[2, 4, 8], %kt: float32[2, 8, 4], %v: float32[2, 4, 8]) {
          %s = matmul(%q, %kt)
          %p = softmax(%s) {axis=2, log=true}
          %o = matmul(%p, %v)
          return %o
        }"""),
])
def test_leaves_other_chains_alone(why, graph):
    g = parse_graph(graph)
    assert "attention" not in print_graph(fuse_attention(g)), why


def test_fused_attention_compiles_and_matches(tmp_path):
    """The fused node through the whole compiler (ViT-like rows of 20 keys with padding, and
    an additive mask), against the graph before fusion run by the reference interpreter."""
    import ember
    from ember.graph import run_graph

    g = parse_graph("""
        graph g(%q: float32[2, 3, 20, 16], %k: float32[2, 3, 20, 16], %v: float32[2, 3, 20, 16], %m: float32[2, 1, 1, 20]) {
          %c = const float32[] 0.25
          %kt = transpose(%k) {perm=[0, 1, 3, 2]}
          %s = matmul(%q, %kt)
          %t = mul(%s, %c)
          %u = add(%t, %m)
          %p = softmax(%u) {axis=3}
          %o = matmul(%p, %v)
          return %o
        }""")
    feeds = random_inputs(g)
    module = ember.compile(g, dump=tmp_path)
    fused = next(tmp_path.glob("*_fuse_attention.graph.txt")).read_text()
    assert "= attention(" in fused and "softmax" not in fused
    np.testing.assert_allclose(module.run(feeds)["o"], run_graph(g, feeds)[0], rtol=1e-4, atol=1e-5)
