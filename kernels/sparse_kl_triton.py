"""Triton row passes of the sparse-KL head (kernels/sparse_kl_head.py holds the driver; the torch
reference of the same steps is kernels/sparse_kl_torch.py). Only supervised rows (label != -100) reach
these kernels: the driver gathers the others out before the logits GEMM.

Memory layout: one chunk of student logits z [rows, V] (V = the local vocab shard), row-major and
contiguous, in the model dtype (bf16 in training); the GEMM that produced it is cuBLAS. One program owns
one row and walks it in BLOCK-wide vocab tiles, so every access is a coalesced, vectorised stripe and no
two programs touch the same bytes (no atomics, no races).

Pass 1, ``row_stats`` (read z once):
    online log-sum-exp with a per-tile running max (Milakov & Gimelshein 2018, "Online normalizer
    calculation for softmax", arXiv:1805.02867):
        m' = max(m, max_tile z);  s1 = s1 exp(m - m') + sum_tile exp(z - m');  m = m'
    and, when tau != 1, st = sum exp((z - m) / tau) rescaled the same way (max(z / tau) = max(z) / tau
    for tau > 0, so one running max serves both). Output: m, s1, st per row, fp32. The tile sums are tree
    reductions and only V / BLOCK (~50) partial sums are added sequentially, which keeps the relative
    error of s1 near 1e-7 (it bounds how small a student tail mass we can resolve: Q_TAIL_FLOOR).

Pass 2, ``dense_grad_`` (read z, write G in place, same dtype):
    G_j = c1 exp(z_j - lse1) + ct exp(z_j / tau - lset)
    i.e. (per-row scalar) x softmax, the dense part of d loss / d z; the k+1 sparse corrections at the
    teacher ids and the label are written afterwards by the driver (a scatter of k+1 values per row).
    In place is safe: each element is read and then written by the same program and lane.

Per-row maths, ``row_terms`` (one launch per chunk): the float64 formulas of
sparse_kl_torch.row_terms on the [rows, k] gathered logits and teacher log-probs (losses, diagnostics,
the dense coefficients c1, ct and the complete values of the k + 1 sparse entries). One small program per
row replaces ~150 tiny torch kernels per chunk (measured: 746 -> 194 kernels per call at T = 8192,
~3 ms less GPU idle time).

Backward, ``scale_cast_``: grad = saved fp32 gradient x grad_output, written in the input dtype in one
read and one write (torch's dtype-casting mul takes a slow non-vectorised path, 2.4x longer here).

No tile is skipped: with bf16 G a tile could be skipped only where c1 q_j < 2^-133 (bf16's smallest
subnormal) for every j, which trained distributions rarely give at these sizes, and the GEMMs dominate.

Loop bounds are tl.constexpr (V, BLOCK): the CPU interpreter (TRITON_INTERPRET=1) mishandles runtime loop
bounds with numpy 2 (platform notes), and a fixed V per model costs one compilation.
Written for triton 3.6 (GPU machine) and 3.9 (CPU interpreter): only core tl ops.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _row_stats_kernel(
    z_ptr,
    m_ptr,
    s1_ptr,
    st_ptr,
    inv_tau,
    V: tl.constexpr,
    BLOCK: tl.constexpr,
    NEED_TAU: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = z_ptr + row * V
    offs = tl.arange(0, BLOCK)
    m = tl.max(tl.full([BLOCK], float("-inf"), tl.float32), axis=0)
    s1 = tl.sum(tl.zeros([BLOCK], tl.float32), axis=0)
    st = tl.sum(tl.zeros([BLOCK], tl.float32), axis=0)
    for v0 in range(0, V, BLOCK):
        cols = v0 + offs
        z = tl.load(base + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(z, axis=0))
        # exp(-inf - finite) = 0 on the first tile; masked lanes contribute exp(-inf) = 0.
        s1 = s1 * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new), axis=0)
        if NEED_TAU:
            st = st * tl.exp((m - m_new) * inv_tau) + tl.sum(tl.exp((z - m_new) * inv_tau), axis=0)
        m = m_new
    tl.store(m_ptr + row, m)
    tl.store(s1_ptr + row, s1)
    if NEED_TAU:
        tl.store(st_ptr + row, st)


@triton.jit
def _dense_grad_kernel(
    z_ptr,
    lse1_ptr,
    c1_ptr,
    lset_ptr,
    ct_ptr,
    inv_tau,
    V: tl.constexpr,
    BLOCK: tl.constexpr,
    HAS_TAU: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = z_ptr + row * V
    offs = tl.arange(0, BLOCK)
    lse1 = tl.load(lse1_ptr + row)
    c1 = tl.load(c1_ptr + row)
    lset = 0.0
    ct = 0.0
    if HAS_TAU:
        lset = tl.load(lset_ptr + row)
        ct = tl.load(ct_ptr + row)
    for v0 in range(0, V, BLOCK):
        cols = v0 + offs
        mask = cols < V
        z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
        g = c1 * tl.exp(z - lse1)
        if HAS_TAU:
            g += ct * tl.exp(z * inv_tau - lset)
        tl.store(base + cols, g.to(z_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _scale_cast_kernel(out_ptr, src_ptr, g_ptr, N, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    g = tl.load(g_ptr).to(tl.float32)
    x = tl.load(src_ptr + offs, mask=mask, other=0.0)
    tl.store(out_ptr + offs, (x * g).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _log1mexp(x):
    # log(1 - exp(x)), x <= 0, in float64: 1 - exp(x) has absolute error ~1e-16, so the result keeps
    # ~7 digits down to |x| ~ 1e-9 (a tail mass of 1e-9), far below what the loss can resolve
    # (sparse_kl_torch.Q_TAIL_FLOOR). Core tl has no expm1/log1p that also runs in the interpreter.
    x = tl.minimum(x, 0.0)
    return tl.log(1.0 - tl.exp(x))


@triton.jit
def _lse(x, mask):
    mx = tl.max(tl.where(mask, x, float("-inf")), axis=0)
    return mx + tl.log(tl.sum(tl.where(mask, tl.exp(x - mx), 0.0), axis=0))


@triton.jit
def _row_terms_kernel(
    zid_ptr, zlab_ptr, m_ptr, s1_ptr, st_ptr, ids_ptr, lp_ptr, lab_ptr, w_ptr,
    kl_ptr, ce_ptr, tm_ptr, sm_ptr, agree_ptr, lrow_ptr, lse1_ptr, lset_ptr, c1_ptr, ct_ptr, vid_ptr, vlab_ptr,
    tau, inv_tau, ce_weight, log_floor,
    K: tl.constexpr, KP: tl.constexpr, BUCKET: tl.constexpr, TAU_DENSE: tl.constexpr, NEED_ST: tl.constexpr,
):  # fmt: skip
    """One program per (supervised) row: the per-row maths of sparse_kl_torch.row_terms (same formulas,
    float64), so a chunk needs one launch instead of ~150 small torch kernels."""
    f64 = tl.float64
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, KP)
    in_k = offs < K
    ids = tl.load(ids_ptr + row * K + offs, mask=in_k, other=-1)
    km = in_k & (ids >= 0)  # NO_ID slots (padding of sampled rows) hold no mass on either side
    lab = tl.load(lab_ptr + row)
    w = tl.load(w_ptr + row).to(f64)
    m = tl.load(m_ptr + row).to(f64)
    lse1 = m + tl.log(tl.load(s1_ptr + row).to(f64))
    zi = tl.load(zid_ptr + row * K + offs, mask=km, other=0.0).to(f64)
    lp = tl.load(lp_ptr + row * K + offs, mask=km, other=float("-inf")).to(f64)
    zl = tl.load(zlab_ptr + row).to(f64)
    q1 = tl.where(km, tl.exp(zi - lse1), 0.0)
    q1l = tl.exp(zl - lse1)
    ce = lse1 - zl
    if BUCKET:
        if NEED_ST:
            lset = m * inv_tau + tl.log(tl.load(st_ptr + row).to(f64))
        else:
            lset = lse1
        lqt = zi * inv_tau - lset
        lq_tail = tl.maximum(_log1mexp(_lse(lqt, km)), log_floor)
        lp_tail = _log1mexp(_lse(lp, km))
        a = lp * inv_tau
        a_tail = lp_tail * inv_tau
        amax = tl.maximum(tl.max(tl.where(km, a, float("-inf")), axis=0), a_tail)
        norm = amax + tl.log(tl.sum(tl.where(km, tl.exp(a - amax), 0.0), axis=0) + tl.exp(a_tail - amax))
        logp = a - norm
        logp_tail = a_tail - norm
        p = tl.where(km, tl.exp(logp), 0.0)
        p_tail = tl.exp(logp_tail)
        kl = tl.sum(tl.where(p > 0, p * (logp - lqt), 0.0), axis=0)
        kl += tl.where(p_tail > 0, p_tail * (logp_tail - lq_tail), 0.0)
        r = p_tail / tl.exp(lq_tail)
        a_dense = tau * (1.0 - r)
        corr = tau * (r * tl.exp(lqt) - p)
    else:
        lset = lse1
        a = lp * inv_tau
        logp = a - _lse(a, km)
        b = zi * inv_tau
        logqh = b - _lse(b, km)
        p = tl.where(km, tl.exp(logp), 0.0)
        kl = tl.sum(tl.where(p > 0, p * (logp - logqh), 0.0), axis=0)
        a_dense = 0.0
        corr = tau * (tl.exp(logqh) - p)
    kl = kl * tau * tau
    if TAU_DENSE:
        c1 = w * ce_weight
        ct = w * a_dense
        dense_ids = c1 * q1 + ct * tl.exp(zi * inv_tau - lset)
        dense_lab = c1 * q1l + ct * tl.exp(zl * inv_tau - lset)
    else:
        c1 = w * (ce_weight + a_dense)
        ct = w * 0.0
        dense_ids = c1 * q1
        dense_lab = c1 * q1l
    is_lab = (ids == lab) & km
    corr = tl.where(km, w * corr, 0.0)
    val_ids = dense_ids + corr - tl.where(is_lab, w * ce_weight, 0.0)
    val_lab = dense_lab - w * ce_weight + tl.sum(tl.where(is_lab, corr, 0.0), axis=0)
    # Teacher top-1 = first maximum of lp (torch.argmax's tie rule); agree when its logit is the max.
    lpm = tl.where(km, lp, float("-inf"))
    top = tl.min(tl.where(lpm == tl.max(lpm, axis=0), offs, KP), axis=0)
    agree = (tl.sum(tl.where(offs == top, zi, 0.0), axis=0) >= m) & (tl.sum(km.to(tl.int32), axis=0) > 0)
    tl.store(kl_ptr + row, kl.to(kl_ptr.dtype.element_ty))
    tl.store(ce_ptr + row, ce.to(ce_ptr.dtype.element_ty))
    tl.store(tm_ptr + row, tl.sum(tl.where(km, tl.exp(lp), 0.0), axis=0).to(tm_ptr.dtype.element_ty))
    tl.store(sm_ptr + row, tl.sum(q1, axis=0).to(sm_ptr.dtype.element_ty))
    tl.store(agree_ptr + row, agree.to(tl.int8))
    tl.store(lrow_ptr + row, w * (kl + ce_weight * ce))
    tl.store(lse1_ptr + row, lse1.to(tl.float32))
    tl.store(lset_ptr + row, lset.to(tl.float32))
    tl.store(c1_ptr + row, c1.to(tl.float32))
    tl.store(ct_ptr + row, ct.to(tl.float32))
    tl.store(vid_ptr + row * K + offs, tl.where(km, val_ids, 0.0).to(tl.float32), mask=in_k)
    tl.store(vlab_ptr + row, val_lab.to(tl.float32))


def row_terms(z_ids, z_lab, m, s1, st, ids, lp, labels, w, out_kl, out_ce, out_tm, out_sm, out_agree, *,
              bucket: bool, tau: float, ce_weight: float, tau_dense: bool, log_floor: float):  # fmt: skip
    """Per-row losses, diagnostics and gradient coefficients of one chunk in one launch. Writes the
    per-token outputs into out_* (views of the result buffers); returns (row losses fp64 [n], lse1, lset,
    c1, ct [n] fp32, val_ids [n, k] fp32, val_lab [n] fp32)."""
    n, k = ids.shape
    dev = ids.device
    f32 = torch.float32
    lrow = torch.empty(n, dtype=torch.float64, device=dev)
    lse1, lset, c1, ct, vlab = (torch.empty(n, dtype=f32, device=dev) for _ in range(5))
    vid = torch.empty(n, k, dtype=f32, device=dev)
    need_st = bucket and st is not None
    _row_terms_kernel[(n,)](
        z_ids.contiguous(), z_lab.contiguous(), m, s1, st if need_st else s1, ids.contiguous(), lp.contiguous(),
        labels.contiguous(), w.contiguous(),
        out_kl, out_ce, out_tm, out_sm, out_agree.view(torch.int8), lrow, lse1, lset, c1, ct, vid, vlab,
        float(tau), 1.0 / float(tau), float(ce_weight), float(log_floor),
        K=k, KP=triton.next_power_of_2(k), BUCKET=bucket, TAU_DENSE=tau_dense, NEED_ST=need_st,
        num_warps=1 if k <= 64 else 2,
    )  # fmt: skip
    return lrow, lse1, lset, c1, ct, vid, vlab


def _launch_cfg(v: int) -> tuple[int, int]:
    if _INTERPRET:
        return 128, 4  # several tiles even at test sizes, so the online rescaling is exercised
    # 4096 bf16 = 8 KiB per tile per program: 16-byte vector loads for 8 warps, ~50 tiles per row at
    # V = 201088; enough rows (thousands) per launch to fill the 132 SMs.
    block = min(4096, triton.next_power_of_2(v))
    return block, 8 if block >= 2048 else 4


def row_stats(z: torch.Tensor, inv_tau: float, need_tau: bool):
    """Per-row (max, sum exp(z - max), sum exp((z - max) / tau)) of a contiguous [rows, V] chunk."""
    assert z.is_contiguous() and z.dim() == 2
    n, v = z.shape
    m = torch.empty(n, dtype=torch.float32, device=z.device)
    s1 = torch.empty_like(m)
    st = torch.empty_like(m) if need_tau else s1
    block, warps = _launch_cfg(v)
    _row_stats_kernel[(n,)](
        z, m, s1, st, float(inv_tau), V=v, BLOCK=block, NEED_TAU=need_tau, num_warps=warps
    )
    return m, s1, (st if need_tau else None)


def dense_grad_(z, lse1, c1, lset, ct, inv_tau: float, tau_dense: bool) -> None:
    """In place: z <- c1 softmax(z) + ct softmax(z / tau) (the latter only when tau_dense)."""
    assert z.is_contiguous() and z.dim() == 2
    n, v = z.shape
    block, warps = _launch_cfg(v)
    f32 = torch.float32
    _dense_grad_kernel[(n,)](
        z,
        lse1.to(f32).contiguous(),
        c1.to(f32).contiguous(),
        lset.to(f32).contiguous(),
        ct.to(f32).contiguous(),
        float(inv_tau),
        V=v,
        BLOCK=block,
        HAS_TAU=tau_dense,
        num_warps=warps,
    )


def scale_cast_(out: torch.Tensor, src: torch.Tensor, g: torch.Tensor) -> None:
    """out <- (src * g) in out's dtype: the backward's grad_output scaling of the saved fp32 gradient,
    one read and one write (g is a device scalar: no host sync)."""
    assert out.is_contiguous() and src.is_contiguous() and out.shape == src.shape
    n = src.numel()
    block = 4096
    _scale_cast_kernel[(triton.cdiv(n, block),)](out, src, g.reshape(1), n, BLOCK=block, num_warps=8)
