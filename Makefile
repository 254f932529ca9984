# The two commands a new user runs (README): `make demo` and `make test`. Both build the project
# virtualenv on first use (tools/setup_env.sh, pins in deps/versions.txt) and reuse it afterwards.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= runs/demo
SAMPLE := data/sample/synth_sample.parquet
export PYTHONUNBUFFERED := 1

.PHONY: env demo test lint format bench-prepare clean-demo

env:
	@tools/setup_env.sh $(VENV)

# The main job end to end on the bundled sample (CPU). Later stages are appended as they land.
demo: env
	$(PY) -m pipelines.prepare input=$(SAMPLE) output=$(DEMO_DIR)/prepared prepare=debug overwrite=true
	@test -f $(DEMO_DIR)/teacher/config.json || $(PY) -m pipelines.tiny_teacher output=$(DEMO_DIR)/teacher
	$(PY) -m pipelines.score dataset=$(DEMO_DIR)/prepared teacher=cpu teacher.model=$(DEMO_DIR)/teacher output=$(DEMO_DIR)/store
	$(PY) -m pipelines.report store=$(DEMO_DIR)/store dataset=$(DEMO_DIR)/prepared
	$(PY) -m pipelines.train dataset=$(DEMO_DIR)/prepared store=$(DEMO_DIR)/store run_dir=$(DEMO_DIR)/train experiment=cpu_debug
	$(PY) -m pipelines.evaluate checkpoint=$(DEMO_DIR)/train
	@echo "demo outputs: prepared $(DEMO_DIR)/prepared, teacher $(DEMO_DIR)/teacher, store + report $(DEMO_DIR)/store, run $(DEMO_DIR)/train (metrics.jsonl, checkpoints)"

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: env
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# CPU tests (GPU tests carry the `gpu` marker and run on the GPU machine: `pytest -m gpu`).
test: lint
	$(PY) -m pytest -m "not gpu" -q

bench-prepare: env
	$(PY) benchmarks/bench_prepare.py

clean-demo:
	rm -rf $(DEMO_DIR)
