"""Kind ``types``: operands of the wrong dtype or shape, declarations that contradict what
the graph computes, and tensors whose data contradicts their own header."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T
from onnx import helper as h

from .. import models as M
from ..case import EITHER, REFUSE, Case


def _m(nodes, inputs, outputs, inits=(), **kw):
    return M.model(nodes, inputs, outputs, inits, **kw)


def binary(op, a_t, b_t, a_shape=(2, 3), b_shape=(2, 3), out_t=T.FLOAT, out_shape=None):
    return _m([h.make_node(op, ["a", "b"], ["y"], name=op.lower())],
              [M.vi("a", a_t, list(a_shape)), M.vi("b", b_t, list(b_shape))], [M.vi("y", out_t, out_shape)])


def tensor(name, data_type, dims, **fields):
    """A TensorProto with exactly the given fields (no consistency checks)."""
    t = T()
    t.name = name
    t.data_type = data_type
    t.dims.extend(dims)
    for k, v in fields.items():
        if k == "raw_data":
            t.raw_data = v
        else:
            getattr(t, k).extend(v)
    return t


def add_init(t, x_shape=(2, 3)):
    """y = x + <initializer t>."""
    return _m([h.make_node("Add", ["x", t.name], ["y"], name="add")],
              [M.vi("x", shape=list(x_shape))], [M.vi("y")], [t])


def reshape_int32():
    return _m([h.make_node("Reshape", ["x", "s"], ["y"], name="reshape")],
              [M.vi("x", shape=[2, 6])], [M.vi("y")], [M.const("s", np.array([3, 4], np.int32))])


def constant_node(**attrs):
    n = h.make_node("Constant", [], ["c"], name="const")
    for k, v in attrs.items():
        n.attribute.append(h.make_attribute(k, v))
    return _m([n, h.make_node("Add", ["x", "c"], ["y"], name="add")], [M.vi("x", shape=[2, 3])], [M.vi("y")])


def value_info_contradicts(elem=T.INT64, shape=(2, 3)):
    return _m([h.make_node("Relu", ["x"], ["r"], name="relu"), h.make_node("Neg", ["r"], ["y"], name="neg")],
              [M.vi("x", shape=[2, 3])], [M.vi("y", shape=[2, 3])], value_info=[M.vi("r", elem, list(shape))])


def input_type(tp):
    """y = Relu(x) where x's declared type is ``tp`` (a TypeProto)."""
    inp = h.make_value_info("x", tp)
    return _m([h.make_node("Relu", ["x"], ["y"], name="relu")], [inp], [M.vi("y")])


def no_type_input():
    inp = h.ValueInfoProto()
    inp.name = "x"
    return _m([h.make_node("Relu", ["x"], ["y"], name="relu")], [inp], [M.vi("y")])


F6 = np.arange(6, dtype=np.float32)

