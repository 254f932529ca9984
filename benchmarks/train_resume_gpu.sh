#!/usr/bin/env bash
# The real training command on one GPU, killed and resumed: run A trains STEPS steps straight; run B is
# SIGKILLed once its mid-way checkpoint is complete and rerun with the same command (automatic resume).
# The two metrics.jsonl files must agree step for step after the checkpoint (bf16 noise at most).
#   bash benchmarks/train_resume_gpu.sh DATASET STORE OUT_DIR [STEPS]
# Writes OUT_DIR/{A,B1,B2}.log and OUT_DIR/{A,B}_metrics.jsonl; run dirs (with multi-GB checkpoints) under /tmp.
set -euo pipefail
DATASET=$1 STORE=$2 OUT=$3 STEPS=${4:-40}
HALF=$((STEPS / 2))
CKPT=$(printf "step_%08d" "$HALF")  # vpmoe/train/checkpoint.py names
common=(experiment=small_h100 model.layer_spec=local "dataset=$DATASET" "store=$STORE"
  train.max_steps="$STEPS" train.log_interval=5 train.eval_interval="$HALF" checkpoint.interval="$HALF"
  checkpoint.keep_last=1 data.global_batch_size=8 data.micro_batch_size=4 data.num_workers=4)
mkdir -p "$OUT"
rm -rf /tmp/run_A /tmp/run_B
python -m pipelines.train "${common[@]}" run_dir=/tmp/run_A >"$OUT/A.log" 2>&1
cp /tmp/run_A/metrics.jsonl "$OUT/A_metrics.jsonl"
rm -rf /tmp/run_A/checkpoints
python -m pipelines.train "${common[@]}" run_dir=/tmp/run_B >"$OUT/B1.log" 2>&1 &
pid=$!
until [ -f "/tmp/run_B/checkpoints/$CKPT/complete.json" ]; do
  kill -0 $pid 2>/dev/null || { echo "run B ended before its step-$HALF checkpoint"; exit 1; }
  sleep 0.5
done
kill -9 $pid || true
wait $pid || true
echo "killed run B after its step-$HALF checkpoint" >>"$OUT/B1.log"
python -m pipelines.train "${common[@]}" run_dir=/tmp/run_B >"$OUT/B2.log" 2>&1
cp /tmp/run_B/metrics.jsonl "$OUT/B_metrics.jsonl"
python - "$OUT" "$HALF" <<'PY'
import json, sys
out, half = sys.argv[1], int(sys.argv[2])
def losses(name):
    rows = [json.loads(l) for l in open(f"{out}/{name}_metrics.jsonl")]
    return {r["step"]: r["loss"] for r in rows if r.get("kind") == "train"}
a, b = losses("A"), losses("B")
common = sorted(set(a) & set(b))
rel = lambda s: abs(a[s] - b[s]) / max(abs(a[s]), 1e-12)  # noqa: E731
before = [s for s in common if s <= half]
after = [s for s in common if s > half]
# Steps <= half ran uninterrupted in both runs: their difference is the run-to-run noise of this GPU
# setup (bf16, atomics in the MoE token permutation), the yardstick for the resumed steps.
print(f"steps compared: {len(common)}; max relative loss difference, both uninterrupted (steps 1-{half}): "
      f"{max(map(rel, before)):.2e}; after the kill and resume (steps {half + 1}-{max(after)}): {max(map(rel, after)):.2e}")
for s in common:
    print(f"step {s:4d}  A {a[s]:.6f}  B {b[s]:.6f}")
PY
