"""Training-loader benchmark (CPU): the real `TrainLoader` over a generated dataset + teacher store of
>= 1,000 shards and >= 1M samples, random global batches across all shards, spawned workers.

    .venv/bin/python benchmarks/bench_loader.py [--samples 1000000 --shards 1000] [--small-samples 100000]
        [--s3] [--out benchmarks/results/loader_cpu.md]

Data (generated once, cached under /tmp/vpmoe-bench-loader/<samples>x<shards>/ with a `generated.json`
marker): a SYNTH-schema Parquet of short rows through the real `vpmoe.data.prepare.prepare` (2 worker
processes + finalize, `shard_tokens` chosen for the shard count), then a `TeacherStore` written shard by
shard with the real `ShardWriter` (2 processes): synthetic trained-like top-64 rows (ids: Zipf(1.2) ranks
made distinct per row, mapped through a fixed permutation of the vocabulary: ~60k distinct ids in a
shard's first 16k rows; log-probs descending, exponential gaps). "demo" is the bundled sample through
prepare with the demo's config (conf/prepare/debug.yaml: 4 shards) and the same synthetic rows.

Measured per dataset, each in a fresh spawned process (DataConfig: global batch 64, micro-batch 8, dp 1,
the loader's own plan):
- start-up: `TeacherStoreReader` + `SampleIndex.build` + the first step through `TrainLoader` (`--workers`
  spawned workers, 2 by default: spawn, imports, unpickling the index, opening the reader, the first micro-batches);
- loader: `--warmup` steps (every worker caches its shard indexes), then `--steps` steps; CPU seconds =
  user + sys of the main process and the workers (psutil, read before shutdown); tokens = real
  (unpadded) tokens delivered, teacher rows = supervised positions delivered;
- in-process: `MicroBatchBuilder.build` on the same plan (num_workers=0), the per-CPU-second figure
  without inter-process transfer;
- bytes read = `rchar` of /proc/<pid>/io (every read syscall, page-cache hits included) over the measured
  steps (workers only for the loader: the main process reads batches from pipes); bytes delivered = the
  delivered samples' token records (5 B/token) + their rows' share of the two top-k array files of their
  shard (file bytes x rows / shard rows); read amplification = read / delivered;
- memory: `SampleIndex.nbytes / len(index)`; RSS and USS of the main process and each worker at the end;
  the reader's shard-index cache as it counts it (`_cached_bytes`) and as its shards hold (`nbytes`);
- --s3: a 20-shard dataset of the same shape on a local moto S3 server (`python -m moto.server`, as
  tests/s3_server.py), read in-process; server-side request counts (moto's recorder) and bytes (Range
  lengths; object sizes for whole-object GETs) per phase: open, index, warm-up (shard indexes), steady.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vpmoe.data.harmony_render import IGNORE_INDEX  # noqa: E402
from vpmoe.data.prepare import PrepareConfig, prepare  # noqa: E402
from vpmoe.data.prepared import PreparedDataset  # noqa: E402
from vpmoe.teacher.array_file import topk_chunk_rows  # noqa: E402
from vpmoe.teacher.store import StoreProvenance, TeacherStore, shard_stem  # noqa: E402
from vpmoe.teacher.store_reader import TeacherStoreReader  # noqa: E402
from vpmoe.tokenizer import PADDED_VOCAB_SIZE as V  # noqa: E402
from vpmoe.train import data as td  # noqa: E402
from vpmoe.utils.hashing import sha256_json  # noqa: E402

K, ZIPF_A = 64, 1.2
CACHE = Path("/tmp/vpmoe-bench-loader")
SAMPLE = REPO / "data" / "sample" / "synth_sample.parquet"
WORDS = "light scatters more at short wavelengths so the sky looks blue to us".split(" ")  # noqa: SIM905
ZIPF_CDF = np.cumsum(np.arange(1, V + 1, dtype=np.float64) ** -ZIPF_A)
ZIPF_CDF /= ZIPF_CDF[-1]
TOPK_FILES = ("topk_id_codes/c/0/0", "topk_logprob_deltas/c/0/0")


# ---------------------------------------------------------------- generation (real writers, cached)
def teacher_rows(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    z = np.minimum(np.searchsorted(ZIPF_CDF, rng.random((n, K))), V - K - 1)  # Zipf ranks, truncated at V
    ranks = np.maximum.accumulate(np.sort(z, axis=1) - np.arange(K), axis=1) + np.arange(K)  # distinct
    ranks = np.take_along_axis(ranks, (np.arange(K) + rng.integers(0, K, (n, 1))) % K, axis=1)  # rotated
    gaps = rng.exponential(0.35, (n, K))
    gaps[:, 0] = rng.exponential(0.4, n)
    lps = -np.cumsum(gaps, axis=1)
    return {"topk_ids": np.random.default_rng(0).permutation(V)[ranks].astype(np.uint32),
            "topk_logprobs": lps.astype(np.float16), "target_logprob": (lps[:, 0] - 0.1).astype(np.float32),
            "target_rank": np.minimum(rng.geometric(0.45, n), K).astype(np.uint32)}  # fmt: skip


def _store_part(ds_root: str, store_root: str, prov: dict, shards: list[int]) -> None:
    """Teacher rows for these dataset shards, one `ShardWriter` each (rows = the supervised positions)."""
    ds, store = PreparedDataset(ds_root), TeacherStore(store_root, StoreProvenance(**prov))
    for si in shards:
        entry = ds.manifest.shards[si]
        t = ds.read_columns(entry.name, ["sample_id", "labels"])
        labels = t.column("labels").combine_chunks()
        offs = labels.offsets.to_numpy().astype(np.int64) - labels.offsets[0].as_py()
        sup = np.flatnonzero(labels.flatten().to_numpy() != IGNORE_INDEX)
        seq = np.searchsorted(offs, sup, side="right") - 1
        bounds = np.searchsorted(seq, np.arange(len(offs)))  # rows of sequence j: bounds[j]:bounds[j+1]
        rows = {"positions": (sup - offs[seq]).astype(np.int32), **teacher_rows(np.random.default_rng(si), len(sup))}  # fmt: skip
        w = store.begin_shard(shard_stem(entry.name), num_positions=len(sup), num_sequences=len(offs) - 1)
        for a, b in itertools.pairwise(bounds):
            w.add_sequence(**{name: arr[a:b] for name, arr in rows.items()})
        w.commit(dataset_shard_sha256=entry.sha256, sample_ids=t.column("sample_id").to_pylist())


def _prepare_part(src: str, out: str, kw: dict) -> None:
    prepare(src, out, PrepareConfig(**kw))


def _corpus(path: Path, n: int) -> float:
    """n short SYNTH rows (~97 tokens each, ~31 supervised); returns their mean rendered length."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vpmoe.data.harmony_render import HarmonyRenderer, TemplateConfig

    reasoning = [f"Row {i}. " + " ".join(WORDS[: 4 + i % 10]) for i in range(n)]
    rows = {"synth_id": [f"s{i:08d}" for i in range(n)], "language": ["en"] * n, "exercise": ["memorization"] * n,
            "query": [f"Q{i}: why is the sky blue?" for i in range(n)], "query_seed_text": ["-"] * n,
            "synthetic_reasoning": reasoning, "synthetic_answer": [f"Rayleigh scattering ({i})." for i in range(n)]}  # fmt: skip
    pq.write_table(pa.table(rows), path)
    r, m = HarmonyRenderer(TemplateConfig()), min(n, 200)
    rendered = (r.render(rows["query"][i], reasoning[i], rows["synthetic_answer"][i], None) for i in range(m))
    return sum(len(x.input_ids) for x in rendered) / m


