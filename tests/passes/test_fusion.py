"""Operator fusion: the grouping rules on hand-written graphs, and the invariants (cover,
order, one output, one anchor, shape rule) plus group-by-group execution on random graphs."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ember.graph import Graph, run_graph
from ember.graph.text import parse_graph
from ember.ops import Pattern, get_op
from ember.passes import describe, fuse, optimize
from ember.passes.fusion import SIMPLE_REDUCTIONS, Group
from graphgen import random_graph, random_inputs


def grouping(text: str) -> list[list[str]]:
    """The node names of each group, in order."""
    return [[n.name for n in gr.nodes] for gr in fuse(parse_graph(text))]


CONV = """
  %w = const float32[4, 2, 3, 3] [WEIGHTS]
  %b = const float32[1, 4, 1, 1] [0.1, 0.2, 0.3, 0.4]""".replace("WEIGHTS", ", ".join(["0.5"] * 72))


def test_conv_bias_relu_residual_is_one_group():
    groups = fuse(parse_graph(f"""
        graph g(%x: float32[1, 2, 6, 6], %res: float32[1, 4, 6, 6]) {{{CONV}
          %conv1 = conv2d(%x, %w) {{pads=[1, 1, 1, 1]}}
          %bias1 = add(%conv1, %b)
          %relu1 = relu(%bias1)
          %add1 = add(%relu1, %res)
          return %add1
        }}"""))
    assert len(groups) == 1
    (gr,) = groups
    assert [n.name for n in gr.nodes] == ["conv1", "bias1", "relu1", "add1"]
    assert gr.anchor is gr.nodes[0]
    assert [v.name for v in gr.inputs] == ["x", "w", "b", "res"]
    assert gr.output.name == "add1"
    assert gr.name == "conv1__bias1__relu1__add1"


def test_two_users_end_a_group():
    assert grouping("""
        graph g(%x: float32[4]) {
          %a = relu(%x)
          %b = exp(%a)
          %c = neg(%a)
          %d = add(%b, %c)
          return %d
        }""") == [["a"], ["b", "c", "d"]]


def test_an_elementwise_dag_reading_an_anchor_output_twice_joins_it():
    """GELU after a convolution: every reader of the biased output is in one elementwise
    group, which becomes the convolution's epilogue."""
    groups = fuse(parse_graph(f"""
        graph g(%x: float32[1, 2, 6, 6]) {{{CONV}
          %c = const float32[] [0.5]
          %conv1 = conv2d(%x, %w) {{pads=[1, 1, 1, 1]}}
          %y = add(%conv1, %b)
          %t = erf(%y)
          %h = mul(%y, %c)
          %g = mul(%h, %t)
          return %g
        }}"""))
    assert [[n.name for n in gr.nodes] for gr in groups] == [["conv1", "y", "t", "h", "g"]]
    assert groups[0].output.name == "g"


def test_a_dag_after_a_softmax_does_not_join():
    """A softmax's output is an expression over its row reductions (an exp): a DAG reading it
    twice would compute it twice per element."""
    assert grouping("""
        graph g(%x: float32[2, 16]) {
          %c = const float32[] [0.0]
          %p = softmax(%x) {axis=1}
          %n = isnan(%p)
          %q = where(%n, %c, %p)
          return %q
        }""") == [["p"], ["n", "q"]]


def test_a_dag_with_a_reader_outside_does_not_join():
    assert grouping(f"""
        graph g(%x: float32[1, 2, 6, 6]) {{{CONV}
          %conv1 = conv2d(%x, %w) {{pads=[1, 1, 1, 1]}}
          %y = add(%conv1, %b)
          %t = erf(%y)
          %g = mul(%y, %t)
          %s = reduce_sum(%y) {{axes=[1], keepdims=true}}
          return %g, %s
        }}""") == [["conv1", "y"], ["t", "g"], ["s"]]


def test_a_graph_output_ends_a_group():
    assert grouping("""
        graph g(%x: float32[4]) {
          %a = relu(%x)
          %b = exp(%a)
          %c = neg(%b)
          return %c, %b
        }""") == [["a", "b"], ["c"]]


