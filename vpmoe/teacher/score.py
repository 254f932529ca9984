"""The scoring stage: prepared shards -> GPT-OSS prompt logprobs (vLLM) -> `TeacherStore` shards.

Contract: docs/teacher_store.md. Work unit = one dataset shard; worker i of n owns the shards whose index
is i mod n, so no two writers ever touch one shard. Committed shards are skipped, so a rerun resumes and
running the same command twice is a no-op (the engine is not even started when nothing is left).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vpmoe.data.prepared import PreparedDataset
from vpmoe.teacher.array_file import topk_chunk_rows
from vpmoe.teacher.convert import Validity, check_nll_ratio, degenerate_teacher, prompt_logprobs_to_rows
from vpmoe.teacher.engine import TeacherConfig, TeacherError, VllmTeacher, teacher_identity
from vpmoe.teacher.quarantine import check_fraction, corrupt_for_test, marker_quarantine, test_rejects
from vpmoe.teacher.sampling import sample_key, sampled_rows
from vpmoe.teacher.store import STORE_SCHEMAS, StoreProvenance, TeacherStore, shard_stem, store_dir
from vpmoe.utils.hashing import sha256_json
from vpmoe.utils.progress import progress

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class ScoreConfig:
    worker: int = 0
    num_workers: int = 1
    # Tokens handed to one `LLM.generate` call: bounds the Python-side outputs held at once.
    batch_tokens: int = 262144
    # Each shard's first batch must have a mean top-1 log-prob at least this many nats above a uniform
    # distribution's -ln(vocab), else the run stops before committing it (convert.degenerate_teacher says
    # why 2), and its actual tokens' mean NLL below this multiple of ln(vocab), a uniform distribution's
    # (None: not judged, only for a teacher known to be random, such as the demo's tiny teacher).
    min_top1_gain: float = 2.0
    max_target_nll_ratio: float | None = 1.0
    # Most samples (as a share of the worker's assigned samples) whose teacher output may fail validation
    # and be quarantined (left out of the store, docs/teacher_store.md "Quarantine") before the run fails.
    max_quarantine_fraction: float = 0.001

    def __post_init__(self) -> None:
        if self.num_workers < 1 or not 0 <= self.worker < self.num_workers:
            raise ValueError(
                f"need 0 <= worker < num_workers, got worker={self.worker} num_workers={self.num_workers}"
            )
        if self.batch_tokens < 1:
            raise ValueError("batch_tokens must be >= 1")
        if not 0.0 < self.min_top1_gain <= 10.0:
            raise ValueError(f"min_top1_gain must be in (0, 10] nats, got {self.min_top1_gain}")
        check_nll_ratio(self.max_target_nll_ratio)
        # Above half, most of the data could go missing as "quarantine": that is a broken teacher or
        # engine, which must fail the run, never thin the dataset.
        if not 0.0 <= self.max_quarantine_fraction <= 0.5:
            raise ValueError(
                f"max_quarantine_fraction must be in [0, 0.5], got {self.max_quarantine_fraction}"
            )


@dataclass
class ScoreResult:
    store: Path
    shards_scored: int
    shards_skipped: int
    positions: int
    seconds: float
    stored_bytes: int
    validity: Validity
    samples: int  # the worker's assigned samples
    quarantined: dict[str, dict]  # of those, left out of the store (committed shards, this run's and before)

    @property
    def bytes_per_position(self) -> float:
        return self.stored_bytes / max(self.positions, 1)


def _check_lengths(ds: PreparedDataset, max_model_len: int) -> None:
    for entry in ds.manifest.shards:
        t = ds.read_columns(entry.name, ["sample_id", "num_tokens"])
        lengths = t.column("num_tokens").to_numpy()
        if (lengths > max_model_len).any():
            i = int(np.flatnonzero(lengths > max_model_len)[0])
            raise TeacherError(
                f"{entry.name}: sample {t.column('sample_id')[i].as_py()} has {lengths[i]} tokens > "
                f"teacher.max_model_len={max_model_len}; raise max_model_len or prepare with a smaller max_seq_len"
            )


def score(
    dataset_dir: str | Path, output: str | Path, teacher: TeacherConfig, cfg: ScoreConfig
) -> ScoreResult:
    t0 = time.perf_counter()
    ds = PreparedDataset(dataset_dir)
    vocab = ds.manifest.tokenizer["padded_vocab_size"]
    ident = teacher_identity(teacher.model, vocab)
    _check_lengths(ds, teacher.max_model_len)
    import vllm

    sampled = teacher.storage == "sampled"
    scoring_cfg = {
        "k": teacher.k,
        "dtype": teacher.dtype,
        "max_model_len": teacher.max_model_len,
        "seed": teacher.seed,
        # Store layout from the dataset: short sequences get small top-k chunks (array_file.py).
        "topk_chunk_rows": topk_chunk_rows(
            sum(ds.manifest.totals["supervised_tokens"].values()) / max(ds.manifest.totals["sequences"], 1)
        ),
    }
    if sampled:  # top-k stores keep their scoring config (and so their id and resumability) unchanged
        scoring_cfg.update(storage="sampled", samples=teacher.samples)
    prov = StoreProvenance(
        schema_version=STORE_SCHEMAS[teacher.storage],
        dataset_manifest_hash=ds.manifest_hash,
        tokenizer=ds.manifest.tokenizer,
        teacher_id=ident.teacher_id(teacher.dtype, teacher.k, teacher.samples if sampled else None),
        teacher_path=ident.path,
        teacher_weights_sha256=ident.weights_sha256,
        teacher_config=ident.config,
        engine="vllm",
        engine_version=vllm.__version__,
        dtype=teacher.dtype,
        k=teacher.k,
        scoring_config=scoring_cfg,
        scoring_config_hash=sha256_json(scoring_cfg),
    )
    root = store_dir(output, ds.manifest_hash, prov.teacher_id)
    store = TeacherStore(root, prov)
    mine = [e for i, e in enumerate(ds.manifest.shards) if i % cfg.num_workers == cfg.worker]
    todo = [e for e in mine if not store.is_complete(shard_stem(e.name), e.sha256)]
    log.info(
        "teacher mode: model=%s (%s) engine=vllm %s dtype=%s k=%d tp=%d max_model_len=%d storage=%s",
        ident.name, ident.weights_sha256[:12], vllm.__version__, teacher.dtype, teacher.k,
        teacher.tensor_parallel_size, teacher.max_model_len,
        f"sampled (N={teacher.samples} draws per position, seed {teacher.seed})" if sampled else "topk",
    )  # fmt: skip
    log.info("store %s", root)
    log.info(
        "worker %d/%d: %d shard(s) assigned, %d already committed, %d to score",
        cfg.worker,
        cfg.num_workers,
        len(mine),
        len(mine) - len(todo),
        len(todo),
    )
    validity = Validity()
    positions_total = stored_bytes = 0
    # The worker's quarantine so far (committed shards' markers) and the scope of the fraction check.
    quarantined: dict[str, dict] = {}
    todo_names = {e.name for e in todo}
    for e in mine:
        if e.name not in todo_names:
            quarantined.update(marker_quarantine(store.read_marker(shard_stem(e.name)) or {}))
    samples = sum(e.sequences for e in mine)
    budget = (samples, f"worker {cfg.worker}/{cfg.num_workers}'s {len(mine)} shard(s)")
    if todo:
        with VllmTeacher(teacher, vocab) as engine:  # stopped before returning (VllmTeacher.close)
            log.info("engine settings: %s", engine.settings())
            bar = progress(
                total=sum(sum(e.supervised_tokens.values()) for e in todo), desc="score", unit="pos"
            )
            for entry in todo:
                info, q = _score_shard(
                    ds, entry, store, engine, teacher, vocab, cfg, validity, bar, quarantined, budget
                )
                quarantined.update(q)
                positions_total += info["positions"]
                stored_bytes += info["bytes"]
            bar.close()
    check_fraction(quarantined, *budget, cfg.max_quarantine_fraction)  # also when nothing was left to do
    seconds = time.perf_counter() - t0
    return ScoreResult(
        root, len(todo), len(mine) - len(todo), positions_total, seconds, stored_bytes, validity,
        samples, quarantined,
    )  # fmt: skip


def _score_shard(
    ds,
    entry,
    store: TeacherStore,
    engine: VllmTeacher,
    teacher: TeacherConfig,
    vocab: int,
    cfg: ScoreConfig,
    validity: Validity,
    bar,
    prior: dict[str, dict],
    budget: tuple[int, str],
) -> tuple[dict, dict[str, dict]]:
    """Score, write and commit one shard; returns the marker and the shard's quarantined samples.

    A sample whose teacher output fails validation is quarantined (vpmoe/teacher/quarantine.py). The
    writer's arrays are sized before the first row is written (store.py), so a pass that meets a bad
    sample stops writing, scores the rest of the shard only to find every other bad sample, and the
    shard is scored again without them. Quarantine is rare (max_quarantine_fraction), so the second pass
    costs a small share of a run; buffering whole shards in memory instead would not scale (GBs per shard).
    `prior` and `budget` (samples, scope) are the worker's quarantine so far, for the fraction check."""
    t0 = time.perf_counter()
    stem = shard_stem(entry.name)
    shard = ds.read_shard(entry.name)
    sup = [shard.supervised_positions(i) for i in range(len(shard))]
    quarantined: dict[str, dict] = {}
    while True:
        keep = [s for s in range(len(shard)) if shard.sample_ids[s] not in quarantined]
        writer = store.begin_shard(
            stem, num_positions=int(sum(len(sup[s]) for s in keep)), num_sequences=len(keep)
        )
        try:
            run = Validity()
            found = _shard_pass(entry, shard, sup, keep, writer, engine, teacher, vocab, cfg, run, bar)
            if found:
                log.warning(
                    "shard %s: %d sample(s) failed teacher-output validation, quarantined; scoring the "
                    "shard again without them: %s", stem, len(found), found,
                )  # fmt: skip
                writer.abort()
                quarantined.update(found)
                # Over the limit: fail now (naming them), before the shard is scored again or committed.
                check_fraction({**prior, **quarantined}, *budget, cfg.max_quarantine_fraction)
                continue
            info = writer.commit(
                dataset_shard_sha256=entry.sha256,
                sample_ids=[shard.sample_ids[s] for s in keep],
                quarantined=[{"sample_id": sid, **e} for sid, e in quarantined.items()],
            )
        except BaseException:
            writer.abort()
            raise
        break
    # The run's figures count each position once: the committed pass, plus the quarantined samples.
    validity.checked += run.checked + sum(e["positions"] for e in quarantined.values())
    for e in quarantined.values():
        for reason, n in e["reasons"].items():
            validity.reject(reason, n, e["first"])
    dt = time.perf_counter() - t0
    log.info(
        "shard %s: %d sequences, %d positions in %.1f s (%.0f positions/s), %.1f bytes/position%s",
        stem, info["sequences"], info["positions"], dt, info["positions"] / dt, info["bytes"] / max(info["positions"], 1),
        f", {len(quarantined)} sample(s) quarantined" if quarantined else "",
    )  # fmt: skip
    return info, quarantined