def generate(samples: int, shards: int) -> Path:
    """The dataset + store of `samples` rows in >= `shards` shards (samples=0: the demo), cached."""
    d = CACHE / ("demo" if samples == 0 else f"{samples}x{shards}")
    ctx, t0 = get_context("spawn"), time.perf_counter()
    done = json.loads((d / "generated.json").read_text()) if (d / "generated.json").exists() else None
    if done is not None and done.get("topk_chunk_rows") == _chunk_rows(d):
        return d
    if done is not None:  # the dataset is still good: only the store's layout changed (the scorer's rule)
        shutil.rmtree(d / "store")
        (d / "generated.json").unlink()
        return _generate_store(d, ctx, t0, done["prepare_wall_s"])
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    if samples == 0:  # the demo: the bundled sample, conf/prepare/debug.yaml
        prepare(str(SAMPLE), d / "prepared", PrepareConfig(shard_tokens=60_000, buckets=2))
    else:
        src = d / "corpus.parquet"
        shard_tokens = int(0.99 * _corpus(src, samples) * samples / shards)
        kw = {"shard_tokens": shard_tokens, "buckets": 2, "max_seq_len": 1024, "num_workers": 2}
        with ProcessPoolExecutor(2, mp_context=ctx) as pool:  # the 2 workers of `prepare`, then finalize
            list(pool.map(_prepare_part, [str(src)] * 2, [str(d / "prepared")] * 2, [{**kw, "worker": i} for i in (0, 1)]))  # fmt: skip
        prepare(str(src), d / "prepared", PrepareConfig(**kw, finalize=True))
        src.unlink()
    return _generate_store(d, ctx, t0, time.perf_counter() - t0)


