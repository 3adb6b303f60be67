"""Small ONNX models for the backend tests, and a check that compiles one with Ember and compares
it with onnx's reference evaluator."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

import ember.onnx.backend as backend
from ember.graph.types import is_narrow

RNG = np.random.default_rng(0)


def rand(*shape, dtype="float32", lo=-2.0, hi=2.0):
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(int(lo), int(hi), size=shape).astype(dtype)
    if np.dtype(dtype) == np.bool_:
        return RNG.random(shape) < 0.5
    return RNG.uniform(lo, hi, size=shape).astype(dtype)


def tensor_info(name: str, arr: np.ndarray):
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape))


def make_model(nodes, inputs: dict, outputs: Sequence[str], initializers: dict | None = None, opset: int = 21,
               extra_opsets=(), input_infos=None, output_infos=None):
    """A model of ``nodes``: ``inputs`` are graph inputs (name -> sample array), ``initializers``
    constants (name -> array)."""
    graph = helper.make_graph(
        list(nodes), "test",
        input_infos if input_infos is not None else [tensor_info(n, a) for n, a in inputs.items()],
        output_infos if output_infos is not None else [onnx.ValueInfoProto(name=o) for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in (initializers or {}).items()],
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = min(model.ir_version, 10)
    return model


def reference(model, feeds: dict) -> list:
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, feeds)


def onnxruntime_outputs(model, feeds: dict) -> list:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def check(model, feeds: dict, rtol=1e-5, atol=1e-6, expected=None):
    """Compile ``model`` through the backend, run it on ``feeds`` and compare every output with
    onnx's reference evaluator (or ``expected``)."""
    rep = backend.prepare(model)
    got = rep.run([feeds[i.name] for i in model.graph.input if i.name in feeds])
    want = reference(model, feeds) if expected is None else expected
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_same(g, w, rtol, atol)
    return rep


def assert_same(got, want, rtol, atol):
    if isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), (got, want)
        for g, w in zip(got, want):
            assert_same(g, w, rtol, atol)
        return
    if want is None:
        assert got is None
        return
    want = np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.dtype, got.shape, want.dtype, want.shape)
    if is_narrow(str(want.dtype)):
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    elif str(want.dtype) == "bfloat16":
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=max(rtol, 2 ** -7),
                                   atol=atol, equal_nan=True)
    elif want.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
