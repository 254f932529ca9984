"""The preparation stage: SYNTH-schema Parquet -> Harmony token shards + `DatasetManifest`.

Contract: docs/synth_preprocess.md. Rows are read in a fixed order (input files sorted by path, rows in
file order) and routed to one of `buckets` buckets by a stable hash of `synth_id`; worker i of n owns the
buckets b with b % n == i. Within a bucket, rows keep the input order, are rendered by `HarmonyRenderer`,
filtered (bad rows to `rejects.jsonl` with a reason, over-long rows by the length policy), and cut into
shards of about `shard_tokens` tokens, each committed as soon as it closes (`vpmoe.data.staging`), so a
rerun resumes. Finalize (`vpmoe.data.publish`) publishes the buckets' shards in bucket order as one
dataset. Shard contents and names depend on the input and config only, never on the worker count; a
single-process run is n=1.

Inputs and output may be local paths or `s3://bucket/prefix` URLs, all I/O through `vpmoe.utils.storage`:
S3 inputs are read with ranged GETs (`storage.open_input`), staged work goes to the sibling prefix
`.<name>.parts/`, and the same files give the same manifest hash wherever they are.
"""

from __future__ import annotations

import glob
import hashlib
import io
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vpmoe import tokenizer as tok
from vpmoe.data.harmony_render import LOSS_SPANS, HarmonyRenderer, RenderError, TemplateConfig, position_spans
from vpmoe.data.manifest import DatasetManifest, ShardEntry
from vpmoe.data.prepared import SHARD_SCHEMA
from vpmoe.data.publish import OUTPUT_KIND, REJECT_KEYS, PublishError, check_output, finalize
from vpmoe.data.staging import BucketState, Stage, StagingError
from vpmoe.data.token_records import crc32c
from vpmoe.data.token_records import encode as encode_tokens
from vpmoe.utils import storage
from vpmoe.utils.progress import progress

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = (
    "synth_id",
    "language",
    "exercise",
    "query",
    "query_seed_text",
    "synthetic_reasoning",
    "synthetic_answer",
)
LENGTH_POLICIES = ("drop", "fail")


class PrepareError(RuntimeError):
    pass


@dataclass(kw_only=True)
class PrepareConfig:
    template: TemplateConfig = field(default_factory=TemplateConfig)
    max_seq_len: int = 4096
    length_policy: str = "drop"  # drop (counted, reason too_long) | fail
    # ~2M tokens is ~100 s of GPT-OSS-20B prompt scoring on one H100: a unit worth resuming at.
    shard_tokens: int = 2_000_000
    max_reject_fraction: float = 0.05
    passthrough_columns: list[str] = field(default_factory=list)
    # Rows go to bucket blake2b(synth_id) % buckets; each bucket is cut into its own shards. It bounds how
    # many workers can help (at most `buckets`) and how many partly filled shards there are (one per bucket).
    buckets: int = 1
    # How the work is split, not what is produced: left out of the manifest (to_dict), like scoring's.
    worker: int = 0
    num_workers: int = 1
    finalize: bool = False  # true: only publish the manifest from the committed buckets

    def __post_init__(self) -> None:
        if isinstance(self.template, dict):
            self.template = TemplateConfig(**self.template)
        if self.max_seq_len < 64:
            raise ValueError(f"max_seq_len must be >= 64, got {self.max_seq_len}")
        if self.length_policy not in LENGTH_POLICIES:
            raise ValueError(f"length_policy must be one of {LENGTH_POLICIES}, got {self.length_policy!r}")
        if self.shard_tokens < self.max_seq_len:
            raise ValueError(
                f"shard_tokens ({self.shard_tokens}) must be >= max_seq_len ({self.max_seq_len})"
            )
        if not 0.0 <= self.max_reject_fraction <= 1.0:
            raise ValueError(f"max_reject_fraction must be in [0, 1], got {self.max_reject_fraction}")
        if not 1 <= self.buckets <= 65536:
            raise ValueError(f"buckets must be in [1, 65536], got {self.buckets}")
        if self.num_workers < 1 or not 0 <= self.worker < self.num_workers:
            raise ValueError(
                f"need 0 <= worker < num_workers, got worker={self.worker} num_workers={self.num_workers}"
            )
        if self.num_workers > self.buckets:
            raise ValueError(
                f"num_workers ({self.num_workers}) > buckets ({self.buckets}): some workers would get no rows; "
                "raise prepare.buckets (it changes the shards, hence the manifest hash) or use fewer workers"
            )
        clash = set(self.passthrough_columns) & set(SHARD_SCHEMA.names)
        if clash:
            raise ValueError(f"passthrough_columns {sorted(clash)} clash with shard columns")

    def to_dict(self) -> dict:
        """The config that shapes the output (recorded and hashed in the manifest)."""
        d = asdict(self)
        for k in SPLIT_KEYS:
            d.pop(k)
        return d


