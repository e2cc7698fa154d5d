# Entry points, each doing its own set-up on a fresh machine:
#   make demo   tiny end-to-end run on the built-in corpus (CPU)
#   make test   the test suite (what CI runs)
#   make test-fast   the suite minus the slow tests, for the inner loop
#   make rrtf-study   does ranking add to SFT? RRTF / RRHF / SFT-only over 3 seeds (docs/rrtf.md)
#   make compare-demo   4 tiny runs differing only in objective mixture, evaluated and compared
#   make compare-grid   the objective grid over 3 seeds (docs/compare.md; GRID=all for every axis)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo rrtf-study compare-demo compare-grid test test-fast lint install clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch lies on this disk; installing it first keeps pip from
	# pulling a multi-GB CUDA build to satisfy `torch>=2.4`.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider

# The inner loop: everything but the tests marked slow (multi-process, end-to-end).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider -m "not slow"

demo: $(STAMP)
	$(BIN)/mrrtf demo --out demo_out

# Pretrains only when demo_out/pretrain holds no finished run; resumable (a rerun skips what is done).
rrtf-study: $(STAMP)
	test -f demo_out/pretrain/summary.json || $(BIN)/mrrtf demo --no-rrtf --out demo_out
	$(BIN)/mrrtf rrtf study --pretrained demo_out/pretrain --out demo_out/study --seeds 1,2,3

compare-demo: $(STAMP)
	$(BIN)/mrrtf compare-demo --out compare_out

GRID ?= objectives
compare-grid: $(STAMP)
	$(BIN)/mrrtf compare-demo --grid $(GRID) --out compare_out

lint: $(STAMP)
	$(BIN)/ruff check megatron_rrtf pretrain align mrrtf tests benchmarks

clean:
	rm -rf $(VENV) demo_out compare_out
