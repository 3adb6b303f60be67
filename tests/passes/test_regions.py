"""Region ops (``if``, ``loop``) through the graph layer and the passes: the text form, the
verifier, folding, CSE and dead code treat a region node as one opaque node; compiled, the
artifact runs the bodies under C control flow (against the reference interpreter)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.errors import EmberError, GraphError, ParseError
from ember.graph.interpreter import run_graph
from ember.graph.text import parse_graph, print_graph
from ember.graph.verify import verify
from ember.passes.cse import cse
from ember.passes.dead_code import dead_code
from ember.passes.fold_constants import fold_constants
from graphgen import assert_rewrites

BRANCHES = """then_branch=graph t(%a: float32[4]) {
      %two = const float32[] 2.0
      %r = mul(%a, %two)
      return %r
    }, else_branch=graph e(%a: float32[4]) {
      %r = neg(%a)
      return %r
    }"""

PROGRAM = """
graph g(%c: bool[], %x: float32[4], %m: int64[]) {
  %y = if(%c, %x) {""" + BRANCHES + """}
  %t = const bool[] true
  %z = loop(%m, %t, %y, %x) {num_carried=1, body=graph b(%i: int64[], %k: bool[], %acc: float32[4], %x: float32[4]) {
      %r = add(%acc, %x)
      %fi = cast(%i) {to="float32"}
      %s = add(%x, %fi)
      %lim = const float32[] 100.0
      %tot = reduce_sum(%r) {axes=[0], keepdims=false}
      %go = less(%tot, %lim)
      return %go, %r
    }}
  return %z, %y
}
"""

#: the loop with a scan output (rows %s of every iteration), which must run exactly 3 times
SCAN = (PROGRAM.replace("%z = loop", "%z, %s = loop").replace("return %go, %r", "return %go, %r, %s")
        .replace("    }}\n  return %z, %y", "    }, length=3}\n  return %z, %s"))


def test_text_form_round_trips_bodies():
    g = parse_graph(PROGRAM)
    verify(g)
    text = print_graph(g)
    assert "graph t(%a: float32[4])" in text and "graph b(" in text
    assert print_graph(parse_graph(text)) == text


def test_reference_runs_bodies():
    g = parse_graph(PROGRAM)
    x = np.array([1, 2, 3, 4], np.float32)
    z, y = run_graph(g, [np.array(True), x, np.array(2)])
    np.testing.assert_array_equal(y, 2 * x)
    np.testing.assert_array_equal(z, 2 * x + x + x)
    z, y = run_graph(g, [np.array(False), x, np.array(0)])
    np.testing.assert_array_equal(z, -x)
    scan = parse_graph(SCAN)
    z, s = run_graph(scan, [np.array(True), x, np.array(3)])
    np.testing.assert_array_equal(s, x + np.arange(3, dtype=np.float32)[:, None])
    with pytest.raises(EmberError, match="ran 2 iterations"):     # scan outputs need exactly `length`
        run_graph(scan, [np.array(True), x, np.array(2)])


def test_verifier_checks_bodies_and_their_types():
    with pytest.raises(ParseError, match="different types"):
        parse_graph(PROGRAM.replace("%r = neg(%a)\n      return %r", "%r = reduce_sum(%a) {axes=[0]}\n      return %r"))
    with pytest.raises(ParseError, match="changes type"):
        parse_graph(PROGRAM.replace("return %go, %r", "%r64 = cast(%r) {to=\"float64\"}\n      return %go, %r64"))
    g = parse_graph(PROGRAM)
    g.nodes[0].attrs["then_branch"].outputs = [g.nodes[0].attrs["then_branch"].inputs[0], parse_graph(
        "graph q(%u: float32[4]) {\n %w = neg(%u)\n return %w\n}").nodes[0].outputs[0]]
    with pytest.raises(GraphError, match="in its body"):
        verify(g)


def test_fold_inlines_the_branch_of_a_constant_condition():
    assert_rewrites(fold_constants, """
        graph g(%x: float32[4]) {
          %c = const bool[] false
          %y = if(%c, %x) {""" + BRANCHES + """}
          %z = relu(%y)
          return %z
        }""", """
        graph g(%x: float32[4]) {
          %y/r = neg(%x) @y/r
          %z = relu(%y/r)
          return %z
        }""")


def test_fold_drops_a_loop_that_never_runs_and_keeps_a_run_time_one():
    body = """body=graph b(%i: int64[], %k: bool[], %acc: float32[4]) {
          %r = exp(%acc)
          return %k, %r
        }, num_carried=1"""
    assert_rewrites(fold_constants, """
        graph g(%x: float32[4]) {
          %m = const int64[] 0
          %t = const bool[] true
          %z = loop(%m, %t, %x) {""" + body + """}
          %w = neg(%z)
          return %w
        }""", """
        graph g(%x: float32[4]) {
          %w = neg(%x)
          return %w
        }""")
    # constant operands, but a loop may run long: it stays for run time
    g = parse_graph("""
        graph g(%m: int64[]) {
          %x = const float32[4] [1.0, 2.0, 3.0, 4.0]
          %t = const bool[] true
          %z = loop(%m, %t, %x) {""" + body + """}
          return %z
        }""")
    assert [n.op for n in fold_constants(g).nodes] == ["loop"]


def test_cse_tells_bodies_apart_and_dead_code_drops_unused_regions():
    g = parse_graph("""
        graph g(%c: bool[], %x: float32[4]) {
          %y1 = if(%c, %x) {""" + BRANCHES + """}
          %y2 = if(%c, %x) {""" + BRANCHES.replace("2.0", "3.0") + """}
          %y3 = if(%c, %x) {""" + BRANCHES + """}
          %s = add(%y1, %y2)
          return %s
        }""")
    out = cse(g)
    assert [n.op for n in out.nodes] == ["if", "if", "if", "add"]     # distinct bodies: never merged
    assert [n.name for n in dead_code(out).nodes] == ["y1", "y2", "s"]


@pytest.mark.parametrize("cond,m", [(True, 2), (False, 3), (True, 0), (False, 50)])
def test_compiled_regions_match_the_reference(cond, m):
    g = parse_graph(PROGRAM)
    module = _compiled()
    x = np.array([1, -2, 3, 0.5], np.float32)
    ins = [np.array(cond), x, np.array(m, np.int64)]
    for got, want in zip(module(*ins), run_graph(g, ins)):
        np.testing.assert_allclose(got, want, rtol=1e-6)


_MODULE = []


def _compiled():
    if not _MODULE:
        _MODULE.append(ember.compile(parse_graph(PROGRAM), cache=False, cflags=("-O1",)))
    return _MODULE[0]


def test_compiled_scan_output_checks_its_length():
    g = parse_graph(SCAN)
    module = ember.compile(g, cache=False, cflags=("-O1",))
    x = np.ones(4, np.float32)
    z, s = module(np.array(True), x, np.array(3, np.int64))
    np.testing.assert_array_equal(s, run_graph(g, [np.array(True), x, np.array(3)])[1])
    with pytest.raises(EmberError, match="ran 2 iterations, but its scan outputs have 3 rows"):
        module(np.array(True), x, np.array(2, np.int64))


def test_data_dimensions_and_region_bodies_are_refused_by_name():
    # the artifact binds the symbols the data decides (bind_dims) in the model's entry only: a
    # body that binds them, or a region that reads a tensor sized by them, is refused, naming it
    from ember.errors import CodegenError
    from ember.graph.builder import GraphBuilder
    from ember.graph.types import TensorType
    from ember.symbolic import symbol

    binding = parse_graph("""
