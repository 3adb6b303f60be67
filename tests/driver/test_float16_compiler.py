"""Kernels that compute in float16 need the C compiler's ``_Float16``: where the target's compiler
has none (GCC before 12 on x86, clang for wasm32), the compile is refused naming the kernel and
its nodes, not left to the C compiler's errors; models without float16 are not affected."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from onnx import TensorProto, helper

import ember
from ember.errors import ToolchainError
from ember.toolchain import cc


def _add(elem: int):
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"], name="twice")], "twice",
                              [helper.make_tensor_value_info("x", elem, [64])],
                              [helper.make_tensor_value_info("y", elem, [64])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))


def test_refused_naming_the_kernel_where_the_compiler_has_no_float16(monkeypatch):
    asked = []
    monkeypatch.setattr(cc, "has_float16", lambda flags=(), target=None: asked.append(target) or False)
    with pytest.raises(ToolchainError, match=r"kernel '\w+' \(fuses add 'twice'\) computes in float16, and the C "
                                             r"compiler for cpu \(.+\) has no _Float16 type"):
        ember.compile(_add(TensorProto.FLOAT16), cache=False)
    assert len(asked) == 1
    x = np.arange(64, dtype=np.float32)         # float32 does not ask
    np.testing.assert_array_equal(ember.compile(_add(TensorProto.FLOAT), cache=False).run({"x": x})["y"], x + x)
    assert len(asked) == 1


def test_the_host_compiler_with_float16_compiles_it():
    if not cc.has_float16():
        pytest.skip("this machine's C compiler has no _Float16")
    x = np.linspace(-4, 4, 64).astype(np.float16)
    y = ember.compile(_add(TensorProto.FLOAT16), cache=False).run({"x": x})["y"]
    assert y.dtype == np.float16 and np.array_equal(y, x + x)


@pytest.mark.skipif(shutil.which("gcc-11") is None, reason="GCC 11 is not installed")
def test_gcc_11_on_x86_is_refused_and_still_compiles_float32(monkeypatch):
    """A real compiler without _Float16 on x86 (Debian's gcc-11 package)."""
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("GCC 11 has _Float16 on other architectures")
    monkeypatch.setenv("CC", "gcc-11")
    assert not cc.has_float16()
    with pytest.raises(ToolchainError, match=r"\(gcc-11\) has no _Float16 type"):
        ember.compile(_add(TensorProto.FLOAT16), cache=False)
    x = np.arange(64, dtype=np.float32)
    np.testing.assert_array_equal(ember.compile(_add(TensorProto.FLOAT), cache=False).run({"x": x})["y"], x + x)


def test_wasm32_is_refused():
    pytest.importorskip("ziglang", reason="the cross compiler is missing: pip install ziglang (make cross-deps)")
    from ember.target import resolve

    assert not cc.has_float16(target=resolve("wasm32"))
    with pytest.raises(ToolchainError, match=r"for wasm32 \(zig cc\) has no _Float16 type"):
        ember.compile(_add(TensorProto.FLOAT16), "wasm32", cache=False)