SPLIT_KEYS = ("worker", "num_workers", "finalize")


@dataclass
class PrepareResult:
    output: Path | str  # a local directory, or an s3:// URL
    manifest: DatasetManifest | None  # None after a worker of several: finalize writes it
    seconds: float
    workers: list[dict]  # per-worker statistics (the finalize step reads every worker's)
    staging: Path | str | None = None

    @property
    def manifest_hash(self) -> str:
        if self.manifest is None:
            raise PrepareError("a worker's result has no manifest; run finalize")
        return self.manifest.manifest_hash


def resolve_inputs(spec: str | list[str]) -> list[str]:
    """A file, a glob, or a list of them -> sorted, de-duplicated existing Parquet files: absolute local
    paths, or `s3://bucket/key` URLs (a glob there is `storage.glob`). All local or all on S3."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    found: set[str] = set()
    remote = set()
    for s in specs:
        try:
            on_s3 = storage.is_remote(s)
        except storage.StorageError as e:
            raise PrepareError(f"input {s}: {e}") from None
        remote.add(on_s3)
        found.update(_resolve_remote(s) if on_s3 else _resolve_local(s))
    if len(remote) > 1:
        raise PrepareError(f"inputs must be all local or all on S3, got {specs}")
    # Path order (by path components), the same for a local tree and its copy under an S3 prefix.
    return sorted(found, key=lambda p: p.split("/"))


def _resolve_local(s: str) -> list[str]:
    p = os.path.expanduser(s[len("file://") :] if s.lower().startswith("file://") else s)
    matches = glob.glob(p) if glob.has_magic(p) else [p]
    if not matches:
        raise PrepareError(f"input {s!r} matches no file")
    for m in matches:
        if not os.path.exists(m):
            raise PrepareError(f"input {m} does not exist")
        if not os.path.isfile(m):
            raise PrepareError(f"input {m} is not a file")
    return [str(Path(m).resolve()) for m in matches]


def _resolve_remote(url: str) -> list[str]:
    if glob.has_magic(url):
        try:
            matches = storage.glob(url)
        except storage.StorageError as e:
            raise PrepareError(f"input {url}: cannot list it ({e})") from None
        if not matches:
            raise PrepareError(f"input {url} matches no object")
        return matches
    try:
        if not storage.exists(url):
            raise PrepareError(f"input {url} does not exist")
        storage.size(url)  # a prefix ("folder") is an error here
    except storage.StorageError as e:
        raise PrepareError(f"input {url} is not a readable object ({e})") from None
    return [url]


def _source_names(paths: list[str]) -> list[str]:
    """Location-independent names for the manifest: paths relative to the inputs' common folder (or S3
    prefix), so the same files give the same names wherever they are."""
    parts = [p.split("/") for p in paths]
    if len(paths) == 1:
        return [parts[0][-1]]
    common = os.path.commonprefix([q[:-1] for q in parts])
    return ["/".join(q[len(common) :]) for q in parts]


def _is_text_type(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_null(t)
        or (hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t))
    )


def _check_schema(path: str, schema: pa.Schema, passthrough: list[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise PrepareError(f"{path}: missing required column(s) {missing}; found {schema.names}")
    for c in REQUIRED_COLUMNS:
        t = schema.field(c).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if not _is_text_type(t):
            raise PrepareError(f"{path}: column {c!r} has type {t}, expected string")
    missing_pt = [c for c in passthrough if c not in schema.names]
    if missing_pt:
        raise PrepareError(f"{path}: passthrough column(s) {missing_pt} not found")


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def bucket_of(synth_id, buckets: int) -> int:
    """The bucket of a row: a stable hash of its id (never Python's hash(), which is salted per process), so
    every worker on any machine agrees and duplicate ids always meet in one bucket. Rows without a usable
    id (rejected as missing_id) hash the empty string."""
    key = synth_id.encode("utf-8") if isinstance(synth_id, str) else b""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % buckets


class _BucketWriter:
    """One bucket's rows in input order: accumulates sequences and commits a shard (and the rejects since
    the previous one) each time `shard_tokens` is reached. Resumes after the bucket's committed shards."""

    def __init__(self, stage: Stage, state: BucketState, cfg: PrepareConfig) -> None:
        self.stage, self.bucket, self.cfg = stage, state.bucket, cfg
        self.passthrough = cfg.passthrough_columns
        self.shards = len(state.records)  # next shard index
        self.skip_until = state.rows_committed
        self.index = 0  # bucket rows seen so far (input order)
        self.seen: set[str] = set()  # duplicate rule: ids meet only in their own bucket
        self.rejects: list[dict] = []
        self.stats = {"rows": 0, "sequences": 0, "tokens": 0, "shards_written": 0, "rejected": Counter()}
        self._reset()

    def _reset(self) -> None:
        self.rows: dict[str, list] = {c: [] for c in ("sample_id", "language", "exercise", *self.passthrough)}
        self.ids: list[np.ndarray] = []
        self.spans: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.tokens = 0

    def row(self, src: str, row: int, r: dict, renderer: HarmonyRenderer) -> None:
        i = self.index
        self.index += 1
        if i < self.skip_until:  # already in a committed shard (or its rejects): only its id matters
            sid = r["synth_id"]
            if isinstance(sid, str) and sid.strip():
                self.seen.add(sid)
            return
        self.stats["rows"] += 1
        _process_row(src, row, r, self.cfg, renderer, self, self.seen, self.reject)

    def reject(self, src: str, row: int, sid, reason: str, detail: str) -> None:
        self.stats["rejected"][reason] += 1
        self.rejects.append(dict(zip(REJECT_KEYS, (src, row, sid, reason, detail), strict=True)))

    def add(self, meta: dict, ids: np.ndarray, spans: np.ndarray, labels: np.ndarray) -> None:
        for c, v in meta.items():
            self.rows[c].append(v)
        self.ids.append(ids)
        self.spans.append(spans)
        self.labels.append(labels)
        self.tokens += len(ids)
        if self.tokens >= self.cfg.shard_tokens:
            self.flush()

    def flush(self) -> None:
        if not self.ids:
            return
        lengths = np.array([len(a) for a in self.ids], dtype=np.int32)
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        ids, spans, labels = (np.concatenate(x) for x in (self.ids, self.spans, self.labels))
        pos_spans = np.concatenate(
            [position_spans(s, lab) for s, lab in zip(self.spans, self.labels, strict=True)]
        )
        supervised = {s.name.lower(): int((pos_spans == s.value).sum()) for s in LOSS_SPANS}
        num_sup = np.array([(lab != -100).sum() for lab in self.labels], dtype=np.int32)
        # The training loader's per-sequence copy (vpmoe/data/token_records.py), crc32c per record.
        records = [encode_tokens(*seq) for seq in zip(self.ids, self.spans, self.labels, strict=True)]
        token_file = b"".join(records)
        columns = {
            "sample_id": pa.array(self.rows["sample_id"], pa.string()),
            "language": pa.array(self.rows["language"], pa.string()),
            "exercise": pa.array(self.rows["exercise"], pa.string()),
            "input_ids": pa.ListArray.from_arrays(offsets, pa.array(ids)),
            "token_spans": pa.ListArray.from_arrays(offsets, pa.array(spans)),
            "labels": pa.ListArray.from_arrays(offsets, pa.array(labels)),
            "num_tokens": pa.array(lengths),
            "num_supervised": pa.array(num_sup),
            "tokens_crc32c": pa.array([crc32c(r) for r in records], pa.uint32()),
        }
        for c in self.passthrough:
            columns[c] = pa.array(self.rows[c])
        buf = io.BytesIO()
        # Fixed writer settings so identical inputs give byte-identical files.
        pq.write_table(
            pa.table(columns), buf, compression="zstd", compression_level=3, row_group_size=1 << 14
        )
        data = buf.getvalue()
        entry = ShardEntry(
            name=f"shard-{self.shards:05d}.parquet",  # renamed by finalize to its place in the dataset
            sha256=hashlib.sha256(data).hexdigest(),
            tokens_sha256=hashlib.sha256(token_file).hexdigest(),
            sequences=len(lengths),
            tokens=int(lengths.sum()),
            supervised_tokens=supervised,
            first_sample_id=self.rows["sample_id"][0],
            last_sample_id=self.rows["sample_id"][-1],
        )
        record = {"entry": asdict(entry), "rows_end": self.index, "rejects": self.rejects}
        self.stage.commit_shard(self.bucket, self.shards, data, token_file, record)
        self.shards += 1
        self.stats["shards_written"] += 1
        self.stats["sequences"] += entry.sequences
        self.stats["tokens"] += entry.tokens
        self.rejects = []
        self._reset()

    def finish(self) -> None:
        self.flush()
        self.stage.commit_done(
            self.bucket, {"rows": self.index, "shards": self.shards, "rejects": self.rejects}
        )


