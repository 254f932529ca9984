"""The preparation stage: SYNTH-schema Parquet -> Harmony token shards + `DatasetManifest`.

Contract: docs/synth_preprocess.md. Rows are read in a fixed order (input files sorted by path, rows in
file order), rendered by `HarmonyRenderer`, filtered (bad rows to `rejects.jsonl` with a reason,
over-long rows by the length policy), and cut into shards of about `shard_tokens` tokens. Everything is
written into a temporary sibling of the output directory and renamed into place at the end.
"""

from __future__ import annotations

import glob
import json
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
from vpmoe.data.manifest import REJECTS_FILE, SHARD_DIR, DatasetManifest, ShardEntry
from vpmoe.data.prepared import SHARD_SCHEMA
from vpmoe.utils.atomic import atomic_directory, check_output_dir
from vpmoe.utils.hashing import sha256_file, sha256_json
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
# The kind recorded in the output marker: overwrite=true replaces only a previous prepare output.
OUTPUT_KIND = "prepare"
# Reasons a row is rejected as bad input (counted against max_reject_fraction). Over-long rows are a
# length-policy drop ("too_long"), recorded in the same file but not counted as bad input.
BAD_INPUT_REASONS = (
    "missing_id",
    "duplicate_id",
    "empty_query",
    "empty_reasoning",
    "empty_answer",
    "missing_seed_text",
    "wrong_type",
    "encode_error",
)


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
        clash = set(self.passthrough_columns) & set(SHARD_SCHEMA.names)
        if clash:
            raise ValueError(f"passthrough_columns {sorted(clash)} clash with shard columns")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PrepareResult:
    output: Path
    manifest: DatasetManifest
    seconds: float

    @property
    def manifest_hash(self) -> str:
        return self.manifest.manifest_hash


def resolve_inputs(spec: str | list[str]) -> list[Path]:
    """A file, a glob, or a list of them -> sorted, de-duplicated existing Parquet files."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    paths: set[Path] = set()
    for s in specs:
        matches = glob.glob(os.path.expanduser(s)) if glob.has_magic(s) else [os.path.expanduser(s)]
        if not matches:
            raise PrepareError(f"input {s!r} matches no file")
        for m in matches:
            p = Path(m)
            if not p.exists():
                raise PrepareError(f"input {m} does not exist")
            if not p.is_file():
                raise PrepareError(f"input {m} is not a file")
            paths.add(p.resolve())
    return sorted(paths)


def _source_names(paths: list[Path]) -> list[str]:
    """Location-independent names for the manifest: paths relative to the inputs' common folder."""
    if len(paths) == 1:
        return [paths[0].name]
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return [str(p.relative_to(common)) for p in paths]


def _is_text_type(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_null(t)
        or (hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t))
    )


def _check_schema(path: Path, schema: pa.Schema, passthrough: list[str]) -> None:
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


class _ShardWriter:
    """Accumulates sequences and writes a Parquet shard each time `shard_tokens` is reached."""

    def __init__(self, root: Path, shard_tokens: int, passthrough: list[str]) -> None:
        self.root, self.shard_tokens, self.passthrough = root, shard_tokens, passthrough
        (root / SHARD_DIR).mkdir()
        self.entries: list[ShardEntry] = []
        self._reset()

    def _reset(self) -> None:
        self.rows: dict[str, list] = {c: [] for c in ("sample_id", "language", "exercise", *self.passthrough)}
        self.ids: list[np.ndarray] = []
        self.spans: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.tokens = 0

    def add(self, meta: dict, ids: np.ndarray, spans: np.ndarray, labels: np.ndarray) -> None:
        for c, v in meta.items():
            self.rows[c].append(v)
        self.ids.append(ids)
        self.spans.append(spans)
        self.labels.append(labels)
        self.tokens += len(ids)
        if self.tokens >= self.shard_tokens:
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
        columns = {
            "sample_id": pa.array(self.rows["sample_id"], pa.string()),
            "language": pa.array(self.rows["language"], pa.string()),
            "exercise": pa.array(self.rows["exercise"], pa.string()),
            "input_ids": pa.ListArray.from_arrays(offsets, pa.array(ids)),
            "token_spans": pa.ListArray.from_arrays(offsets, pa.array(spans)),
            "labels": pa.ListArray.from_arrays(offsets, pa.array(labels)),
            "num_tokens": pa.array(lengths),
            "num_supervised": pa.array(num_sup),
        }
        for c in self.passthrough:
            columns[c] = pa.array(self.rows[c])
        table = pa.table(columns)
        name = f"{SHARD_DIR}/shard-{len(self.entries):05d}.parquet"
        # Fixed writer settings so identical inputs give byte-identical files.
        pq.write_table(
            table, self.root / name, compression="zstd", compression_level=3, row_group_size=1 << 14
        )
        self.entries.append(
            ShardEntry(
                name=name,
                sha256=sha256_file(self.root / name),
                sequences=len(lengths),
                tokens=int(lengths.sum()),
                supervised_tokens=supervised,
                first_sample_id=self.rows["sample_id"][0],
                last_sample_id=self.rows["sample_id"][-1],
            )
        )
        self._reset()