def _shard_pass(
    entry, shard, sup, keep, writer, engine, teacher, vocab, cfg, validity, bar
) -> dict[str, dict]:
    """One pass over the samples `keep`: every valid sample written until the first invalid one, every
    sample validated. Returns the invalid ones as quarantine entries (empty: the writer holds the shard).
    A sampled store gets each validated sample's top-k rows drawn (sampling.sampled_rows), seeded by the
    sample id and teacher.seed."""
    k = teacher.k
    lengths = np.diff(shard.offsets)
    rejects = test_rejects()  # test-only (quarantine.TEST_REJECT_ENV); empty in every real run
    found: dict[str, dict] = {}
    i, checked = 0, False
    while i < len(keep):
        j, tokens = i, 0
        while j < len(keep) and (j == i or tokens + lengths[keep[j]] <= cfg.batch_tokens):
            tokens += lengths[keep[j]]
            j += 1
        outs = engine.score([shard.sequence(s)[0].tolist() for s in keep[i:j]])
        batch = []
        for s, lp in zip(keep[i:j], outs, strict=True):
            sid = shard.sample_ids[s]
            if sid in rejects:
                lp = corrupt_for_test(lp)
            v = Validity()
            rows = prompt_logprobs_to_rows(
                lp, shard.sequence(s)[0], sup[s], k, vocab, v, f"{entry.name} sample {sid}"
            )
            validity.checked += v.checked
            if v.rejected:
                first = next(iter(v.examples.values()))
                found[sid] = {"reasons": dict(v.rejected), "first": first, "positions": len(sup[s])}
            else:
                batch.append((s, rows))
        if not checked and sum(len(r["positions"]) for _, r in batch):
            _check_not_degenerate([r for _, r in batch], shard_stem(entry.name), vocab, cfg)
            checked = True  # before anything is written
        for s, rows in batch:
            if not found:  # after a bad sample nothing more is written: this pass's writer is discarded
                if teacher.storage == "sampled":
                    rows = _draw(rows, sample_key(shard.sample_ids[s], teacher.seed), teacher.samples)
                writer.add_sequence(**rows)
            bar.update(len(sup[s]))
        i = j
    return found


