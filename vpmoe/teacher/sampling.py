"""Sampled teacher rows (RS-KD, `teacher.storage: sampled`): N seeded draws per position from the teacher's
(k+1)-way distribution, kept as the unique ids drawn with their counts plus the tail count.

Anchor: Anshumann et al., "Sparse Logit Sampling: Accelerating Knowledge Distillation in LLMs" (ACL 2025).
Storing the counts c of N draws with replacement is unbiased where top-k truncation is not:
E[c_i / N] = p_i for every outcome i (multinomial means). Here the outcomes are the k ids vLLM returned and
the tail bucket "any other id", of mass 1 - sum_k p (vLLM gives no ids beyond its top-k), so the stored
c/N estimates the (k+1)-way distribution of the top-k store without bias, in ~12 unique ids per position
at N = 50 instead of k. What the loss makes of it, and the one place it is not the bucket loss in
expectation, is in docs/distillation_mechanics.md "Sampled teacher rows".

Determinism: the draws of position t of sample s are uniforms from a counter-based hash (splitmix64,
Steele et al. 2014, the mixer of Java's SplittableRandom) of (seed, sha256(s), t, draw index), so a rerun,
a resumed shard or another worker's batching gives byte-identical rows.

Rows are ragged: row r holds `row_unique[r]` (id, count) entries, flattened in row order and within a
row in the teacher's rank order; `tail_count[r]` draws fell in the bucket, and the counts of a row plus its
tail count sum to N. The trainer's batches take them padded to a fixed width with `NO_ID` (kernels' value
for "no id here": the loss skips it) and log-probability log(c / N).
"""

from __future__ import annotations

import hashlib

import numpy as np

NO_ID = -1  # = kernels.sparse_kl_head.NO_ID: a padded slot of a sampled row (no id, no probability)
MAX_SAMPLES = 255  # counts and per-row unique counts are stored as uint8

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


class SamplingError(ValueError):
    pass


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's output function on uint64 arrays (arithmetic wraps modulo 2^64)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def sample_key(sample_id: str, seed: int) -> int:
    """The 64-bit key of one sample's draws (seed and sample id, hashed)."""
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{sample_id}".encode()).digest()[:8], "little")


def uniforms(key: int, positions: np.ndarray, n: int) -> np.ndarray:
    """float64 [len(positions), n] in [0, 1): draw j of position t is a function of (key, t, j) only."""
    with np.errstate(over="ignore"):
        row = _mix64(np.uint64(key) ^ _mix64(np.asarray(positions, np.uint64)))
        bits = _mix64(row[:, None] + np.arange(n, dtype=np.uint64)[None, :] * _GOLDEN)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def draw_counts(topk_logprobs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """uint16 [rows, k + 1]: how many of the row's uniforms fell on each top-k id (columns 0..k-1, the
    row's rank order) and in the tail (column k), by inverse CDF over p_i = exp(log-prob) then the tail
    1 - sum p. A top-k summing above 1 by rounding has no tail; the uniforms are scaled to its sum."""
    p = np.exp(np.asarray(topk_logprobs, np.float64))
    rows, k = p.shape
    cdf = np.cumsum(p, axis=1)
    scale = np.maximum(cdf[:, -1:], 1.0) if k else np.ones((rows, 1))
    # outcome of a draw = the number of CDF steps at or below it: 0..k-1 an id, k the tail
    outcome = (u[:, :, None] * scale[:, :, None] >= cdf[:, None, :]).sum(axis=2)
    flat = (np.arange(rows)[:, None] * (k + 1) + outcome).ravel()
    return np.bincount(flat, minlength=rows * (k + 1)).reshape(rows, k + 1).astype(np.uint16)


def sampled_rows(
    topk_ids: np.ndarray, topk_logprobs: np.ndarray, positions: np.ndarray, key: int, samples: int
) -> dict[str, np.ndarray]:
    """One sequence's rows as stored: `row_unique` uint8 [rows], `sampled_ids` uint32 [entries] and
    `sampled_counts` uint8 [entries] (row by row, rank order within a row), `tail_count` uint8 [rows]."""
    if not 1 <= samples <= MAX_SAMPLES:
        raise SamplingError(f"teacher.samples must be in [1, {MAX_SAMPLES}], got {samples}")
    counts = draw_counts(topk_logprobs, uniforms(key, positions, samples))
    drawn = counts[:, :-1] > 0
    return {
        "row_unique": drawn.sum(axis=1).astype(np.uint8),
        "sampled_ids": np.asarray(topk_ids, np.uint32)[drawn],
        "sampled_counts": counts[:, :-1][drawn].astype(np.uint8),
        "tail_count": counts[:, -1].astype(np.uint8),
    }


def padded_rows(
    row_unique: np.ndarray, ids: np.ndarray, counts: np.ndarray, samples: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ragged rows -> (int32 [rows, width] ids padded with NO_ID, fp16 [rows, width] log(count / samples)
    padded with -inf): the shape of a top-k row, so the loader, batches and loss take them unchanged (the
    loss skips NO_ID slots; the bucket gets 1 - sum of the row's c / N = its tail count / N)."""
    rows = len(row_unique)
    n = np.asarray(row_unique, np.int64)
    if rows and int(n.max()) > width:
        raise SamplingError(f"a sampled row holds {int(n.max())} ids, more than the width {width}")
    out_ids = np.full((rows, width), NO_ID, np.int32)
    out_lp = np.full((rows, width), -np.inf, np.float16)
    if len(ids):
        row = np.repeat(np.arange(rows), n)
        col = np.arange(len(ids)) - np.repeat(np.cumsum(n) - n, n)
        out_ids[row, col] = ids
        out_lp[row, col] = np.log(np.asarray(counts, np.float64) / samples)
    return out_ids, out_lp
