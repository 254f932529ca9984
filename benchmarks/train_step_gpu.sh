#!/usr/bin/env bash
# One GPU session for the training step (issue 15): the step benchmark at the bench's shape (2 x [4, 2048])
# with profiles, the same tokens in one micro-batch (1 x [8, 2048]), and the production batch of
# conf/experiment/small_h100.yaml (32 sequences) as 4 x [8, 2048]; then the GPU tests. With BEFORE=<dir>
# (a checkout of an earlier commit, same bench_train.py copied in) its step is timed at the same shapes in
# the same session, interleaved, since the host-bound step's wall time moves between sessions.
# Results in a work dir; the logs and one tarball of it in $OUT (or ./gpu_out): at most 8 files.
# Needs the cp312 wheels in .whl (docs/training.md "GPU benchmark").
set -uo pipefail
cd "$(dirname "$0")/.."
HERE=$PWD
OUT=${OUT:-gpu_out}
W=$(mktemp -d)
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=$W/.triton
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv | tee "$W/gpu.txt"

bench() { # bench NAME DIR ARGS...: bench_train.py of the tree in DIR
  local name=$1 dir=$2
  shift 2
  (cd "$dir" && PYTHONPATH=/tmp/site:$PWD timeout "${BENCH_TIMEOUT:-200}" python3 benchmarks/bench_train.py --model small \
    --device cuda --out-dir "$W/$name" ${BENCH_ARGS:-} "$@") 2>&1 | grep -v Warning | tee "$OUT/bench_$name.log"
}
[ -n "${BEFORE:-}" ] && bench before_2x4 "$BEFORE" --profile
bench after_2x4 "$HERE" --profile
PYTHONPATH=/tmp/site:$HERE timeout "${TEST_TIMEOUT:-300}" python3 -m pytest -m gpu -q -p no:cacheprovider -W ignore \
  tests/gpu tests/test_student_model.py 2>&1 | tail -25 | tee "$OUT/gpu_tests.log"
bench after_1x8 "$HERE" --micro 8 --micro-batches 1 --profile
bench after_4x8 "$HERE" --micro 8 --micro-batches 4 --rows kd,megatron_ce
[ -n "${BEFORE:-}" ] && bench before_4x8 "$BEFORE" --micro 8 --micro-batches 4 --rows kd,megatron_ce
tar czf "$OUT/results.tgz" -C "$W" --exclude=.triton .
