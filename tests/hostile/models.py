"""Small valid ONNX models (the seeds the kinds damage) and the actions cases share.

Models are built with ``onnx.helper`` and never checked here: damaging them is the point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

from .case import Ctx, Ran

OPSET = 17
IR = 8
#: C flags of the cases' compiles: the models are tiny, compile time is what matters.
CFLAGS = ("-O1",)


def vi(name: str, elem=T.FLOAT, shape=None):
    return h.make_tensor_value_info(name, elem, shape)


def model(nodes, inputs, outputs, inits=(), *, opset=OPSET, ir=IR, value_info=(), name="g", opsets=None):
    g = h.make_graph(list(nodes), name, list(inputs), list(outputs), initializer=list(inits),
                     value_info=list(value_info))
    imports = opsets if opsets is not None else [h.make_opsetid("", opset)]
    m = h.make_model(g, opset_imports=imports, producer_name="hostile")
    m.ir_version = ir
    return m


def const(name: str, arr) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr), name)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---- the seeds ---------------------------------------------------------------------------------

def add_model():
    return model([h.make_node("Add", ["x", "y"], ["z"], name="add")],
                 [vi("x", shape=[2, 3]), vi("y", shape=[2, 3])], [vi("z", shape=[2, 3])])


def mlp_model():
    r = rng(1)
    return model([h.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                  h.make_node("Add", ["m", "b"], ["a"], name="bias"),
                  h.make_node("Relu", ["a"], ["y"], name="relu")],
                 [vi("x", shape=[1, 4])], [vi("y", shape=[1, 3])],
                 [const("w", r.standard_normal((4, 3)).astype(np.float32)),
                  const("b", r.standard_normal(3).astype(np.float32))])


def conv_model():
    r = rng(2)
    return model([h.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1],
                              kernel_shape=[3, 3]),
                  h.make_node("Relu", ["c"], ["y"], name="relu")],
                 [vi("x", shape=[1, 2, 5, 5])], [vi("y", shape=[1, 3, 5, 5])],
                 [const("w", r.standard_normal((3, 2, 3, 3)).astype(np.float32)),
                  const("b", r.standard_normal(3).astype(np.float32))])


def gather_model():
    data = np.arange(20, dtype=np.float32).reshape(5, 4)
    return model([h.make_node("Gather", ["data", "idx"], ["y"], name="gather", axis=0)],
                 [vi("idx", T.INT64, [3])], [vi("y", shape=[3, 4])], [const("data", data)])


def reshape_model():
    return model([h.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
                  h.make_node("Softmax", ["r"], ["y"], name="softmax", axis=-1)],
                 [vi("x", shape=[2, 6])], [vi("y", shape=[3, 4])],
                 [const("shape", np.array([3, 4], np.int64))])


def branch(name: str, nodes, inputs, outputs, inits=()):
    return h.make_graph(list(nodes), name, list(inputs), list(outputs), initializer=list(inits))


def if_model(then_nodes=None, else_nodes=None, then_out=None, else_out=None, cond_input=False):
    """y = x + 1 if c else x * 2 (the branches read x from the outer graph); the condition is
    a constant True unless ``cond_input`` makes it a graph input."""
    then_g = branch("then", then_nodes if then_nodes is not None else
                    [h.make_node("Add", ["x", "one"], ["t"], name="then_add")], [],
                    then_out if then_out is not None else [vi("t", shape=[2, 3])],
                    [const("one", np.float32(1))])
    else_g = branch("else", else_nodes if else_nodes is not None else
                    [h.make_node("Mul", ["x", "two"], ["e"], name="else_mul")], [],
                    else_out if else_out is not None else [vi("e", shape=[2, 3])],
                    [const("two", np.float32(2))])
    node = h.make_node("If", ["c"], ["y"], name="if", then_branch=then_g, else_branch=else_g)
    if cond_input:
        return model([node], [vi("c", T.BOOL, []), vi("x", shape=[2, 3])], [vi("y", shape=[2, 3])])
    return model([node], [vi("x", shape=[2, 3])], [vi("y", shape=[2, 3])], [const("c", np.array(True))])


def loop_model(body=None, trip=3):
    """Three iterations of v = v * 2 over a carried [2, 3] tensor."""
    body = body or branch("body", [h.make_node("Identity", ["cond_in"], ["cond_out"], name="keep"),
                                   h.make_node("Mul", ["v_in", "two"], ["v_out"], name="double")],
                          [vi("i", T.INT64, []), vi("cond_in", T.BOOL, []), vi("v_in", shape=[2, 3])],
                          [vi("cond_out", T.BOOL, []), vi("v_out", shape=[2, 3])],
                          [const("two", np.float32(2))])
    return model([h.make_node("Loop", ["trip", "", "x"], ["y"], name="loop", body=body)],
                 [vi("x", shape=[2, 3])], [vi("y", shape=[2, 3])],
                 [const("trip", np.array(trip, np.int64))])


SEEDS: dict[str, Callable[[], onnx.ModelProto]] = {
    "add": add_model, "mlp": mlp_model, "conv": conv_model, "gather": gather_model,
    "reshape": reshape_model, "if": if_model, "loop": loop_model,
}


# ---- feeds ------------------------------------------------------------------------------------

def feeds_for(module, seed: int = 0) -> dict[str, Any]:
    """Deterministic inputs matching a loaded module's signature (symbols at min(bound, 2))."""
    r = rng(seed)
    syms = {k: min(int(v), 2) for k, v in (module.symbols or {}).items()}
    feeds = {}
    for name, t in zip(module.input_names, module.input_types):
        shape = tuple(d if isinstance(d, int) else int(eval(str(d), {}, dict(syms))) for d in t.shape)
        feeds[name] = random_array(str(t.dtype), shape, r)
    return feeds


