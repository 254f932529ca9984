"""The report's checks: their names (stable keys of report.json), the findings log, and the vectorized
value checks of one block of rows.

A finding names the shard and, where there is one, the first bad row: its row index in the shard, the
sample id and the position t within that sample (the row holds the teacher's distribution of token t+1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vpmoe.report.stats import FP16_REL
from vpmoe.teacher.row_checks import first_rise, positive_rows, rising_rows

# Ordered: the Markdown report lists them in this order.
CHECKS = {
    "shards_committed": "every shard of the dataset manifest has a commit marker naming its dataset shard's sha256",
    "no_extra_shards": "shards/ holds nothing else: no marker or group outside the manifest, no stale marker "
    "(other dataset shard sha256), no uncommitted temp directory",
    "checksums": "every file of a committed shard has the sha256 its marker records; none missing or extra",
    "provenance": "root attributes present; dataset manifest hash and tokenizer equal the dataset's; "
    "k, dtype, vocab and scoring-config hash consistent (root, markers, arrays)",
    "readable": "every array present with its dtype and shape, every chunk decodes (crc32c), valid id code table",
    "alignment": "per sequence, stored positions equal the prepared shard's supervised positions; "
    "seq_offsets, marker counts and sample ids agree with the dataset",
    "ids_in_range": "top-k ids in [0, padded vocab)",
    "unique_ids": "no id twice in a top-k row",
    "finite": "top-k and actual-token log-probs finite",
    "nonpositive": "every log-prob <= logprob_tolerance (the scorer's check, vpmoe/teacher/row_checks.py)",
    "rank_order": "top-k log-probs non-increasing along each row, no tolerance (the scorer's check)",
    "topk_mass": "top-k probability mass <= 1 + mass_tolerance + fp16 rounding bound",
    "target_consistent": "actual-token log-prob equals the top-k entry of that token where it appears "
    "(fp16 tolerance), and its rank agrees with the row",
    "teacher_not_degenerate": "per shard, the mean top-1 log-prob is at least min_top1_gain nats above a "
    "uniform distribution's -ln(vocab), and the actual tokens' mean NLL below max_target_nll_ratio x ln(vocab): "
    "not the near-uniform rows of a teacher the engine ran wrongly, nor a teacher no better than uniform",
}
# A sampled store (vpmoe/teacher/sampled_store.py) holds drawn ids and counts, no log-probs: its checks
# are these (the row checks on its ids and actual-token values, and its own count and mass checks).
STORE_LEVEL = ("shards_committed", "no_extra_shards", "checksums", "provenance", "readable", "alignment")
SAMPLED_CHECKS = {
    **{name: CHECKS[name] for name in STORE_LEVEL},
    "ids_in_range": "drawn ids in [0, padded vocab)",
    "unique_ids": "no id twice in a sampled row",
    "finite": "actual-token log-probs finite",
    "nonpositive": "actual-token log-probs <= logprob_tolerance, ranks >= 1",
    "sampled_counts": "every drawn id's count >= 1; a row's counts plus its tail count = N (scoring_config.samples); "
    "row_unique adds up to the sequence's entries (seq_entry_offsets)",
    "teacher_not_degenerate": "per shard, the mean drawn mass (1 - tail draws / N, the top-k mass estimate) is at "
    "least e^min_top1_gain times a uniform distribution's k / vocab, and the actual tokens' mean NLL below "
    "max_target_nll_ratio x ln(vocab): not the near-uniform rows of a teacher the engine ran wrongly, nor a "
    "teacher no better than uniform",
}
CHECKS_BY_STORAGE = {"topk": CHECKS, "sampled": SAMPLED_CHECKS}  # the check list of each store kind
ROOT = "(root)"  # the shard name of findings about the store as a whole (root attributes)


@dataclass
class Finding:
    count: int
    first: dict  # row, sample_id, position (None where not applicable) and detail


@dataclass
class CheckLog:
    """Findings per check of one store kind: `checks` is CHECKS (top-k stores) or SAMPLED_CHECKS."""

    checks: dict[str, str] = field(default_factory=lambda: CHECKS)
    findings: dict[str, dict[str, Finding]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.use(self.checks)

    def use(self, checks: dict[str, str]) -> None:
        """Switch to another store kind's checks (once the root attributes say which), keeping findings."""
        self.checks = checks
        self.findings = {c: self.findings.get(c, {}) for c in checks}
        self.notes = {c: self.notes.get(c, []) for c in checks}

    def fail(self, check: str, shard: str, detail: str, *, count: int = 1, where: dict | None = None) -> None:
        f = self.findings[check].get(shard)
        if f is None:
            first = {"row": None, "sample_id": None, "position": None, **(where or {}), "detail": detail}
            self.findings[check][shard] = Finding(count, first)
        else:
            f.count += count

    def note(self, check: str, text: str) -> None:
        self.notes[check].append(text)

    def merge(self, other: CheckLog) -> None:
        """Add another log's findings (another shard's: shards do not overlap, counts add if they do)."""
        for check in self.checks:
            for shard, f in other.findings[check].items():
                if shard in self.findings[check]:
                    self.findings[check][shard].count += f.count
                else:
                    self.findings[check][shard] = f
            self.notes[check].extend(other.notes[check])

    def failed(self) -> list[str]:
        return [c for c in self.checks if self.findings[c]]

    def to_dict(self) -> dict:
        out = {}
        for c, desc in self.checks.items():
            shards = self.findings[c]
            out[c] = {
                "description": desc,
                "passed": not shards,
                "failures": sum(f.count for f in shards.values()),
                "shards": {s: {"count": f.count, "first": f.first} for s, f in shards.items()},
                "notes": self.notes[c],
            }
        return out