TYPES = {
    # operands of the wrong dtype
    "add-float-int64": (REFUSE, lambda: binary("Add", T.FLOAT, T.INT64)),
    "matmul-int64-float": (REFUSE, lambda: binary("MatMul", T.INT64, T.FLOAT, (2, 3), (3, 2))),
    "relu-bool": (REFUSE, lambda: _m([h.make_node("Relu", ["x"], ["y"], name="relu")], [M.vi("x", T.BOOL, [2])], [M.vi("y", T.BOOL)])),
    "relu-string": (REFUSE, lambda: _m([h.make_node("Relu", ["x"], ["y"], name="relu")], [M.vi("x", T.STRING, [2])], [M.vi("y", T.STRING)])),
    "exp-int32": (REFUSE, lambda: _m([h.make_node("Exp", ["x"], ["y"], name="exp")], [M.vi("x", T.INT32, [2])], [M.vi("y", T.INT32)])),
    "gather-float-indices": (REFUSE, lambda: _m([h.make_node("Gather", ["d", "i"], ["y"], name="gather")],
                                                [M.vi("i", T.FLOAT, [2])], [M.vi("y")], [M.const("d", np.ones((4, 2), np.float32))])),
    "where-float-cond": (REFUSE, lambda: _m([h.make_node("Where", ["c", "x", "x"], ["y"], name="where")],
                                            [M.vi("c", T.FLOAT, [2, 3]), M.vi("x", shape=[2, 3])], [M.vi("y")])),
    "conv-int64-weight": (REFUSE, lambda: _m([h.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                                             [M.vi("x", shape=[1, 1, 3, 3])], [M.vi("y")], [M.const("w", np.ones((1, 1, 1, 1), np.int64))])),
    "reshape-int32-shape": (REFUSE, reshape_int32),
    "cast-to-undefined": (REFUSE, lambda: _m([h.make_node("Cast", ["x"], ["y"], name="cast", to=0)], [M.vi("x", shape=[2])], [M.vi("y")])),
    # operands of the wrong rank or shape
    "matmul-shape-mismatch": (REFUSE, lambda: binary("MatMul", T.FLOAT, T.FLOAT, (2, 3), (4, 5))),
    "add-not-broadcastable": (REFUSE, lambda: binary("Add", T.FLOAT, T.FLOAT, (2, 3), (4,))),
    "conv-rank-2-input": (REFUSE, lambda: _m([h.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                                             [M.vi("x", shape=[3, 3])], [M.vi("y")], [M.const("w", np.ones((1, 1, 1, 1), np.float32))])),
    "conv-channels-mismatch": (REFUSE, lambda: _m([h.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                                                  [M.vi("x", shape=[1, 2, 3, 3])], [M.vi("y")], [M.const("w", np.ones((1, 5, 1, 1), np.float32))])),
    "batchnorm-scale-shape": (REFUSE, lambda: _m([h.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn")],
                                                 [M.vi("x", shape=[1, 2, 2, 2])], [M.vi("y")],
                                                 [M.const("s", np.ones(5, np.float32)), M.const("b", np.zeros(2, np.float32)),
                                                  M.const("m", np.zeros(2, np.float32)), M.const("v", np.ones(2, np.float32))])),
    "reshape-count-mismatch": (REFUSE, lambda: _m([h.make_node("Reshape", ["x", "s"], ["y"], name="reshape")],
                                                  [M.vi("x", shape=[2, 6])], [M.vi("y")], [M.const("s", np.array([5, 5], np.int64))])),
    # declarations that contradict what the graph computes
    "output-declared-int32": (REFUSE, lambda: binary("Add", T.FLOAT, T.FLOAT, out_t=T.INT32)),
    "output-declared-wrong-shape": (EITHER, lambda: binary("Add", T.FLOAT, T.FLOAT, out_shape=[7, 7])),
    "output-declared-wrong-rank": (EITHER, lambda: binary("Add", T.FLOAT, T.FLOAT, out_shape=[6])),
    "value-info-wrong-dtype": (EITHER, value_info_contradicts),
    "value-info-wrong-shape": (EITHER, lambda: value_info_contradicts(T.FLOAT, (9, 9, 9))),
    "input-elem-type-0": (REFUSE, lambda: _m([h.make_node("Relu", ["x"], ["y"], name="relu")], [M.vi("x", 0, [2])], [M.vi("y")])),
    "input-elem-type-999": (REFUSE, lambda: _m([h.make_node("Relu", ["x"], ["y"], name="relu")], [M.vi("x", 999, [2])], [M.vi("y")])),
    "input-no-type": (REFUSE, no_type_input),
    "input-sequence-type": (REFUSE, lambda: input_type(h.make_sequence_type_proto(h.make_tensor_type_proto(T.FLOAT, [2])))),
    "input-map-type": (REFUSE, lambda: input_type(h.make_map_type_proto(T.INT64, h.make_tensor_type_proto(T.FLOAT, [2])))),
    "input-negative-dim": (REFUSE, lambda: _m([h.make_node("Relu", ["x"], ["y"], name="relu")], [M.vi("x", shape=[-5, 3])], [M.vi("y")])),
    "input-dim-2e62": (REFUSE, lambda: _m([h.make_node("Relu", ["x"], ["y"], name="relu")], [M.vi("x", shape=[1 << 62, 4])], [M.vi("y")])),
    # tensors whose data contradicts their header
    "init-raw-and-float-data": (REFUSE, lambda: add_init(tensor("c", T.FLOAT, [2, 3], raw_data=F6.tobytes(), float_data=list(F6)))),
    "init-float-data-short": (REFUSE, lambda: add_init(tensor("c", T.FLOAT, [2, 3], float_data=[1.0] * 5))),
    "init-float-data-long": (REFUSE, lambda: add_init(tensor("c", T.FLOAT, [2, 3], float_data=[1.0] * 9))),
    "init-raw-short": (REFUSE, lambda: add_init(tensor("c", T.FLOAT, [2, 3], raw_data=b"\0" * 20))),
    "init-raw-long": (REFUSE, lambda: add_init(tensor("c", T.FLOAT, [2, 3], raw_data=b"\0" * 28))),
    "init-raw-not-multiple": (REFUSE, lambda: add_init(tensor("c", T.FLOAT, [2, 3], raw_data=b"\0" * 25))),
    "init-no-data": (REFUSE, lambda: add_init(tensor("c", T.FLOAT, [2, 3]))),
    "init-negative-dim": (REFUSE, lambda: add_init(tensor("c", T.FLOAT, [-1, 3], raw_data=F6.tobytes()))),
    "init-negative-dims-product": (REFUSE, lambda: add_init(tensor("c", T.FLOAT, [-2, -3], raw_data=F6.tobytes()))),
    "init-dtype-0": (REFUSE, lambda: add_init(tensor("c", 0, [2, 3], raw_data=F6.tobytes()))),
    "init-dtype-999": (REFUSE, lambda: add_init(tensor("c", 999, [2, 3], raw_data=F6.tobytes()))),
    "init-int32-data-for-float": (REFUSE, lambda: add_init(tensor("c", T.FLOAT, [2, 3], int32_data=[1] * 6))),
    "init-int64-data-for-float": (REFUSE, lambda: add_init(tensor("c", T.FLOAT, [2, 3], int64_data=[1] * 6))),
    "init-string-into-add": (REFUSE, lambda: add_init(tensor("c", T.STRING, [2], string_data=[b"a", b"b"]), (2,))),
    "init-bool-raw-byte-2": (EITHER, lambda: _m([h.make_node("Not", ["c"], ["y"], name="not")], [], [M.vi("y", T.BOOL, [3])],
                                                [tensor("c", T.BOOL, [3], raw_data=b"\x00\x02\x01")])),
    "init-no-name": (REFUSE, lambda: add_init(tensor("", T.FLOAT, [2, 3], raw_data=F6.tobytes()))),
    "constant-no-value": (REFUSE, lambda: constant_node()),
    "constant-two-values": (REFUSE, lambda: constant_node(value=M.const("v", F6.reshape(2, 3)), value_float=1.0)),
    "constant-int64-data-as-float": (REFUSE, lambda: constant_node(value=tensor("v", T.FLOAT, [2, 3], int64_data=[1] * 6))),
    "constant-sparse-value": (EITHER, lambda: constant_node(value_sparse=h.make_sparse_tensor(
        tensor("vals", T.FLOAT, [1], float_data=[5.0]), tensor("idx", T.INT64, [1], int64_data=[4]), [2, 3]))),
}


def cases():
    for slug, (expect, make) in TYPES.items():
        setup, act, ort = M.compile_case(make)
        yield Case(f"types/{slug}", expect, act, setup, timeout=40, ort=ort)
