"""Sweep summary: final held-out eval metrics of every job of a sweep, as a table and a plot.

A sweep directory holds one job directory per setting (Hydra multirun: `<sweep>/<n>-<overrides>/`), each
with `eval.json` (the final eval, written by the trainer) and `.hydra/overrides.yaml` (the job's command
line overrides). The setting of a job is the overrides whose values differ across the sweep's jobs.
Outputs in the sweep directory: `summary.md`, `summary.csv`, `summary.png`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import yaml

from vpmoe.utils.atomic import commit_file

METRICS = ("kl_reasoning", "kl_final", "ce_reasoning", "ce_final", "top1_reasoning", "top1_final", "loss")


def _overrides(job: Path) -> dict:
    path = job / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    items = yaml.safe_load(path.read_text()) or []
    return dict(x.split("=", 1) for x in items if "=" in x)


def collect(sweep_dir: str | Path) -> list[dict]:
    """One row per job with an eval.json: {"job", "setting", "step", metrics...}, in job-name order."""
    sweep = Path(sweep_dir)
    if not sweep.is_dir():
        raise FileNotFoundError(f"{sweep}: no such sweep directory")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = [
        (j, _overrides(j), json.loads((j / "eval.json").read_text()))
        for j in jobs
        if (j / "eval.json").is_file()
    ]
    keys = sorted({k for _, o, _ in found for k in o})
    varying = [k for k in keys if len({o.get(k) for _, o, _ in found}) > 1]
    rows = []
    for job, over, ev in found:
        setting = ",".join(f"{k}={over.get(k, '-')}" for k in varying) or job.name
        rows.append(
            {"job": job.name, "setting": setting, "step": ev["step"], **{m: ev.get(m) for m in METRICS}}
        )
    return rows


def write_summary(sweep_dir: str | Path) -> list[Path]:
    """Write summary.md / .csv / .png into the sweep directory; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = Path(sweep_dir)
    rows = collect(sweep)
    if not rows:
        raise FileNotFoundError(f"{sweep}: no job directory with an eval.json (did the jobs finish?)")
    cols = ["setting", "step", *METRICS]
    table = io.StringIO(newline="")
    w = csv.DictWriter(table, fieldnames=["job", *cols])
    w.writeheader()
    w.writerows(rows)
    commit_file(sweep / "summary.csv", table.getvalue())
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [r["setting"], str(r["step"])] + ["-" if r[m] is None else f"{r[m]:.4f}" for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    commit_file(
        sweep / "summary.md", f"# Sweep {sweep.name}: final held-out eval\n\n" + "\n".join(lines) + "\n"
    )

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    x = range(len(rows))
    for ax, name in zip(axes, ("kl", "ce", "top1"), strict=True):
        width = 0.4
        for i, span in enumerate(("reasoning", "final")):
            vals = [r[f"{name}_{span}"] or 0.0 for r in rows]
            ax.bar([xi + (i - 0.5) * width for xi in x], vals, width, label=span)
        ax.set_title(f"held-out {name} per span")
        ax.set_xticks(list(x))
        ax.set_xticklabels([r["setting"] for r in rows], rotation=30, ha="right", fontsize=7)
        ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    commit_file(sweep / "summary.png", png.getvalue())
    plt.close(fig)
    return [sweep / "summary.md", sweep / "summary.csv", sweep / "summary.png"]