def _chunk_rows(d: Path) -> int | None:
    """The top-k inner chunk rows the scorer would choose for the dataset in `d` (pipelines.score's rule)."""
    if not (d / "prepared" / "manifest.json").exists():
        return None
    t = PreparedDataset(d / "prepared").manifest.totals
    return topk_chunk_rows(sum(t["supervised_tokens"].values()) / max(t["sequences"], 1))


def _generate_store(d: Path, ctx, t0: float, prepare_wall_s: float) -> Path:
    t1 = time.perf_counter()
    ds = PreparedDataset(d / "prepared")
    scoring = {"k": K, "synthetic": f"zipf {ZIPF_A}", "topk_chunk_rows": _chunk_rows(d)}
    prov = dict(dataset_manifest_hash=ds.manifest_hash, tokenizer={}, teacher_id=f"synthetic-k{K}", teacher_path="-",
                teacher_weights_sha256="-", teacher_config={}, engine="synthetic", engine_version="-", dtype="bfloat16",
                k=K, scoring_config=scoring, scoring_config_hash=sha256_json(scoring))  # fmt: skip
    TeacherStore(d / "store", StoreProvenance(**prov))  # the root, once
    n = len(ds.manifest.shards)
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        parts = [list(range(i, n, 2)) for i in (0, 1)]
        list(pool.map(_store_part, [str(d / "prepared")] * 2, [str(d / "store")] * 2, [prov] * 2, parts))
    info = {"samples": ds.manifest.totals["sequences"], "shards": n, "tokens": ds.manifest.totals["tokens"],
            "prepare_wall_s": prepare_wall_s, "store_wall_s": time.perf_counter() - t1, "bytes": _du(d),
            "topk_chunk_rows": scoring["topk_chunk_rows"]}  # fmt: skip
    (d / "generated.json").write_text(json.dumps(info, indent=1))
    print(f"generated {d}: {info}", flush=True)
    return d


def _du(d: Path) -> dict:
    return {p: sum(f.stat().st_size for f in (d / p).rglob("*") if f.is_file()) for p in ("prepared", "store")}  # fmt: skip


