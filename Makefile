# Every command a user or CI needs; `make reproduce` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup browser datasets reproduce test test-fast bench clean

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

clean:
	rm -rf $(VENV) reproduce .pytest_cache
