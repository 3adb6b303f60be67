"""The verifier accepts well-formed graphs and rejects each kind of malformed one, naming the
node at fault."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ember.errors import GraphError
from ember.graph import Graph, Node, TensorType, Value, constant
from ember.graph.text import parse_graph
from ember.graph.verify import verify

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "passes"))
from graphgen import random_graph  # noqa: E402

TEXT = """
graph g(%x: float32[2, 3], %y: float32[3]) {
  %k = const float32[3] [1.0, 2.0, 3.0]
  %a = add(%x, %y)
  %b = mul(%a, %k)
  %t = transpose(%b) {perm=[1, 0]}
  %r = relu(%t)
  return %r, %a
}
"""


def good() -> Graph:
    g = parse_graph(TEXT)
    verify(g)
    return g


def node(g: Graph, name: str) -> Node:
    return next(n for n in g.nodes if n.name == name)


def rejects(g: Graph, message: str, node_name: str | None = None) -> GraphError:
    with pytest.raises(GraphError, match=message) as e:
        verify(g)
    if node_name is not None:
        assert e.value.node == node_name
        assert f"'{node_name}'" in str(e.value)
    return e.value


@pytest.mark.parametrize("seed", range(30))
def test_accepts_random_graphs(seed):
    verify(random_graph(seed))


def test_accepts_constants_as_outputs_and_inputs_as_outputs():
    x = Value("x", TensorType((2,), "int8"))
    g = Graph([x], [], [x, constant(np.int8(3), "three")], "g")
    verify(g)


def test_use_before_definition():
    g = good()
    g.nodes[0], g.nodes[1] = g.nodes[1], g.nodes[0]
    rejects(g, "uses %a before it is defined", "b")


def test_value_not_defined_at_all():
    g = good()
    ghost = Value("ghost", TensorType((2, 3), "float32"))
    node(g, "b").inputs[0] = ghost
    rejects(g, "%ghost, which is not defined", "b")


def test_value_produced_by_a_node_outside_the_graph():
    g = good()
    stray = Node("neg", [g.inputs[0]], [], {}, "stray")
    stray.outputs = [Value("s", TensorType((2, 3), "float32"), stray)]
    node(g, "b").inputs[0] = stray.outputs[0]
    rejects(g, "%s, which is not defined", "b")


def test_value_defined_twice_by_two_nodes():
    g = good()
    extra = Node("neg", [g.inputs[0]], [node(g, "a").output], {}, "again")
    g.nodes.insert(1, extra)
    rejects(g, "defines %a a second time", "again")
    node(g, "a").output.producer = extra
    g.nodes[0], g.nodes[1] = g.nodes[1], g.nodes[0]
    rejects(g, "defines %a a second time", "a")


def test_graph_input_redefined_by_a_node():
    g = good()
    n = node(g, "a")
    x = g.inputs[0]
    n.outputs = [x]
    x.producer = n
    node(g, "b").inputs[0] = x
    e = verify_error(g)
    assert "graph input %x claims to be produced" in str(e)


def verify_error(g: Graph) -> GraphError:
    with pytest.raises(GraphError) as e:
        verify(g)
    return e.value


def test_unknown_op():
    g = good()
    node(g, "r").op = "frobnicate"
    rejects(g, "unknown op 'frobnicate'", "r")


def test_missing_attribute():
    g = good()
    del node(g, "t").attrs["perm"]
    rejects(g, r"missing attribute\(s\) \['perm'\]", "t")


def test_unknown_attribute():
    g = good()
    node(g, "r").attrs["alpha"] = 0.1
    rejects(g, r"unknown attribute\(s\) \['alpha'\]", "r")


def test_output_type_differs_from_the_type_rule():
    g = good()
    node(g, "t").output.type = TensorType((2, 3), "float32")
    rejects(g, r"has type float32\[2, 3\] but the type rule gives float32\[3, 2\]", "t")
    g = good()
    node(g, "a").output.type = TensorType((2, 3), "float64")
    rejects(g, "type rule gives", "a")


def test_type_rule_rejects_the_operands():
    g = good()
    node(g, "t").attrs["perm"] = (0, 0)
    rejects(g, "type rule fails: .*not a permutation", "t")


def test_wrong_arity():
    g = good()
    node(g, "r").inputs.append(g.inputs[0])
    rejects(g, "takes 1 input", "r")


def test_wrong_number_of_outputs():
    g = good()
    n = node(g, "r")
    n.outputs.append(Value("r2", n.output.type, n))
    rejects(g, r"has 2 output\(s\)", "r")


def test_producer_link_wrong():
    g = good()
    node(g, "b").output.producer = None
    rejects(g, "output %b has no producer", "b")
    g = good()
    node(g, "b").output.producer = node(g, "a")
    rejects(g, "output %b has producer 'a'", "b")


def test_graph_output_undefined():
    g = good()
    g.outputs.append(Value("nowhere", TensorType((1,), "float32")))
    rejects(g, "graph output %nowhere .* is not defined")


def test_graph_output_from_removed_node():
    g = good()
    g.nodes = [n for n in g.nodes if n.name != "r"]
    rejects(g, "graph output %r")


def test_duplicate_value_names():
    g = good()
    node(g, "b").output.name = "a"
    rejects(g, "two different values are named %a", "b")
    g = good()
    g.inputs[1].name = "x"
    rejects(g, "named %x")
    g = good()
    g.constants()[0].name = "r"
    rejects(g, "named %r", "r")


def test_duplicate_node_names():
    g = good()
    node(g, "r").name = "t"
    rejects(g, "node name 't' is used by more than one node", "t")


def test_constant_that_does_not_match_its_type():
    g = good()
    k = g.constants()[0]
    k.const = np.zeros((4,), np.float32)
    rejects(g, r"constant %k has type float32\[3\] but its array has shape \[4\]")
    k.const = np.zeros((3,), np.float64)
    rejects(g, "its array has dtype float64")


def test_graph_input_listed_twice_or_constant():
    g = good()
    g.inputs.append(g.inputs[0])
    rejects(g, "listed twice")
    g = good()
    g.inputs[0].const = np.zeros((2, 3), np.float32)
    rejects(g, "graph input %x is a constant")


def test_node_output_marked_constant():
    g = good()
    node(g, "a").output.const = np.zeros((2, 3), np.float32)
    with pytest.raises(GraphError):
        verify(g)
