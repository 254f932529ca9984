"""Triton row passes of the sparse-KL head (kernels/sparse_kl_head.py holds the maths and the driver).

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