@dataclass
class RowBlock:
    """Rows [start, start+n) of one shard, decoded."""

    start: int
    topk_ids: np.ndarray  # uint32 [n, k]
    topk_logprobs: np.ndarray  # float16 [n, k]
    target_logprob: np.ndarray  # float32 [n]
    target_rank: np.ndarray  # uint32 [n]
    targets: np.ndarray | None  # uint32 [n] actual next token from the dataset; None when not aligned


@dataclass
class Decoded:
    """fp32 views of a block shared by the checks and the statistics."""

    x: np.ndarray  # log-probs fp32 [n, k]
    p: np.ndarray  # probabilities [n, k]
    mass: np.ndarray  # [n]
    h_topk: np.ndarray  # -sum p log p over the top-k [n]


def decode(block: RowBlock) -> Decoded:
    x = block.topk_logprobs.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        p = np.exp(x)
        ones = np.ones(x.shape[1], np.float32)
        mass = p @ ones
        h_topk = -np.einsum("ij,ij->i", p, x)
    return Decoded(x, p, mass, h_topk)


def value_failures(
    block: RowBlock, d: Decoded, *, vocab: int, logprob_tolerance: float, mass_tolerance: float
) -> dict[str, tuple[np.ndarray, Callable[[int], str]]]:
    """The value checks that fail in this block: {check: (bad rows [n] bool, detail(i) for bad row i)}.

    Each check first runs a block-wide screen (flat reductions, a few ns per position) that proves it
    holds for every row; only a block that fails a screen pays for the exact per-row masks. A screen
    may fail where the exact check passes (ties, exp overflow), never the reverse."""
    ids, x, tlp = block.topk_ids, d.x, block.target_logprob
    k = x.shape[1]
    tol = np.float32(logprob_tolerance)
    out = {}
    if not len(tlp):
        return out

    if ids.max() >= vocab:
        out["ids_in_range"] = (
            (ids >= vocab).any(axis=1),
            lambda i: f"id {int(ids[i][ids[i] >= vocab][0])} outside [0, {vocab})",
        )
    s = np.sort(ids.view(np.int32), axis=1)  # ids < 2^31: the int32 view sorts like the values
    dup = s[:, 1:] == s[:, :-1]
    if dup.any():
        out["unique_ids"] = (dup.any(axis=1), lambda i: f"id {int(s[i, 1:][dup[i]][0])} appears twice")

    # Screen: a NaN or inf log-prob makes the row's mass (inf, NaN) or top-k entropy (0 * -inf) NaN.
    if not (np.isfinite(d.mass).all() and np.isfinite(d.h_topk).all() and np.isfinite(tlp).all()):
        # Exact: exponent bits all ones = inf or NaN, read off the fp16 bits.
        u = block.topk_logprobs.view(np.uint16)
        nonfinite = ((u & np.uint16(0x7C00)) == np.uint16(0x7C00)).any(axis=1) | ~np.isfinite(tlp)
        if nonfinite.any():
            out["finite"] = (
                nonfinite,
                lambda i: f"top-k log-probs {_first_values(x[i], ~np.isfinite(x[i]))}, "
                f"actual-token log-prob {tlp[i]}",
            )

    # nonpositive and rank_order are the scorer's own checks (vpmoe/teacher/row_checks.py), so a row the
    # scorer stored passes them; fp16 rounding is monotone, so rows sorted in fp32 stay sorted (ties
    # allowed) after rounding.
    positive = positive_rows(x, tlp, logprob_tolerance)
    if positive is not None:
        out["nonpositive"] = (
            positive,
            lambda i: f"log-prob > {logprob_tolerance}: top-k {_first_values(x[i], x[i] > tol)}, "
            f"actual-token {tlp[i]:.6g}",
        )
    rising = rising_rows(x)
    if rising is not None:

        def rise(i: int) -> str:
            j = first_rise(x[i])
            return f"log-prob rises from rank {j + 1} to {j + 2} ({x[i, j]:.6g} -> {x[i, j + 1]:.6g})"

        out["rank_order"] = (rising, rise)

    # Rounding each log-prob lp to fp16 scales its probability by at most exp(|lp| 2^-11), so the stored
    # mass exceeds the true one by about 2^-11 sum p |lp| = 2^-11 H_topk (first order).
    limit = np.float32(1.0 + mass_tolerance) + np.float32(FP16_REL) * np.nan_to_num(d.h_topk)
    over = d.mass > limit
    if over.any():
        out["topk_mass"] = (over, lambda i: f"top-k mass {d.mass[i]:.6g} > {limit[i]:.6g}")

    if block.targets is not None and not _targets_screen(block, x, k, tol):
        bad, detail = _target_checks(block, x, k, tol)
        if bad.any():
            out["target_consistent"] = (bad, detail)
    return out


