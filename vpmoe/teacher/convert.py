"""vLLM prompt logprobs (as arrays) -> store rows, with format validation.

vLLM's prompt logprobs for a prompt of T tokens: one entry per prompt position i; entry 0 is empty;
entry i >= 1 holds k+1 items, the actual token i (with its full-vocab rank) followed by the top-k
(ranks 1..k, descending), all fp32 log-softmax over the full vocabulary. Entry i is the teacher's
distribution of token i given tokens < i. The student's position t predicts token t+1, so the row stored
for supervised position t is entry t+1, i.e. row t of `PromptLogprobArrays` (which has no row for entry 0).

The input is vLLM's own tensors (captured in `engine.py`), never its Python lists: converting those lists
to numpy costs ~35-40 ns per element (130 per position at k=64, ~5 us per position), more than the whole
per-position budget of the scorer's own work.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from vpmoe.teacher.row_checks import LOGPROB_TOLERANCE, positive_rows, rising_rows


class FormatError(ValueError):
    pass


@dataclass(frozen=True)
class PromptLogprobArrays:
    """One prompt's prompt logprobs as vLLM computed them (its `LogprobsTensors`, chunks concatenated).

    Row r is prompt entry r+1 (the distribution of token r+1): column 0 the actual token, columns 1..k the
    top-k in rank order."""

    token_ids: np.ndarray  # integer [T-1, k+1] (int32 from vLLM)
    logprobs: np.ndarray  # float32 [T-1, k+1]
    ranks: np.ndarray  # integer [T-1]: full-vocabulary rank of the actual token (1 = argmax)


@dataclass
class Validity:
    """Positions checked and rejected (by reason) over a run; first example per reason for the error."""

    checked: int = 0
    rejected: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def reject(self, reason: str, count: int, example: str) -> None:
        self.rejected[reason] += count
        self.examples.setdefault(reason, example)


def prompt_logprobs_to_rows(
    lp: PromptLogprobArrays,
    input_ids: np.ndarray,
    positions: np.ndarray,
    k: int,
    vocab_size: int,
    validity: Validity,
    where: str,
) -> dict:
    """Rows for supervised `positions` of one sequence. Invalid positions are counted in `validity`."""
    T = len(input_ids)
    n, width = lp.token_ids.shape
    if n + 1 != T or lp.logprobs.shape != (n, width) or lp.ranks.shape != (n,):
        validity.reject("entry_count", len(positions), f"{where}: {n + 1} entries for {T} tokens")
        raise FormatError(
            f"{where}: vLLM returned {n + 1} prompt-logprob entries for {T} tokens "
            f"(token ids {lp.token_ids.shape}, logprobs {lp.logprobs.shape}, ranks {lp.ranks.shape})"
        )
    if n and width != k + 1:
        validity.reject("entry_width", len(positions), f"{where} entry 1: {width} items, expected {k + 1}")
        raise FormatError(
            f"{where}: prompt-logprob entries have {width} items, expected k+1={k + 1} (is max_logprobs >= k?)"
        )
    ids = lp.token_ids[positions]  # entry t+1 lives at row t (entry 0 has no row)
    lps = lp.logprobs[positions]
    target_id, topk_ids = ids[:, 0], ids[:, 1:]
    target_lp, topk_lp = lps[:, 0].astype(np.float32), lps[:, 1:]
    target_rank = lp.ranks[positions]
    validity.checked += len(positions)
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
        "target_rank": target_rank.astype(np.uint32),  # >= 1, checked above
    }


def _validate(
    where, positions, input_ids, target_id, topk_ids, topk_lp, target_lp, target_rank, vocab_size, validity
) -> None:
    """Each check first asks one whole-array question that is True whenever any row is bad (comparisons
    are written so that NaN also answers True), and only then builds the exact per-row mask that counts
    and locates the bad rows. A clean sequence (the normal case) thus costs a few reductions per check
    instead of per-row temporaries: ~0.5 us per position at k=64 (benchmarks/bench_store.py)."""

    def check(reason: str, suspect: bool, bad_rows, what: str) -> None:
        if not suspect:
            return
        bad = bad_rows()
        if bad.any():
            first = int(positions[np.flatnonzero(bad)[0]])
            validity.reject(reason, int(bad.sum()), f"{where} position {first}: {what}")

    if not len(positions):
        return
    expected = input_ids[positions + 1]
    check(
        "misaligned",
        not np.array_equal(target_id, expected),
        lambda: target_id != expected,
        "actual token differs from input_ids[t+1]",
    )
    in_range = bool(topk_ids.min() >= 0) and bool(topk_ids.max() < vocab_size)
    check(
        "id_out_of_range",
        not in_range,
        lambda: ((topk_ids < 0) | (topk_ids >= vocab_size)).any(axis=1),
        f"top-k id outside [0, {vocab_size})",
    )
    # In range, ids fit int32, whose row sort is the fastest numpy has (AVX-512 sort: ~2 ns per id).
    s = np.sort(topk_ids.astype(np.int32) if in_range else topk_ids, axis=1)
    same = s[:, 1:] == s[:, :-1]
    check("duplicate_id", bool(same.any()), lambda: same.any(axis=1), "duplicate id in top-k")
    lo, hi = topk_lp.min(), topk_lp.max()  # NaN propagates through min and max
    tlo, thi = target_lp.min(), target_lp.max()
    check(
        "non_finite",
        not all(np.isfinite(x) for x in (lo, hi, tlo, thi)),
        lambda: ~(np.isfinite(topk_lp).all(axis=1) & np.isfinite(target_lp)),
        "non-finite log-prob",
    )
    # The log-prob checks are the report's too (row_checks.py: one definition, one tolerance each).
    positive = positive_rows(topk_lp, target_lp, LOGPROB_TOLERANCE)
    check("positive_logprob", positive is not None, lambda: positive, "log-prob > 0")
    rising = rising_rows(topk_lp)
    check("unsorted", rising is not None, lambda: rising, "top-k not in descending order")
    check("bad_rank", not (target_rank.min() >= 1), lambda: target_rank < 1, "rank < 1")


def check_nll_ratio(ratio: float | None) -> None:
    """The range of `max_target_nll_ratio` (ScoreConfig, ReportConfig): None or (0, 10]."""
    if ratio is not None and not 0.0 < ratio <= 10.0:
        raise ValueError(f"max_target_nll_ratio must be null or in (0, 10] (x ln(vocab)), got {ratio}")


def degenerate_teacher(
    top1_logprob_mean: float,
    nll_mean: float,
    rows: int,
    vocab: int,
    min_top1_gain: float,
    max_target_nll_ratio: float | None,
) -> str | None:
    """Why rows look like a teacher that was run wrongly, or None (issue 18). Two signs, either fails:

    - near-uniform output: the gain, the mean over rows of log(p_top1 / (1/vocab)) = top-1 log-prob +
      ln(vocab), is below `min_top1_gain` nats. It is exactly 0 for uniform rows (a zero output layer:
      vpmoe/teacher/engine.py check_untied_output_layer) and > 0 for any other distribution; 2 sits far
      from both ends (the tiny test teacher measures 11.5-11.6 per shard, top-1 probability 0.1 is 9.9).
    - the actual tokens' mean NLL at or above `max_target_nll_ratio` x ln(vocab), a uniform distribution's
      NLL: a teacher that predicts the text no better than uniform, however peaked (wrong or random
      weights). None: not judged, only for a teacher known to be random: the tiny test teacher's NLL on
      real text is 25-29 nats, about 2.1 x ln(vocab), while a trained one's is a few nats.

    NaN figures fail (never pass silently)."""
    uniform = float(np.log(vocab))
    gain = top1_logprob_mean + uniform
    figures = (
        f"mean top-1 log-prob {top1_logprob_mean:.4f}, {gain:.4f} nats above a uniform distribution's "
        f"-ln({vocab}) = {-uniform:.4f}; mean actual-token NLL {nll_mean:.4f}"
    )
    if not gain >= min_top1_gain:
        return (
            f"near-uniform teacher output over {rows} rows: {figures} (threshold: a top-1 log-prob at least "
            f"min_top1_gain={min_top1_gain} nats above uniform)"
        )
    return target_nll_reason(nll_mean, rows, vocab, max_target_nll_ratio, figures)


def target_nll_reason(
    nll_mean: float, rows: int, vocab: int, max_target_nll_ratio: float | None, figures: str = ""
) -> str | None:
    """The second sign of `degenerate_teacher` alone (sampled stores have no top-1 log-prob to judge)."""
    bound = None if max_target_nll_ratio is None else max_target_nll_ratio * float(np.log(vocab))
    if bound is None or nll_mean < bound:
        return None
    return (
        f"the teacher predicts the actual tokens no better than a uniform distribution over {rows} rows: "
        f"{figures or f'mean actual-token NLL {nll_mean:.4f}'}, at or above max_target_nll_ratio="
        f"{max_target_nll_ratio} x ln({vocab}) = {bound:.4f} (wrong or random weights)"
    )
