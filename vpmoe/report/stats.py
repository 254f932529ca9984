"""Per-position statistics of a teacher store, accumulated as fixed-bin histograms.

Every metric is binned into `FINE_BINS` bins of a fixed range (linear, log10 or log2 scale), one
histogram per group (span type, language, exercise), with `np.bincount`: one pass, constant memory, no
per-position Python. Quantiles are read off the fine histograms (resolution: one fine bin, see
`METRICS`); means are exact (summed alongside). The coarse histograms in report.json and the PNGs merge
`FINE_BINS / hist_bins` adjacent fine bins.

Entropy estimator (nats). With top-k probabilities p_1 >= ... >= p_k and tail mass m = 1 - sum p_i:
    H_topk = -sum_i p_i log p_i
    H      = H_topk + max(-m log m, -m log p_k)
The tail's true contribution is -m log m + m H(q) (q: the tail renormalised). Every tail token has
p <= p_k, so H(q) >= log(m / p_k) (min-entropy bound), and H(q) >= 0; the estimate takes the larger of
the two lower bounds, so it is a lower bound on the full-vocabulary entropy, exact when the tail is one
token or spread over tokens of probability p_k. Since H(q) <= log(V - k) (the tail spread uniformly over
the V - k other ids), the gap to the true value is at most m (log(V - k) - max(0, log(m / p_k))).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FINE_BINS = 1000
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
# fp16 has a 10-bit mantissa: round-to-nearest moves a value by at most 2^-11 of itself.
FP16_REL = 2.0**-11


@dataclass(frozen=True)
class Binning:
    """FINE_BINS equal bins over [lo, hi] of the transformed value (clipped into the end bins)."""

    scale: str  # linear | log10 | log2
    lo: float
    hi: float
    integer: bool = False  # values are integers (ranks): quantiles report the smallest integer in the bin

    def transform(self, v: np.ndarray) -> np.ndarray:
        if self.scale == "linear":
            return v
        with np.errstate(divide="ignore"):
            return np.log10(v) if self.scale == "log10" else np.log2(v)

    def index(self, v: np.ndarray) -> np.ndarray:
        t = self.transform(v.astype(np.float32, copy=False))
        i = (t - np.float32(self.lo)) * np.float32(FINE_BINS / (self.hi - self.lo))
        # -inf (log of 0) and below-range values go to bin 0, above-range ones to the last bin.
        np.clip(i, 0, FINE_BINS - 1, out=i)
        return i.astype(np.int32)

    def real(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        if self.scale == "linear":
            return t
        return 10.0**t if self.scale == "log10" else 2.0**t

    def edges(self, bins: int = FINE_BINS) -> np.ndarray:
        return self.real(np.linspace(self.lo, self.hi, bins + 1))

    def representative(self, b: int) -> float:
        """The value a quantile falling in fine bin b reports. The first bin of a log10 scale also holds
        everything below its range (exact zeros included) and reports 0."""
        if b == 0 and self.scale == "log10":
            return 0.0
        lo_edge = self.lo + (self.hi - self.lo) * b / FINE_BINS
        if self.integer:
            return float(np.ceil(self.real(lo_edge) - 1e-9))
        return float(self.real(lo_edge + (self.hi - self.lo) / FINE_BINS / 2))


@dataclass(frozen=True)
class Metric:
    name: str
    binning: Binning
    unit: str
    description: str


LOG2_VOCAB_CEIL = 18.0  # 2^18 = 262144 > 201088: every full-vocabulary rank fits

METRICS = (
    Metric("top1_prob", Binning("linear", 0.0, 1.0), "prob", "probability of the teacher's argmax token"),
    Metric("topk_mass", Binning("linear", 0.0, 1.0), "prob", "sum of the k stored probabilities"),
    Metric(
        "tail_mass",
        Binning("log10", -10.0, 0.0),
        "prob",
        "1 - top-k mass (clipped at 0), log-binned; quantiles below 1e-10 (exact 0 included) read 0",
    ),
    Metric(
        "entropy",
        Binning("linear", 0.0, 12.5),
        "nats",
        "top-k entropy plus a tail term (lower bound; see docs/teacher_store.md)",
    ),
    Metric(
        "target_rank",
        Binning("log2", 0.0, LOG2_VOCAB_CEIL, integer=True),
        "rank",
        "full-vocabulary rank of the actual next token (1 = argmax), log-binned; exact up to about 80",
    ),
    Metric(
        "target_nll",
        Binning("linear", 0.0, 40.0),
        "nats",
        "-log p(actual next token): the teacher's cross-entropy on the data; values above 40 in the last bin",
    ),
)
METRIC_NAMES = tuple(m.name for m in METRICS)


def row_metrics(p: np.ndarray, x: np.ndarray, mass: np.ndarray, h_topk: np.ndarray, tlp, trank) -> dict:
    """Per-row metrics from one block: p = exp(x) [n, k] fp32, mass and h_topk [n] (see module doc)."""
    tail = np.maximum(np.float32(1.0) - mass, np.float32(0.0))
    pk = np.maximum(p[:, -1], np.float32(1e-30))
    with np.errstate(divide="ignore", invalid="ignore"):
        by_tail = np.where(tail > 0, -tail * np.log(np.maximum(tail, np.float32(1e-30))), np.float32(0.0))
    by_pk = -tail * np.log(pk)
    return {
        "top1_prob": p[:, 0],
        "topk_mass": mass,
        "tail_mass": tail,
        "entropy": h_topk + np.maximum(by_tail, by_pk),
        "target_rank": trank,
        "target_nll": -tlp,
    }


class StatsAccumulator:
    """Histograms per group of each grouping (span, language, exercise), and exact sums and counts per
    joint cell (span x language x exercise, marginalised in `summary`): per metric one bincount per
    grouping plus one weighted bincount per add, on blocks of tens of thousands of rows."""

    def __init__(self, groupings: dict[str, list[str]]) -> None:
        self.groupings = groupings
        self.sizes = [len(g) for g in groupings.values()]
        self.num_cells = int(np.prod(self.sizes))
        self.hist = {
            m.name: {g: np.zeros(len(v) * FINE_BINS, np.int64) for g, v in groupings.items()} for m in METRICS
        }
        self.sums = {m.name: np.zeros(self.num_cells, np.float64) for m in METRICS}
        self.counts = np.zeros(self.num_cells, np.int64)
        self.rank1 = np.zeros(self.num_cells, np.int64)
        self.in_topk = np.zeros(self.num_cells, np.int64)

    def add(self, codes: dict[str, np.ndarray], metrics: dict[str, np.ndarray], k: int) -> None:
        """codes[grouping]: each row's group index within that grouping (int32 [n])."""
        if not len(metrics["top1_prob"]):
            return
        cell = np.zeros(len(metrics["top1_prob"]), np.int64)
        for name, size in zip(self.groupings, self.sizes, strict=True):
            cell = cell * size + codes[name]
        fine = {name: codes[name].astype(np.int32) * np.int32(FINE_BINS) for name in self.groupings}
        for m in METRICS:
            v = metrics[m.name]
            b = m.binning.index(v)
            for name, size in zip(self.groupings, self.sizes, strict=True):
                self.hist[m.name][name] += np.bincount(fine[name] + b, minlength=size * FINE_BINS)
            self.sums[m.name] += np.bincount(cell, weights=v, minlength=self.num_cells)
        self.counts += np.bincount(cell, minlength=self.num_cells)
        rank = metrics["target_rank"]
        self.rank1 += np.bincount(cell[rank == 1], minlength=self.num_cells)
        self.in_topk += np.bincount(cell[rank <= k], minlength=self.num_cells)

    def merge(self, other: StatsAccumulator) -> None:
        for m in METRICS:
            for name in self.groupings:
                self.hist[m.name][name] += other.hist[m.name][name]
            self.sums[m.name] += other.sums[m.name]
        self.counts += other.counts
        self.rank1 += other.rank1
        self.in_topk += other.in_topk

    def _marginal(self, cells: np.ndarray, axis: int) -> np.ndarray:
        """Per-group totals of one grouping from a per-cell array."""
        other = tuple(a for a in range(len(self.sizes)) if a != axis)
        return cells.reshape(self.sizes).sum(axis=other)

    def summary(self, hist_bins: int) -> dict:
        """{grouping: {group: {positions, target_rank1_frac, target_in_topk_frac, metrics: {...}}}}, with
        an `all` group added to the span grouping."""
        out = {}
        for axis, (name, groups) in enumerate(self.groupings.items()):
            counts = self._marginal(self.counts, axis)
            rank1, in_topk = self._marginal(self.rank1, axis), self._marginal(self.in_topk, axis)
            sums = {m.name: self._marginal(self.sums[m.name], axis) for m in METRICS}
            hists = {m.name: self.hist[m.name][name].reshape(len(groups), FINE_BINS) for m in METRICS}
            rows = {}
            for j, group in enumerate(groups):
                sel = slice(j, j + 1)
                rows[group] = _group(counts[sel], rank1[sel], in_topk[sel], sums, hists, sel, hist_bins)
            if name == "span":
                sel = slice(0, len(groups))
                rows["all"] = _group(counts[sel], rank1[sel], in_topk[sel], sums, hists, sel, hist_bins)
            out[name] = rows
        return out


