#!/usr/bin/env bash
# The real training command on two GPUs of one host, next to one GPU, from the same seed and global batch:
# data parallel 2, expert parallel 2 (inside DP 2) and pipeline parallel 2 (two stages), over NCCL.
#   bash benchmarks/multi_gpu_runs.sh DATASET STORE OUT_DIR [STEPS]
# Writes OUT_DIR/<layout>.log and <layout>_metrics.jsonl, then compares the loss curves and tokens/s.
set -uo pipefail
DATASET=$1 STORE=$2 OUT=$3 STEPS=${4:-50}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
common=(experiment=small_h100 model.layer_spec=local "dataset=$DATASET" "store=$STORE" train.max_steps="$STEPS"
  train.log_interval=1 train.eval_interval="$STEPS" checkpoint.interval=0 checkpoint.keep_last=1
  data.global_batch_size=8 data.micro_batch_size=4 data.num_workers=2)
mkdir -p "$OUT"
run() {  # layout, launcher..., extra overrides
  local name=$1; shift
  rm -rf "/tmp/run_$name"
  timeout 170 "$@" run_dir="/tmp/run_$name" >"$OUT/$name.log" 2>&1
  echo "$name rc=$?"
  cp "/tmp/run_$name/metrics.jsonl" "$OUT/${name}_metrics.jsonl" 2>/dev/null
  rm -rf "/tmp/run_$name/checkpoints"
}
run gpu1 python -m pipelines.train "${common[@]}"
run dp2 torchrun --nproc-per-node 2 -m pipelines.train "${common[@]}"
run dp2_ep2 torchrun --nproc-per-node 2 -m pipelines.train "${common[@]}" parallel.expert_parallel=2
run pp2 torchrun --nproc-per-node 2 -m pipelines.train "${common[@]}" parallel.pipeline_parallel=2
python - "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
def rows(name):
    p = out / f"{name}_metrics.jsonl"
    return [json.loads(l) for l in p.open()] if p.exists() else []
base = {r["step"]: r for r in rows("gpu1") if r.get("kind") == "train"}
def tps(rs):
    return statistics.median(r["tokens_per_s"] for r in rs[5:]) if len(rs) > 5 else float("nan")
b_tps = tps(list(base.values()))
print(f"gpu1: {len(base)} steps, median tokens/s {b_tps:.0f}")
for name in ("dp2", "dp2_ep2", "pp2"):
    got = {r["step"]: r for r in rows(name) if r.get("kind") == "train"}
    common = sorted(set(base) & set(got))
    if not common:
        print(f"{name}: no steps"); continue
    rel = [abs(got[s]["loss"] - base[s]["loss"]) / abs(base[s]["loss"]) for s in common]
    t = tps(list(got.values()))
    print(f"{name}: {len(common)} steps; max relative loss difference to one GPU {max(rel):.2e} "
          f"(steps 1-10 {max(rel[:10]):.2e}); final loss {got[common[-1]]['loss']:.4f} vs {base[common[-1]]['loss']:.4f}; "
          f"median tokens/s {t:.0f}, scaling efficiency {t / (2 * b_tps):.2f}")
PY
