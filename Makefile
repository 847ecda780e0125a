# alexsearch: every target installs first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# make search: DATA is the folder holding cifar-10-batches-py/ (downloaded there when missing and
# DOWNLOAD=--download); TRIALS and EPOCHS set the budget; SEARCH_ARGS passes any other option.
DATA ?= data
DOWNLOAD ?= --download
TRIALS ?= 20
EPOCHS ?= 10
STORAGE ?= sqlite:///alexsearch.db
STUDY ?= alexnet-cifar10
SEARCH_ARGS ?=
PYTEST_ARGS ?=
# Offline installs (the GPU machine has no registry): an existing VENV is reused, PIP_ARGS passes e.g.
# "--no-index --find-links DIR --no-build-isolation", EXTRAS= installs no extras. docs/gpu-check.md.
EXTRAS ?= dev,postgres
PIP_ARGS ?=

.PHONY: install search test test-fast status dashboard bench bench-overhead bench-lock-wait bench-checkpoint bench-study-scale \
	bench-service gpu-check lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(PIP_ARGS) --upgrade pip
	$(BIN)/pip install -q $(PIP_ARGS) -e '.$(if $(EXTRAS),[$(EXTRAS)])'
	touch $@

search: install
	$(BIN)/alexsearch search --storage $(STORAGE) --study $(STUDY) --data $(DATA) $(DOWNLOAD) \
		--trials $(TRIALS) --epochs $(EPOCHS) $(SEARCH_ARGS)

status: install
	$(BIN)/alexsearch status --storage $(STORAGE) --study $(STUDY)

# make dashboard: serve optuna-dashboard for the study on http://127.0.0.1:8080 (DASHBOARD_ARGS="--port 9000").
DASHBOARD_ARGS ?=
dashboard: install
	$(BIN)/alexsearch dashboard --storage $(STORAGE) --study $(STUDY) $(DASHBOARD_ARGS)

# make test: every test, slow and bench included (what CI runs). make test-fast: the edit loop, without the
# multi-second (slow) and benchmark (bench) tests. PYTEST_ARGS passes options, e.g. PYTEST_ARGS="-x -k export".
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not bench" $(PYTEST_ARGS)

# make bench: the throughput table (Trainer vs DataLoader vs plain loop, ratios a/b and a/c). BENCH_ARGS passes
# options, e.g. BENCH_ARGS="--data data --bf16", "--quick", or "--accuracy" for the same-accuracy check.
BENCH_ARGS ?=
bench: install
	$(BIN)/python -m bench.throughput $(BENCH_ARGS)

# The service's own cost, each printed as a ratio or share measured side by side in one run (bench/*.py say how):
# bench-overhead: alexsearch against a plain Optuna script on identical studies (mlp-synth 20 x 5, then AlexNet
#   500/200 images 4 x 2 from $(DATA)); bench-lock-wait: 8 workers' SQLite write-lock wait; bench-checkpoint:
#   checkpoint cost per epoch; bench-study-scale: poll/status/report/dashboard at 1,000 and 10,000 trials.
bench-overhead: install
	$(BIN)/python -m bench.overhead $(BENCH_ARGS)
	$(BIN)/python -m bench.overhead --task alexnet-cifar10 --data $(DATA) --train-size 500 --val-size 200 \
		--trials 4 --epochs 2 $(BENCH_ARGS)

bench-lock-wait: install
	$(BIN)/python -m bench.lock_wait $(BENCH_ARGS)

bench-checkpoint: install
	$(BIN)/python -m bench.checkpoint_cost $(BENCH_ARGS)

bench-study-scale: install
	$(BIN)/python -m bench.study_scale $(BENCH_ARGS)

bench-service: bench-overhead bench-lock-wait bench-checkpoint bench-study-scale

# make gpu-check: every GPU figure in one run (under 8 minutes on an H100/H200), results in bench/results/;
# without CUDA the same steps at toy scale. GPU_CHECK_ARGS passes options, e.g. "--out DIR --grid-budget 240".
# See docs/gpu-check.md.
GPU_CHECK_ARGS ?=
gpu-check: install
	$(BIN)/python -m bench.gpu_check --data $(DATA) $(GPU_CHECK_ARGS)

# make lint: ruff's rules, ruff's formatting (checked, not applied: `ruff format .` applies it) and mypy
# (settings in pyproject.toml). .ci/run runs it before the tests; .pre-commit-config.yaml runs the same on commit.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .mypy_cache