graph g(%c: bool[], %x: float32[4], %n: int64[1]) {
  %y = if(%c, %x, %n) {then_branch=graph t(%a: float32[4], %m: int64[1]) {
      %b = bind_dims(%m) {symbols=["k"]}
      %r = neg(%a)
      return %r
    }, else_branch=graph e(%a: float32[4], %m: int64[1]) {
      %r = neg(%a)
      return %r
    }}
  return %y
}
""")
    with pytest.raises(CodegenError, match=r"if node 'y': its body binds dimensions from the data \(bind_dims b\)"):
        ember.compile(binding, cache=False, cflags=("-O1",))

    k = symbol("k")

    def branch(name, op):
        b = GraphBuilder(name)
        return b.finish([b.op(op, [b.input("a", TensorType((k,), "int64"))])])

    b = GraphBuilder("g")
    c = b.input("c", TensorType((), "bool"))
    s = b.op("arange", [b.op("bind_dims", [b.input("n", TensorType((), "int64"))], symbols=("k",))],
             length=k, dtype="int64")
    g = b.finish([b.op("if", [c, s], name="choose", then_branch=branch("t", "neg"), else_branch=branch("e", "abs"))])
    verify(g)
    with pytest.raises(CodegenError, match=r"if node 'choose' reads or writes tensors whose size the data decides \(k\)"):
        ember.compile(g, cache=False, cflags=("-O1",))
