"""The whole-model cache of ``ember.compile``: a model file written while it is compiled is not
filed under the key of what it held before (the key's files are checked unchanged by their
size, modification and change times after the frontend read them)."""

from __future__ import annotations

import importlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import ember

build = importlib.import_module("ember.driver.compile")


def _scale(k: float) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.full((4,), k, np.float32), "w")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"], name="mul")], "scale",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_model_file_written_while_it_is_read_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "m.onnx"
    onnx.save(_scale(2.0), str(path))
    real = build.to_graph

    def written_meanwhile(model, *args):
        onnx.save(_scale(3.0), str(path))      # after the key hashed the 2.0 model
        return real(model, *args)

    monkeypatch.setattr(build, "to_graph", written_meanwhile)
    x = np.ones(4, np.float32)
    assert np.allclose(ember.compile(str(path)).run({"x": x})["y"], 3.0)
    monkeypatch.setattr(build, "to_graph", real)
    onnx.save(_scale(2.0), str(path))
    module = ember.compile(str(path))
    assert "frontend (import the model)" in module.timings.steps     # compiled, not the 3.0 artifact
    assert np.allclose(module.run({"x": x})["y"], 2.0)
    again = ember.compile(str(path))
    assert list(again.timings.steps) == ["cache key (hash the model)", "load"]
    assert np.allclose(again.run({"x": x})["y"], 2.0)


def test_a_model_file_hash_is_remembered_while_its_stamp_holds(tmp_path, monkeypatch):
    from ember.frontend import onnx_files
    from ember.target import host

    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "m.onnx"
    onnx.save(_scale(2.0), str(path))
    key = build._model_key(str(path), host(), 3)
    assert key is not None
    assert not (tmp_path / "cache" / "hashes").exists() or not any((tmp_path / "cache" / "hashes").iterdir())
    monkeypatch.setattr(build, "RACY_SECONDS", -1.0)      # the file was just written: remember it anyway
    assert build._model_key(str(path), host(), 3) == key
    reads = []
    real = onnx_files.hash_model_files
    monkeypatch.setattr(onnx_files, "hash_model_files", lambda *a: reads.append(a) or real(*a))
    stamps: list = []
    assert build._model_key(str(path), host(), 3, stamps=stamps) == key and not reads   # from the memo
    assert [p for p, _ in stamps] == [str(path)]
    onnx.save(_scale(3.0), str(path))                      # a write changes the stamp: hashed again
    other = build._model_key(str(path), host(), 3)
    assert reads and other not in (None, key)


def test_another_models_artifact_under_a_key_is_not_run(tmp_path, monkeypatch):
    """A model cache entry replaced by another model's whole, valid artifact (copied there by
    hand, or left by a store cut short) is compiled again, not loaded: the entry's recorded
    digest must name it."""
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    path, other = tmp_path / "m.onnx", tmp_path / "other.onnx"
    onnx.save(_scale(2.0), str(path))
    onnx.save(_scale(5.0), str(other))
    x = np.ones(4, np.float32)
    assert np.allclose(ember.compile(str(path)).run({"x": x})["y"], 2.0)
    (entry,) = (tmp_path / "cache" / "models").glob("*.so")
    assert entry.with_suffix(".digest").is_file()
    ember.compile(str(other)).save(tmp_path / "other.so")
    entry.unlink()
    entry.write_bytes((tmp_path / "other.so").read_bytes())
    module = ember.compile(str(path))
    assert "frontend (import the model)" in module.timings.steps      # compiled again
    assert np.allclose(module.run({"x": x})["y"], 2.0)
    # an entry without its record (an older Ember's, or a store cut short) is compiled again too
    entry.with_suffix(".digest").unlink()
    module = ember.compile(str(path))
    assert "frontend (import the model)" in module.timings.steps
    assert np.allclose(module.run({"x": x})["y"], 2.0)
    again = ember.compile(str(path))
    assert list(again.timings.steps) == ["cache key (hash the model)", "load"]


def test_an_entry_another_process_is_storing_is_left_alone(tmp_path, monkeypatch):
    """Two processes compiling one model: the first has stored the artifact but not yet its
    record when the second looks.  The second takes it for a miss and compiles, but does not
    remove the entry (the first is about to record and load it)."""
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "m.onnx"
    onnx.save(_scale(2.0), str(path))
    ember.compile(str(path))
    (entry,) = (tmp_path / "cache" / "models").glob("*.so")
    entry.with_suffix(".digest").unlink()          # the first process, between its two writes
    there = []
    real = build._build_library
    monkeypatch.setattr(build, "_build_library", lambda *a, **k: there.append(entry.is_file()) or real(*a, **k))
    module = ember.compile(str(path))
    assert there == [True]
    assert "frontend (import the model)" in module.timings.steps
    assert np.allclose(module.run({"x": np.ones(4, np.float32)})["y"], 2.0)


def test_a_store_does_not_read_back_the_shared_entry(tmp_path, monkeypatch):
    """The compile that stores an entry records the digest of its own file and loads its own
    file: another process may remove or replace the entry at once (a damaged hit, a trim)."""
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "m.onnx"
    onnx.save(_scale(3.0), str(path))
    from ember.toolchain import cache

    real = cache.Cache.put

    def put_then_lose(self, key, src, **how):
        stored = real(self, key, src, **how)
        if self.root.name == "models":
            stored.unlink()                         # another process removed it at once
        return stored

    monkeypatch.setattr(cache.Cache, "put", put_then_lose)
    module = ember.compile(str(path))
    assert np.allclose(module.run({"x": np.ones(4, np.float32)})["y"], 3.0)
    monkeypatch.setattr(cache.Cache, "put", real)
    (record,) = (tmp_path / "cache" / "models").glob("*.digest")
    from ember.runtime.artifact import trailer_digest

    module.save(tmp_path / "saved.so")
    assert record.read_bytes().strip() == trailer_digest(tmp_path / "saved.so").hex().encode()
