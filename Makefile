# The two commands a new user runs (README): `make demo` and `make test`. Both build the project
# virtualenv on first use (tools/setup_env.sh, pins in deps/versions.txt) and reuse it afterwards.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= runs/demo
export PYTHONUNBUFFERED := 1

.PHONY: env demo test lint format bench-prepare clean-demo

env:
	@tools/setup_env.sh $(VENV)

# The main job end to end on the bundled sample (CPU): each stage timed, then a summary table.
demo: env
	@tools/demo.sh $(PY) $(DEMO_DIR)

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
