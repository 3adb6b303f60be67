"""Small models the runtime tests build: an ONNX graph with one constant, and a C model in the
form code generation emits (see ember_kernel.h) that runs over the thread pool."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as TP, helper, numpy_helper


def const_model(op: str, c: float, n: int) -> onnx.ModelProto:
    """y = op(x, c) over n floats, c a constant of value ``c`` (models differing only in it
    are distinct artifacts)."""
    graph = helper.make_graph([helper.make_node(op, ["x", "c"], ["y"])], op.lower(),
                              [helper.make_tensor_value_info("x", TP.FLOAT, [n])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [n])],
                              [numpy_helper.from_array(np.full(n, c, np.float32), "c")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def scale_source(n: int, scale: str, *, name: str = "scale", constants: int = 0) -> str:
    """y = x * scale (a C expression) over n floats, in 64 pieces over the thread pool; with
    ``constants`` bytes of constants (``ember_constants``)."""
    meta = (f'{{\\"format\\": 1, \\"ember_version\\": \\"0.1.0\\", \\"name\\": \\"{name}\\", \\"target\\": \\"cpu\\", '
            f'\\"inputs\\": [{{\\"name\\": \\"x\\", \\"dtype\\": \\"float32\\", \\"shape\\": [{n}]}}], '
            f'\\"outputs\\": [{{\\"name\\": \\"y\\", \\"dtype\\": \\"float32\\", \\"shape\\": [{n}]}}], '
            f'\\"arena_bytes\\": 0, \\"constants_bytes\\": {constants}, \\"kernels\\": 1}}')
    return f"""#include "ember_kernel.h"
extern const unsigned char ember_constants[];
const char ember_model_metadata[] = "{meta}";
const unsigned long long ember_model_arena_bytes = 0ULL;
typedef struct {{ const float* x; float* y; float c; }} ctx;
static void part(void* p, int64_t b, int64_t e) {{
  ctx* k = p;
  for (int64_t i = b * {n // 64}; i < e * {n // 64}; i++) k->y[i] = k->x[i] * k->c;
}}
int ember_model_entry(unsigned char* arena, void* const* inputs, void* const* outputs) {{
  (void)arena;
  ctx k = {{ inputs[0], outputs[0], {scale} }};
  ember_parallel_for(64, part, &k);
  return 0;
}}
"""
