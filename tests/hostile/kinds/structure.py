"""Kind ``structure``: graphs that break ONNX's structural rules (dangling references, cycles,
duplicate names, missing outputs, wrong arities, absurd attributes, unknown ops and domains,
impossible versions, damaged If/Loop bodies), plus a few odd but valid ones that must run."""

from __future__ import annotations

import numpy as np
from onnx import AttributeProto
from onnx import TensorProto as T
from onnx import helper as h

from .. import models as M
from ..case import EITHER, REFUSE, RUN, Case

X23 = [M.vi("x", shape=[2, 3])]
Y23 = [M.vi("y", shape=[2, 3])]


def _m(nodes, inputs=None, outputs=None, inits=(), **kw):
    return M.model(nodes, X23 if inputs is None else inputs, Y23 if outputs is None else outputs, inits, **kw)


def relu(i="x", o="y", name="relu"):
    return h.make_node("Relu", [i], [o], name=name)


def _conv(**attrs):
    w = np.ones((3, 2, 3, 3), np.float32)
    base = dict(kernel_shape=[3, 3])
    base.update(attrs)
    return _m([h.make_node("Conv", ["x", "w"], ["y"], name="conv", **base)],
              [M.vi("x", shape=[1, 2, 5, 5])], [M.vi("y")], [M.const("w", w)])


def _if_damaged(then_nodes=None, else_nodes=None, then_out=None, else_out=None):
    return lambda: M.if_model(then_nodes, else_nodes, then_out, else_out)


def _loop_body(nodes, outputs=None, inputs=None):
    return M.branch("body", nodes,
                    inputs if inputs is not None else
                    [M.vi("i", T.INT64, []), M.vi("cond_in", T.BOOL, []), M.vi("v_in", shape=[2, 3])],
                    outputs if outputs is not None else [M.vi("cond_out", T.BOOL, []), M.vi("v_out", shape=[2, 3])],
                    [M.const("two", np.float32(2))])


def _nested_if_damaged():
    inner = M.if_model(then_nodes=[h.make_node("Add", ["x", "nowhere"], ["t"], name="bad_add")]).graph.node[0]
    inner_out = [M.vi("y", shape=[2, 3])]
    then_g = M.branch("outer_then", [inner], [], inner_out)
    else_g = M.branch("outer_else", [h.make_node("Identity", ["x"], ["e"], name="id")], [], [M.vi("e", shape=[2, 3])])
    return M.model([h.make_node("If", ["c"], ["out"], name="outer", then_branch=then_g, else_branch=else_g)],
                   [M.vi("x", shape=[2, 3])], [M.vi("out", shape=[2, 3])], [M.const("c", np.array(True))])


def _node(op, inputs, outputs, name, **attrs):
    """A node whose attributes are made with explicit types (empty lists included)."""
    n = h.make_node(op, inputs, outputs, name=name)
    for k, v in attrs.items():
        n.attribute.append(h.make_attribute(k, v, attr_type=AttributeProto.INTS) if v == [] else h.make_attribute(k, v))
    return n


def _relu_ref():
    x = M.rng(0).standard_normal((2, 3)).astype(np.float32)
    return {"x": x}, {"y": np.maximum(x, 0)}


def _no_opset():
    m = _m([relu()])
    del m.opset_import[:]
    return m


