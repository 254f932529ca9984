"""PyTorch row passes and per-row maths of the sparse-KL head: impl="torch", the reference.

kernels/sparse_kl_head.py holds the driver (chunks, GEMMs, gathers, vocab-parallel exchange) and the op;
kernels/sparse_kl_triton.py holds the same three steps as Triton kernels. Every row that reaches these
functions is supervised: the driver gathers rows with label -100 out before the logits GEMM.

  row_stats   pass 1 over a [rows, V] logits chunk: max and sum-exp per row (at 1 and at tau), in fp32
              vocab slices (fp64 for fp64 inputs), never an fp32 copy of the whole chunk;
  row_terms   per-row maths in float64 on [rows, k] tensors: losses, diagnostics, the dense gradient
              coefficients and the complete values of the k + 1 sparse gradient entries;
  dense_grad_ pass 2, in place: logits -> c1 softmax(z) + ct softmax(z / tau).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

# Floor on the student's tempered tail mass q_tail. q_tail = 1 - sum_I q_i is computed from the row's
# sum-exp S, an fp32 sum over ~2e5 terms in the kernels whose relative error is ~1e-7..1e-6; so q_tail
# below ~1e-6 is rounding noise (it can even come out <= 0). Clamping keeps log q_tail finite and bounds
# the gradient ratio r = p_tail / q_tail by p_tail / 2^-20. The clamped value is used in both the loss and
# the gradient formula, so the gradient still pushes the tail up when the teacher has tail mass (the exact
# derivative of the clamped loss would be zero there and push the tail down: wrong direction).
Q_TAIL_FLOOR = 2.0**-20

_VOCAB_SLICE = 16384  # bounds the fp32 temporaries of the row passes to [rows, 16384]


def _log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler 2012, "Accurately computing
    log(1 - exp(-|a|))"): log(-expm1(x)) for x > -ln 2, log1p(-exp(x)) below. x >= 0 gives -inf."""
    x = x.clamp(max=0.0)
    return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _plogratio(p: Tensor, logp: Tensor, logq: Tensor) -> Tensor:
    """p (log p - log q) with 0 log 0 = 0 (where() so -inf and NaN in dead lanes do not leak)."""
    return torch.where(p > 0, p * (logp - logq), torch.zeros_like(p))


class RowTerms(NamedTuple):
    kl: Tensor
    ce: Tensor
    tmass: Tensor
    smass: Tensor
    agree: Tensor
    lse1: Tensor  # logsumexp(z)
    lset: Tensor  # logsumexp(z / tau) (only meaningful when the dense tau term is used)
    c1: Tensor  # dense coefficient on q = softmax(z)
    ct: Tensor  # dense coefficient on q^tau = softmax(z / tau)
    val_ids: Tensor  # [rows, k] full gradient value at the teacher ids
    val_lab: Tensor  # [rows] full gradient value at the label