# ---------------------------------------------------------------- measurement helpers
def plan(index: td.SampleIndex, cfg: td.DataConfig, n_steps: int) -> list[list[np.ndarray]]:
    """The micro-batches of the first `n_steps` steps at dp 1, as `TrainLoader` yields them (epochs roll)."""
    out, epoch = [], 0
    while len(out) < n_steps:
        out += [td.split_step(index, s, cfg, 1, 0) for s in td.epoch_steps(index, cfg, epoch)]
        epoch += 1
    return out[:n_steps]


class Needs:
    """Bytes a sample needs as stored: its token record + its rows' share of its shard's top-k files."""

    def __init__(self, d: Path, reader: TeacherStoreReader, index: td.SampleIndex) -> None:
        ds, bpr, rows = reader.dataset, [], []
        for entry in ds.manifest.shards:
            m = json.loads((d / "store" / "shards" / f"{shard_stem(entry.name)}.complete.json").read_text())
            bpr.append(sum(m["sizes"][f] for f in TOPK_FILES) / m["positions"])
            rows.append(ds.read_columns(entry.name, ["num_supervised"]).column(0).to_numpy())
        first = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
        self.rows = np.concatenate(rows)[first[index.shard] + index.row]  # per index sample
        self.bpr, self.index = np.array(bpr), index

    def __call__(self, samples: np.ndarray) -> tuple[int, int, float]:
        """(tokens, teacher rows, bytes) of these samples."""
        ix = self.index
        n, r = int(ix.lengths[samples].sum()), int(self.rows[samples].sum())
        return n, r, 5.0 * n + float((self.rows[samples] * self.bpr[ix.shard[samples]]).sum())


def snap(pids: list[int]) -> list[dict]:
    out = []
    for pid in pids:
        p = psutil.Process(pid)
        c, io, mem = p.cpu_times(), p.io_counters(), p.memory_full_info()
        out.append({"cpu_s": c.user + c.system, "rchar": io.read_chars, "reads": io.read_count,
                    "rss_mb": mem.rss / 2**20, "uss_mb": mem.uss / 2**20})  # fmt: skip
    return out


def build_all(builder: td.MicroBatchBuilder, steps: list[list[np.ndarray]]) -> tuple[int, int]:
    """Build every micro-batch of these steps in this process; (real tokens, teacher rows) delivered."""
    tok = rows = 0
    for s in steps:
        for m in s:
            batch = builder.build(m)
            tok, rows = tok + int(batch["tokens"]), rows + int((batch["labels"] != IGNORE_INDEX).sum())
    return tok, rows


def delta(a: list[dict], b: list[dict], key: str) -> float:
    return sum(y[key] - x[key] for x, y in zip(a, b, strict=True))


