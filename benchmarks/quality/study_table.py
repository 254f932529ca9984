"""Merge study.json files (benchmarks/quality/study.py; one per GPU call) into one table per arm: the final
held-out metrics' mean and sample standard deviation over seeds, and every run's values.

    python benchmarks/quality/study_table.py benchmarks/results/quality/study_*.json [--json merged.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from study import ARMS  # the arms' order (same folder: a script's folder is on sys.path)

# final held-out metrics (vpmoe/train/evaluate.py); the *_full ones need a teacher reference (study.py
# --reference), so older study files lack them and the table leaves those columns out
METRICS = ("ce", "kl_full", "kl", "top1_full", "top1", "ece", "accuracy")
HEADERS = {
    "ce": "held-out CE (nats)",
    "kl_full": "KL to the teacher's full distribution (nats)",
    "kl": "KL to the top-64 + bucket (nats)",
    "top1_full": "top-1 agreement with the teacher",
    "top1": "top-1 agreement with the store's top-1",
    "ece": "ECE",
    "accuracy": "top-1 accuracy on the real tokens",
}


def merge(files: list[Path]) -> dict:
    runs: dict[str, dict] = {}
    for f in files:
        for name, run in json.loads(f.read_text())["runs"].items():
            if run.get("final"):
                if name in runs:
                    raise SystemExit(f"{name} appears in two study files")
                # the CE curve: the held-out CE on the real tokens does not depend on the store evaluated against
                curve = [(e["step"], e["ce"]) for e in run["curve"]]
                runs[name] = {
                    "final": {m: run["final"][m] for m in METRICS if m in run["final"]},
                    "kl_full_se": run["final"].get("kl_full_se"),
                    "ce_curve": curve,
                    "source": f.name,
                }
    arms = {}
    for arm in ARMS:
        finals = {
            n.rsplit("-seed", 1)[1]: r["final"] for n, r in runs.items() if n.rsplit("-seed", 1)[0] == arm
        }
        if not finals:
            continue
        arms[arm] = {
            "seeds": sorted(finals, key=int),
            **{
                m: _stat([f[m] for f in finals.values()])
                for m in METRICS
                if all(m in f for f in finals.values())
            },
        }
    return {"arms": arms, "runs": runs}


def _stat(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "stdev": statistics.stdev(values) if len(values) > 1 else None,
        "values": values,
    }


def paired(merged: dict, reference: str, metric: str = "ce") -> dict:
    """Per arm, its seed-by-seed difference to `reference` on `metric` (same seed = same initialization
    and data order, so the pair removes what the seeds share): {arm: {"deltas": [...], mean, stdev}}."""
    by = {}
    for name, r in merged["runs"].items():
        arm, seed = name.rsplit("-seed", 1)
        by.setdefault(arm, {})[seed] = r["final"][metric]
    out = {}
    for arm, vals in by.items():
        if arm == reference or reference not in by:
            continue
        seeds = sorted(set(vals) & set(by[reference]), key=int)
        deltas = [vals[s] - by[reference][s] for s in seeds]
        if deltas:
            out[arm] = {"seeds": seeds, **_stat(deltas)}
    return out


def markdown(merged: dict) -> str:
    full = all("kl_full" in row for row in merged["arms"].values())
    # With a teacher reference every arm has the same measure of the teacher (its full distribution);
    # the store-based kl and top1 of an arm evaluated on its own sampled store are against its draws.
    cols = ["ce", "kl_full", "top1_full", "ece", "accuracy"] if full else ["ce", "kl", "top1"]
    lines = [
        "| arm | seeds | " + " | ".join(HEADERS[m] for m in cols) + " |",
        "| --- | --- | " + " | ".join("---" for _ in cols) + " |",
    ]
    for arm, row in merged["arms"].items():
        cells = [
            f"{row[m]['mean']:.4f} ± {row[m]['stdev']:.4f}"
            if row[m]["stdev"] is not None
            else f"{row[m]['mean']:.4f}"
            for m in cols
        ]
        lines.append(f"| {arm} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
    pairs = [("ce", ref) for ref in ("ce_only", "kd_top64_bucket")]
    if full:
        pairs += [("kl_full", ref) for ref in ("ce_only", "kd_top64_bucket")]
    for metric, ref in pairs:
        diffs = paired(merged, ref, metric)
        if not diffs:
            continue
        what = {"ce": "Held-out CE", "kl_full": "KL to the teacher's full distribution"}[metric]
        lines += ["", f"{what} minus {ref}'s, seed by seed (negative: better):", "",
                  "| arm | per seed | mean ± sd |", "| --- | --- | --- |"]  # fmt: skip
        for arm in (a for a in ARMS if a in diffs):
            d = diffs[arm]
            sd = f" ± {d['stdev']:.4f}" if d["stdev"] is not None else ""
            per = ", ".join(f"{v:+.4f}" for v in d["values"])
            lines.append(f"| {arm} | {per} | {d['mean']:+.4f}{sd} |")
    return "\n".join(lines)


def plot(merged: dict, path: Path) -> None:
    """Held-out CE against training step, per arm (mean over its seeds; steps where every seed has one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for arm in merged["arms"]:
        curves = [dict(r["ce_curve"]) for n, r in merged["runs"].items() if n.rsplit("-seed", 1)[0] == arm]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        for ax in axes:
            ax.plot(
                steps, [statistics.fmean(c[s] for c in curves) for s in steps], marker="o", ms=3, label=arm
            )
    for ax, title in zip(axes, ("all arms", "zoom"), strict=True):
        ax.set_xlabel("training step (32 sequences each)")
        ax.set_ylabel("held-out CE on the actual next token (nats)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(5.8, 7.0)
    axes[1].set_xlim(90, 205)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--json", type=Path, default=None, help="write the merged table as JSON too")
    ap.add_argument("--plot", type=Path, default=None, help="a PNG of the held-out CE curves")
    args = ap.parse_args(argv)
    merged = merge(args.files)
    merged["paired_ce"] = {ref: paired(merged, ref) for ref in ("ce_only", "kd_top64_bucket")}
    merged["paired_kl_full"] = {ref: paired(merged, ref, "kl_full") for ref in ("ce_only", "kd_top64_bucket")}
    print(markdown(merged))
    if args.json:
        args.json.write_text(json.dumps(merged, indent=1) + "\n")
    if args.plot:
        plot(merged, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
