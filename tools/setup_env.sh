#!/usr/bin/env bash
# Creates (or updates) the project virtualenv from deps/versions.txt (read through tools/pins.py).
# Idempotent: a stamp holding the sha256 of the pin list marks a complete environment, so a second run
# is a no-op and a changed pin list updates the venv in place. Usage: tools/setup_env.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PINS=deps/versions.txt
STAMP="$VENV/.vpmoe-env-stamp"
# One setup at a time per venv: a second caller waits here, then finds the stamp and returns.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
want=$(sha256sum "$PINS" | cut -d' ' -f1)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
PY=${PYTHON:-python3}
pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
want_py=$("$PY" tools/pins.py version python)
if [[ "$pyver" != "$want_py" ]]; then
  echo "setup_env: need Python $want_py (deps/versions.txt), found $pyver at $(command -v "$PY")" >&2
  exit 2
fi
# An existing venv is updated in place (pip skips what is already satisfied), never deleted: other
# processes may be running from it. Only a missing or broken venv is created afresh.
if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  echo "setup_env: creating $VENV from $PINS (a few minutes on a fresh machine)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
else
  echo "setup_env: updating $VENV to $PINS"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
pin() { echo "$1==$("$PY" tools/pins.py version "$1")"; }
# The CPU venv's lines (untagged and `cpu`) except those built from sdists below.
mapfile -t reqs < <("$PY" tools/pins.py cpu --exclude-tag sdist)
constraints=$(mktemp); trap 'rm -f "$constraints"' EXIT
printf '%s\n' "${reqs[@]}" >"$constraints"
# torch first, alone: the local find-links folder holds the +cpu wheel; letting a resolver pick torch
# for vLLM could pull the multi-GB CUDA build from PyPI.
pip install -q "$(pin torch)"
pip install -q -c "$constraints" "${reqs[@]}"
# vLLM's resolver brings CUDA torchvision/torchaudio/torchcodec, which break transformers' GPT-OSS
# import (`operator torchvision::nms does not exist`); nothing here needs them.
pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# megatron-core >=0.17 declares Requires-Python >=3.12 but builds and runs on 3.11 from its sdist.
mc=$(pin megatron-core)
if [[ "$(pip show megatron-core 2>/dev/null | sed -n 's/^Version: //p')" != "${mc#*==}" ]]; then
  sd=$(mktemp -d)
  pip download -q --no-deps --no-binary=:all: --python-version 3.12 -d "$sd" "$mc"
  pip install -q --no-deps --ignore-requires-python "$sd"/*
  rm -rf "$sd"
fi
pip install -q --no-deps -e .
"$VENV/bin/python" -c 'import torch, vllm, zarr, pyarrow, hydra, openai_harmony, megatron.core, triton; print("setup_env: torch", torch.__version__, "vllm", vllm.__version__, "megatron-core", megatron.core.__version__)'
echo "$want" >"$STAMP"