def measure(d: Path, cfg: td.DataConfig, warm: int, steps: int) -> dict:
    info = json.loads((d / "generated.json").read_text())
    me = os.getpid()
    s0, t0 = snap([me]), time.perf_counter()
    reader = TeacherStoreReader(d / "prepared", d / "store")
    t1 = time.perf_counter()
    index = td.SampleIndex.build(reader, cfg.eval_fraction)
    t2, s1 = time.perf_counter(), snap([me])
    builder = td.MicroBatchBuilder(d / "prepared", reader.root, index, reader.k)
    loader = td.TrainLoader(builder, cfg, dp=1, rank=0)
    it = iter(loader)
    next(it)
    t3 = time.perf_counter()
    r = {**info, "index_bytes_per_sample": index.nbytes / len(index), "index_samples": len(index),
         "startup": {"reader_s": t1 - t0, "index_s": t2 - t1, "first_step_s": t3 - t2, "total_s": t3 - t0,
                     "reads_mb": delta(s0, s1, "rchar") / 2**20}}  # fmt: skip
    # --- the real loader, its spawned workers
    workers = [w.pid for w in loader._it._workers]
    for _ in range(warm):
        next(it)
    a = snap([me, *workers])
    for _ in range(steps):
        next(it)
    b = snap([me, *workers])
    try:  # a worker can abort at shutdown (torch queue feeder thread vs interpreter exit): see the report
        loader.close()
        r["shutdown_error"] = None
    except RuntimeError as e:
        r["shutdown_error"] = str(e)
    needs, micro = Needs(d, reader, index), plan(index, cfg, 1 + warm + steps)
    tok, rows, need = (sum(x) for x in zip(*(needs(m) for s in micro[1 + warm :] for m in s), strict=True))
    cpu = delta(a, b, "cpu_s")
    r["loader"] = {"steps": steps, "tokens": tok, "teacher_rows": rows, "cpu_s": cpu, "main_cpu_s": b[0]["cpu_s"] - a[0]["cpu_s"],
                   "tokens_per_cpu_s": tok / cpu, "rows_per_cpu_s": rows / cpu, "bytes_delivered": need,
                   "bytes_read": delta(a[1:], b[1:], "rchar"), "main_rchar": b[0]["rchar"] - a[0]["rchar"],
                   "amplification": delta(a[1:], b[1:], "rchar") / need, "reads_per_sample": delta(a[1:], b[1:], "reads") / (steps * cfg.global_batch_size),
                   "rss_mb": [x["rss_mb"] for x in b], "uss_mb": [x["uss_mb"] for x in b]}  # fmt: skip
    # --- in-process (num_workers=0): warm-up (shard indexes), then the measured steps
    a = snap([me])
    build_all(builder, micro[: 1 + warm])
    b = snap([me])
    assert build_all(builder, micro[1 + warm :]) == (tok, rows)
    c = snap([me])
    # The reader's shard-index cache (private; read for the report only): its own count and its shards' sizes.
    counted, shards = builder._reader._cached_bytes, builder._reader._open_shards.values()
    steady = (c[0]["rchar"] - b[0]["rchar"]) / need
    warm_need = sum(needs(m)[2] for s in micro[: 1 + warm] for m in s)
    r["in_process"] = {"tokens_per_cpu_s": tok / delta(b, c, "cpu_s"), "rows_per_cpu_s": rows / delta(b, c, "cpu_s"),
                       "us_per_sample": 1e6 * delta(b, c, "cpu_s") / (steps * cfg.global_batch_size),
                       "amplification": steady, "reads_per_sample": delta(b, c, "reads") / (steps * cfg.global_batch_size),
                       "warmup_read_mb": delta(a, b, "rchar") / 2**20, "shards_cached": len(builder._reader._open_shards),
                       "index_load_kb_per_shard": (delta(a, b, "rchar") - steady * warm_need) / 1024 / max(1, len(builder._reader._open_shards)),
                       "index_cache_mb": counted / 2**20, "index_cache_actual_mb": sum(x.nbytes for x in shards) / 2**20, "rss_mb": c[0]["rss_mb"], "uss_mb": c[0]["uss_mb"]}  # fmt: skip
    print(json.dumps({k: r[k] for k in ("samples", "shards", "startup", "loader", "in_process")}), flush=True)
    return r


# ---------------------------------------------------------------- S3 (moto): request counts and bytes
def classify(path: str, method: str) -> str:
    key = path.split("?")[0]
    if method != "GET" or "?" in path:
        return f"{method} {'(list)' if '?' in path else ''}".strip()
    for suffix, name in ((".tokens", "token records"), ("/topk_id_codes/c/0/0", "topk_id_codes"),
                         ("/topk_logprob_deltas/c/0/0", "topk_logprob_deltas"), ("/c/0", "seq_offsets/id_order"),
                         ("zarr.json", "array metadata"), (".complete.json", "markers"), (".parquet", "parquet"),
                         ("manifest.json", "manifest")):  # fmt: skip
        if key.endswith(suffix):
            return name
    return "other GET"


def summarize(reqs, sizes: dict[str, int], per: int) -> dict:
    out: dict[str, dict] = {}
    for q in reqs:
        e = out.setdefault(classify(q.path, q.method), {"requests": 0, "bytes": 0})
        e["requests"] += 1
        e["bytes"] += q.range_length if q.range else sizes.get(q.path.split("?")[0], 0) if q.method == "GET" else 0  # fmt: skip
    return {k: {**v, "per_unit": v["requests"] / per} for k, v in sorted(out.items())}


