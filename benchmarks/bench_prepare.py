"""Preparation throughput with 1 and 2 worker processes: a generated SYNTH-schema corpus of >= 20M tokens.

    .venv/bin/python benchmarks/bench_prepare.py [--tokens 20000000] [--out benchmarks/results/prepare_cpu.md]

The corpus repeats the bundled sample's valid rows with unique ids and a per-row prefix (so no two
rows are identical), written to a temporary Parquet file. Each run is the real CLI
(`python -m pipelines.prepare`, default config, so 16 buckets), timed end to end including process
start: 1 worker (one process: stage + finalize), then 2 concurrent worker processes followed by the
finalize process. Targets: >= 300k tokens/s for one worker; 2 workers >= 1.7x that. The two datasets
must have the same manifest hash (checked).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vpmoe.data.manifest import DatasetManifest  # noqa: E402

SAMPLE = REPO / "data" / "sample" / "synth_sample.parquet"


def build_corpus(path: Path, target_tokens: int) -> int:
    table = pq.read_table(SAMPLE)
    rows = [
        r
        for r in table.to_pylist()
        if all(
            isinstance(r[c], str) and r[c].strip()
            for c in ("synth_id", "query", "synthetic_reasoning", "synthetic_answer")
        )
    ]
    # Rows needed, from a rough token estimate (o200k: ~4 chars/token on this mix, ~120 header tokens, 5% margin)
    chars = sum(
        len(r["query"]) + len(r["synthetic_reasoning"]) + len(r["synthetic_answer"]) for r in rows
    ) / len(rows)
    n = int(1.05 * target_tokens / (chars / 4.0 + 120)) + 1
    out = []
    for i in range(n):
        r = dict(rows[i % len(rows)])
        r["synth_id"] = f"{r['synth_id']}-{i}"
        r["query"] = f"[{i}] {r['query']}"
        out.append(r)
    pq.write_table(pa.Table.from_pylist(out, schema=table.schema), path)
    return n


def _spawn(cmd: list[str], log: Path) -> tuple[int, Path]:
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=f, stderr=f)
    return p.pid, log


def _reap(pid: int, log: Path) -> float:
    """Wait for `pid`; its own CPU seconds (wait4 gives each child's rusage, getrusage only their sum)."""
    _, status, ru = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{log.name} failed:\n{log.read_text()[-3000:]}")
    return ru.ru_utime + ru.ru_stime


def run_workers(src: Path, out: Path, workers: int) -> dict:
    """`workers` concurrent worker processes, then (for more than one) the finalize process."""
    base = [sys.executable, "-m", "pipelines.prepare", f"input={src}", f"output={out}"]
    base += ["prepare.max_seq_len=131072", "prepare.max_reject_fraction=1.0"]
    t0 = time.perf_counter()
    procs = [
        _spawn(
            [*base, f"prepare.worker={i}", f"prepare.num_workers={workers}"],
            out.parent / f"w{i}-of-{workers}.log",
        )
        for i in range(workers)
    ]
    worker_cpu = [_reap(*p) for p in procs]
    t_workers = time.perf_counter() - t0
    fin_cpu = 0.0
    if workers > 1:
        fin_cpu = _reap(
            *_spawn(
                [*base, "prepare.finalize=true", f"prepare.num_workers={workers}"], out.parent / "fin.log"
            )
        )
    wall = time.perf_counter() - t0
    m = DatasetManifest.load(out)
    tokens = m.totals["tokens"]
    cpu = sum(worker_cpu) + fin_cpu
    return {
        "workers": workers,
        "sequences": m.totals["sequences"],
        "tokens": tokens,
        "shards": len(m.shards),
        "manifest_hash": m.manifest_hash,
        "wall_s": wall,
        "workers_wall_s": t_workers,
        "finalize_s": wall - t_workers,
        "worker_cpu_s": worker_cpu,
        "finalize_cpu_s": fin_cpu,
        "cpu_s": cpu,
        "tokens_per_s": tokens / wall,
        "tokens_per_cpu_s": tokens / cpu,
        # Wall time if every process had a core of its own: the slowest worker's CPU time, then finalize's.
        "critical_path_cpu_s": max(worker_cpu) + fin_cpu,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=20_000_000)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "prepare_cpu.md"))
    ap.add_argument("--note", default="", help="what else ran on the machine meanwhile (recorded as given)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    load_before = os.getloadavg()
    try:
        src = tmp / "corpus.parquet"
        n = build_corpus(src, args.tokens)
        runs = [run_workers(src, tmp / f"prepared-{w}", w) for w in (1, 2)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if runs[0]["manifest_hash"] != runs[1]["manifest_hash"]:
        raise SystemExit(f"1 and 2 workers gave different datasets: {runs}")
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "rows": n,
        "runs": runs,
        "speedup_2_workers": runs[1]["tokens_per_s"] / runs[0]["tokens_per_s"],
        "speedup_2_workers_cpu_critical_path": runs[0]["critical_path_cpu_s"]
        / runs[1]["critical_path_cpu_s"],
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "note": args.note,
    }
    print(json.dumps(result, indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    r1 = runs[0]
    lines = [
        "# Preparation throughput (CPU, 1 and 2 worker processes)\n",
        f"Machine: {result['machine']}. Command: `.venv/bin/python benchmarks/bench_prepare.py "
        f"--tokens {args.tokens}{' --note <the note below>' if args.note else ''}`.\n",
        f"- corpus: {n} rows -> {r1['sequences']} sequences, {r1['tokens']:,} tokens, {r1['shards']} shards "
        f"(16 buckets), manifest hash {r1['manifest_hash'][:16]}... with 1 and with 2 workers",
        f"- load average (1/5/15 min) before {fmt_load(load_before)}, after {fmt_load(result['loadavg_after'])}\n",
        "| workers | wall s (workers + finalize) | CPU s per worker + finalize | tokens/s (wall) | tokens per CPU-s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        lines.append(
            f"| {r['workers']} | {r['wall_s']:.1f} ({r['workers_wall_s']:.1f} + {r['finalize_s']:.1f}) | "
            f"{' + '.join(f'{c:.1f}' for c in r['worker_cpu_s'])} + {r['finalize_cpu_s']:.1f} | "
            f"**{r['tokens_per_s']:,.0f}** | {r['tokens_per_cpu_s']:,.0f} |"
        )
    extra_cpu = runs[0]["tokens_per_cpu_s"] / runs[1]["tokens_per_cpu_s"] - 1
    lines.append(
        f"\nSpeedup of 2 workers over 1: **{result['speedup_2_workers']:.2f}x** (target >= 1.7x; "
        f"1 worker target >= 300,000 tokens/s). CPU time per token with 2 workers: {extra_cpu:+.1%} "
        "(the second process start, each worker reading every row's id, the finalize process). "
        "With a core per process the wall time would be the slowest worker's CPU time plus finalize's: "
        f"{runs[0]['critical_path_cpu_s']:.1f} s vs {runs[1]['critical_path_cpu_s']:.1f} s, "
        f"**{result['speedup_2_workers_cpu_critical_path']:.2f}x** (an estimate from measured CPU time; it "
        "ignores the two cores sharing caches and memory bandwidth)."
    )
    if args.note:
        lines.append(f"\nNote: {args.note}")
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")


def fmt_load(load) -> str:
    return "/".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    main()