@dataclass
class _Inputs:
    paths: list[str]  # absolute local paths or s3:// URLs
    names: list[str]
    files: list[pq.ParquetFile]
    handles: list = field(default_factory=list)  # the S3 file objects the ParquetFiles read from

    @property
    def rows(self) -> int:
        return sum(pf.metadata.num_rows for pf in self.files)

    def close(self) -> None:
        for h in self.handles:
            h.close()


def _open_inputs(inputs: str | list[str], cfg: PrepareConfig) -> _Inputs:
    paths = resolve_inputs(inputs)
    ins = _Inputs(paths, _source_names(paths), [])
    try:
        for p in paths:
            try:
                if storage.is_remote(p):  # ranged GETs of the footer and the column chunks it reads
                    ins.handles.append(storage.open_input(p))
                    pf = pq.ParquetFile(ins.handles[-1], **storage.PYTHON_SOURCE_READ)
                else:
                    pf = pq.ParquetFile(p)
            except Exception as e:
                raise PrepareError(f"{p}: not a readable Parquet file ({e})") from e
            _check_schema(p, pf.schema_arrow, cfg.passthrough_columns)
            ins.files.append(pf)
    except BaseException:
        ins.close()
        raise
    return ins


def _plan(ins: _Inputs, cfg: PrepareConfig) -> dict:
    """What the staged work is a function of. Sizes and change stamps (mtime locally, the ETag on S3:
    `storage.stat_version`) stand in for content hashes (which only finalize computes, once) so a changed
    input or config gets a fresh staging folder, never a mix."""
    sources = []
    for n, p, pf in zip(ins.names, ins.paths, ins.files, strict=True):
        sources.append({"name": n, "rows": pf.metadata.num_rows, **storage.stat_version(p)})
    return {
        "prepare_config": cfg.to_dict(),
        "sources": sources,
        "tokenizer": tok.tokenizer_identity().to_dict(),
    }


