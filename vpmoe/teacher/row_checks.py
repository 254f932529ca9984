"""One definition of a valid teacher row's log-probs, shared by the scorer's validation
(vpmoe/teacher/convert.py, before a row is stored) and the report's checks (vpmoe/report/checks.py, on
the stored rows), so a row the scorer accepts is a row the report passes (issue 17).

Sort order: a top-k row must be non-increasing, with no tolerance. vLLM's top-k is `torch.topk` over the
fp32 log-softmax, so its values come sorted exactly (ties allowed, never a rise); fp16 rounding, applied
when the row is stored, is monotone, so a sorted fp32 row stays sorted (ties allowed) in the store. A rise
of any size is therefore a broken engine or conversion, not rounding. (The scorer used to allow a 1e-4
rise, which let through rows the report then failed.)

Positive log-probs: the log-softmax may exceed 0 by rounding; `LOGPROB_TOLERANCE` bounds that. The report
takes its bound from `report.logprob_tolerance`, whose default is this constant.

Each function screens the whole block with one reduction (NaN never passes a screen) and builds per-row
masks only for a block that fails it: a clean block, the normal case, costs a few reductions. Non-finite
values are the job of a separate check (their comparisons are False here, so they are not counted twice).
"""

from __future__ import annotations

import numpy as np

# A log-prob may exceed 0 by rounding in the log-softmax; anything beyond this is a format error.
LOGPROB_TOLERANCE = 1e-4


def rising_rows(topk_logprobs: np.ndarray) -> np.ndarray | None:
    """Rows [n, k] whose top-k log-probs rise somewhere along the row (bool [n]); None when none does."""
    rises = topk_logprobs[:, 1:] > topk_logprobs[:, :-1]
    if not rises.any():
        return None
    return rises.any(axis=1)


def first_rise(row: np.ndarray) -> int:
    """Index j of the first rise (row[j] < row[j+1]) of a row that `rising_rows` flagged."""
    return int(np.flatnonzero(row[1:] > row[:-1])[0])


def positive_rows(
    topk_logprobs: np.ndarray, target_logprob: np.ndarray, tolerance: float
) -> np.ndarray | None:
    """Rows with a top-k or actual-token log-prob above `tolerance` (bool [n]); None when none has one."""
    tol = np.asarray(tolerance, topk_logprobs.dtype)
    # NaN fails this screen (a comparison with NaN is False), then is not counted by the exact mask.
    if topk_logprobs.max(initial=-np.inf) <= tol and target_logprob.max(initial=-np.inf) <= tol:
        return None
    with np.errstate(invalid="ignore"):
        bad = (topk_logprobs > tol).any(axis=1) | (target_logprob > tol)
    return bad if bad.any() else None