def _draw(rows: dict, key: int, samples: int) -> dict:
    """Top-k rows (convert.prompt_logprobs_to_rows) -> the rows of a sampled store (sampled_store.py)."""
    drawn = sampled_rows(rows["topk_ids"], rows["topk_logprobs"], rows["positions"], key, samples)
    return {"positions": rows["positions"], "target_logprob": rows["target_logprob"],
            "target_rank": rows["target_rank"], **drawn}  # fmt: skip


def _check_not_degenerate(batch: list[dict], stem: str, vocab: int, cfg: ScoreConfig) -> None:
    """Stop on a degenerate first batch (a teacher vLLM ran wrongly, issue 18) before hours are spent
    scoring it: the figures of the rows about to be written, raised as a `TeacherError`."""
    top1 = np.concatenate([r["topk_logprobs"][:, 0] for r in batch]).astype(np.float64)
    nll = -np.concatenate([r["target_logprob"] for r in batch]).astype(np.float64)
    why = degenerate_teacher(
        float(top1.mean()), float(nll.mean()), len(top1), vocab, cfg.min_top1_gain, cfg.max_target_nll_ratio
    )
    if why is not None:
        raise TeacherError(
            f"shard {stem}, first scored batch: {why}. Nothing was committed for this shard. A tied output "
            "layer that vLLM's GPT-OSS does not load is one cause (docs/teacher_store.md, 'Checked before "
            "any work'); check the teacher's weights, or lower score.min_top1_gain only for a teacher "
            "known to be this flat, or set score.max_target_nll_ratio=null only for one known to be random"
        )


def summary_lines(r: ScoreResult) -> list[str]:
    v = r.validity
    return [
        f"shards scored      {r.shards_scored} (skipped, already committed: {r.shards_skipped})",
        f"positions          {r.positions} in {r.seconds:.1f} s ({r.positions / max(r.seconds, 1e-9):,.0f} positions/s overall)",
        f"format validity    {v.checked} positions checked, {sum(v.rejected.values())} rejected {dict(v.rejected) or ''}".rstrip(),
        f"quarantined        {len(r.quarantined)} of {r.samples} samples"
        + (
            f" ({', '.join(list(r.quarantined)[:5])}{', ...' if len(r.quarantined) > 5 else ''})"
            if r.quarantined
            else ""
        ),
        f"bytes/position     {r.bytes_per_position:.1f}"
        if r.positions
        else "bytes/position     n/a (nothing scored)",
        f"store              {r.store}",
    ]
