"""The distillation-quality study: the same student, tokens and seeds trained by `pipelines.train` under
each loss arm, then its held-out metrics side by side (docs/quality.md).

    python benchmarks/quality/study.py --dataset D --store S [--sampled-store S2] [--sampled-store-k1024 S3] \
        [--sampled-store-k1024-n32 S4] [--reference R] --out O [--seeds 1 2] [--parallel 4] \
        [--arms ce_only kd_top64_bucket ...] [-- extra pipelines.train overrides]

Arms (pipelines.train overrides; everything else from `experiment=quality_h200` and the extra overrides):

| arm | what the student trains on |
| --- | --- |
| ce_only | the actual next token only (loss.target=labels: a one-hot teacher; no teacher information) |
| kd_top64_bucket | the stored top-64 with the tail bucket (the default loss) |
| kd_top8_renorm | the first 8 of the stored top-64, renormalized (the student's tail ignored) |
| kd_top8_bucket | the first 8 of the stored top-64, with the tail bucket |
| kd_sampled | the sampled store (`--sampled-store`: RS-KD, N draws per position from the same teacher's (k+1)-way distribution, teacher.storage=sampled) |
| kd_sampled_k1024 | a sampled store drawn from the (1024+1)-way distribution (`--sampled-store-k1024`: scored with teacher.k=1024; the tail bucket, the estimator's bias, holds far less mass) |
| kd_sampled_k1024_n32 | the same with N = 32 draws (`--sampled-store-k1024-n32`: teacher.k=1024 teacher.samples=32) |

Held-out evaluation: on every held-out sequence, the student's CE on the actual next token (what decides
"better"), its calibration (ECE), the KL to the top-k store's whole top-64 with the bucket and top-1
agreement with the teacher (vpmoe/train/evaluate.py). The trainer evaluates every `train.eval_interval`
steps (the curves); each run's final metrics are a `pipelines.evaluate` of its last checkpoint against
`--eval-store` (default: `--store`, else the arm's own store) with `--reference`, the teacher's full
softmax on the held-out text (benchmarks/quality/teacher_reference.py), which adds the KL to the teacher's
full distribution and top-1 agreement with its full argmax, the same measure for every arm. Runs go to
`<out>/<arm>-seed<seed>/` (a rerun resumes or skips a finished run); `<out>/study.json` gathers each run's
eval curve and final metrics, and the mean and spread per arm.

Several runs share the one GPU at a time (`--parallel`): the tiny student's step is host-bound, so they
overlap on the 16 host cores; every run has its own process, seed and port.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ARMS = {
    "ce_only": ["loss.target=labels"],
    "kd_top64_bucket": [],
    "kd_top8_renorm": ["loss.teacher_k=8", "loss.tail=renorm"],
    "kd_top8_bucket": ["loss.teacher_k=8"],
    "kd_sampled": [],  # on --sampled-store
    "kd_sampled_k1024": [],  # on --sampled-store-k1024
    "kd_sampled_k1024_n32": [],  # on --sampled-store-k1024-n32
}
# the arms that train on a sampled store: the argument naming the store, and what the store is
SAMPLED_ARMS = {
    "kd_sampled": ("sampled_store", "the sampled store of the same teacher (teacher.k=64, N=50)"),
    "kd_sampled_k1024": ("sampled_store_k1024", "its sampled store scored with teacher.k=1024 (N=50)"),
    "kd_sampled_k1024_n32": ("sampled_store_k1024_n32", "its sampled store with teacher.k=1024 and N=32"),
}
METRICS = ("ce", "kl", "top1", "ce_reasoning", "ce_final", "kl_reasoning", "kl_final", "ece", "accuracy")
# with --reference (the teacher's full softmax on the held-out text)
REFERENCE_METRICS = ("kl_full", "kl_full_se", "top1_full", "teacher_entropy")
FINAL_EVAL = "eval_final.json"


def run_dir(out: Path, arm: str, seed: int) -> Path:
    return out / f"{arm}-seed{seed}"


def commands(args, arm: str, seed: int) -> list[list[str]]:
    """The run's training command, then the evaluation of its last checkpoint (module docstring)."""
    rd = run_dir(args.out, arm, seed)
    store = getattr(args, SAMPLED_ARMS[arm][0]) if arm in SAMPLED_ARMS else args.store
    train = [
        sys.executable, "-m", "pipelines.train", f"dataset={args.dataset}", f"store={store}", f"run_dir={rd}",
        f"experiment={args.experiment}", f"train.seed={seed}", f"data.seed={seed}", *ARMS[arm], *args.overrides,
    ]  # fmt: skip
    evaluate = [
        sys.executable, "-m", "pipelines.evaluate", f"checkpoint={rd}", f"store={args.eval_store or store}",
        *([f"reference={args.reference}"] if args.reference else []), f"output={rd / FINAL_EVAL}",
    ]  # fmt: skip
    return [train, evaluate]


