"""The frontend core (``ember.frontend.core``): the unsupported-op listing every frontend raises,
the translation table and the node context's errors."""

from types import SimpleNamespace

import numpy as np
import pytest
from onnx import TensorProto, helper

from ember.errors import InvalidModelError, LimitError, UnsupportedOpError
from ember.frontend import from_onnx
from ember.frontend.core import NodeContext, TranslationTable, check_supported, group_unsupported
from ember.graph.builder import GraphBuilder
from ember.graph.types import TensorType


def test_pairs_are_grouped_by_op_in_model_order():
    pairs = [("B", "n1"), ("A", "n2"), ("B", "n3")]
    assert group_unsupported(pairs) == {"B": ["n1", "n3"], "A": ["n2"]}
    assert list(group_unsupported(pairs)) == ["B", "A"]
    check_supported([], "Demo")          # nothing missing: no error
    check_supported(iter(()), "Demo")


def test_the_listing_names_each_op_with_its_count_and_first_nodes():
    pairs = [("Wide", f"w{k}") for k in range(7)] + [("Alone", "a")]
    with pytest.raises(UnsupportedOpError) as e:
        check_supported(pairs, "Demo")
    assert e.value.unsupported == {"Wide": [f"w{k}" for k in range(7)], "Alone": ["a"]}
    assert str(e.value) == ("[E003] Demo model has 8 node(s) of 2 unsupported op type(s) (Alone, Wide):\n"
                            "  Alone x1: 'a'\n"
                            "  Wide x7: 'w0', 'w1', 'w2', 'w3', 'w4', ... (2 more)")


def _onnx_model(op: str, names: list[str]):
    """A chain of nodes of the unknown op ``com.example:op``, named ``names``."""
    nodes, prev = [], "x"
    for k, n in enumerate(names):
        nodes.append(helper.make_node(op, [prev], [f"t{k}"], name=n, domain="com.example"))
        prev = f"t{k}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])


def test_two_frontends_list_unsupported_ops_alike():
    """ONNX and TensorFlow hand their nodes to the one listing: the same nodes give the same
    listing, the framework's name and op spelling aside."""
    from ember.frontend.tensorflow import from_graph_def, unsupported_ops

    names = [f"n{k}" for k in range(6)]
    with pytest.raises(UnsupportedOpError) as onnx_err:
        from_onnx(_onnx_model("Fancy", names))
    # a GraphDef as the listing reads it: its nodes' op and name (checked before TensorFlow loads)
    graph_def = SimpleNamespace(node=[SimpleNamespace(op="com.example:Fancy", name=n, input=[]) for n in names]
                                + [SimpleNamespace(op="Const", name="c", input=[])])
    assert unsupported_ops(graph_def) == {"com.example:Fancy": names}
    with pytest.raises(UnsupportedOpError) as tf_err:
        from_graph_def(graph_def, [], [])
    assert onnx_err.value.unsupported == tf_err.value.unsupported == {"com.example:Fancy": names}
    assert str(onnx_err.value).replace("ONNX", "X") == str(tf_err.value).replace("TensorFlow", "X")
    assert "6 node(s) of 1 unsupported op type(s)" in str(tf_err.value)
    assert "com.example:Fancy x6: 'n0', 'n1', 'n2', 'n3', 'n4', ... (1 more)" in str(tf_err.value)


def test_translation_table_refuses_an_op_translated_twice():
    table = TranslationTable("Demo")

    @table.translates("A", "B")
    def first(cx):
        return None

    assert table["A"] is first and table["B"] is first and table.names() == ["A", "B"]
    with pytest.raises(ValueError, match="Demo op B is translated twice"):
        @table.translates("B")
        def second(cx):
            return None


def test_the_frontend_tables_are_translation_tables():
    from ember.frontend.onnx_ops import TRANSLATIONS as onnx_table
    from ember.frontend.tf_ops import TRANSLATIONS as tf_table
    from ember.frontend.tflite_ops import TRANSLATIONS as tflite_table

    for table, framework in ((onnx_table, "ONNX"), (tf_table, "TensorFlow"), (tflite_table, "TFLite")):
        assert isinstance(table, TranslationTable) and table.framework == framework and len(table) > 50


class _Ctx(NodeContext):
    framework = "Demo"


def test_node_context_errors_name_the_node_and_op():
    b = GraphBuilder("g")
    cx = _Ctx(b, "add_3", "ADD", "operator 3")
    e = cx.fail("operands disagree")
    assert isinstance(e, InvalidModelError) and str(e) == "[E004] ADD node 'operator 3': operands disagree"
    u = cx.unsupported("a fused activation of 9")
    assert u.unsupported == {"ADD (a fused activation of 9)": ["operator 3"]} and "Demo model" in str(u)
    assert _Ctx(b, "n", "Op").fail("x").node == "n"      # without a label, errors name the node


def test_node_context_folds_constant_operands():
    b = GraphBuilder("g")
    cx = _Ctx(b, "n", "Op")
    v = cx.op("add", [cx.const(np.array([1.0, 2.0], np.float32)), cx.scalar(3, "float32")])
    assert v.is_const and v.const.tolist() == [4.0, 5.0] and not b.nodes
    x = b.input("x", TensorType((2,), "float32"))
    y = cx.op("add", [x, cx.const([1.0, 1.0], "float32")])
    assert not y.is_const and b.nodes[-1].op == "add" and b.nodes[-1].name == "n"


def test_translating_turns_what_damage_raises_into_the_nodes_error():
    cx = _Ctx(GraphBuilder("g"), "n", "Op", "operator 1")
    with pytest.raises(InvalidModelError, match=r"Op node 'operator 1': damaged: list index out of range"):
        with cx.translating((IndexError,), "damaged"):
            [][0]
    with pytest.raises(LimitError, match="ran out of memory translating this node") as info:
        with cx.translating():
            raise MemoryError
    assert info.value.node == "operator 1" and info.value.op == "Op"
    with pytest.raises(KeyError):                   # a kind not named passes as it is
        with cx.translating((IndexError,)):
            {}["x"]
    own = UnsupportedOpError({"x": ["y"]})
    with pytest.raises(UnsupportedOpError) as raised:   # Ember's own errors pass, even when named
        with cx.translating((Exception,)):
            raise own
    assert raised.value is own
    assert "Op (a shape computed at run time (input 1))" in str(cx.not_constant("shape", 1))
