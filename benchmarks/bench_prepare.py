"""Preparation throughput on one core: a generated SYNTH-schema corpus of >= 20M tokens.

    .venv/bin/python benchmarks/bench_prepare.py [--tokens 20000000] [--out benchmarks/results/prepare_cpu.md]

The corpus repeats the bundled sample's valid rows with unique ids and a per-row prefix (so no two
rows are identical), written to a temporary Parquet file; the timed part is `prepare()` end to end
(Parquet read, Harmony render, masks, shard write, hashing, manifest). Target: >= 300k tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vpmoe.data.prepare import PrepareConfig, prepare  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=20_000_000)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "prepare_cpu.md"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        src = tmp / "corpus.parquet"
        n = build_corpus(src, args.tokens)
        cfg = PrepareConfig(max_seq_len=131072, max_reject_fraction=1.0)
        c0, t0 = time.process_time(), time.perf_counter()
        res = prepare(str(src), tmp / "prepared", cfg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        tokens = res.manifest.totals["tokens"]
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "rows": n,
            "sequences": res.manifest.totals["sequences"],
            "tokens": tokens,
            "wall_s": wall,
            "cpu_s": cpu,
            "tokens_per_s": tokens / wall,
            "tokens_per_cpu_s": tokens / cpu,
            "shards": len(res.manifest.shards),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "# Preparation throughput (CPU, one process)\n\n"
        f"Machine: {result['machine']}. Command: `.venv/bin/python benchmarks/bench_prepare.py {' '.join(sys.argv[1:])}`.\n\n"
        f"- corpus: {result['rows']} rows -> {result['sequences']} sequences, {result['tokens']:,} tokens, {result['shards']} shards\n"
        f"- end to end: {result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU\n"
        f"- **{result['tokens_per_s']:,.0f} tokens/s** wall ({result['tokens_per_cpu_s']:,.0f} per CPU-second). Target >= 300,000.\n"
    )
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