def measure_s3(d: Path, cfg: td.DataConfig, warm: int, steps: int) -> dict:
    import boto3
    import s3fs

    sys.path.insert(0, str(REPO / "tests"))
    from s3_server import S3Server, _free_port

    from vpmoe.utils import storage

    work = Path(tempfile.mkdtemp(prefix="bench-loader-moto-"))
    port = _free_port()
    env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(work / "recording.jsonl")}
    with open(work / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    server = S3Server(f"http://127.0.0.1:{port}", proc, work / "server.log")
    saved = dict(os.environ)
    try:
        for _ in range(600):  # until it answers (moto imports for a few seconds)
            with contextlib.suppress(OSError):
                server._api("reset-recording")
                break
            time.sleep(0.1)
        os.environ.update({"AWS_ENDPOINT_URL": server.endpoint_url, "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"})  # fmt: skip
        for k in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            os.environ.pop(k, None)
        s3fs.S3FileSystem.clear_instance_cache()
        boto3.client("s3", endpoint_url=server.endpoint_url).create_bucket(Bucket="bench")
        sizes = {}
        for part in ("prepared", "store"):
            storage.put_tree(d / part, f"s3://bench/{part}")
            sizes.update({f"/bench/{part}/{k}": v for k, v in storage.find(d / part).items()})
        ds, st = "s3://bench/prepared", "s3://bench/store"
        r: dict = {"samples": json.loads((d / "generated.json").read_text())["samples"], "uploaded_mb": sum(sizes.values()) / 2**20}  # fmt: skip
        with server.count_requests() as q_open:
            reader = TeacherStoreReader(ds, st)
        with server.count_requests() as q_index:
            index = td.SampleIndex.build(reader, cfg.eval_fraction)
        n_shards = len(reader.stems)
        needs = Needs(d, TeacherStoreReader(d / "prepared", d / "store"), index)
        builder, micro = td.MicroBatchBuilder(ds, st, index, reader.k), plan(index, cfg, warm + steps)
        with server.count_requests() as q_warm:
            build_all(builder, micro[:warm])
        n, c0 = steps * cfg.global_batch_size, time.perf_counter()
        with server.count_requests() as q_steady:
            build_all(builder, micro[warm:])
        need = sum(needs(m)[2] for s in micro[warm:] for m in s)
        steady = summarize(q_steady, sizes, n)
        r.update({"shards": n_shards, "open": summarize(q_open, sizes, n_shards), "index": summarize(q_index, sizes, n_shards),
                  "warmup": summarize(q_warm, sizes, n_shards), "steady": steady, "steady_samples": n,
                  "steady_wall_s": time.perf_counter() - c0, "steady_bytes_delivered": need,
                  "steady_amplification": sum(v["bytes"] for v in steady.values()) / need,
                  "shards_cached": len(builder._reader._open_shards)})  # fmt: skip
        print(json.dumps(r), flush=True)
        return r
    finally:
        os.environ.clear()
        os.environ.update(saved)
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- report
def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "numpy": np.__version__, "load_avg_start": os.getloadavg()}  # fmt: skip


