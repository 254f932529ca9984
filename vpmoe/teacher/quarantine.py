"""Quarantined samples: a sample whose teacher output fails validation is left out of its shard (issue 17).

One bad sample used to abort the scorer, and the deterministic rerun hit it again, so its shard could
never be committed. Now the sample is quarantined instead: the shard is committed without it and its
commit marker lists it, with the reasons, under `quarantined` (docs/teacher_store.md, "Quarantine").

Where the record lives: in the shard's commit marker only. The marker is the one atomic commit point of
a shard (vpmoe/utils/atomic.py `commit_file`), so the list can never disagree with the rows it describes;
a store-wide list (`quarantine.jsonl`) would be written by many workers at once, and object storage has
no append, so it would need its own commit protocol and could be left behind by a crash between the two
writes. `store_quarantine` reads the store-wide view off the markers.

The marker's `sequences`, `positions` and `sample_ids_sha256` describe what is stored: the dataset shard's
samples minus the quarantined ones, in shard order (`kept_rows`). Everything that pairs store rows with
dataset samples (the store reader, the report, the trainer's sample index) goes through `kept_rows`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np

from vpmoe.teacher.convert import FormatError
from vpmoe.teacher.store import MARKER_SUFFIX, SHARDS, StoreError

# TEST-ONLY. Comma-separated sample ids whose real teacher output the scorer corrupts (reverses each
# top-k row, so the validator rejects it as `unsorted`) before validating it: the one way tests make a
# real vLLM output fail validation. Read here only (`test_rejects`); no config sets it.
TEST_REJECT_ENV = "VPMOE_TEST_REJECT_SAMPLES"


class QuarantineError(FormatError):
    """More samples quarantined than `score.max_quarantine_fraction` allows."""


def test_rejects() -> frozenset[str]:
    """The sample ids named by the test-only `VPMOE_TEST_REJECT_SAMPLES` (empty when unset)."""
    raw = os.environ.get(TEST_REJECT_ENV, "")
    return frozenset(s for s in (x.strip() for x in raw.split(",")) if s)


def corrupt_for_test(lp):
    """A real `PromptLogprobArrays` with every top-k row reversed (ids and log-probs together): ascending
    rows, which the validator rejects as `unsorted` (test-only, see `TEST_REJECT_ENV`)."""
    ids, lps = lp.token_ids.copy(), lp.logprobs.copy()
    ids[:, 1:], lps[:, 1:] = ids[:, :0:-1], lps[:, :0:-1]
    return dataclasses.replace(lp, token_ids=ids, logprobs=lps)


def marker_quarantine(marker: Mapping) -> dict[str, dict]:
    """{sample id: {"reasons": {reason: rows}, "first": example}} from a commit marker (empty if none)."""
    entries = marker.get("quarantined", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "sample_id" in e for e in entries):
        raise StoreError(f"marker of shard {marker.get('shard')}: `quarantined` is not a list of samples")
    return {e["sample_id"]: {k: v for k, v in e.items() if k != "sample_id"} for e in entries}


def kept_rows(sample_ids: list[str], quarantined: Collection[str], where: str) -> np.ndarray:
    """Rows (indices into the dataset shard's `sample_ids`) the store holds: all but the quarantined,
    in shard order. A quarantined id that is not in the shard is an error, never ignored."""
    unknown = set(quarantined) - set(sample_ids)
    if unknown:
        raise StoreError(f"{where}: quarantined sample(s) not in the dataset shard: {sorted(unknown)[:5]}")
    return np.array([i for i, s in enumerate(sample_ids) if s not in quarantined], dtype=np.int64)


def subset_shard(shard, rows: np.ndarray):
    """The prepared shard restricted to `rows` (a `PreparedShard` of those sequences, in that order)."""
    if len(rows) == len(shard):
        return shard
    lengths = np.diff(shard.offsets)[rows]
    tokens = (
        np.concatenate([np.arange(shard.offsets[i], shard.offsets[i + 1]) for i in rows]) if len(rows) else []
    )
    tokens = np.asarray(tokens, np.int64)
    return dataclasses.replace(
        shard,
        sample_ids=[shard.sample_ids[i] for i in rows],
        languages=[shard.languages[i] for i in rows],
        exercises=[shard.exercises[i] for i in rows],
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        input_ids=shard.input_ids[tokens],
        token_spans=shard.token_spans[tokens],
        labels=shard.labels[tokens],
    )


def store_quarantine(store_root: str | Path) -> dict[str, dict]:
    """Every quarantined sample of a store, read off its commit markers: {sample id: entry + shard}."""
    out = {}
    for marker in sorted((Path(store_root) / SHARDS).glob(f"*{MARKER_SUFFIX}")):
        info = json.loads(marker.read_text())
        for sid, e in marker_quarantine(info).items():
            out[sid] = {"shard": info.get("shard"), **e}
    return out


def check_fraction(quarantined: Mapping[str, Mapping], samples: int, scope: str, max_fraction: float) -> None:
    """Raise `QuarantineError` naming the samples when more than `max_fraction` of `samples` are
    quarantined: that many bad teacher rows means the teacher or the engine is broken, not a sample."""
    if len(quarantined) <= max_fraction * samples:
        return
    named = "; ".join(
        f"{sid} ({', '.join(f'{r} x{n}' for r, n in e.get('reasons', {}).items())}: {e.get('first', '')})"
        for sid, e in list(quarantined.items())[:10]
    )
    more = f" and {len(quarantined) - 10} more" if len(quarantined) > 10 else ""
    raise QuarantineError(
        f"{len(quarantined)} of {samples} samples of {scope} failed teacher-output validation "
        f"({len(quarantined) / max(samples, 1):.4%} > score.max_quarantine_fraction={max_fraction}): "
        f"{named}{more}. The shard holding the last of them was not committed; fix the teacher or the "
        "engine, or raise score.max_quarantine_fraction if these samples are known bad"
    )