def evals(run: Path) -> list[dict]:
    """The run's eval records (metrics.jsonl), in step order, the final evaluation (FINAL_EVAL) last,
    marked "final": true."""
    f = run / "metrics.jsonl"
    if not f.exists():
        return []
    rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    out = [r for r in rows if r.get("kind") == "eval"]
    if (run / FINAL_EVAL).exists():
        out.append({**json.loads((run / FINAL_EVAL).read_text()), "final": True})
    return out


def summarize(args, runs: dict) -> dict:
    per_arm = {}
    for arm in args.arms:
        finals = [runs[(arm, s)]["final"] for s in args.seeds if runs[(arm, s)]["final"]]
        per_arm[arm] = {
            m: {
                "mean": statistics.fmean(f[m] for f in finals),
                "stdev": statistics.stdev(f[m] for f in finals) if len(finals) > 1 else float("nan"),
                "values": [f[m] for f in finals],
            }
            for m in METRICS + REFERENCE_METRICS
            if finals and all(m in f for f in finals)
        }
        per_arm[arm]["overrides"] = ARMS[arm]
        per_arm[arm]["seeds_finished"] = len(finals)
    return per_arm


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--store", default=None, help="the top-k store (the top-k arms; every arm's evaluation)")
    for arm, (dest, what) in SAMPLED_ARMS.items():
        ap.add_argument(f"--{dest.replace('_', '-')}", default=None, help=f"{what} ({arm})")
    ap.add_argument("--eval-store", default=None, help="the final evaluations' store (default: --store)")
    ap.add_argument("--reference", default=None, help="the teacher reference of the held-out split")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--experiment", default="quality_h200")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--parallel", type=int, default=4, help="runs at a time")
    ap.add_argument("overrides", nargs="*", help="extra pipelines.train overrides (after --)")
    args = ap.parse_args(argv)
    for arm, (dest, _) in SAMPLED_ARMS.items():
        if arm in args.arms and not getattr(args, dest):
            ap.error(f"arm {arm} needs --{dest.replace('_', '-')}")
    if any(a not in SAMPLED_ARMS for a in args.arms) and not args.store:
        ap.error("the top-k arms need --store")
    args.eval_store = args.eval_store or args.store
    args.out.mkdir(parents=True, exist_ok=True)
    todo = [(arm, seed) for seed in args.seeds for arm in args.arms]
    running: dict = {}
    wall: dict = {}
    failed = []
    while todo or running:
        while todo and len(running) < args.parallel:
            arm, seed = todo.pop(0)
            rd = run_dir(args.out, arm, seed)
            rd.mkdir(parents=True, exist_ok=True)
            log = open(rd / "study_stdout.log", "ab")  # noqa: SIM115 -- closed when the run ends
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            # one shell line: training, then (sampled arms) its evaluation, which runs only if training passed
            line = " && ".join(shlex.join(c) for c in commands(args, arm, seed))
            proc = subprocess.Popen(["bash", "-c", line], stdout=log, stderr=subprocess.STDOUT, env=env)
            running[(arm, seed)] = (proc, log, time.time())
            print(f"started {arm} seed {seed}", flush=True)
        time.sleep(1.0)
        for key, (proc, log, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            wall[key] = round(time.time() - t0, 1)
            del running[key]
            if proc.returncode:
                failed.append(key)
            print(f"finished {key[0]} seed {key[1]}: rc {proc.returncode}, {wall[key]} s", flush=True)
    runs = {}
    for arm in args.arms:
        for seed in args.seeds:
            ev = evals(run_dir(args.out, arm, seed))
            runs[(arm, seed)] = {
                "curve": [
                    {"step": e["step"], **{m: e.get(m) for m in METRICS}} for e in ev if not e.get("final")
                ],
                "final": ev[-1] if ev else None,
                "wall_s": wall.get((arm, seed)),
            }
    result = {
        "experiment": args.experiment,
        "dataset": args.dataset,
        "store": args.store,
        **{dest: getattr(args, dest) for dest, _ in SAMPLED_ARMS.values()},
        "eval_store": args.eval_store,
        "reference": args.reference,
        "overrides": args.overrides,
        "seeds": args.seeds,
        "arms": summarize(args, runs),
        "runs": {f"{a}-seed{s}": r for (a, s), r in runs.items()},
        "failed": [f"{a}-seed{s}" for a, s in failed],
    }
    (args.out / "study.json").write_text(json.dumps(result, indent=1) + "\n")
    for arm, row in result["arms"].items():
        cells = "  ".join(
            f"{m} {row[m]['mean']:.4f}±{row[m]['stdev']:.4f}"
            for m in ("ce", "kl_full", "kl", "top1", "ece")
            if m in row
        )
        print(f"{arm:<16} {cells}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
