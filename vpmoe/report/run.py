"""Shard-health report of a teacher store against its prepared dataset (docs/teacher_store.md).

The store is read file by file and array by array, not through `TeacherStoreReader`: the reader refuses
an incomplete or mismatched store by design, while the report must find and name every problem.
Store-level checks: `store_checks.py`; each committed shard: `scan.py`; checks and findings: `checks.py`;
statistics: `stats.py`; outputs: `writers.py`.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vpmoe.data.prepared import PreparedDataset
from vpmoe.report.checks import CHECKS, CHECKS_BY_STORAGE, CheckLog
from vpmoe.report.sampled_scan import summarize as sampled_summary
from vpmoe.report.scan import NONE_GROUP, ScanContext, ShardInfo, ShardJob, scan_shard
from vpmoe.report.stats import FINE_BINS, StatsAccumulator
from vpmoe.report.store_checks import check_provenance, check_shard_dir, list_shards_dir, root_attrs
from vpmoe.teacher.convert import check_nll_ratio
from vpmoe.teacher.row_checks import LOGPROB_TOLERANCE
from vpmoe.teacher.store import SHARDS, StoreError, shard_stem, storage_of
from vpmoe.teacher.store_reader import resolve_store
from vpmoe.utils import storage
from vpmoe.utils.progress import progress

log = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = 1


class ReportError(RuntimeError):
    """The report cannot run at all (not a store, not a dataset); failed checks are not errors."""


@dataclass(kw_only=True)
class ReportConfig:
    # A log-prob may exceed 0 by this much (fp32 log-softmax rounding): the scorer's own validator bound.
    logprob_tolerance: float = LOGPROB_TOLERANCE  # the scorer's (vpmoe/teacher/row_checks.py)
    # Top-k mass may exceed 1 by this much on top of the fp16 rounding bound (2^-11 x top-k entropy).
    mass_tolerance: float = 1e-3
    # teacher_not_degenerate: a shard's mean top-1 log-prob must be at least this many nats above a uniform
    # distribution's -ln(vocab); the scorer's own bound on each shard's first batch (ScoreConfig, and
    # vpmoe/teacher/convert.py degenerate_teacher for why 2); and its actual tokens' mean NLL below this
    # multiple of ln(vocab), a uniform distribution's (None: not judged, only for a teacher known to be
    # random, such as the demo's tiny teacher).
    min_top1_gain: float = 2.0
    max_target_nll_ratio: float | None = 1.0
    # Bins of the histograms in report.json and the PNGs.
    hist_bins: int = 50
    # Processes scanning shards in parallel (spawned; 1 = in this process). The scan is CPU-bound
    # (sha256, chunk decoding, numpy), so up to one per core helps; results are merged in manifest order,
    # so the report does not depend on it.
    workers: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.logprob_tolerance < 1.0:
            raise ValueError(f"logprob_tolerance must be in [0, 1), got {self.logprob_tolerance}")
        if not 0.0 <= self.mass_tolerance < 1.0:
            raise ValueError(f"mass_tolerance must be in [0, 1), got {self.mass_tolerance}")
        if not 0.0 < self.min_top1_gain <= 10.0:
            raise ValueError(f"min_top1_gain must be in (0, 10] nats, got {self.min_top1_gain}")
        check_nll_ratio(self.max_target_nll_ratio)
        if not (2 <= self.hist_bins <= FINE_BINS and FINE_BINS % self.hist_bins == 0):
            raise ValueError(f"hist_bins must divide {FINE_BINS} and be >= 2, got {self.hist_bins}")
        if not 1 <= self.workers <= 1024:
            raise ValueError(f"workers must be in [1, 1024], got {self.workers}")


@dataclass
class Report:
    store: str | Path  # local Path, or an s3:// URL
    dataset: str | Path
    manifest_hash: str
    attrs: dict
    vocab: int
    k: int | None
    checks: CheckLog
    statistics: dict
    shards: dict[str, ShardInfo]
    positions_scanned: int
    seconds: float
    config: ReportConfig

    @property
    def passed(self) -> bool:
        return not self.checks.failed()

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def committed_shards(self) -> int:
        return sum(s.status in ("scanned", "unreadable") for s in self.shards.values())

    def quarantined(self) -> dict[str, dict]:
        """Samples the scorer left out of the store, over the scanned shards: id -> {shard, reasons}."""
        return {
            sid: {"shard": stem, "reasons": reasons}
            for stem, s in self.shards.items()
            for sid, reasons in s.quarantined.items()
        }

    def verdict_line(self) -> str:
        failed = self.checks.failed()
        committed = self.committed_shards()
        head = (
            f"report {'PASS' if not failed else 'FAIL'}: {len(self.checks.checks) - len(failed)}/{len(self.checks.checks)} checks passed, "
            f"{committed}/{len(self.shards)} shards committed, {self.positions_scanned:,} positions scanned, "
            f"{len(self.quarantined())} sample(s) quarantined"
        )
        if failed:
            parts = []
            for c in failed:
                shards = list(self.checks.findings[c])
                parts.append(f"{c} [{', '.join(shards[:3])}{', ...' if len(shards) > 3 else ''}]")
            head += "; failed: " + "; ".join(parts)
        return head

    def storage(self) -> dict:
        ok = [s for s in self.shards.values() if s.stored_bytes is not None and s.positions]
        positions = sum(s.positions for s in ok)
        stored = sum(s.stored_bytes for s in ok)
        unique = (self.statistics.get("sampled") or {}).get("unique_ids_per_position", {}).get("mean")
        per_position = (
            raw_bytes_per_position(self.k) if "sampled" not in self.statistics
            else SAMPLED_RAW_ENTRY_BYTES * unique + SAMPLED_RAW_ROW_BYTES if unique is not None else None
        )  # fmt: skip
        raw = positions * per_position if self.k and per_position else None
        by_array: dict[str, int] = {}
        for s in ok:
            for name, b in s.bytes_by_array.items():
                by_array[name] = by_array.get(name, 0) + b
        per_shard = np.array([s.positions for s in self.shards.values() if s.positions is not None])
        return {
            "positions": positions,
            "stored_bytes": stored,
            "raw_bytes": raw,
            "bytes_per_position": stored / positions if positions else None,
            "raw_bytes_per_position": per_position if self.k else None,
            "raw_layout": SAMPLED_RAW_LAYOUT if "sampled" in self.statistics else RAW_LAYOUT,
            "compression_ratio": raw / stored if raw and stored else None,
            "bytes_per_position_by_array": {n: b / positions for n, b in sorted(by_array.items())}
            if positions
            else {},
            "positions_per_shard": {
                "min": int(per_shard.min()) if len(per_shard) else None,
                "median": float(np.median(per_shard)) if len(per_shard) else None,
                "max": int(per_shard.max()) if len(per_shard) else None,
                "mean": float(per_shard.mean()) if len(per_shard) else None,
            },
        }

    def to_dict(self) -> dict:
        a = self.attrs
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "verdict": "PASS" if self.passed else "FAIL",
            "summary": {
                "checks": len(self.checks.checks),
                "checks_failed": len(self.checks.failed()),
                "failed": self.checks.failed(),
                "shards_expected": len(self.shards),
                "shards_committed": self.committed_shards(),
                "positions_scanned": self.positions_scanned,
                "samples_quarantined": len(self.quarantined()),
                "seconds": round(self.seconds, 3),
                "positions_per_second": round(self.positions_scanned / self.seconds)
                if self.seconds
                else None,
            },
            "store": {
                "path": str(self.store),
                "teacher_id": a.get("teacher_id"),
                "dataset_manifest_hash": a.get("dataset_manifest_hash"),
                "k": a.get("k"),
                "dtype": a.get("dtype"),
                "engine": a.get("engine"),
                "engine_version": a.get("engine_version"),
                "teacher_weights_sha256": a.get("teacher_weights_sha256"),
            },
            "dataset": {
                "path": str(self.dataset),
                "manifest_hash": self.manifest_hash,
                "vocab_size": self.vocab,
            },
            "config": dataclasses.asdict(self.config),
            "checks": self.checks.to_dict(),
            "statistics": self.statistics,
            "storage": self.storage(),
            "shards": {stem: dataclasses.asdict(s) for stem, s in self.shards.items()},
            "quarantined": self.quarantined(),
        }


RAW_LAYOUT = "k x (uint32 id + fp32 log-prob) + position, actual-token log-prob and rank at 4 bytes"
# A sampled row at plain widths: per drawn id a uint32 id and a uint8 count; per row a uint8 id count, a
# uint8 tail count, and position, actual-token log-prob and rank at 4 bytes.
SAMPLED_RAW_ENTRY_BYTES, SAMPLED_RAW_ROW_BYTES = 5, 14
SAMPLED_RAW_LAYOUT = "per drawn id: uint32 id + uint8 count; per row: uint8 id count and tail count, position, actual-token log-prob and rank at 4 bytes"


def raw_bytes_per_position(k: int) -> int:
    """Uncompressed size of one row at plain widths: k x (uint32 id + fp32 log-prob) + int32 position +
    fp32 actual-token log-prob + uint32 rank."""
    return k * 8 + 12


def run_report(dataset_dir: str | Path, store_root: str | Path, cfg: ReportConfig) -> Report:
    t0 = time.perf_counter()
    ds = PreparedDataset(dataset_dir)  # ManifestError: the dataset itself is unusable
    try:
        store = resolve_store(store_root, ds.manifest_hash)
    except StoreError as e:
        raise ReportError(str(e)) from e
    checks = CheckLog()
    attrs = root_attrs(store, checks)
    storage_kind = storage_of(attrs)
    checks.use(CHECKS_BY_STORAGE.get(storage_kind, CHECKS))  # an unknown kind fails provenance
    vocab = int(ds.manifest.tokenizer["padded_vocab_size"])
    k = attrs.get("k") if isinstance(attrs.get("k"), int) and attrs["k"] >= 1 else None
    check_provenance(attrs, ds, vocab, checks)

    entries = {shard_stem(e.name): e for e in ds.manifest.shards}
    shards_dir = storage.join(store, SHARDS)
    listing = list_shards_dir(shards_dir)
    groups = listing[1] if listing is not None else {}
    markers = check_shard_dir(shards_dir, listing, entries, checks)
    groupings = _groupings(ds)
    stats = StatsAccumulator(groupings)
    shards: dict[str, ShardInfo] = {}
    jobs = []
    for stem, entry in entries.items():
        info = markers.get(stem)
        if info is None or info.get("dataset_shard_sha256") != entry.sha256:
            why = "no commit marker" if info is None else "marker names another dataset shard (stale)"
            if info is None and stem in groups:
                why += " (shard directory present: debris of an interrupted scorer)"
            checks.fail("shards_committed", stem, why)
            shards[stem] = ShardInfo(status="missing" if info is None else "stale")
        else:
            shards[stem] = ShardInfo(status="unreadable")  # replaced by the scan's result, in this order
            jobs.append(ShardJob(storage.join(shards_dir, stem), stem, entry, info, groups.get(stem, {})))
    bar = progress(
        total=sum(sum(j.entry.supervised_tokens.values()) for j in jobs), desc="report", unit="pos"
    )
    context = ScanContext(
        ds=ds, attrs=attrs, k=k, vocab=vocab, cfg=cfg, groupings=groupings, storage=storage_kind
    )
    scanned = 0
    for result in _scan_all(jobs, context, cfg.workers, bar):
        checks.merge(result.checks)
        stats.merge(result.stats)
        shards[result.stem] = result.info
        scanned += result.scanned
    bar.close()
    if storage_kind == "sampled":
        samples = int((attrs.get("scoring_config") or {}).get("samples", 0))
        statistics = {"sampled": sampled_summary([s.sampled for s in shards.values() if s.sampled], samples)}
    else:
        statistics = stats.summary(cfg.hist_bins)
    return Report(
        store=store,
        dataset=dataset_dir if storage.is_remote(str(dataset_dir)) else Path(dataset_dir),
        manifest_hash=ds.manifest_hash,
        attrs=attrs,
        vocab=vocab,
        k=k,
        checks=checks,
        statistics=statistics,
        shards=shards,
        positions_scanned=scanned,
        seconds=time.perf_counter() - t0,
        config=cfg,
    )


def _scan_all(jobs: list[ShardJob], context: ScanContext, workers: int, bar):
    """Shard results in job (manifest) order; in this process, or on a pool of spawned processes (spawned,
    not forked: a fork copies whatever threads' locks the parent holds, e.g. zarr's if a caller used it)."""
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield scan_shard(job, context, bar)
        return
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn"))
    with pool:
        futures = [pool.submit(scan_shard, job, context, None) for job in jobs]
        for future in futures:
            result = future.result()
            bar.update(result.scanned)
            yield result


def _groupings(ds: PreparedDataset) -> dict[str, list[str]]:
    langs, exercises = set(), set()
    for entry in ds.manifest.shards:
        t = ds.read_columns(entry.name, ["language", "exercise"])
        langs.update(v if v is not None else NONE_GROUP for v in t.column("language").to_pylist())
        exercises.update(v if v is not None else NONE_GROUP for v in t.column("exercise").to_pylist())
    return {"span": ["reasoning", "final"], "language": sorted(langs), "exercise": sorted(exercises)}
