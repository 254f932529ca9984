"""vLLM prompt logprobs -> store rows, with format validation.

vLLM's prompt logprobs (flat form, `FlatLogprobs`): one entry per prompt position i; entry 0 is empty;
entry i >= 1 holds k+1 items, the actual token i (with its full-vocab rank) followed by the top-k
(ranks 1..k, descending), all fp32 log-softmax over the full vocabulary. Entry i is the teacher's
distribution of token i given tokens < i. The student's position t predicts token t+1, so the row stored
for supervised position t is entry t+1.
"""

from __future__ import annotations

import array
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

# A top-k log-prob may exceed 0 by rounding in the log-softmax; anything beyond this is a format error.
LOGPROB_TOLERANCE = 1e-4


class FormatError(ValueError):
    pass


@dataclass
class Validity:
    """Positions checked and rejected (by reason) over a run; first example per reason for the error."""

    checked: int = 0
    rejected: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def reject(self, reason: str, count: int, example: str) -> None:
        self.rejected[reason] += count
        self.examples.setdefault(reason, example)


def flat_to_rows(
    flat,
    input_ids: np.ndarray,
    positions: np.ndarray,
    k: int,
    vocab_size: int,
    validity: Validity,
    where: str,
) -> dict:
    """Rows for supervised `positions` of one sequence. Invalid positions are counted in `validity`."""
    T = len(input_ids)
    starts = np.asarray(flat.start_indices, dtype=np.int64)
    ends = np.asarray(flat.end_indices, dtype=np.int64)
    if len(starts) != T:
        validity.reject("entry_count", len(positions), f"{where}: {len(starts)} entries for {T} tokens")
        raise FormatError(f"{where}: vLLM returned {len(starts)} prompt-logprob entries for {T} tokens")
    widths = ends[1:] - starts[1:]
    if (widths != k + 1).any():
        bad = int(np.flatnonzero(widths != k + 1)[0]) + 1
        validity.reject(
            "entry_width", len(positions), f"{where} entry {bad}: {widths[bad - 1]} items, expected {k + 1}"
        )
        raise FormatError(
            f"{where}: prompt-logprob entry {bad} has {widths[bad - 1]} items, expected k+1={k + 1} (is max_logprobs >= k?)"
        )
    base = int(starts[1])
    # array.array reads a list of Python ints/floats ~20% faster than np.asarray (benchmarks/bench_store.py).
    ids = np.frombuffer(array.array("q", flat.token_ids), dtype=np.int64)[base:].reshape(T - 1, k + 1)
    lps = np.frombuffer(array.array("d", flat.logprobs), dtype=np.float64)[base:].reshape(T - 1, k + 1)
    rows = positions  # entry t+1 lives at row t of the reshaped arrays (entry 0 has no row)
    target_id = ids[rows, 0]
    topk_ids = ids[rows, 1:]
    topk_lp = lps[rows, 1:]
    target_lp = lps[rows, 0].astype(np.float32)
    ranks_all = flat.ranks
    target_rank = np.fromiter(
        (ranks_all[base + (k + 1) * int(r)] for r in rows), dtype=np.int64, count=len(rows)
    )
    validity.checked += len(rows)
    _validate(
        where,
        positions,
        input_ids,
        target_id,
        topk_ids,
        topk_lp,
        target_lp,
        target_rank,
        vocab_size,
        validity,
    )
    return {
        "positions": positions.astype(np.int32),
        "topk_ids": topk_ids.astype(np.uint32),  # range-checked above
        "topk_logprobs": topk_lp.astype(np.float16),
        "target_logprob": target_lp,
        "target_rank": target_rank.astype(np.uint32),
    }


def _validate(
    where, positions, input_ids, target_id, topk_ids, topk_lp, target_lp, target_rank, vocab_size, validity
) -> None:
    def check(reason: str, bad: np.ndarray, what: str) -> None:
        if bad.any():
            first = int(positions[np.flatnonzero(bad)[0]])
            validity.reject(reason, int(bad.sum()), f"{where} position {first}: {what}")

    check("misaligned", target_id != input_ids[positions + 1], "actual token differs from input_ids[t+1]")
    check(
        "id_out_of_range",
        ((topk_ids < 0) | (topk_ids >= vocab_size)).any(axis=1),
        f"top-k id outside [0, {vocab_size})",
    )
    s = np.sort(topk_ids.astype(np.int32), axis=1)  # int32 sorts ~2x faster than int64
    check("duplicate_id", (s[:, 1:] == s[:, :-1]).any(axis=1), "duplicate id in top-k")
    finite = np.isfinite(topk_lp).all(axis=1) & np.isfinite(target_lp)
    check("non_finite", ~finite, "non-finite log-prob")
    check(
        "positive_logprob",
        (topk_lp > LOGPROB_TOLERANCE).any(axis=1) | (target_lp > LOGPROB_TOLERANCE),
        "log-prob > 0",
    )
    check(
        "unsorted",
        (np.diff(topk_lp, axis=1) > LOGPROB_TOLERANCE).any(axis=1),
        "top-k not in descending order",
    )
    check("bad_rank", target_rank < 1, "rank < 1")
