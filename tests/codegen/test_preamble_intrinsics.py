"""The preamble's intrinsics header only in the files that call a helper needing it: every
branch that differs with ``EMBER_INTRINSICS`` belongs to a helper of ``intrinsic_helpers``, a
file calling one of them defines it, the others do not parse ``<immintrin.h>``."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import ember
from ember.codegen.c import include_model_header, intrinsic_helpers, preamble, uses_intrinsics
from ember.errors import ToolchainError
from ember.target import resolve
from ember.toolchain import find_compiler, runtime_dir

# the x86 extensions each intrinsic branch of the preamble is written for (preprocessing only:
# the machine need not have them)
X86_FLAGS = {
    "avx2": (8, ["-mavx2", "-mfma"]),
    "avxvnni": (8, ["-mavx2", "-mfma", "-mavxvnni"]),
    "avx512-ymm": (8, ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512vnni"]),
    "avx512": (16, ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512vnni"]),
}
_FUNC = re.compile(r"^(?:static inline |#define )[^\n(]*?\b(ember_\w+|EMBER_\w+)\(", re.M)


def _compiler():
    try:
        cc = find_compiler()
    except ToolchainError as e:
        pytest.skip(str(e))
    machine = subprocess.run([*cc.command, "-dumpmachine"], capture_output=True, text=True).stdout
    if not re.match(r"(x86_64|i\d86)", machine):
        pytest.skip("needs a C compiler for x86")
    return cc


def _definitions(cc, lanes: int, flags: list[str], intrinsics: bool, tmp_path) -> tuple[dict[str, str], str]:
    """The preamble preprocessed: each helper's (and macro's) text, by name, and all of it."""
    src = tmp_path / f"p{lanes}{int(intrinsics)}.c"
    src.write_text(('#define EMBER_INTRINSICS 1\n' if intrinsics else '') + '#include "ember_kernel.h"\n'
                   + preamble(lanes, "x86"))
    proc = subprocess.run([*cc.command, "-std=gnu11", *flags, "-dD", "-E", "-P", "-I", str(runtime_dir()), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    own = text[text.index("ember_vf"):] if "ember_vf" in text else text     # from the preamble on
    starts = [(m.start(), m.group(1)) for m in _FUNC.finditer(own)]
    defs = {}
    for k, (at, name) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(own)
        defs[name] = defs.get(name, "") + own[at:end]
    return defs, text


@pytest.mark.parametrize("isa", list(X86_FLAGS))
def test_only_the_listed_helpers_change_with_the_intrinsics(isa, tmp_path):
    cc = _compiler()
    lanes, flags = X86_FLAGS[isa]
    without, text = _definitions(cc, lanes, flags, False, tmp_path)
    with_, _ = _definitions(cc, lanes, flags, True, tmp_path)
    assert "_mm256_" not in text and "_mm512_" not in text and "__m256i" not in text    # no immintrin.h
    changed = {n for n in set(without) | set(with_) if without.get(n) != with_.get(n)}
    # EMBER_MAXPS and EMBER_MINPS are ember_vmax's and ember_vmin's
    changed = {"ember_vmax" if n == "EMBER_MAXPS" else "ember_vmin" if n == "EMBER_MINPS" else n for n in changed}
    assert changed <= intrinsic_helpers(lanes, "x86"), changed - intrinsic_helpers(lanes, "x86")
    if isa == "avx2":
        assert {"ember_vround", "ember_vdot4_sat16"} <= changed       # the header does reach them


def test_a_file_defines_the_macro_only_where_it_calls_such_a_helper():
    helpers = intrinsic_helpers(8, "x86")
    assert include_model_header("ember_vf y = ember_vround(x);", helpers) == \
        '#define EMBER_INTRINSICS 1\n#include "model.h"\n'
    assert include_model_header("ember_vf y = ember_vmax(ember_vexp(x), z); int ember_vround_count;", helpers) == \
        '#include "model.h"\n'
    assert not uses_intrinsics("ember_vround(x)", intrinsic_helpers(4, "neon"))    # NEON's header is always in
    assert "ember_vmax" in intrinsic_helpers(16, "x86") and "ember_vmax" not in helpers


def _model(op: str) -> onnx.ModelProto:
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"], name=f"the_{op.lower()}")], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 64])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op, ref", [("Round", np.round), ("Relu", lambda x: np.maximum(x, 0))])
def test_kernels_with_and_without_the_intrinsics(op, ref, tmp_path, monkeypatch):
    """A Round kernel calls ember_vround: its file defines the macro (where the target's ISA
    module lists it) and rounds half to even; a Relu kernel's file includes the bare header (where ember_vmax is not
    such a helper)."""
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    m = ember.compile(_model(op), dump=tmp_path / "dump")
    x = (np.arange(256, dtype=np.float32).reshape(4, 64) - 128) * 0.25     # halves among them
    np.testing.assert_array_equal(m(x), ref(x))
    helpers = intrinsic_helpers(resolve("cpu").lanes, resolve("cpu").isa)
    kernels = [p for p in (tmp_path / "dump" / "c").glob("ember_k_*.c")]
    assert kernels
    for p in kernels:
        text = p.read_text()
        assert ("#define EMBER_INTRINSICS" in text) == uses_intrinsics(text, helpers)
        if op == "Relu" and "ember_vmax" not in helpers:    # (AVX-512's ember_vmax is one)
            assert "#define EMBER_INTRINSICS" not in text
    if op == "Round" and "ember_vround" in helpers:
        assert any("#define EMBER_INTRINSICS" in p.read_text() for p in kernels)