def write_report(res: dict, out: Path) -> None:
    m, cfg = res["machine"], res["config"]
    warmed = ", ".join(
        f"{r['page_cache']['gb']:.1f} GB in {r['page_cache']['s']:.0f} s" for r in res["datasets"].values()
    )
    lines = [
        "# Training loader benchmark (CPU)", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']} (load average "
        f"{m['load_avg_start'][0]:.2f} at start, {res['load_avg_end'][0]:.2f} at the end; the machine is shared). Command: `{res['command']}`.", "",
        f"Loader: `TrainLoader`, {cfg['num_workers']} spawned workers, global batch {cfg['global_batch_size']}, "
        f"micro-batch {cfg['micro_batch_size']}, dp 1; {cfg['warmup']} warm-up steps then {cfg['steps']} measured "
        f"steps (demo: {cfg['demo_steps']}). k={K}. Page cache warm: each dataset's files are read once just before "
        f"it is measured ({warmed}).", "",
        "| dataset | shards | samples | tokens / sample | teacher rows / sample | loader tokens / CPU-s (rows / CPU-s) "
        "| in-process tokens / CPU-s (rows / CPU-s; us / sample) | read amplification loader / in-process "
        "| read calls / sample | index B / sample | RSS MB main; workers (USS) | shard-index cache MB: counted / held | start-up s (reader + index + first step) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for name, r in res["datasets"].items():
        lo, ip, su = r["loader"], r["in_process"], r["startup"]
        spt = lo["tokens"] / (lo["steps"] * cfg["global_batch_size"])
        rps = lo["teacher_rows"] / (lo["steps"] * cfg["global_batch_size"])
        lines.append(
            f"| {name} | {r['shards']:,} | {r['index_samples']:,} | {spt:.0f} | {rps:.0f} | {lo['tokens_per_cpu_s']:,.0f} "
            f"({lo['rows_per_cpu_s']:,.0f}) | {ip['tokens_per_cpu_s']:,.0f} ({ip['rows_per_cpu_s']:,.0f}; {ip['us_per_sample']:.0f}) "
            f"| {lo['amplification']:.2f} / {ip['amplification']:.2f} | {ip['reads_per_sample']:.1f} | {r['index_bytes_per_sample']:.1f} "
            f"| {lo['rss_mb'][0]:.0f}; {', '.join(f'{x:.0f} ({y:.0f})' for x, y in zip(lo['rss_mb'][1:], lo['uss_mb'][1:], strict=True))} "
            f"| {ip['index_cache_mb']:.0f} / {ip['index_cache_actual_mb']:.0f} ({ip['shards_cached']} shards) | {su['total_s']:.1f} ({su['reader_s']:.1f} + {su['index_s']:.1f} + {su['first_step_s']:.1f}) |"
        )  # fmt: skip
    lines += ["", "Targets: read amplification <= 2x; >= 100k tokens per CPU-second at k=64; index <= 100 B/sample; "
              "start-up <= 30 s at 1M samples; worker RSS flat as samples grow.", "", "Start-up reads and the warm-up:"]  # fmt: skip
    for name, r in res["datasets"].items():
        ip = r["in_process"]
        index_mb = r["index_bytes_per_sample"] * r["index_samples"] / 2**20
        rest = ", ".join(
            f"{u - ip['index_cache_actual_mb'] - index_mb:.0f}" for u in r["loader"]["uss_mb"][1:]
        )
        lines.append(f"- {name}: reader + index read {r['startup']['reads_mb']:.1f} MB; in-process warm-up read "
                     f"{ip['warmup_read_mb']:.1f} MB, ~{ip['index_load_kb_per_shard']:.0f} KB per shard index loaded "
                     f"(beyond the samples' own reads). Loader main process CPU {r['loader']['main_cpu_s']:.2f} s of {r['loader']['cpu_s']:.2f} s; "
                     f"`close()`: {r['shutdown_error'] or 'clean'}. Worker USS less the shard-index cache (in-process "
                     f"figure) and the sample index: {rest} MB.")  # fmt: skip
    if "s3" in res:
        s = res["s3"]
        lines += ["", f"## Local S3 (moto): {s['shards']} shards, {s['samples']:,} samples, {s['uploaded_mb']:.0f} MB uploaded; "
                  "in-process builds; server-side counts (request counts and bytes, not speed)", "",
                  "| phase | request kind | requests | per | bytes |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for phase, unit in (("open", "shard"), ("index", "shard"), ("warmup", "shard"), ("steady", "sample")):
            for kind, v in s[phase].items():
                lines.append(f"| {phase} | {kind} | {v['requests']:,} | {v['per_unit']:.2f} / {unit} | {v['bytes']:,} |")  # fmt: skip
        lines += ["", f"Steady state ({s['steady_samples']:,} samples after {s['shards_cached']} shard indexes were cached): "
                  f"read amplification {s['steady_amplification']:.2f} (ranged bytes / bytes delivered), "
                  f"{sum(v['requests'] for v in s['steady'].values()) / s['steady_samples']:.2f} requests per sample."]  # fmt: skip
    lines += ["", "Generation (cached under /tmp/vpmoe-bench-loader, wall seconds on this machine):"]
    for name, r in res["datasets"].items():
        lines.append(f"- {name}: prepare {r['prepare_wall_s']:.0f} s (`prepare()`, 2 worker processes + finalize; demo: 1), "
                     f"store {r['store_wall_s']:.0f} s (`ShardWriter`, 2 processes); {r['tokens']:,} tokens; "
                     f"dataset {r['bytes']['prepared'] / 2**20:,.0f} MB, store {r['bytes']['store'] / 2**20:,.0f} MB.")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")


def warm_page_cache(d: Path) -> dict:
    """Read every file of the dataset and store once, so that every measured phase reads from the page
    cache: this machine drops a just-generated dataset's pages (seen: 2 GB of 5.8 GB still cached), and a
    phase reading from disk spends CPU on page faults that the next phase, over the same samples, does not."""
    t, n = time.perf_counter(), 0
    for f in sorted(p for p in d.rglob("*") if p.is_file()):
        with open(f, "rb") as fh:
            while block := fh.read(1 << 24):
                n += len(block)
    return {"gb": n / 2**30, "s": time.perf_counter() - t}


def fresh(fn, *args):
    """`fn(*args)` in a fresh spawned process: one measurement's memory never shows in the next one's RSS."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=1000)
    ap.add_argument("--small-samples", type=int, default=100_000, help="second size, same shard count (0: none)")  # fmt: skip
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--demo-steps", type=int, default=40)
    ap.add_argument("--s3", action="store_true")
    ap.add_argument("--s3-shards", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/loader_cpu.md"))
    ap.add_argument("--workers", type=int, default=2, help="spawned loader workers (>= 1)")
    args = ap.parse_args()
    if args.workers < 1:
        ap.error("--workers must be >= 1 (the in-process figure is measured anyway)")
    cfg = td.DataConfig(global_batch_size=64, micro_batch_size=8, num_workers=args.workers)
    res = {"machine": machine(), "command": f".venv/bin/python benchmarks/bench_loader.py {' '.join(sys.argv[1:])}".strip(),
           "config": {"global_batch_size": 64, "micro_batch_size": 8, "num_workers": args.workers, "prefetch_factor": cfg.prefetch_factor,
                      "warmup": args.warmup, "steps": args.steps, "demo_steps": args.demo_steps, "k": K, "zipf_a": ZIPF_A},
           "datasets": {}}  # fmt: skip
    sizes = [("demo (4 shards)", 0, 4, 4, args.demo_steps)]
    if args.small_samples:
        sizes.append((f"{args.small_samples:,} samples", args.small_samples, args.shards, args.warmup, args.steps))  # fmt: skip
    sizes.append((f"{args.samples:,} samples", args.samples, args.shards, args.warmup, args.steps))
    for name, samples, shards, warm, steps in sizes:
        d = generate(samples, shards)
        cache = warm_page_cache(d)
        res["datasets"][name] = {**fresh(measure, d, cfg, warm, steps), "page_cache": cache}
    if args.s3:
        per_shard = max(1, args.samples // args.shards)
        res["s3"] = fresh(measure_s3, generate(per_shard * args.s3_shards, args.s3_shards), cfg, 10, 10)
    res["load_avg_end"] = os.getloadavg()
    write_report(res, args.out)


if __name__ == "__main__":
    main()
