"""Shard-health report benchmark (CPU): the statistics pass, the value checks, and the whole report.

    .venv/bin/python benchmarks/bench_report.py [--positions 2000000] [--k 64]
        [--store <teacher store> --dataset <prepared dir>] [--out benchmarks/results/report_cpu.md]

1. statistics pass: decode (fp16 -> fp32, exp, top-k mass and entropy), per-row metrics and histogram
   accumulation over in-memory blocks of COMPUTE_ROWS rows; positions per CPU-second (target >= 1M/s
   per core).
2. value checks on the same blocks (ids, duplicates, finiteness, sign, order, mass, actual token).
3. end to end: `run_report` on a dataset + store on disk (file sha256s, zarr decode with crc32c,
   alignment, checks, statistics). With --store/--dataset a real store; otherwise a synthetic one.
BLAS and OpenMP are pinned to one thread; CPU time counts every thread (zarr decodes chunks on a pool),
so positions per CPU-second is the per-core figure.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpmoe import tokenizer as tok  # noqa: E402
from vpmoe.data.harmony_render import IGNORE_INDEX, Span  # noqa: E402
from vpmoe.data.manifest import DatasetManifest, ShardEntry  # noqa: E402
from vpmoe.data.prepared import SHARD_SCHEMA  # noqa: E402
from vpmoe.report import ReportConfig, run_report  # noqa: E402
from vpmoe.report.checks import RowBlock, decode, value_failures  # noqa: E402
from vpmoe.report.scan import COMPUTE_ROWS, READ_ROWS  # noqa: E402
from vpmoe.report.stats import StatsAccumulator, row_metrics  # noqa: E402
from vpmoe.teacher.store import StoreProvenance, TeacherStore, shard_stem  # noqa: E402
from vpmoe.utils.hashing import sha256_file, sha256_json  # noqa: E402

V = 201088
LANGUAGES = ("en", "fr", "de", "es", "it")
EXERCISES = ("memorization", "mcq", "math", "rag", "creative")


def teacher_rows(rng, n: int, k: int):
    """Trained-like rows: distinct ids per row (an arithmetic progression mod V from a Zipf-skewed start),
    a peaked descending log-prob profile with 0.2-30% tail mass; the actual token in the top-k (rank
    geometric) 85% of the time, else just below it. Returns rows and the actual tokens."""
    start = np.minimum(rng.zipf(1.2, n), V - 1).astype(np.int64)
    stride = rng.integers(1, 3000, n)  # 64 x 3000 < V: the k ids of a row are distinct
    ids = (start[:, None] + np.arange(k + 1)[None, :] * stride[:, None]) % V
    gaps = rng.exponential(0.35, (n, k)).astype(np.float32)
    gaps[:, 0] = 0
    lp = -np.cumsum(gaps, axis=1)
    tail = rng.uniform(0.002, 0.3, n).astype(np.float32)
    m = lp.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(lp - m).sum(axis=1, keepdims=True))
    lp = lp - lse + np.log1p(-tail)[:, None]
    in_k = rng.random(n) < 0.85
    rank = np.where(in_k, np.minimum(rng.geometric(0.45, n), k), k + rng.geometric(0.01, n))
    rows = np.arange(n)
    target = np.where(in_k, ids[rows, np.minimum(rank, k) - 1], ids[:, k])  # ids[:, k]: not in the row
    tlp = np.where(in_k, lp[rows, np.minimum(rank, k) - 1], lp[:, k - 1] - rng.exponential(1.0, n))
    return {
        "topk_ids": ids[:, :k].astype(np.uint32),
        "topk_logprobs": lp.astype(np.float16),
        "target_logprob": tlp.astype(np.float32),
        "target_rank": rank.astype(np.uint32),
    }, target.astype(np.int32)


def synthetic_store(root: Path, positions: int, k: int, seq_len: int = 1024, shard_positions: int = 250_000):
    """A prepared dataset (parquet shards + manifest) and a committed teacher store that agree."""
    rng = np.random.default_rng(0)
    prompt = seq_len // 8  # supervised positions t in [prompt - 1, seq_len - 2]
    per_seq = seq_len - prompt
    seqs_per_shard = max(1, shard_positions // per_seq)
    n_shards = max(1, -(-positions // (seqs_per_shard * per_seq)))
    ds_root = root / "prepared"
    (ds_root / "shards").mkdir(parents=True)
    tokenizer = tok.tokenizer_identity().to_dict()
    entries, store_rows = [], []
    for si in range(n_shards):
        n = seqs_per_shard * per_seq
        rows, target = teacher_rows(rng, n, k)
        input_ids = rng.integers(0, 200000, (seqs_per_shard, seq_len)).astype(np.int32)
        input_ids[:, prompt:] = target.reshape(seqs_per_shard, per_seq)  # token t+1 of position t
        labels = np.full_like(input_ids, IGNORE_INDEX)
        labels[:, prompt - 1 : seq_len - 1] = input_ids[:, prompt:]
        labels[:, -1] = IGNORE_INDEX
        spans = np.full((seqs_per_shard, seq_len), Span.USER, np.int8)
        split = prompt + per_seq * 3 // 4
        spans[:, prompt:split] = Span.REASONING
        spans[:, split:] = Span.FINAL
        sample_ids = [f"syn_{si:04d}_{j:05d}" for j in range(seqs_per_shard)]
        table = pa.Table.from_pydict(
            {
                "sample_id": sample_ids,
                "language": [LANGUAGES[j % len(LANGUAGES)] for j in range(seqs_per_shard)],
                "exercise": [EXERCISES[(j // 2) % len(EXERCISES)] for j in range(seqs_per_shard)],
                "input_ids": list(input_ids),
                "token_spans": list(spans),
                "labels": list(labels),
                "num_tokens": [seq_len] * seqs_per_shard,
                "num_supervised": [per_seq] * seqs_per_shard,
            },
            schema=SHARD_SCHEMA,
        )
        name = f"shards/shard-{si:05d}.parquet"
        pq.write_table(table, ds_root / name)
        sup_spans = spans[:, prompt:]
        entries.append(
            ShardEntry(
                name=name,
                sha256=sha256_file(ds_root / name),
                sequences=seqs_per_shard,
                tokens=seqs_per_shard * seq_len,
                supervised_tokens={
                    "reasoning": int((sup_spans == Span.REASONING).sum()),
                    "final": int((sup_spans == Span.FINAL).sum()),
                },
                first_sample_id=sample_ids[0],
                last_sample_id=sample_ids[-1],
            )
        )
        store_rows.append((rows, sample_ids))
    total = {s: sum(e.supervised_tokens[s] for e in entries) for s in ("reasoning", "final")}
    manifest = DatasetManifest(
        tokenizer=tokenizer,
        prepare_config={"synthetic": True},
        prepare_config_hash=sha256_json({"synthetic": True}),
        sources=[],
        shards=entries,
        totals={
            "rows_in": len(entries) * seqs_per_shard,
            "sequences": len(entries) * seqs_per_shard,
            "tokens": sum(e.tokens for e in entries),
            "supervised_tokens": total,
            "rejected": {},
        },
        rejects_file={"name": "rejects.jsonl", "sha256": "", "count": 0},
    ).finalize()
    manifest.write(ds_root)
    scoring = {"k": k, "dtype": "bfloat16"}
    prov = StoreProvenance(
        dataset_manifest_hash=manifest.manifest_hash,
        tokenizer=tokenizer,
        teacher_id=f"synthetic-{'0' * 12}-bfloat16-k{k}",
        teacher_path="synthetic",
        teacher_weights_sha256="0" * 64,
        teacher_config={"model_type": "gpt_oss", "vocab_size": V},
        engine="synthetic",
        engine_version="0",
        dtype="bfloat16",
        k=k,
        scoring_config=scoring,
        scoring_config_hash=sha256_json(scoring),
    )
    store = TeacherStore(root / "store", prov)
    positions_in_seq = np.arange(prompt - 1, seq_len - 1, dtype=np.int32)
    for entry, (rows, sample_ids) in zip(entries, store_rows, strict=True):
        writer = store.begin_shard(
            shard_stem(entry.name), num_positions=len(sample_ids) * per_seq, num_sequences=len(sample_ids)
        )
        for j in range(len(sample_ids)):
            sl = slice(j * per_seq, (j + 1) * per_seq)
            writer.add_sequence(positions=positions_in_seq, **{n: a[sl] for n, a in rows.items()})
        writer.commit(dataset_shard_sha256=entry.sha256, sample_ids=sample_ids)
    return ds_root, store.root


def bench_in_memory(positions: int, k: int) -> dict:
    """Rows generated in pieces (bounded memory); only the report's own work is timed."""
    rng = np.random.default_rng(1)
    stats = StatsAccumulator(
        {"span": ["reasoning", "final"], "language": list(LANGUAGES), "exercise": list(EXERCISES)}
    )
    n = stats_cpu = stats_wall = checks_cpu = 0.0
    failures = 0
    piece = 64 * COMPUTE_ROWS
    while n < positions:
        rows, target = teacher_rows(rng, min(piece, positions - int(n)), k)
        m_rows = len(target)
        codes = {
            "span": (np.arange(m_rows) % 4 == 3).astype(np.int32),
            "language": (np.arange(m_rows) // 1000 % len(LANGUAGES)).astype(np.int32),
            "exercise": (np.arange(m_rows) // 3000 % len(EXERCISES)).astype(np.int32),
        }
        blocks = [
            RowBlock(
                start=a,
                targets=target[a : a + COMPUTE_ROWS].astype(np.uint32),
                **{name: arr[a : a + COMPUTE_ROWS] for name, arr in rows.items()},
            )
            for a in range(0, m_rows, COMPUTE_ROWS)
        ]
        c0, w0 = time.process_time(), time.perf_counter()
        per_read = READ_ROWS // COMPUTE_ROWS  # as the scan does: metrics of one read block, one add
        for r in range(0, len(blocks), per_read):
            pieces = []
            for b in blocks[r : r + per_read]:
                d = decode(b)
                pieces.append(row_metrics(d.p, d.x, d.mass, d.h_topk, b.target_logprob, b.target_rank))
            a, z = blocks[r].start, blocks[min(r + per_read, len(blocks)) - 1].start + COMPUTE_ROWS
            metrics = {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}
            stats.add({g: v[a:z] for g, v in codes.items()}, metrics, k)
        stats_cpu += time.process_time() - c0
        stats_wall += time.perf_counter() - w0
        c0 = time.process_time()
        for b in blocks:
            d = decode(b)
            for bad, _ in value_failures(b, d, vocab=V, logprob_tolerance=1e-4, mass_tolerance=1e-3).values():
                failures += int(bad.sum())
        checks_cpu += time.process_time() - c0
        n += m_rows
    assert stats.counts.sum() == n
    assert failures == 0, f"synthetic rows failed {failures} value checks"
    return {
        "positions": int(n),
        "stats_per_cpu_s": n / stats_cpu,
        "stats_per_wall_s": n / stats_wall,
        "checks_per_cpu_s": n / checks_cpu,
    }


def _cpu_seconds() -> float:
    """This process's CPU time plus that of its reaped children (spawned report workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench_end_to_end(dataset: Path, store: Path, workers: int) -> dict:
    c0, w0 = _cpu_seconds(), time.perf_counter()
    report = run_report(dataset, store, ReportConfig(workers=workers))
    cpu, wall = _cpu_seconds() - c0, time.perf_counter() - w0
    assert report.passed, report.verdict_line()
    st = report.storage()
    return {
        "workers": workers,
        "positions": report.positions_scanned,
        "per_cpu_s": report.positions_scanned / cpu,
        "per_wall_s": report.positions_scanned / wall,
        "bytes_per_position": st["bytes_per_position"],
        "compression_ratio": st["compression_ratio"],
    }


def machine() -> str:
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = models[0] if models else cpu
    import zarr

    load = os.getloadavg()
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs (load average {load[0]:.2f} at start); Python "
        f"{platform.python_version()}, numpy {np.__version__}, zarr {zarr.__version__}; {platform.platform()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--positions", type=int, default=2_000_000)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--store", type=Path)
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--workers", type=int, default=1, help="also run the whole report with this many workers")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/report_cpu.md"))
    args = ap.parse_args()
    if (args.store is None) != (args.dataset is None):
        ap.error("--store and --dataset go together")
    info = machine()
    mem = bench_in_memory(args.positions, args.k)
    print(
        f"in memory: {mem['positions']:,} positions; statistics pass {mem['stats_per_cpu_s']:,.0f} positions/CPU-s; "
        f"value checks {mem['checks_per_cpu_s']:,.0f} positions/CPU-s",
        flush=True,
    )
    tmp = None
    try:
        if args.store is None:
            tmp = Path(tempfile.mkdtemp(prefix="bench_report-"))
            t0 = time.perf_counter()
            dataset, store = synthetic_store(tmp, args.positions, args.k)
            print(f"synthetic dataset + store written in {time.perf_counter() - t0:.0f} s", flush=True)
            source = f"synthetic store, k={args.k}"
        else:
            dataset, store = args.dataset, args.store
            source = f"store {store}"
        runs = [bench_end_to_end(dataset, store, 1)]
        if args.workers > 1:
            runs.append(bench_end_to_end(dataset, store, args.workers))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    for e2e in runs:
        print(
            f"end to end ({source}, workers={e2e['workers']}): {e2e['positions']:,} positions, "
            f"{e2e['per_cpu_s']:,.0f} positions/CPU-s, {e2e['per_wall_s']:,.0f} positions/s wall, "
            f"{e2e['bytes_per_position']:.1f} bytes/position",
            flush=True,
        )
    e2e = runs[0]
    lines = [
        "# Shard-health report benchmark (CPU)",
        "",
        f"`.venv/bin/python benchmarks/bench_report.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        "",
        f"Machine: {info}.",
        "",
        "| pass | positions | positions / CPU-second | positions / wall-second |",
        "| --- | --- | --- | --- |",
        f"| statistics (decode + metrics + histograms), in memory, synthetic rows | {mem['positions']:,} | "
        f"{mem['stats_per_cpu_s']:,.0f} | {mem['stats_per_wall_s']:,.0f} |",
        f"| decode + value checks, in memory, synthetic rows | {mem['positions']:,} | {mem['checks_per_cpu_s']:,.0f} | - |",
        *(
            f"| whole report ({source}), workers={r['workers']} | {r['positions']:,} | {r['per_cpu_s']:,.0f} | "
            f"{r['per_wall_s']:,.0f} |"
            for r in runs
        ),
        "",
        f"Store: {e2e['bytes_per_position']:.1f} bytes/position, compression ratio {e2e['compression_ratio']:.2f} "
        "against raw uint32 ids + fp32 values"
        + (" (synthetic ids are less compressible than a trained teacher's)." if args.store is None else "."),
        "",
        "Target: >= 1M positions/s per core for the statistics pass. The whole report also hashes every "
        "file (sha256) and decodes every chunk (blosc-zstd + crc32c), and runs the value checks.",
        "",
        "CPU-second figures are per core (CPU time of the process and its reaped workers). Wall-second "
        "figures, and any speedup from `workers`, depend on the machine being idle: compare the load average "
        "above with the number of CPUs.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
