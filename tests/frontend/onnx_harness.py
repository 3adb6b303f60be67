"""Build small ONNX models with onnx.helper and compare Ember's translation (run by the reference
interpreter) with onnxruntime."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ember.frontend import from_onnx
from ember.graph import run_graph
from ember.graph.types import is_narrow
from ember.graph.verify import verify

RNG = np.random.default_rng(0)


def rand(*shape, dtype="float32", lo=-2.0, hi=2.0):
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(int(lo), int(hi), size=shape).astype(dtype)
    if np.dtype(dtype) == np.bool_:
        return RNG.random(shape) < 0.5
    return RNG.uniform(lo, hi, size=shape).astype(dtype)


def value_info(name: str, arr: np.ndarray):
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape))


def make_model(nodes, inputs: dict, outputs: Sequence[str], initializers: dict | None = None, opset: int = 17,
               extra_opsets=()):
    """A model of ``nodes``: ``inputs`` are graph inputs (name -> sample array), ``initializers``
    constants (name -> array)."""
    graph = helper.make_graph(
        list(nodes), "test",
        [value_info(n, a) for n, a in inputs.items()],
        [onnx.ValueInfoProto(name=o) for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in (initializers or {}).items()],
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = min(model.ir_version, 10)
    return model


def run_onnxruntime(model, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def run_ember(model, feeds: dict) -> list[np.ndarray]:
    """The imported graph run by the reference interpreter, as compiled for this machine:
    integer products saturate in pairs only where its 8-bit multiply-add does (as onnxruntime's)."""
    from ember.passes import pair_saturation
    from ember.target import host

    # the model's bytes, as a model file is read (ember.frontend.onnx_proto, not onnx's parser);
    # the tests that pass ModelProto objects to from_onnx, and the conformance runner, read
    # onnx's objects
    graph = from_onnx(model.SerializeToString())
    verify(graph)
    graph = pair_saturation.run(graph, host().int8_pairs_saturate)
    return [np.asarray(a) for a in run_graph(graph, feeds)]


def assert_same(got: Sequence[np.ndarray], want: Sequence[np.ndarray], rtol=1e-5, atol=1e-6):
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        w = np.asarray(w)
        assert g.shape == w.shape, f"output {k}: shape {g.shape} != {w.shape}"
        assert g.dtype == w.dtype, f"output {k}: dtype {g.dtype} != {w.dtype}"
        if is_narrow(str(w.dtype)):
            # float8, float4, int4, int2: exact, NaN codes included
            np.testing.assert_array_equal(g.view(np.uint8), w.view(np.uint8), err_msg=f"output {k}")
        elif str(w.dtype) == "bfloat16":
            np.testing.assert_allclose(g.astype(np.float32), w.astype(np.float32), rtol=max(rtol, 2 ** -7),
                                       atol=atol, err_msg=f"output {k}")
        elif w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"output {k}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"output {k}")


def run_onnx_reference(model, feeds: dict) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    return [np.asarray(a) for a in ReferenceEvaluator(model).run(None, feeds)]


def check_model(model, feeds: dict, rtol=1e-5, atol=1e-6, oracle=run_onnxruntime):
    assert_same(run_ember(model, feeds), oracle(model, feeds), rtol, atol)


def check(op: str, inputs: Sequence, attrs: dict | None = None, *, opset: int = 17, const: Sequence[int] = (),
          n_out: int = 1, rtol=1e-5, atol=1e-6, domain: str = "", oracle=run_onnxruntime):
    """One ``op`` node over ``inputs`` (arrays; None for a left-out optional input).  Inputs whose
    index is in ``const`` become initializers, the others graph inputs."""
    names, feeds, inits = [], {}, {}
    for k, a in enumerate(inputs):
        if a is None:
            names.append("")
            continue
        name = f"in{k}"
        names.append(name)
        (inits if k in const else feeds)[name] = np.asarray(a)
    outs = [f"out{k}" for k in range(n_out)]
    node = helper.make_node(op, names, outs, name=f"{op.lower()}_node", domain=domain, **(attrs or {}))
    model = make_model([node], feeds, outs, inits, opset)
    check_model(model, feeds, rtol, atol, oracle)
    return model