STRUCTURE = {
    # dangling references and cycles
    "dangling-input": (REFUSE, lambda: _m([h.make_node("Add", ["x", "nowhere"], ["y"], name="add")])),
    "dangling-output": (REFUSE, lambda: _m([relu(o="r")])),
    "cycle-2": (REFUSE, lambda: _m([h.make_node("Add", ["x", "b"], ["a"], name="n1"),
                                    h.make_node("Relu", ["a"], ["b"], name="n2"), relu("b")])),
    "cycle-self": (REFUSE, lambda: _m([h.make_node("Add", ["x", "y"], ["y"], name="self")])),
    "unsorted-nodes": (EITHER, lambda: _m([relu("a", "y", "second"), relu("x", "a", "first")])),
    # duplicate names
    "dup-node-outputs": (REFUSE, lambda: _m([relu("x", "y", "r1"), h.make_node("Neg", ["x"], ["y"], name="r2")])),
    "dup-graph-inputs": (REFUSE, lambda: _m([relu()], [M.vi("x", shape=[2, 3]), M.vi("x", shape=[2, 3])])),
    "dup-graph-outputs": (EITHER, lambda: _m([relu()], outputs=[M.vi("y", shape=[2, 3]), M.vi("y", shape=[2, 3])])),
    "dup-initializers": (REFUSE, lambda: _m([h.make_node("Add", ["x", "c"], ["y"], name="add")],
                                            inits=[M.const("c", np.ones((2, 3), np.float32)),
                                                   M.const("c", np.zeros((2, 3), np.float32))])),
    "output-is-input-name": (REFUSE, lambda: _m([relu("x", "x")], outputs=[M.vi("x", shape=[2, 3])])),
    # node names are for diagnostics; onnxruntime refuses duplicates, so numpy is the reference
    "dup-node-names": (EITHER, lambda: _m([relu("x", "a", "same"), relu("a", "y", "same")]), _relu_ref),
    "initializer-shadows-input": (RUN, lambda: _m([h.make_node("Add", ["x", "x"], ["y"], name="add")],
                                                  inits=[M.const("x", np.full((2, 3), 7, np.float32))])),
    # missing pieces
    "no-graph-outputs": (REFUSE, lambda: _m([relu()], outputs=[])),
    "empty-graph": (REFUSE, lambda: _m([], outputs=[])),
    "no-nodes-output-is-input": (RUN, lambda: _m([], outputs=[M.vi("x", shape=[2, 3])])),
    "output-is-initializer": (RUN, lambda: _m([relu()], outputs=[M.vi("y", shape=[2, 3]), M.vi("k", shape=[2])],
                                              inits=[M.const("k", np.array([1.5, 2.5], np.float32))])),
    "no-opset-import": (REFUSE, _no_opset),
    "empty-input-name": (REFUSE, lambda: _m([h.make_node("Add", ["x", ""], ["y"], name="add")])),
    "empty-output-name": (REFUSE, lambda: _m([h.make_node("Relu", ["x"], [""], name="relu")])),
    "no-graph-at-all": (REFUSE, lambda: h.make_model(h.make_graph([], "g", [], []), opset_imports=[h.make_opsetid("", 17)])),
    # arities
    "extra-input": (REFUSE, lambda: _m([h.make_node("Relu", ["x", "x"], ["y"], name="relu")])),
    "extra-output": (REFUSE, lambda: _m([h.make_node("Add", ["x", "x"], ["y", "z"], name="add")])),
    "no-inputs": (REFUSE, lambda: _m([h.make_node("Add", [], ["y"], name="add")])),
    "no-outputs-node": (REFUSE, lambda: _m([h.make_node("Add", ["x", "x"], [], name="add"), relu()])),
    "gemm-one-input": (REFUSE, lambda: _m([h.make_node("Gemm", ["x"], ["y"], name="gemm")])),
    # absurd attributes
    "conv-kernel-huge": (REFUSE, lambda: _conv(kernel_shape=[1000000, 1000000])),
    "conv-stride-zero": (REFUSE, lambda: _conv(strides=[0, 0])),
    "conv-stride-negative": (REFUSE, lambda: _conv(strides=[-1, 1])),
    "conv-pads-negative-huge": (REFUSE, lambda: _conv(pads=[-100, -100, 0, 0])),
    "conv-dilation-zero": (REFUSE, lambda: _conv(dilations=[0, 0])),
    "conv-group-zero": (REFUSE, lambda: _conv(group=0)),
    "conv-group-not-dividing": (REFUSE, lambda: _conv(group=7)),
    "conv-pads-wrong-length": (REFUSE, lambda: _conv(pads=[1, 1, 1])),
    "softmax-axis-99": (REFUSE, lambda: _m([h.make_node("Softmax", ["x"], ["y"], name="sm", axis=99)])),
    "concat-axis-minus-99": (REFUSE, lambda: _m([h.make_node("Concat", ["x", "x"], ["y"], name="cat", axis=-99)])),
    "transpose-perm-repeat": (REFUSE, lambda: _m([h.make_node("Transpose", ["x"], ["y"], name="t", perm=[0, 0])])),
    "transpose-perm-length": (REFUSE, lambda: _m([h.make_node("Transpose", ["x"], ["y"], name="t", perm=[1, 0, 2])])),
    "transpose-perm-huge": (REFUSE, lambda: _m([h.make_node("Transpose", ["x"], ["y"], name="t", perm=[0, 1 << 40])])),
    "flatten-axis-10": (REFUSE, lambda: _m([h.make_node("Flatten", ["x"], ["y"], name="f", axis=10)])),
    "cast-to-9999": (REFUSE, lambda: _m([h.make_node("Cast", ["x"], ["y"], name="cast", to=9999)])),
    "split-sizes-wrong": (REFUSE, lambda: _m([h.make_node("Split", ["x", "s"], ["y", "z"], name="split", axis=1)],
                                             outputs=[M.vi("y"), M.vi("z")],
                                             inits=[M.const("s", np.array([2, 5], np.int64))])),
    "maxpool-kernel-empty": (REFUSE, lambda: _m([_node("MaxPool", ["x"], ["y"], "pool", kernel_shape=[])],
                                                [M.vi("x", shape=[1, 1, 4, 4])], [M.vi("y")])),
    "leakyrelu-alpha-string": (REFUSE, lambda: _m([h.make_node("LeakyRelu", ["x"], ["y"], name="lr", alpha="big")])),
    "attribute-unknown": (EITHER, lambda: _m([h.make_node("Relu", ["x"], ["y"], name="relu", bogus=3)])),
    "graph-attr-on-relu": (EITHER, lambda: _m([h.make_node("Relu", ["x"], ["y"], name="relu",
                                                            body=M.branch("b", [], [], []))])),
    # unknown ops, domains, versions
    "unknown-op": (REFUSE, lambda: _m([h.make_node("FooBar", ["x"], ["y"], name="foo")])),
    "unknown-domain": (REFUSE, lambda: _m([h.make_node("Relu", ["x"], ["y"], name="relu", domain="com.evil")],
                                          opsets=[h.make_opsetid("", 17), h.make_opsetid("com.evil", 1)])),
    "domain-not-imported": (REFUSE, lambda: _m([h.make_node("Relu", ["x"], ["y"], name="relu", domain="com.evil")])),
    "opset-999": (REFUSE, lambda: _m([relu()], opset=999)),
    "opset-0": (REFUSE, lambda: _m([relu()], opset=0)),
    "opset-negative": (REFUSE, lambda: _m([relu()], opset=-5)),
    "ir-version-999": (REFUSE, lambda: _m([relu()], ir=999)),
    "ir-version-negative": (REFUSE, lambda: _m([relu()], ir=-1)),
    "op-removed-in-opset": (REFUSE, lambda: _m([h.make_node("Scatter", ["x", "i", "x"], ["y"], name="scatter")],
                                               inits=[M.const("i", np.zeros((2, 3), np.int64))])),
    # damaged subgraphs
    "if-then-dangling": (REFUSE, _if_damaged(then_nodes=[h.make_node("Add", ["x", "nowhere"], ["t"], name="bad")])),
    "if-else-unknown-op": (REFUSE, _if_damaged(else_nodes=[h.make_node("FooBar", ["x"], ["e"], name="bad")])),
    "if-branch-output-count": (REFUSE, _if_damaged(then_out=[M.vi("t", shape=[2, 3]), M.vi("x", shape=[2, 3])])),
    "if-branch-no-outputs": (REFUSE, _if_damaged(else_nodes=[], else_out=[])),
    "if-branch-missing": (REFUSE, lambda: _m([h.make_node("If", ["c"], ["y"], name="if",
                                                          then_branch=M.branch("t", [relu("x", "t")], [], [M.vi("t")]))],
                                             inits=[M.const("c", np.array(True))])),
    "if-branch-cycle": (REFUSE, _if_damaged(then_nodes=[h.make_node("Add", ["x", "t"], ["t"], name="loop_add")])),
    "if-nested-damaged": (REFUSE, _nested_if_damaged),
    "if-runtime-cond": (EITHER, lambda: M.if_model(cond_input=True)),
    "loop-body-output-count": (REFUSE, lambda: M.loop_model(_loop_body(
        [h.make_node("Identity", ["cond_in"], ["cond_out"], name="keep")], outputs=[M.vi("cond_out", T.BOOL, [])]))),
    "loop-body-dangling": (REFUSE, lambda: M.loop_model(_loop_body(
        [h.make_node("Identity", ["cond_in"], ["cond_out"], name="keep"),
         h.make_node("Mul", ["v_in", "nowhere"], ["v_out"], name="bad")]))),
    "loop-body-no-inputs": (REFUSE, lambda: M.loop_model(_loop_body(
        [h.make_node("Identity", ["cond_in"], ["cond_out"], name="keep"),
         h.make_node("Mul", ["v_in", "two"], ["v_out"], name="double")], inputs=[]))),
    "loop-trip-negative": (EITHER, lambda: M.loop_model(trip=-5)),
    "loop-valid": (RUN, lambda: M.loop_model()),
    "if-valid": (RUN, lambda: M.if_model()),
}


def cases():
    for slug, (expect, make, *ref) in STRUCTURE.items():
        if ref:
            feeds, expected = ref[0]()
            setup, act, ort = M.compile_case(make, feeds, expected)
        else:
            setup, act, ort = M.compile_case(make)
        yield Case(f"structure/{slug}", expect, act, setup, timeout=40, ort=ort)
