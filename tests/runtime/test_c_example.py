"""src/ember/runtime/runners/run_model.c runs an artifact with no Python and agrees with Module.run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ember.runtime import load
from ember.toolchain import build_shared, find_compiler, runtime_dir

EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "ember" / "runtime" / "runners" / "run_model.c"

# Every dtype the example knows, copied through, plus one computed output.
IO = [("f32", "float32", (3, 7)), ("f16", "float16", (5,)), ("bf16", "bfloat16", (4,)),
      ("f64", "float64", (3,)), ("i8", "int8", (6,)), ("i16", "int16", (2,)), ("i32", "int32", (3,)),
      ("i64", "int64", (2, 2)), ("u8", "uint8", (4,)), ("u16", "uint16", (3,)), ("u32", "uint32", (2,)),
      ("u64", "uint64", (2,)), ("flag", "bool", (9,))]
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "int16": 2, "int32": 4,
            "int64": 8, "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8, "bool": 1}


def copy_model_source() -> str:
    def entries(items):
        return [{"name": n, "dtype": d, "shape": list(s)} for n, d, s in items]

    outputs = [(f"{n}_out", d, s) for n, d, s in IO] + [("sum", "float32", (3,))]
    meta = {"format": 1, "ember_version": "0.1.0", "name": "copies", "target": "cpu",
            "inputs": entries(IO), "outputs": entries(outputs), "arena_bytes": 0,
            "constants_bytes": 0, "kernels": 1}
    text = json.dumps(meta).replace('"', '\\"')
    copies = "\n".join(
        f"  memcpy(outputs[{i}], inputs[{i}], {int(np.prod(s)) * ITEMSIZE[d]});" for i, (_, d, s) in enumerate(IO))
    return f"""#include "ember_kernel.h"
const char ember_model_metadata[] = "{text}";
const unsigned long long ember_model_arena_bytes = 0;
typedef struct {{ const float* x; float* s; }} row_ctx;
static void row_sums(void* p, int64_t b, int64_t e) {{
  row_ctx* k = p;
  for (int64_t r = b; r < e; r++) {{ float acc = 0; for (int c = 0; c < 7; c++) acc += k->x[r * 7 + c]; k->s[r] = acc; }}
}}
int ember_model_entry(unsigned char* arena, void* const* inputs, void* const* outputs) {{
  (void)arena;
{copies}
  row_ctx k = {{ inputs[0], outputs[{len(IO)}] }};
  ember_parallel_for(3, row_sums, &k);
  return 0;
}}
"""


def fnv1a64(arrays) -> str:
    h = 1469598103934665603
    for a in arrays:
        for byte in np.ascontiguousarray(a).tobytes():
            h = ((h ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("c-example")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBER_CACHE_DIR", str(tmp / "cache"))
        artifact = build_shared({"model.c": copy_model_source()}, name="copies")
    exe = tmp / "run_model"
    cc = find_compiler().command
    proc = subprocess.run([*cc, "-O2", "-std=gnu11", "-Wall", "-Werror", "-I", str(runtime_dir()), str(EXAMPLE),
                           "-o", str(exe), "-ldl", "-lm"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return tmp, artifact, exe


def run_example(exe, *args):
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=60)


def checksum_of(stdout: str) -> str:
    m = re.search(r"^checksum fnv1a64 ([0-9a-f]{16})$", stdout, re.M)
    assert m, stdout
    return m.group(1)


def test_c_example_matches_python(setup):
    _, artifact, exe = setup
    proc = run_example(exe, artifact, "--threads", "2", "--iters", "3")
    assert proc.returncode == 0, proc.stderr

    m = load(artifact)
    m.num_threads = 2
    feeds = m.pattern_inputs()
    outs = m.run(feeds)
    for name in feeds:   # the copies: Python's pattern is the C example's pattern, byte for byte
        assert outs[f"{name}_out"].tobytes() == feeds[name].tobytes(), name
    np.testing.assert_allclose(outs["sum"], feeds["f32"].sum(axis=1), rtol=1e-6)
    assert checksum_of(proc.stdout) == fnv1a64(outs.values())
    assert "threads 2" in proc.stdout and "latency median" in proc.stdout
    assert re.search(r"output 0 'f32_out' float32\[3, 7\]: -0.5 ", proc.stdout), proc.stdout


def test_c_example_reads_input_files(setup):
    tmp, artifact, exe = setup
    m = load(artifact)
    rng = np.random.default_rng(0)
    feeds = {}
    files = []
    for (name, ttype) in zip(m.input_names, m.input_types):
        arr = m.pattern_inputs()[name]
        if name == "f32":
            arr = rng.standard_normal(arr.shape).astype(np.float32)
        feeds[name] = arr
        path = tmp / f"{name}.bin"
        arr.tofile(path)
        files.append(path)
    proc = run_example(exe, artifact, "--threads", "1", *files)
    assert proc.returncode == 0, proc.stderr
    assert checksum_of(proc.stdout) == fnv1a64(m.run(feeds).values())
    short = tmp / "short.bin"
    short.write_bytes(b"\0")
    proc = run_example(exe, artifact, short, *files[1:])
    assert proc.returncode != 0 and "takes" in proc.stderr


def test_c_example_refuses_a_truncated_artifact(setup):
    tmp, artifact, exe = setup
    bad = tmp / "truncated.so"
    bad.write_bytes(artifact.read_bytes()[:-1000])
    proc = run_example(exe, bad)
    assert proc.returncode == 1 and "truncated" in proc.stderr
    proc = run_example(exe)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_runtime_header_compiles_as_cxx(tmp_path):
    """The public header is usable from C++ as well."""
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    src = tmp_path / "use.cc"
    src.write_text('#include "ember_runtime.h"\nint main() { return ember_abi_version == nullptr; }\n')
    proc = subprocess.run([cxx, "-fsyntax-only", "-I", str(runtime_dir()), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_c_example_reads_an_output_the_data_sizes(setup):
    """A NonZero: the runtime owns the output, whose shape the C example reads after the run."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    tmp, _, exe = setup
    g = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"])], "nz",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp / "nonzero.so"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBER_CACHE_DIR", str(tmp / "cache"))
        import ember

        ember.compile(model, cflags=("-O1",)).save(path)
    x = np.array([[0, 1.5, 0, 2], [0, 0, 0, 0], [3, 0, 0, 4]], np.float32)
    x.tofile(tmp / "x.bin")
    proc = run_example(exe, path, "--iters", "2", tmp / "x.bin")
    assert proc.returncode == 0, proc.stderr
    want = np.array(np.nonzero(x), np.int64)
    assert load(path)(x).tolist() == want.tolist()
    assert checksum_of(proc.stdout) == fnv1a64([want])
    assert "output 0 'y' int64[2, 4]: 0 0 2 2 1 3 0 3" in proc.stdout, proc.stdout
    zeros = np.zeros((3, 4), np.float32)
    zeros.tofile(tmp / "z.bin")
    proc = run_example(exe, path, tmp / "z.bin")
    assert proc.returncode == 0 and "int64[2, 0]:" in proc.stdout, proc.stdout + proc.stderr