def _targets_screen(block: RowBlock, x: np.ndarray, k: int, tol: np.float32) -> bool:
    """True only if `_target_checks` passes every row. It does when each appearance of the actual token
    in its row sits at index rank-1 (counted: appearances == such hits), every rank <= k row has such a
    hit with a matching log-prob, and every rank > k row's log-prob is at most the k-th's."""
    ids, tlp, trank, targets = block.topk_ids, block.target_logprob, block.target_rank, block.targets
    rows = np.arange(len(tlp))
    in_k = (trank >= 1) & (trank <= k)
    idx = np.clip(trank.astype(np.int64), 1, k) - 1
    hit = in_k & (ids[rows, idx] == targets)
    if not hit[in_k].all() or np.count_nonzero(ids == targets[:, None]) != np.count_nonzero(hit):
        return False
    tol_row = np.abs(tlp) * np.float32(FP16_REL) + tol
    with np.errstate(invalid="ignore"):
        value_ok = np.abs(x[rows, idx] - tlp) <= tol_row
        below_ok = tlp <= x[:, k - 1] + tol_row
    return bool((trank >= 1).all() and value_ok[hit].all() and below_ok[~in_k].all())


def _target_checks(block: RowBlock, x: np.ndarray, k: int, tol: np.float32):
    """The actual token t+1 (from the dataset) against the row. vLLM's rank is the count of full-vocab
    log-probs >= the token's, so: where the token is in the row its stored log-prob matches that entry;
    rank <= k means the token must be in the row, with the entry at index rank-1 equal to its log-prob;
    rank > k means its log-prob is at most the k-th's. Tolerance: fp16 rounding plus logprob_tolerance."""
    ids, tlp, trank, targets = block.topk_ids, block.target_logprob, block.target_rank, block.targets
    n = len(tlp)
    rows = np.arange(n)
    eq = ids == targets[:, None]
    present = eq.any(axis=1)
    at = x[rows, eq.argmax(axis=1)]
    tol_row = np.abs(tlp) * np.float32(FP16_REL) + tol
    with np.errstate(invalid="ignore"):
        bad_value = present & (np.abs(at - tlp) > tol_row)
        in_k = (trank >= 1) & (trank <= k)
        at_rank = x[rows, np.clip(trank.astype(np.int64) - 1, 0, k - 1)]
        bad_rank = (trank < 1) | (in_k & (~present | (np.abs(at_rank - tlp) > tol_row)))
        bad_rank |= ~in_k & (trank >= 1) & (tlp > x[:, k - 1] + tol_row)
    bad = bad_value | bad_rank

    def detail(i: int) -> str:
        where = f"in the row at rank {int(eq[i].argmax()) + 1}" if present[i] else "not in the row"
        return (
            f"token {int(targets[i])} {where}: stored log-prob {tlp[i]:.6g}, rank {int(trank[i])}; "
            f"row entry {at[i] if present[i] else float('nan'):.6g}, k-th {x[i, k - 1]:.6g}"
        )

    return bad, detail


def _first_values(row: np.ndarray, mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    if not len(idx):
        return "ok"
    return ", ".join(f"rank {j + 1}: {row[j]}" for j in idx[:3])
