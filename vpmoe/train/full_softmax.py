"""Held-out metrics that need the student's whole softmax: calibration (ECE) and, given a teacher
reference (vpmoe/train/teacher_reference.py), the KL to the teacher's full distribution.

The fused head never forms the [T, V] logits (kernels/sparse_kl_head.py); evaluation can afford them in
chunks of rows. Vocabulary-parallel: each tensor-parallel rank holds rows vocab_start .. + V_local of the
output layer, so the max, the argmax, the log-sum-exp and the logits of given ids are reduced over the
group, and every rank ends with the same values (as the head's own outputs).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

# Expected calibration error over equal-width confidence bins (Guo et al. 2017, "On Calibration of Modern
# Neural Networks", eq. 3; 15 bins as there): sum_b |B_b|/n * |acc(B_b) - conf(B_b)|, with confidence the
# student's top-1 probability and accuracy whether its top-1 is the actual next token.
ECE_BINS = 15
CALIB_SUMS = ("count", "confidence", "correct")
# Sums over supervised positions that have a reference: positions, KL estimate, its square (for the
# standard error across positions), the teacher's exact entropy, student top-1 == teacher top-1.
REFERENCE_SUMS = ("positions", "kl_full", "kl_full_sq", "teacher_entropy", "top1_full")
CHUNK_BYTES = 1 << 28  # one chunk's fp32 logits


class FullSoftmaxRows(NamedTuple):
    confidence: Tensor  # [R] float32: the student's top-1 probability
    argmax: Tensor  # [R] int64: the student's top-1 id (first maximum over the whole vocabulary)
    logq: Tensor | None  # [R, M] float32: the student's log-probability of the given ids


def full_softmax_rows(
    hidden: Tensor,
    weight: Tensor,
    *,
    ids: Tensor | None = None,
    vocab_start: int = 0,
    tp_group=None,
) -> FullSoftmaxRows:
    """The student's top-1 probability and id, and its log-probabilities of `ids` ([R, M], global ids),
    at rows `hidden` [R, H] with the output layer `weight` [V_local, H]. fp32 logits, chunked."""
    r = hidden.shape[0]
    v_local = weight.shape[0]
    chunk = max(1, CHUNK_BYTES // (4 * v_local))
    conf = torch.empty(r, dtype=torch.float32, device=hidden.device)
    top = torch.empty(r, dtype=torch.int64, device=hidden.device)
    logq = None if ids is None else torch.empty(ids.shape, dtype=torch.float32, device=hidden.device)
    w = weight.float()
    for a in range(0, r, chunk):
        z = hidden[a : a + chunk].float() @ w.t()
        mx, arg = z.max(dim=-1)
        arg = arg + vocab_start
        if tp_group is not None:
            gmx = mx.clone()
            torch.distributed.all_reduce(gmx, op=torch.distributed.ReduceOp.MAX, group=tp_group)
            # torch.argmax's tie rule over the whole vocabulary: the smallest id among the maxima
            arg = torch.where(mx == gmx, arg, torch.full_like(arg, torch.iinfo(torch.int64).max))
            torch.distributed.all_reduce(arg, op=torch.distributed.ReduceOp.MIN, group=tp_group)
            mx = gmx
        sumexp = (z - mx[:, None]).exp().sum(-1)
        if tp_group is not None:
            torch.distributed.all_reduce(sumexp, group=tp_group)
        conf[a : a + chunk] = sumexp.reciprocal()  # exp(max - lse)
        top[a : a + chunk] = arg
        if ids is not None:
            local = ids[a : a + chunk] - vocab_start
            mine = (local >= 0) & (local < v_local)
            g = torch.where(mine, z.gather(1, local.clamp(0, v_local - 1)), torch.zeros((), device=z.device))
            if tp_group is not None:
                torch.distributed.all_reduce(g, group=tp_group)
            logq[a : a + chunk] = g - (mx + sumexp.log())[:, None]
    return FullSoftmaxRows(conf, top, logq)


def calibration_sums(rows: FullSoftmaxRows, labels: Tensor) -> Tensor:
    """[ECE_BINS, len(CALIB_SUMS)] float64 sums of one batch's supervised rows (labels: their next tokens)."""
    b = (rows.confidence * ECE_BINS).long().clamp_(0, ECE_BINS - 1)
    vals = torch.stack(
        [torch.ones_like(rows.confidence), rows.confidence, (rows.argmax == labels).float()], dim=1
    ).double()
    out = torch.zeros(ECE_BINS, len(CALIB_SUMS), dtype=torch.float64, device=vals.device)
    return out.index_add_(0, b, vals)


def reference_sums(rows: FullSoftmaxRows, ref: dict[str, Tensor]) -> Tensor:
    """[len(REFERENCE_SUMS)] float64 sums of one batch's rows against the teacher reference's rows."""
    kl = (ref["draw_logprobs"].double() - rows.logq.double()).mean(dim=1)
    return torch.stack(
        [
            torch.tensor(float(len(kl)), dtype=torch.float64, device=kl.device),
            kl.sum(),
            (kl * kl).sum(),
            ref["entropy"].double().sum(),
            (rows.argmax == ref["argmax"]).double().sum(),
        ]
    )


def full_softmax_metrics(calib: Tensor, ref: Tensor | None) -> dict:
    """The metrics of the summed tensors (over all batches and ranks)."""
    n = float(calib[:, 0].sum())
    out = {
        "ece": float((calib[:, 2] - calib[:, 1]).abs().sum()) / n if n else float("nan"),
        "confidence": float(calib[:, 1].sum()) / n if n else float("nan"),
        "accuracy": float(calib[:, 2].sum()) / n if n else float("nan"),
        "calibration_bins": [[float(x) for x in b] for b in calib.tolist()],
    }
    if ref is not None:
        m = float(ref[0])
        mean = float(ref[1]) / m if m else float("nan")
        var = max(float(ref[2]) / m - mean * mean, 0.0) if m else float("nan")
        out.update(
            kl_full=mean,
            # the standard error of the mean over positions (the draws' noise is inside each estimate)
            kl_full_se=(var / (m - 1)) ** 0.5 if m > 1 else float("nan"),
            teacher_entropy=float(ref[3]) / m if m else float("nan"),
            top1_full=float(ref[4]) / m if m else float("nan"),
            reference_positions=int(m),
        )
    return out