def random_array(dtype: str, shape, r: np.random.Generator):
    if dtype == "string":
        return np.array(r.choice(["Abc", "dEf", "GHI"], size=shape), dtype=object)
    if dtype == "bool":
        return r.integers(0, 2, size=shape).astype(bool)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return r.standard_normal(shape).astype(dt)
    if dt.kind in "iu":
        return r.integers(0, 3, size=shape).astype(dt)
    raise ValueError(f"no random data for {dtype}")


# ---- actions -----------------------------------------------------------------------------------

def write_model(ctx: Ctx, m, name: str = "model.onnx") -> Path:
    """Writes a ModelProto (serialized unchecked) or raw bytes; returns the path."""
    path = ctx.dir / name
    path.write_bytes(m if isinstance(m, (bytes, bytearray)) else m.SerializeToString())
    return path


def compile_path(path, **kw):
    import ember

    return ember.compile(str(path), cflags=CFLAGS, **kw)


def compile_and_run(path, feeds: dict | None = None, expected: dict | None = None, **kw) -> Ran:
    """Compiles the model at ``path`` and runs it once (on ``feeds``, else on deterministic
    inputs); the reference is ``expected`` when given, else onnxruntime on the same model."""
    m = compile_path(path, **kw)
    feeds = feeds if feeds is not None else feeds_for(m)
    out = dict(m.run(feeds))
    return Ran(out, expected=expected, oracle_model=None if expected is not None else str(path), feeds=feeds)


def compile_case(m_or_bytes, feeds=None, expected=None, **kw):
    """(setup, act, ort) of a case that writes a model and compiles and runs it (``ort``: the
    same with onnxruntime)."""
    def setup(ctx):
        return write_model(ctx, m_or_bytes() if callable(m_or_bytes) else m_or_bytes)

    def act(ctx, path):
        return compile_and_run(path, feeds() if callable(feeds) else feeds, expected, **kw)

    def ort(ctx, path):
        return ort_run(path, feeds() if callable(feeds) else feeds, expected)

    return setup, act, ort


ORT_DTYPES = {"float": "float32", "double": "float64", "float16": "float16", "int64": "int64", "int32": "int32",
              "int16": "int16", "int8": "int8", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32",
              "uint64": "uint64", "bool": "bool", "string": "string"}


def ort_session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 4
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_run(path, feeds: dict | None = None, expected: dict | None = None) -> Ran:
    """onnxruntime's answer for the model at ``path`` (for the comparison: any exception it
    raises counts as a refusal); its own outputs are the reference when none is given."""
    sess = ort_session(path)
    if feeds is None:
        r = rng(0)
        feeds = {}
        for i in sess.get_inputs():
            dt = ORT_DTYPES.get(i.type[len("tensor("):-1], "float32") if i.type.startswith("tensor(") else "float32"
            feeds[i.name] = random_array(dt, tuple(d if isinstance(d, int) else 2 for d in (i.shape or [])), r)
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    return Ran(out, expected=expected if expected is not None else out)
