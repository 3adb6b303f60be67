"""The wasm32 web package (``ember compile --target wasm32 MODEL -o DIR``: model.wasm, model.mjs,
index.html) loaded and run by its ES module in Node.js and in headless Chromium (the example page,
served from a localhost HTTP server: a page opened as file:// cannot fetch the module), against
the reference interpreter; a damaged model.wasm is refused in both with the module's
EmberArtifactError.  Skipped, with the reason, where zig, Node.js or Chromium is missing."""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import tempfile
import threading

import numpy as np
import onnx
import pytest

from ember.frontend import from_onnx
from ember.graph.interpreter import run_graph
from ember.runtime import pattern_array
from ember.target import resolve

from .cross import missing
from .test_cross_models import small_mlp

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """The small MLP's web package and the reference outputs on the pattern inputs."""
    from ember.cli import main

    why = missing(resolve("wasm32"))
    if why:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("web")
    model = small_mlp()
    onnx.save(model, work / "mlp.onnx")
    out = work / "site"
    assert main(["compile", str(work / "mlp.onnx"), "--target", "wasm32", "--opt-level", "1", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".ember-export", "index.html", "model.mjs", "model.wasm"]
    g = from_onnx(model)
    feeds = {v.name: pattern_array(v.type) for v in g.inputs}
    return out, feeds, run_graph(g, feeds)


def _damaged_copy(site, where):
    bad = where / "damaged"
    shutil.copytree(site, bad)
    data = bytearray((bad / "model.wasm").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bad / "model.wasm").write_bytes(bytes(data))
    return bad


NODE_SCRIPT = """
import { load, pattern } from "%s";
try {
  const model = await load();
  const x = Float32Array.from(JSON.parse(process.argv[2]));
  const mine = model.run({ x }), patterned = model.run({ x: pattern(model.inputs[0]) });
  console.log(JSON.stringify({ inputs: model.inputs, target: model.metadata.target,
                               given: Array.from(mine.y.data), pattern: Array.from(patterned.y.data), shape: mine.y.shape }));
} catch (e) {
  console.log(JSON.stringify({ error: e.name, code: e.code, message: e.message }));
}
"""


def _node(site, x) -> dict:
    script = site.parent / f"use-{site.name}.mjs"
    script.write_text(NODE_SCRIPT % (site / "model.mjs").as_uri())
    proc = subprocess.run(["node", "--no-warnings", str(script), json.dumps(x.ravel().tolist())],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_model_mjs_runs_in_nodejs(package, tmp_path):
    site, feeds, (want,) = package
    x = np.random.default_rng(5).standard_normal((4, 8)).astype(np.float32)
    got = _node(site, x)
    assert got["inputs"] == [{"name": "x", "dtype": "float32", "shape": [4, 8]}] and got["target"] == "wasm32"
    assert got["shape"] == [4, 16]
    (given,) = run_graph(from_onnx(small_mlp()), {"x": x})
    np.testing.assert_allclose(np.array(got["given"], np.float32).reshape(4, 16), given, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.array(got["pattern"], np.float32).reshape(4, 16), want, rtol=1e-4, atol=1e-6)
    bad = _node(_damaged_copy(site, tmp_path), x)
    assert bad["error"] == "EmberArtifactError" and bad["code"] == "E303" and "corrupt" in bad["message"], bad


def test_export_format_web_writes_the_same_package(package, tmp_path):
    """``ember export --format web`` writes what ``ember compile --target wasm32 -o DIR`` does;
    over an earlier package it replaces it, and it refuses a folder that is not one."""
    from ember.cli import main

    site, feeds, (want,) = package
    onnx.save(small_mlp(), tmp_path / "mlp.onnx")
    out = tmp_path / "exported"
    for _ in range(2):
        assert main(["export", str(tmp_path / "mlp.onnx"), "--format", "web", "--opt-level", "1", "-o", str(out)]) == 0
    for name in ("model.mjs", "index.html"):
        assert (out / name).read_bytes() == (site / name).read_bytes()
    got = _node(out, feeds["x"])
    np.testing.assert_allclose(np.array(got["given"], np.float32).reshape(4, 16), want, rtol=1e-4, atol=1e-6)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    assert main(["export", str(tmp_path / "mlp.onnx"), "--format", "web", "-o", str(tmp_path / "other")]) == 1
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


def _page(site, tmp_path) -> str:
    """The example page's DOM after it ran in headless Chromium, served from ``site``."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Chromium is missing (apt-get install chromium): the browser test needs it")

    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                          ".mjs": "text/javascript", ".wasm": "application/wasm"}

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                               "--dump-dom", url], capture_output=True, text=True, timeout=180)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_example_page_runs_in_headless_chromium(package, tmp_path):
    site, feeds, (want,) = package
    dom = _page(site, tmp_path)
    assert 'data-status="done"' in dom, dom[:3000]
    result = json.loads(re.search(r'<pre id="result">(.*?)</pre>', dom, re.S).group(1))
    assert result["y"]["shape"] == [4, 16] and result["y"]["dtype"] == "float32"
    np.testing.assert_allclose(np.array(result["y"]["data"], np.float32).reshape(4, 16), want, rtol=1e-4, atol=1e-6)
    bad = _page(_damaged_copy(site, tmp_path), tmp_path)
    assert 'data-status="error"' in bad and "EmberArtifactError" in bad and "corrupt" in bad, bad[:3000]