def _group(counts, rank1, in_topk, sums, hists, sel: slice, hist_bins: int) -> dict:
    n = int(counts.sum())
    return {
        "positions": n,
        "target_rank1_frac": float(rank1.sum() / n) if n else None,
        "target_in_topk_frac": float(in_topk.sum() / n) if n else None,
        "metrics": {
            m.name: summarize(m, hists[m.name][sel].sum(axis=0), float(sums[m.name][sel].sum()), hist_bins)
            for m in METRICS
        },
    }


def summarize(metric: Metric, hist: np.ndarray, total: float, hist_bins: int) -> dict:
    n = int(hist.sum())
    out: dict = {"count": n, "mean": total / n if n else None}
    cum = np.cumsum(hist)
    for q in QUANTILES:
        key = f"p{round(q * 100)}"
        if n:
            b = int(np.searchsorted(cum, q * n, side="left"))
            out[key] = metric.binning.representative(min(b, FINE_BINS - 1))
        else:
            out[key] = None
    coarse = hist.reshape(hist_bins, FINE_BINS // hist_bins).sum(axis=1)
    out["histogram"] = {
        "scale": metric.binning.scale,
        "edges": [float(e) for e in metric.binning.edges(hist_bins)],
        "counts": [int(c) for c in coarse],
    }
    return out