def _run_worker(ins: _Inputs, cfg: PrepareConfig, stage: Stage) -> dict:
    t0 = time.perf_counter()
    mine = [b for b in range(cfg.buckets) if b % cfg.num_workers == cfg.worker]
    states = stage.load_buckets(mine)
    todo = {s.bucket: s for s in states if s.done is None}
    resumed = sum(len(s.records) for s in states)
    log.info(
        "worker %d/%d: %d bucket(s) of %d, %d already complete, %d shard(s) already committed",
        cfg.worker, cfg.num_workers, len(mine), cfg.buckets, len(mine) - len(todo), resumed,
    )  # fmt: skip
    writers: dict[int, _BucketWriter] = {}
    if todo:
        renderer = HarmonyRenderer(cfg.template)
        writers = {b: _BucketWriter(stage, s, cfg) for b, s in todo.items()}
        columns = list(dict.fromkeys([*REQUIRED_COLUMNS, *cfg.passthrough_columns]))
        bar = progress(total=ins.rows, desc=f"prepare {cfg.worker}/{cfg.num_workers}", unit="row")
        for name, pf in zip(ins.names, ins.files, strict=True):
            row = 0
            # Serial decoding: an S3 input is read through a Python file object (storage.PYTHON_SOURCE_READ
            # says why); rendering, not decoding, is what takes the time here.
            for batch in pf.iter_batches(batch_size=1024, columns=columns, use_threads=False):
                owner = [bucket_of(s, cfg.buckets) for s in batch.column("synth_id").to_pylist()]
                take = [i for i, b in enumerate(owner) if b in writers]
                if take:  # convert only this worker's rows to Python
                    sub = batch.take(pa.array(take, pa.int64()))
                    cols = {c: sub.column(c).to_pylist() for c in columns}
                    for j, i in enumerate(take):
                        writers[owner[i]].row(name, row + i, {c: cols[c][j] for c in columns}, renderer)
                row += batch.num_rows
                bar.update(batch.num_rows)
        bar.close()
        for w in writers.values():
            w.finish()
    rejected: Counter[str] = Counter()
    for w in writers.values():
        rejected.update(w.stats["rejected"])
    stats = {
        "worker": cfg.worker,
        "num_workers": cfg.num_workers,
        "buckets": len(mine),
        "rows": sum(w.stats["rows"] for w in writers.values()),
        "sequences": sum(w.stats["sequences"] for w in writers.values()),
        "tokens": sum(w.stats["tokens"] for w in writers.values()),
        "rejected": dict(sorted(rejected.items())),
        "shards_written": sum(w.stats["shards_written"] for w in writers.values()),
        "shards_skipped": resumed,
        "seconds": time.perf_counter() - t0,
    }
    stage.commit_worker_stats(cfg.worker, cfg.num_workers, stats)
    return stats