def test_conv_absorbs_no_producers_and_only_same_shape_elementwise_consumers():
    assert grouping(f"""
        graph g(%x: float32[1, 2, 6, 6], %big: float32[2, 4, 6, 6]) {{{CONV}
          %pre = relu(%x)
          %conv1 = conv2d(%pre, %w) {{pads=[1, 1, 1, 1]}}
          %bias1 = add(%conv1, %b)
          %wide = add(%bias1, %big)
          return %wide
        }}""") == [["pre"], ["conv1", "bias1"], ["wide"]]
    # an injective op does not join a conv's group; it starts a new one
    assert grouping(f"""
        graph g(%x: float32[1, 2, 6, 6]) {{{CONV}
          %conv1 = conv2d(%x, %w) {{pads=[1, 1, 1, 1]}}
          %r = relu(%conv1)
          %t = transpose(%r) {{perm=[0, 2, 3, 1]}}
          %e = exp(%t)
          return %e
        }}""") == [["conv1", "r"], ["t", "e"]]


def test_one_anchor_per_group():
    assert grouping("""
        graph g(%x: float32[3, 4], %y: float32[4, 5], %z: float32[5, 2]) {
          %m1 = matmul(%x, %y)
          %r = relu(%m1)
          %m2 = matmul(%r, %z)
          %s = reduce_sum(%m2) {axes=[1]}
          %t = tanh(%s)
          return %t
        }""") == [["m1", "r"], ["m2"], ["s", "t"]]


def test_the_chain_continues_through_the_full_shape_operand_only():
    # s has the reduction's shape [3, 1]; 'wide' broadcasts it to [3, 4]: not in the group
    assert grouping("""
        graph g(%x: float32[3, 4], %k: float32[3, 1]) {
          %e = exp(%x)
          %s = reduce_sum(%e) {axes=[1]}
          %m = mul(%k, %s)
          %wide = add(%m, %x)
          return %wide
        }""") == [["e", "s", "m"], ["wide"]]


def test_simple_reductions_absorb_their_producers_others_do_not():
    for op in sorted(SIMPLE_REDUCTIONS):
        assert grouping(f"""
            graph g(%x: float32[3, 4], %y: float32[4, 3]) {{
              %t = transpose(%y) {{perm=[1, 0]}}
              %a = add(%x, %t)
              %e = abs(%a)
              %r = {op}(%e) {{axes=[0]}}
              return %r
            }}""") == [["t", "a", "e", "r"]]
    for op, attrs in (("softmax", ""), ("argmax", ""), ("layer_norm", "")):
        extra = ", %x, %x" if op == "layer_norm" else ""
        assert grouping(f"""
            graph g(%x: float32[3, 4]) {{
              %e = exp(%x)
              %r = {op}(%e{extra})
              return %r
            }}""") == [["e"], ["r"]]


def test_producer_with_another_user_is_not_absorbed_by_a_reduction():
    assert grouping("""
        graph g(%x: float32[3, 4]) {
          %e = exp(%x)
          %s = reduce_max(%e) {axes=[1]}
          %d = sub(%e, %s)
          return %d
        }""") == [["e"], ["s"], ["d"]]


def test_opaque_ops_are_alone_and_injective_ops_chain_freely():
    assert grouping("""
        graph g(%x: float32[1, 2, 4, 4]) {
          %a = relu(%x)
          %p = max_pool2d(%a) {kernel=[2, 2], strides=[2, 2]}
          %r = reshape(%p) {shape=[2, 4]}
          %t = transpose(%r) {perm=[1, 0]}
          %s = slice(%t) {starts=[0, 0], ends=[4, 1], steps=[1, 1]}
          %e = exp(%s)
          %c = concat(%e, %e) {axis=0}
          return %c
        }""") == [["a"], ["p"], ["r", "t", "s", "e", "c"]]  # c reads e twice: one user


def test_elementwise_trees_merge_several_producers():
    assert grouping("""
        graph g(%x: float32[4], %y: float32[4]) {
          %a = relu(%x)
          %b = exp(%y)
          %c = add(%a, %b)
          %d = neg(%c)
          return %d
        }""") == [["a", "b", "c", "d"]]


def test_kernel_names_are_c_identifiers_and_unique():
    g = parse_graph("""
        graph g(%x: float32[4]) {
          %a = relu(%x) @"1st/relu:0"
          %b = exp(%a) @"int"
          %c = neg(%a) @"int_"
          %d = add(%b, %c) @"a_very_long_node_name_that_goes_on_and_on_and_on_for_a_while_1"
          %e = sin(%d) @"a_very_long_node_name_that_goes_on_and_on_and_on_for_a_while_2"
          %f = cos(%e) @"a_very_long_node_name_that_goes_on_and_on_and_on_for_a_while_3"
          %h = add(%d, %f) @"h"
          %i = tanh(%d) @"i"
          %j = sigmoid(%i) @"1st/relu-0"
          %k = abs(%j) @"h__x"
          %l = add(%k, %h) @"__"
          return %l
        }""")
    names = [gr.name for gr in fuse(g)]
    assert len(set(names)) == len(names)
    for n in names:
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n), n
        assert len(n) <= 64, n
    assert names[0] == "k_1st_relu_0"