def row_terms(
    z_ids: Tensor,
    z_lab: Tensor,
    m: Tensor,
    s1: Tensor,
    st: Tensor | None,
    teacher_ids: Tensor,
    teacher_lp: Tensor,
    labels: Tensor,
    w: Tensor,
    *,
    bucket: bool,
    tau: float,
    ce_weight: float,
    tau_dense: bool,
) -> RowTerms:
    """Per-row maths of supervised rows (module docstring of kernels/sparse_kl_head.py for the formulas)."""
    f64 = torch.float64
    z_ids, z_lab, m, s1, w = z_ids.to(f64), z_lab.to(f64), m.to(f64), s1.to(f64), w.to(f64)
    # NO_ID slots (padding of sampled rows) hold neither teacher nor student mass: p = q = 0 there.
    has_id = teacher_ids >= 0
    lp = torch.where(has_id, teacher_lp.to(f64), -math.inf)
    lse1 = m + torch.log(s1)
    logq1_ids = torch.where(has_id, z_ids - lse1[:, None], -math.inf)
    q1_ids = torch.exp(logq1_ids)
    q1_lab = torch.exp(z_lab - lse1)
    ce = lse1 - z_lab

    if bucket:
        # Student tempered log-probs at the teacher ids; its tail in log space.
        lset = m / tau + torch.log(st.to(f64)) if st is not None else lse1
        logqt_ids = torch.where(has_id, z_ids / tau - lset[:, None], -math.inf)
        logqt_tail = _log1mexp(torch.logsumexp(logqt_ids, dim=-1)).clamp(min=math.log(Q_TAIL_FLOOR))
        # Teacher: tail from its own top-k (log1mexp of logsumexp: no 1 - sum cancellation), then
        # tempering of the (k+1)-way coarse distribution.
        lp_tail = _log1mexp(torch.logsumexp(lp, dim=-1))
        a = torch.cat([lp, lp_tail[:, None]], dim=-1) / tau
        logp = a - torch.logsumexp(a, dim=-1, keepdim=True)
        logp_ids, logp_tail = logp[:, :-1], logp[:, -1]
        p_ids, p_tail = torch.exp(logp_ids), torch.exp(logp_tail)
        kl = _plogratio(p_ids, logp_ids, logqt_ids).sum(-1) + _plogratio(p_tail, logp_tail, logqt_tail)
        r = p_tail / torch.exp(logqt_tail)
        qt_ids = torch.exp(logqt_ids)
        a_dense = tau * (1.0 - r)  # on q^tau, every j
        corr_ids = tau * (r[:, None] * qt_ids - p_ids)  # extra at j in I
    else:
        lset = lse1
        logp_ids = torch.log_softmax(lp / tau, dim=-1)
        logqh_ids = torch.log_softmax(torch.where(has_id, z_ids / tau, -math.inf), dim=-1)
        p_ids = torch.exp(logp_ids)
        kl = _plogratio(p_ids, logp_ids, logqh_ids).sum(-1)
        a_dense = torch.zeros_like(m)
        corr_ids = tau * (torch.exp(logqh_ids) - p_ids)
    kl = kl * tau**2

    # Dense coefficients (times the token weight). With tau == 1 both softmaxes are q: fold into c1.
    if tau_dense:
        c1 = w * ce_weight
        ct = w * a_dense
        dense_ids = c1[:, None] * q1_ids + ct[:, None] * torch.exp(z_ids / tau - lset[:, None])
        dense_lab = c1 * q1_lab + ct * torch.exp(z_lab / tau - lset)
    else:
        c1 = w * (ce_weight + a_dense)
        ct = torch.zeros_like(c1)
        dense_ids = c1[:, None] * q1_ids
        dense_lab = c1 * q1_lab
    is_lab = teacher_ids == labels[:, None]
    corr_ids = torch.where(has_id, w[:, None] * corr_ids, 0.0)  # NaN-free for a row of NO_ID slots (renorm)
    val_ids = torch.where(has_id, dense_ids + corr_ids - (w * ce_weight)[:, None] * is_lab, 0.0)
    # The label may be one of the teacher ids: then both positions get the same (complete) value.
    val_lab = dense_lab - w * ce_weight + (corr_ids * is_lab).sum(-1)

    top1 = lp.argmax(dim=-1, keepdim=True)
    agree = (z_ids.gather(1, top1).squeeze(1) >= m) & has_id.any(dim=-1)  # no id: no teacher top-1
    return RowTerms(
        kl=kl,
        ce=ce,
        tmass=torch.exp(lp).sum(-1),
        smass=q1_ids.sum(-1),
        agree=agree,
        lse1=lse1,
        lset=lset,
        c1=c1,
        ct=ct,
        val_ids=val_ids,
        val_lab=val_lab,
    )


def row_stats(z: Tensor, inv_tau: float, need_tau: bool):
    """Per-row (max, sum exp(z - max), sum exp((z - max) / tau) or None) of a [rows, V] chunk."""
    n, v = z.shape
    acc = torch.float64 if z.dtype == torch.float64 else torch.float32
    m = torch.full((n,), -math.inf, dtype=acc, device=z.device)
    for v0 in range(0, v, _VOCAB_SLICE):
        m = torch.maximum(m, z[:, v0 : v0 + _VOCAB_SLICE].to(acc).amax(dim=1))
    s1 = torch.zeros_like(m)
    st = torch.zeros_like(m) if need_tau else None
    for v0 in range(0, v, _VOCAB_SLICE):
        d = z[:, v0 : v0 + _VOCAB_SLICE].to(acc) - m[:, None]
        s1 += torch.exp(d).sum(dim=1)
        if need_tau:
            st += torch.exp(d * inv_tau).sum(dim=1)
    return m, s1, st


def dense_grad_(
    z: Tensor, lse1: Tensor, c1: Tensor, lset: Tensor, ct: Tensor, inv_tau: float, tau_dense: bool
):
    """In place: z <- c1 softmax(z) + ct softmax(z / tau) (the latter only when tau_dense)."""
    acc = torch.float64 if z.dtype == torch.float64 else torch.float32
    lse1, c1, lset, ct = (t.to(acc)[:, None] for t in (lse1, c1, lset, ct))
    for v0 in range(0, z.shape[1], _VOCAB_SLICE):
        zs = z[:, v0 : v0 + _VOCAB_SLICE]
        zf = zs.to(acc)
        g = c1 * torch.exp(zf - lse1)
        if tau_dense:
            g += ct * torch.exp(zf * inv_tau - lset)
        zs.copy_(g)