def prepare(
    inputs: str | list[str], output: str | Path, cfg: PrepareConfig, *, overwrite: bool = False
) -> PrepareResult:
    """Run worker `cfg.worker` of `cfg.num_workers` (then finalize when it is the only one), or, with
    `cfg.finalize`, only the finalize step. Returns the output path, the manifest (once finalized) and
    the workers' statistics.

    `inputs` and `output` may be local paths or `s3://bucket/prefix` URLs (vpmoe/utils/storage.py); on S3
    the staging area is the sibling prefix `.<name>.parts` and finalize publishes as `vpmoe.data.publish`
    describes."""
    t0 = time.perf_counter()
    output = _output_location(output)
    ins = _open_inputs(inputs, cfg)
    try:
        return _prepare(ins, output, cfg, overwrite=overwrite, t0=t0)
    finally:
        ins.close()


def _output_location(output: str | Path) -> Path | str:
    """A resolved local path, or the URL without a trailing slash; a bucket alone is refused."""
    try:
        remote = storage.is_remote(output)
    except storage.StorageError as e:
        raise PrepareError(f"output {output}: {e}") from None
    if not remote:
        local = os.fspath(output)
        return Path(local[len("file://") :] if local.lower().startswith("file://") else local).resolve()
    url = str(output).rstrip("/")
    if "/" not in url.split("://", 1)[1]:
        raise PrepareError(f"output {output} must be a prefix inside a bucket (s3://bucket/name)")
    return url


def _prepare(
    ins: _Inputs, output: Path | str, cfg: PrepareConfig, *, overwrite: bool, t0: float
) -> PrepareResult:
    check_output(output, overwrite=overwrite, kind=OUTPUT_KIND)  # fail before any work
    stage = Stage(output, _plan(ins, cfg))
    single = cfg.num_workers == 1 and not cfg.finalize
    try:
        if not cfg.finalize:
            stage.begin()
            stats = _run_worker(ins, cfg, stage)
            if not single:
                return PrepareResult(output, None, time.perf_counter() - t0, [stats], stage.root)
        manifest = finalize(ins, output, cfg, stage, overwrite=overwrite)
    except (PrepareError, StagingError, PublishError) as e:
        if single:  # a deterministic failure: a rerun would fail the same way, so leave nothing behind
            stage.remove()
        if not isinstance(e, PrepareError):
            raise PrepareError(str(e)) from e
        raise
    workers = stage.worker_stats()
    stage.remove()
    return PrepareResult(output, manifest, time.perf_counter() - t0, workers)


