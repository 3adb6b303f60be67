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


#: The start of a C program that loads the artifact named by argv[1] with dlopen and has
#: ``create``, ``run`` and ``err`` (ember_model_create, ember_model_run, ember_last_error);
#: the test appends the rest of ``main``.
C_DRIVER_PRELUDE = r"""
#include <dlfcn.h>
#include <stdio.h>
#include "ember_runtime.h"
int main(int argc, char** argv) {
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    ember_model* (*create)(void) = (ember_model* (*)(void))dlsym(lib, "ember_model_create");
    int (*run)(ember_model*, void* const*, void* const*) =
        (int (*)(ember_model*, void* const*, void* const*))dlsym(lib, "ember_model_run");
    const char* (*err)(void) = (const char* (*)(void))dlsym(lib, "ember_last_error");
"""


def run_c_driver(tmp_path, rest: str, artifact) -> list[str]:
    """Compiles ``C_DRIVER_PRELUDE + rest`` against the runtime's header, runs it on
    ``artifact`` and returns its output lines (asserting that it built and exited with 0)."""
    import subprocess

    from ember.toolchain import find_compiler, runtime_dir

    src, exe = tmp_path / "driver.c", tmp_path / "driver"
    src.write_text(C_DRIVER_PRELUDE + rest)
    proc = subprocess.run([*find_compiler().command, "-O1", "-std=gnu11", "-I", str(runtime_dir()), str(src),
                           "-o", str(exe), "-ldl"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([str(exe), str(artifact)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()