def prepare(
    inputs: str | list[str], output: str | Path, cfg: PrepareConfig, *, overwrite: bool = False
) -> PrepareResult:
    """Run the preparation stage. Returns the output path and the finalized manifest."""
    t0 = time.perf_counter()
    output = Path(output).resolve()
    paths = resolve_inputs(inputs)
    check_output_dir(output, overwrite=overwrite, kind=OUTPUT_KIND)  # fail before any work
    files = []
    for p in paths:
        try:
            pf = pq.ParquetFile(p)
        except Exception as e:
            raise PrepareError(f"{p}: not a readable Parquet file ({e})") from e
        _check_schema(p, pf.schema_arrow, cfg.passthrough_columns)
        files.append(pf)
    names = _source_names(paths)
    renderer = HarmonyRenderer(cfg.template)
    total_rows = sum(pf.metadata.num_rows for pf in files)
    reasons: Counter[str] = Counter()
    seen_ids: set[str] = set()
    columns = list(dict.fromkeys([*REQUIRED_COLUMNS, *cfg.passthrough_columns]))

    with atomic_directory(output, overwrite=overwrite, kind=OUTPUT_KIND) as tmp:
        writer = _ShardWriter(tmp, cfg.shard_tokens, cfg.passthrough_columns)
        bar = progress(total=total_rows, desc="prepare", unit="row")
        with open(tmp / REJECTS_FILE, "w", encoding="utf-8") as rejects:

            def reject(src: str, row: int, sid, reason: str, detail: str) -> None:
                reasons[reason] += 1
                rec = {"source": src, "row": row, "sample_id": sid, "reason": reason, "detail": detail}
                rejects.write(json.dumps(rec, ensure_ascii=False) + "\n")

            for name, pf in zip(names, files, strict=True):
                row = 0
                for batch in pf.iter_batches(batch_size=1024, columns=columns):
                    cols = {c: batch.column(c).to_pylist() for c in columns}
                    for i in range(batch.num_rows):
                        r = {c: cols[c][i] for c in columns}
                        _process_row(name, row, r, cfg, renderer, writer, seen_ids, reject)
                        row += 1
                    bar.update(batch.num_rows)
            bar.close()
        writer.flush()

        bad = sum(n for r, n in reasons.items() if r in BAD_INPUT_REASONS)
        if total_rows and bad / total_rows > cfg.max_reject_fraction:
            raise PrepareError(
                f"{bad} of {total_rows} rows rejected as bad input ({bad / total_rows:.1%} > "
                f"max_reject_fraction {cfg.max_reject_fraction:.1%}): {dict(reasons)}; see the reasons above "
                "(no output written)"
            )
        if not writer.entries:
            raise PrepareError(f"no sequence survived preparation ({dict(reasons)}); no output written")
        entries = writer.entries
        supervised = {
            s.name.lower(): sum(e.supervised_tokens[s.name.lower()] for e in entries) for s in LOSS_SPANS
        }
        manifest = DatasetManifest(
            tokenizer=tok.tokenizer_identity().to_dict(),
            prepare_config=cfg.to_dict(),
            prepare_config_hash=sha256_json(cfg.to_dict()),
            sources=[
                {"name": n, "sha256": sha256_file(p), "rows": pf.metadata.num_rows}
                for n, p, pf in zip(names, paths, files, strict=True)
            ],
            shards=entries,
            totals={
                "rows_in": total_rows,
                "sequences": sum(e.sequences for e in entries),
                "tokens": sum(e.tokens for e in entries),
                "supervised_tokens": supervised,
                "rejected": dict(sorted(reasons.items())),
            },
            rejects_file={
                "name": REJECTS_FILE,
                "sha256": sha256_file(tmp / REJECTS_FILE),
                "count": sum(reasons.values()),
            },
        ).finalize()
        manifest.write(tmp)
    return PrepareResult(output=output, manifest=manifest, seconds=time.perf_counter() - t0)


def _process_row(src, row, r, cfg: PrepareConfig, renderer, writer: _ShardWriter, seen_ids, reject) -> None:
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
    t = result.manifest.totals
    sup = t["supervised_tokens"]
    return [
        f"rows in            {t['rows_in']}",
        f"sequences out      {t['sequences']} in {len(result.manifest.shards)} shard(s)",
        f"rejected           {sum(t['rejected'].values())} {t['rejected'] or ''}".rstrip(),
        f"tokens             {t['tokens']}",
        "supervised tokens  " + ", ".join(f"{k} {v}" for k, v in sup.items()),
        f"throughput         {t['tokens'] / max(result.seconds, 1e-9):,.0f} tokens/s ({result.seconds:.1f} s)",
        f"manifest hash      {result.manifest_hash}",
        f"output             {result.output}",
    ]