def _process_row(src, row, r, cfg: PrepareConfig, renderer, writer: _BucketWriter, seen_ids, reject) -> None:
    sid = r["synth_id"]
    if not isinstance(sid, str) or not sid.strip():
        return reject(
            src, row, sid if isinstance(sid, str) else None, "missing_id", "synth_id is null or empty"
        )
    if sid in seen_ids:
        return reject(src, row, sid, "duplicate_id", "synth_id already used by an earlier row")
    seen_ids.add(sid)
    texts = {}
    for col, reason in (
        ("query", "empty_query"),
        ("synthetic_reasoning", "empty_reasoning"),
        ("synthetic_answer", "empty_answer"),
    ):
        v = r[col]
        if v is not None and not isinstance(v, str):
            return reject(src, row, sid, "wrong_type", f"{col} is {type(v).__name__}, expected str")
        if v is None or not v.strip():
            return reject(src, row, sid, reason, f"{col} is {'null' if v is None else 'empty or whitespace'}")
        texts[col] = v
    seed = _text(r["query_seed_text"])
    if cfg.template.uses_seed_text and not (seed and seed.strip()):
        return reject(
            src, row, sid, "missing_seed_text", "user_template uses {query_seed_text} but it is null or empty"
        )
    try:
        seq = renderer.render(texts["query"], texts["synthetic_reasoning"], texts["synthetic_answer"], seed)
    except RenderError as e:
        return reject(src, row, sid, "encode_error", str(e))
    n = len(seq.input_ids)
    if n > cfg.max_seq_len:
        if cfg.length_policy == "fail":
            raise PrepareError(
                f"{src} row {row} ({sid}): {n} tokens > max_seq_len {cfg.max_seq_len} (length_policy=fail)"
            )
        return reject(src, row, sid, "too_long", f"{n} tokens > max_seq_len {cfg.max_seq_len}")
    meta = {"sample_id": sid, "language": _text(r["language"]), "exercise": _text(r["exercise"])}
    for c in cfg.passthrough_columns:
        meta[c] = r[c]
    writer.add(meta, seq.input_ids, seq.token_spans, seq.labels)


def summary_lines(result: PrepareResult) -> list[str]:
    """A worker's own figures, or, once finalized, the dataset's totals plus the workers' added up."""
    m = result.manifest
    if m is None:
        (w,) = result.workers
        return [
            f"worker             {w['worker']} of {w['num_workers']} ({w['buckets']} bucket(s))",
            f"rows               {w['rows']} new in its buckets",
            f"sequences out      {w['sequences']} in {w['shards_written']} new shard(s), "
            f"{w['shards_skipped']} already committed",
            f"rejected           {sum(w['rejected'].values())} {w['rejected'] or ''}".rstrip(),
            f"tokens             {w['tokens']}",
            f"throughput         {w['tokens'] / max(w['seconds'], 1e-9):,.0f} tokens/s ({w['seconds']:.1f} s)",
            f"staged in          {result.staging} (publish with prepare.finalize=true)",
        ]
    t = m.totals
    sup = t["supervised_tokens"]
    lines = [
        f"rows in            {t['rows_in']}",
        f"sequences out      {t['sequences']} in {len(m.shards)} shard(s)",
        f"rejected           {sum(t['rejected'].values())} {t['rejected'] or ''}".rstrip(),
        f"tokens             {t['tokens']}",
        "supervised tokens  " + ", ".join(f"{k} {v}" for k, v in sup.items()),
    ]
    ws = result.workers
    if len(ws) > 1:  # separate worker processes: add up their work
        busy = sum(w["seconds"] for w in ws)
        lines += [
            f"workers            {len(ws)}: {busy:.1f} worker-s in total, slowest {max(w['seconds'] for w in ws):.1f} s, "
            f"{sum(w['shards_written'] for w in ws)} shard(s) written in their last runs",
            f"throughput         {t['tokens'] / max(busy, 1e-9):,.0f} tokens per worker-s; finalize {result.seconds:.1f} s",
        ]
    else:
        lines.append(
            f"throughput         {t['tokens'] / max(result.seconds, 1e-9):,.0f} tokens/s ({result.seconds:.1f} s)"
        )
    return [*lines, f"manifest hash      {m.manifest_hash}", f"output             {result.output}"]
