#!/usr/bin/env python3
"""The table `make demo` ends with: what each stage made, where, and its headline figures.

    python tools/demo_summary.py <demo dir>

Reads only what the stages wrote (the dataset manifest, the store's report.json, the run's metrics.jsonl
and eval.json, and tools/demo.sh's stage_ms.tsv); a missing artifact is an error naming it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"demo summary: {path} is missing (did that stage run?)")
    return json.loads(path.read_text())


def _evals(metrics: Path) -> list[dict]:
    if not metrics.is_file():
        raise SystemExit(f"demo summary: {metrics} is missing (did training run?)")
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    return [r for r in rows if r.get("kind") == "eval"]


def summary_rows(demo: Path) -> list[tuple[str, str, str, str]]:
    """(stage, wall time, output, headline) per stage."""
    times = {}
    tsv = demo / "stage_ms.tsv"
    if tsv.is_file():
        for line in tsv.read_text().splitlines():
            name, ms = line.split("\t")
            times[name] = f"{int(ms) / 1000:.1f} s"
    manifest = _load(demo / "prepared" / "manifest.json")
    totals = manifest["totals"]
    report_files = sorted((demo / "store").glob("*/*/report/report.json"))
    if len(report_files) != 1:
        raise SystemExit(
            f"demo summary: expected one report.json under {demo / 'store'}, found {len(report_files)}"
        )
    report = json.loads(report_files[0].read_text())
    storage, summ = report["storage"], report["summary"]
    evals = _evals(demo / "train" / "metrics.jsonl")
    if not evals:
        raise SystemExit(f"demo summary: {demo / 'train' / 'metrics.jsonl'} holds no eval record")
    first, last = evals[0], evals[-1]
    final_eval = _load(demo / "train" / "eval.json")
    sup = totals.get("supervised_tokens", {})
    return [
        (
            "prepare",
            times.get("prepare", "-"),
            str(demo / "prepared"),
            f"{totals['sequences']:,} sequences, {totals['tokens']:,} tokens "
            f"({sum(sup.values()):,} supervised), {len(manifest['shards'])} shards",
        ),
        (
            "teacher",
            times.get("teacher", "reused"),
            str(demo / "teacher"),
            "tiny random GPT-OSS (vocab 201,088)",
        ),
        (
            "score",
            times.get("score", "-"),
            report["store"]["path"],
            f"{storage['positions']:,} positions scored, {storage['bytes_per_position']:.1f} bytes/position",
        ),
        (
            "report",
            times.get("report", "-"),
            str(report_files[0].parent),
            f"{report['verdict']}: {summ['checks'] - summ['checks_failed']}/{summ['checks']} checks, "
            f"{summ['shards_committed']}/{summ['shards_expected']} shards",
        ),
        (
            "train",
            times.get("train", "-"),
            str(demo / "train"),
            f"held-out KL {first['kl']:.3f} (step {first['step']}) -> {last['kl']:.3f} (step {last['step']})",
        ),
        (
            "evaluate",
            times.get("evaluate", "-"),
            str(demo / "train" / "eval.json"),
            f"step {final_eval['step']}: KL {final_eval['kl']:.3f}, CE {final_eval['ce']:.3f}, "
            f"top-1 {final_eval['top1']:.3f}",
        ),
    ]


def render(rows: list[tuple[str, str, str, str]]) -> str:
    head = ("stage", "wall", "output", "result")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(x.rstrip() for x in [fmt.format(*head), line, *(fmt.format(*r) for r in rows)])


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(render(summary_rows(Path(argv[0]))))
    print(f"curves: tensorboard --logdir {Path(argv[0]) / 'train'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
