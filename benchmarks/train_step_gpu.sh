#!/usr/bin/env bash
# One GPU session for the training step (issue 15): GPU tests, the step benchmark (grouped experts + SDPA,
# and the before row: sequential experts + megatron's materialized attention), with profiles, and the head
# against the 3-GEMM floor of its supervised rows. Results in a work dir; the logs and one tarball of it
# in $OUT (or ./gpu_out). Needs the cp312 wheels in .whl (docs/training.md "GPU benchmark").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
W=$(mktemp -d)
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv | tee "$W/gpu.txt"
python3 benchmarks/bench_train.py --model small --device cuda --profile --out-dir "$W/after" 2>&1 | grep -v Warning | tee "$OUT/bench_after.log"
python3 benchmarks/bench_train.py --model small --device cuda --experts sequential --attention megatron --profile \
  --out-dir "$W/before" 2>&1 | grep -v Warning | tee "$OUT/bench_before.log"
python3 benchmarks/bench_sparse_kl.py --out-dir "$W/head" --T 16384 --kinds peaked --ks 64 --reps 7 \
  --prompt-fraction 0.25 2>&1 | tail -30 | tee "$OUT/head.log"
timeout 300 python3 -m pytest -m gpu -q -p no:cacheprovider -W ignore tests/gpu tests/test_student_model.py 2>&1 | tail -15 | tee "$OUT/gpu_tests.log"
tar czf "$OUT/results.tgz" -C "$W" .