def test_describe():
    text = describe(fuse(parse_graph(f"""
        graph g(%x: float32[1, 2, 6, 6]) {{{CONV}
          %conv1 = conv2d(%x, %w) {{pads=[1, 1, 1, 1]}}
          %relu1 = relu(%conv1)
          return %relu1
        }}""")))
    assert text == "   0 conv1__relu1: conv2d, relu  [anchor conv2d 'conv1']\n"


# ---- invariants on random graphs -------------------------------------------------------------

def check_groups(graph: Graph, groups: list[Group]) -> None:
    pos = {n: i for i, n in enumerate(graph.nodes)}
    covered = [n for gr in groups for n in gr.nodes]
    assert sorted(map(pos.__getitem__, covered)) == list(range(len(graph.nodes))), "cover each node once"
    users = graph.users()
    outs = set(graph.outputs)
    available = set(graph.inputs)
    for gr in groups:
        nodes = gr.nodes
        assert [pos[n] for n in nodes] == sorted(pos[n] for n in nodes), "topological order inside"
        assert gr.output is nodes[-1].output
        inside = {o for n in nodes for o in n.outputs}
        expected_inputs = list(dict.fromkeys(v for n in nodes for v in n.inputs if v not in inside))
        assert gr.inputs == expected_inputs
        for v in gr.inputs:  # valid execution order
            assert v.is_const or v in available, f"{gr.name} reads {v.name} before it is computed"
        available.add(gr.output)
        for n in nodes[:-1]:  # one output
            assert n.output not in outs and all(u in nodes for u in users.get(n.output, []))
            readers = users.get(n.output, [])
            # several readers only in an elementwise epilogue DAG after an anchor
            assert len(readers) == 1 or (gr.anchor is not None and all(
                get_op(u.op).pattern in (Pattern.ELEMWISE, Pattern.BROADCAST) for u in readers))
        patterns = [get_op(n.op).pattern for n in nodes]
        anchors = [n for n, p in zip(nodes, patterns) if p in (Pattern.OUT_ELEMWISE_FUSABLE, Pattern.REDUCTION)]
        assert len(anchors) <= 1 and gr.anchor is (anchors[0] if anchors else None)
        if Pattern.OPAQUE in patterns:
            assert len(nodes) == 1
        if gr.anchor is not None:
            k = nodes.index(gr.anchor)
            if gr.anchor.op not in SIMPLE_REDUCTIONS:
                assert k == 0, f"{gr.anchor.op} absorbed producers"
            full = gr.anchor.output.type.shape
            # the epilogue: elementwise ops on the anchor's output grid, each reading a value
            # computed after the anchor (a chain, or a DAG such as GELU's)
            epilogue = {gr.anchor.output}
            for n, p in zip(nodes[k + 1:], patterns[k + 1:]):
                assert p in (Pattern.ELEMWISE, Pattern.BROADCAST)
                assert n.output.type.shape == full and any(v in epilogue for v in n.inputs)
                epilogue.add(n.output)
    assert set(graph.outputs) - set(graph.inputs) - {v for v in graph.outputs if v.is_const} <= available


def run_groups(graph: Graph, groups: list[Group], inputs) -> list[np.ndarray]:
    """Execute group by group, each seeing only its declared inputs."""
    env = {v: np.asarray(inputs[v.name]) for v in graph.inputs}
    for gr in groups:
        local = {v: (v.const if v.is_const else env[v]) for v in gr.inputs}
        for n in gr.nodes:
            outs = get_op(n.op).run_reference(n.attrs, [local[v] for v in n.inputs])
            local.update(zip(n.outputs, outs))
        env[gr.output] = local[gr.output]
    return [v.const if v.is_const else env[v] for v in graph.outputs]


@pytest.mark.parametrize("optimized", [False, True])
@pytest.mark.parametrize("seed", range(80))
def test_random_graphs(seed, optimized):
    g = random_graph(seed)
    if optimized:
        g = optimize(g, 2)
    groups = fuse(g)
    check_groups(g, groups)
    assert len(describe(groups).splitlines()) == len(groups)
    inputs = random_inputs(g, seed)
    for a, b in zip(run_graph(g, inputs), run_groups(g, groups, inputs)):
        assert a.tobytes() == b.tobytes()


def test_random_graphs_actually_fuse():
    fused = sum(len(gr.nodes) > 1 for s in range(40) for gr in fuse(optimize(random_graph(s), 2)))
    assert fused > 40
