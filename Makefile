# Every command a user or CI needs; `make reproduce` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup browser datasets reproduce test test-fast bench clean vendor-ort

setup: $(STAMP)

# torch==2.13.0 first: where the machine has the local CPU wheel, pip takes it from disk in seconds (an
# unpinned torch could pull a CUDA build of several GB); elsewhere any torch in the pyproject range will do.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0 || $(PY) -m pip install -q "torch>=2.4,<2.15"
	$(PY) -m pip install -q -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $@

reproduce: setup
	$(VENV)/bin/digitlab reproduce

# The web page's end-to-end test drives Debian's chromium (Playwright's own browser download fails offline).
# Without it that test is skipped on a developer's machine and fails under CI (CI=true).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "could not install chromium (needs root and apt); the browser test will be skipped, or fail under CI"

# Fashion-MNIST, the second worked example and the catalogue's tests, from Debian's package (nothing is downloaded
# at run time); tests that need it skip without it, and fail under CI=true.
datasets:
	@test -d /usr/share/datasets/fashion-mnist || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; } \
	  || echo "could not install dataset-fashion-mnist (needs root and apt); the Fashion-MNIST tests will skip or fail"

test: setup browser datasets
	$(PY) -m pytest -n auto --maxprocesses=4

test-fast: setup
	$(PY) -m pytest -n auto --maxprocesses=4 -m "not slow"

bench: setup
	$(PY) -m benchmarks.chapter

# The exported web page runs models with ONNX Runtime Web: its three files are kept in the package (the page
# fetches nothing from a CDN), taken from npm at the version pinned here; `tests/test_web_page.py` checks them
# against the hashes in static/ort/vendor.json. Run this to move to another version, then update vendor.json.
ORT_WEB := 1.31.1
ORT_DIR := src/digitlab/serve/static/ort
vendor-ort:
	rm -rf $(ORT_DIR)/.npm && mkdir -p $(ORT_DIR)/.npm
	cd $(ORT_DIR)/.npm && npm pack -q onnxruntime-web@$(ORT_WEB) && tar xzf onnxruntime-web-$(ORT_WEB).tgz
	cp $(ORT_DIR)/.npm/package/dist/ort.wasm.min.mjs $(ORT_DIR)/.npm/package/dist/ort-wasm-simd-threaded.mjs \
	  $(ORT_DIR)/.npm/package/dist/ort-wasm-simd-threaded.wasm $(ORT_DIR)/
	rm -rf $(ORT_DIR)/.npm
	cd $(ORT_DIR) && sha256sum ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm

clean:
	rm -rf $(VENV) reproduce .pytest_cache
