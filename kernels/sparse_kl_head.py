"""Sparse-teacher KL + CE loss head over the LM head: ``sparse_kl``.

Maths (docs/distillation_mechanics.md is the long form; notation per token t, dropped below):
  z_j = <h, W_j>  student logits over the full vocabulary (V = 201088 for GPT-OSS), tau = temperature.
  q^tau = softmax(z / tau) over the FULL vocabulary, q = q^1.
  Teacher: k ids I with log-probs l_i (vLLM prompt logprobs: log-softmax over the full vocabulary at
  temperature 1), tail mass p_tail = 1 - sum_I exp(l_i), computed as log1mexp(logsumexp(l)).

  tail="bucket" (default): both distributions are coarsened to k + 1 outcomes (the k ids and one
  "everything else" bucket). The teacher's coarse distribution is tempered as a (k+1)-way distribution:
  p^tau_c = softmax_c(l_c / tau) over c in I + {tail} (exact at tau = 1; at tau != 1 the teacher's full
  normaliser is unknown, so we temper what we know; see the doc). The student side is exact:
  q^tau_tail = 1 - sum_I q^tau_i, taken in log space as log1mexp(logsumexp(log q^tau_I)).
      KL_t = tau^2 [ sum_I p_i log(p_i / q_i) + p_tail log(p_tail / q_tail) ]   (tempered p, q)
      dKL/dz_j = tau [ (1 - r) q^tau_j + 1[j in I] (r q^tau_j - p^tau_j) ],  r = p_tail / q^tau_tail
  tail="renorm": p_hat = softmax_I(l / tau), q_hat = softmax_I(z_I / tau); KL_t = tau^2 KL(p_hat||q_hat);
      dKL/dz_j = tau 1[j in I] (q_hat_j - p_hat_j). Biased: it ignores the student's tail entirely.
  CE at temperature 1 (Hinton et al. 2015, arXiv:1503.02531: hard-label term untempered, soft term x tau^2):
      CE_t = logsumexp(z) - z_label;  dCE/dz_j = q_j - 1[j = label].
  loss = sum_t w_t (KL_t + ce_weight CE_t) over rows with label != -100 (w = token_weights, default 1).

So the gradient of a row is (scalar) x softmax (one or two softmaxes when tau != 1 and CE is on) plus a
(k+1)-sparse correction: the shape the kernels exploit.

Execution (both impls share everything except the two row passes and the per-row maths):
  0. Only supervised rows enter: rows with label -100 (prompts, padding) are gathered out before any GEMM
     and their outputs are zero (per-token outputs 0 / False, grad_hidden rows exactly 0), scattered back
     to [T]. The head's three GEMMs then cost the supervised share of T, not T, and an ignored row can
     never reach the gradient (its dense gradient used to be 0 x exp(z - 0): NaN once a logit of that row
     passed ~88.7 in fp32). The index of the R supervised rows sizes the GEMMs, so the host must know R:
     pass ``supervised_rows`` built on the host (vpmoe/train/loss.py head_loss does, from the batch's CPU
     labels) and the call has no host sync; without it the head runs torch.nonzero on ``labels``, which
     on CUDA waits for the device once per call.
  for each chunk of supervised rows (so that a [rows, V_local] logits chunk is about _CHUNK_BYTES):
    1. logits = h_c @ W^T into one reused buffer, h_c = hidden[rows of the chunk] (cuBLAS on GPU; input
       dtype, like Megatron's own head).
    2. row pass 1: max and sum-exp (at 1 and at tau) per row; gather teacher and label logits.
       Vocab-parallel: all-reduce (max, then rescaled sums and gathered logits) over the group.
    3. per-row maths in float64 on [rows, k] tensors: losses, diagnostics, coefficients (row_terms of
       kernels/sparse_kl_torch.py; one Triton program per row for impl="triton", the same formulas).
    4. row pass 2 (in place): logits -> dense gradient  c1 q_j + ct q^tau_j; then the k+1 sparse
       entries are overwritten with their full value (one rounding, no atomics).
    5. grad_h[c] = G @ W (fp32 out), grad_W += G^T @ h_c (fp32 accumulator: a [V, H] fp32 buffer of the
       op's own, or the caller's fp32 ``main_grad``, below).
  6. vocab-parallel: grad_h is a partial sum (this rank's vocabulary rows); it is all-reduced over the
     group, or left partial for the caller's reduce-scatter (``reduce_grad_hidden=False``, sequence parallel).
  The gradient is computed in the forward pass ("eager gradient"): with the grad computed here the head
  costs 3 GEMMs; recomputing logits in backward would cost a 4th (1.33x the 3-GEMM floor, over the 1.25x
  target). The price: only the scalar ``loss`` is differentiable (its grad_output scales the saved
  gradients in backward); per-token outputs are returned detached, so autograd through them is an error,
  not a silent zero. Inputs are never written (kernels/sparse_kl_checks.py checks ids on the device).

Gradient-accumulation fusion (``main_grad=``, what Megatron's own linear layers do with
``gradient_accumulation_fusion``): the fp32 grad_W accumulator alone is 4 V H bytes (2.16 GiB at
V = 201088, H = 2880). A Megatron run already holds an fp32 ``weight.main_grad`` of that size, so the
chunks' grad_W GEMMs accumulate straight into it (alpha = main_grad_scale, beta = 1) and no [V, H]
buffer of the op's own exists. Because the gradient is eager, grad_output must be known in the forward:
the caller promises to backpropagate ``loss`` with grad_output == main_grad_scale (checked on the device in
backward) and weight.grad receives nothing, or, for a Megatron DDP parameter (it has the attribute
``grad_added_to_main_grad``), the flag set and an uninitialised placeholder, Megatron's protocol that keeps
DDP's per-parameter backward hook firing. ``main_grad`` is the one tensor the op writes into; it is
declared in the op's ``mutates_args``. Not for a weight tied to the input embedding (its other
gradient would be skipped by DDP once the flag is set).
"""

from __future__ import annotations

import math
import warnings
import weakref
from typing import NamedTuple

import torch
from torch import Tensor

from kernels.sparse_kl_checks import IGNORE_INDEX, NO_ID, check_args  # noqa: F401 -- NO_ID: public
from kernels.sparse_kl_checks import validate_ids as _validate_ids  # a module global: tests may patch it
from kernels.sparse_kl_torch import Q_TAIL_FLOOR
from kernels.sparse_kl_torch import dense_grad_ as _dense_grad_torch_
from kernels.sparse_kl_torch import row_stats as _stats_torch
from kernels.sparse_kl_torch import row_terms as _row_terms

__all__ = ["IGNORE_INDEX", "Q_TAIL_FLOOR", "SparseKLResult", "sparse_kl"]

# Bytes of one logits chunk [rows, V_local] (reused buffer). 1600 MiB: 4096 rows at V=201088 in bf16.
# Larger chunks mean fewer read-modify-write passes of the fp32 grad_W accumulator (each pass moves
# 2 x 4 x V x H bytes inside the GEMM epilogue); smaller ones mean less memory. Measured on an H100
# (H = 2880, k = 64, peaked, grad_W into main_grad; floor/ours pairs): 800 MiB 1.25-1.27x the 3-GEMM floor
# at 0.78 GiB extra, 1600 MiB 1.18-1.19x at 1.55 GiB, 2400 MiB 1.16-1.20x at 2.32 GiB
# (benchmarks/results/sparse_kl_h100.md). Tests shrink it. Chunks count supervised rows only.
_CHUNK_BYTES = 1600 * 2**20

_GROUPS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class SparseKLResult(NamedTuple):
    """What ``sparse_kl`` returns. Only ``loss`` carries gradient; per-token tensors are detached."""

    loss: Tensor  # [] fp32 (fp64 for fp64 inputs): sum_t w_t (kl_t + ce_weight ce_t) over rows with label != -100
    kl: Tensor  # [T] fp32, tau^2-scaled; 0 on ignored rows
    ce: Tensor  # [T] fp32, at temperature 1; 0 on ignored rows
    teacher_topk_mass: Tensor  # [T] fp32: sum_I exp(l_i) (untempered); 0 on ignored rows
    student_mass_on_teacher_ids: Tensor  # [T] fp32: sum_I q_i at temperature 1; 0 on ignored rows
    top1_agree: Tensor  # [T] bool: student argmax == teacher top-1 (ties count); False on ignored rows


def sparse_kl(
    hidden: Tensor,
    weight: Tensor,
    teacher_ids: Tensor,
    teacher_logprobs: Tensor,
    labels: Tensor,
    token_weights: Tensor | None = None,
    *,
    impl: str,
    tail: str = "bucket",
    temperature: float = 1.0,
    ce_weight: float = 0.0,
    vocab_start: int = 0,
    process_group=None,
    main_grad: Tensor | None = None,
    main_grad_scale: float = 1.0,
    supervised_rows: Tensor | None = None,
    reduce_grad_hidden: bool = True,
) -> SparseKLResult:
    """Sparse-teacher KL (+ optional CE) of the LM head ``hidden @ weight.T`` without [T, V] logits.

    hidden [T, H]; weight [V_local, H] (rows vocab_start .. vocab_start + V_local of the vocabulary; the
    whole vocabulary when process_group is None); teacher_ids [T, k] int (distinct per row; ``NO_ID``
    (-1) marks an empty slot, which holds no mass on either side and whose log-prob is not read: the
    padding of sampled rows, vpmoe/teacher/sampling.py, whose teacher tail is then 1 - sum of the row's
    probabilities); teacher_logprobs [T, k] (full-vocabulary log-probs); labels [T] int, -100 = ignored (position t
    predicts token t + 1: labels are already shifted); token_weights [T] or None (= 1).
    The trainer passes w_t = w_span / N_span (N counted over the whole optimizer step) as token_weights,
    so ``loss`` is its span-normalized contribution and ``loss.backward()`` gives the right gradient.
    impl="triton" (CUDA, or the CPU interpreter under TRITON_INTERPRET=1) or "torch" (reference).
    main_grad: fp32 [V_local, H] (Megatron's ``weight.main_grad``): d loss / d weight x main_grad_scale is
    added into it during this call instead of going to weight.grad, and ``loss`` must then be
    backpropagated with grad_output == main_grad_scale (module docstring: gradient-accumulation fusion).
    supervised_rows: int64 [R], the sorted indices of the rows with label != -100, on the inputs' device,
    built on the host where the labels are known before they reach the GPU (head_loss does). It sizes the
    GEMMs without a host sync; checked against labels on the device. None: computed here from labels
    (torch.nonzero: one host sync per call when labels live on CUDA). Rows not in it are skipped entirely.
    reduce_grad_hidden (vocab-parallel only): True, d loss / d hidden is all-reduced over process_group, so
    every rank gets the whole gradient of its replicated hidden. False, each rank gets its partial sum (its
    vocabulary rows' share) and the caller reduces it: hidden all-gathered from sequence-parallel shards
    (megatron's gather_from_sequence_parallel_region) reduce-scatters it in backward, one collective where
    an all-reduce here would be a second one, and a wrong one (the shares summed twice: x tp).
    """
    check_args(
        hidden, weight, teacher_ids, teacher_logprobs, labels, token_weights, supervised_rows, impl=impl,
        tail=tail, temperature=temperature, ce_weight=ce_weight, main_grad=main_grad,
        main_grad_scale=main_grad_scale,
    )  # fmt: skip
    T = hidden.shape[0]
    group_name = ""
    if process_group is not None:
        group_name = process_group.group_name
        _GROUPS[group_name] = process_group
    elif vocab_start != 0:
        raise ValueError("vocab_start != 0 needs the process_group that holds the other vocab shards")
    elif not reduce_grad_hidden:
        raise ValueError("reduce_grad_hidden=False is for vocab-parallel calls (a process_group)")
    _validate_ids(teacher_ids, labels, weight.shape[0], process_group, teacher_logprobs, supervised_rows)
    if supervised_rows is None:
        # R sizes the GEMMs, so the host must learn it: from a CUDA tensor this waits for the device (the
        # call's one host sync). The trainer passes the index instead (head_loss: from host labels).
        supervised_rows = torch.nonzero(labels != IGNORE_INDEX).squeeze(1)

    if token_weights is None:
        token_weights = torch.ones(T, dtype=torch.float32, device=hidden.device)
    need_gh = torch.is_grad_enabled() and hidden.requires_grad
    need_gw = torch.is_grad_enabled() and weight.requires_grad
    args = (
        hidden, weight, teacher_ids, teacher_logprobs, labels, token_weights, supervised_rows, impl,
        tail == "bucket", float(temperature), float(ce_weight), int(vocab_start), group_name,
        bool(reduce_grad_hidden), need_gh, need_gw,
    )  # fmt: skip
    if main_grad is not None and need_gw:
        out = _IntoMainGrad.apply(*args, main_grad, float(main_grad_scale))
    else:
        out = torch.ops.vpmoe.sparse_kl(*args)
    loss, kl, ce, tmass, smass, agree = out[:6]
    return SparseKLResult(loss, kl.detach(), ce.detach(), tmass.detach(), smass.detach(), agree.detach())


# ----------------------------------------------------------------------------------------------------------
# The op
# ----------------------------------------------------------------------------------------------------------


def _acc_mm_(acc: Tensor, a: Tensor, b: Tensor, first: bool, alpha: float = 1.0) -> None:
    """acc = alpha a @ b (first) or acc += alpha a @ b, accumulated and stored in acc's dtype (fp32 /
    fp64), a and b in their own dtype. first: beta = 0, so acc may be uninitialised (no zero-fill pass
    over a [V, H] fp32 buffer)."""
    beta = 0.0 if first else 1.0
    if a.dtype == acc.dtype:
        torch.addmm(acc, a, b, beta=beta, alpha=alpha, out=acc)
    elif acc.is_cuda and _MIXED_ADDMM_OK[0]:
        # cuBLAS bf16 x bf16 -> fp32 C (beta = 1 accumulates): no fp32 copies of the operands.
        try:
            torch.addmm(acc, a, b, beta=beta, alpha=alpha, out_dtype=acc.dtype, out=acc)
        except (RuntimeError, TypeError) as e:
            _MIXED_ADDMM_OK[0] = False
            warnings.warn(
                f"torch.addmm(out_dtype=float32) is not available here ({e}); accumulating in fp32 from "
                "bf16 partial products per vocab slice instead (one bf16 rounding per chunk)",
                stacklevel=2,
            )
            _acc_mm_(acc, a, b, first, alpha)
    elif acc.is_cuda:
        for v0 in range(0, acc.shape[0], 16384):
            part = (a[v0 : v0 + 16384] @ b).to(acc.dtype)
            if alpha != 1.0:
                part *= alpha
            if first:
                acc[v0 : v0 + 16384] = part
            else:
                acc[v0 : v0 + 16384] += part
    else:
        torch.addmm(acc, a.to(acc.dtype), b.to(acc.dtype), beta=beta, alpha=alpha, out=acc)


_MIXED_ADDMM_OK = [True]  # flipped (with a warning) if this torch lacks addmm(out_dtype=...) on CUDA


def _chunk_rows(n_rows: int, v_local: int, itemsize: int) -> int:
    rows = max(1, _CHUNK_BYTES // max(1, v_local * itemsize))
    if rows >= 128:
        rows = rows // 128 * 128  # GEMM-friendly
    return max(1, min(n_rows, rows))


def _to_all_rows(x: Tensor, rows: Tensor, T: int) -> Tensor:
    """[R] values of the supervised rows -> [T], zero (False) on the ignored rows."""
    return torch.zeros(T, dtype=x.dtype, device=x.device).index_copy_(0, rows, x)


def _sparse_kl_impl(
    hidden: Tensor,
    weight: Tensor,
    teacher_ids: Tensor,
    teacher_logprobs: Tensor,
    labels: Tensor,
    token_weights: Tensor,
    rows: Tensor,
    impl: str,
    tail_bucket: bool,
    temperature: float,
    ce_weight: float,
    vocab_start: int,
    group_name: str,
    reduce_grad_hidden: bool,
    need_grad_hidden: bool,
    need_grad_weight: bool,
    main_grad: Tensor | None,
    main_grad_scale: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The body of the custom op ``vpmoe::sparse_kl`` (writes only into ``main_grad``, when given).
    Returns (loss, kl, ce, teacher_topk_mass, student_mass_on_teacher_ids, top1_agree, grad_hidden_rows,
    grad_weight): per-token outputs [T]; grad_hidden_rows = d loss / d hidden[rows] [R, H] (backward
    scatters it to [T, H]) and grad_weight, in fp32 (fp64 for fp64 inputs), empty when not needed or
    (grad_weight) when it went into main_grad."""
    dev = hidden.device
    T, H = hidden.shape
    R = rows.shape[0]
    v_local = weight.shape[0]
    group = _GROUPS.get(group_name) if group_name else None
    if group_name and group is None:
        raise RuntimeError(f"process group {group_name!r} is not registered (call through sparse_kl)")
    tau = float(temperature)
    inv_tau = 1.0 / tau
    need_grad = need_grad_hidden or need_grad_weight
    tau_dense = tail_bucket and tau != 1.0
    need_tau_stats = tail_bucket and tau != 1.0
    acc_dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    if impl == "triton":
        from kernels import sparse_kl_triton as tk

    # Step 0 (module docstring): the small per-row inputs of the supervised rows, gathered once ([R, k]);
    # hidden is gathered chunk by chunk. Everything below works on the R supervised rows only.
    ids_r = teacher_ids.index_select(0, rows).long()
    lp_r = teacher_logprobs.index_select(0, rows)
    lab_r = labels.index_select(0, rows).long()
    w_r = token_weights.index_select(0, rows)
    kl = torch.zeros(R, dtype=acc_dtype, device=dev)
    ce = torch.zeros_like(kl)
    tmass = torch.zeros_like(kl)
    smass = torch.zeros_like(kl)
    agree = torch.zeros(R, dtype=torch.bool, device=dev)
    loss = torch.zeros((), dtype=torch.float64, device=dev)
    # Written by the first chunk's GEMM with beta = 0 (R = 0: no chunk, so zeros).
    alloc = torch.zeros if R == 0 else torch.empty
    gh = (
        alloc(R, H, dtype=acc_dtype, device=dev) if need_grad_hidden else hidden.new_zeros(0, dtype=acc_dtype)
    )
    own_gw = need_grad_weight and main_grad is None
    gw = alloc(v_local, H, dtype=acc_dtype, device=dev) if own_gw else weight.new_zeros(0, dtype=acc_dtype)

    chunk = _chunk_rows(R, v_local, hidden.element_size())
    # One flat buffer reused by every chunk; its last element is a write sink for sparse entries that
    # another rank owns (vocab-parallel), so the scatter needs no data-dependent shapes (no host sync).
    buf = torch.empty(chunk * v_local + 1 if R else 1, dtype=hidden.dtype, device=dev)
    for t0 in range(0, R, chunk):
        t1 = min(R, t0 + chunk)
        n = t1 - t0
        h = hidden.index_select(0, rows[t0:t1])
        z = buf[: n * v_local].view(n, v_local)
        torch.mm(h, weight.t(), out=z)

        ids, lab = ids_r[t0:t1], lab_r[t0:t1]
        ids_loc = ids - vocab_start
        lab_loc = lab - vocab_start
        own_ids = (ids_loc >= 0) & (ids_loc < v_local)
        own_lab = (lab_loc >= 0) & (lab_loc < v_local)
        ids_c = torch.where(own_ids, ids_loc, torch.zeros_like(ids_loc))
        lab_c = torch.where(own_lab, lab_loc, torch.zeros_like(lab_loc))
        z_ids = torch.where(own_ids, z.gather(1, ids_c).to(acc_dtype), 0.0)
        z_lab = torch.where(own_lab, z.gather(1, lab_c[:, None]).squeeze(1).to(acc_dtype), 0.0)

        if impl == "triton":
            m, s1, st = tk.row_stats(z, inv_tau, need_tau_stats)
        else:
            m, s1, st = _stats_torch(z, inv_tau, need_tau_stats)
        if group is not None:
            m, s1, st, z_ids, z_lab = _combine_across_ranks(m, s1, st, z_ids, z_lab, inv_tau, group)

        if impl == "triton":
            # One launch for the per-row maths; per-token outputs land in their buffers directly.
            lrow, lse1, lset, c1, ct, val_ids, val_lab = tk.row_terms(
                z_ids, z_lab, m, s1, st, ids, lp_r[t0:t1], lab, w_r[t0:t1],
                kl[t0:t1], ce[t0:t1], tmass[t0:t1], smass[t0:t1], agree[t0:t1],
                bucket=tail_bucket, tau=tau, ce_weight=ce_weight, tau_dense=tau_dense,
                log_floor=math.log(Q_TAIL_FLOOR),
            )  # fmt: skip
            loss += lrow.sum()
        else:
            rt = _row_terms(
                z_ids, z_lab, m, s1, st, ids, lp_r[t0:t1], lab, w_r[t0:t1],
                bucket=tail_bucket, tau=tau, ce_weight=ce_weight, tau_dense=tau_dense,
            )  # fmt: skip
            kl[t0:t1], ce[t0:t1], tmass[t0:t1], smass[t0:t1], agree[t0:t1] = (
                rt.kl,
                rt.ce,
                rt.tmass,
                rt.smass,
                rt.agree,
            )
            loss += (w_r[t0:t1].to(torch.float64) * (rt.kl + ce_weight * rt.ce)).sum()
            lse1, lset, c1, ct, val_ids, val_lab = rt.lse1, rt.lset, rt.c1, rt.ct, rt.val_ids, rt.val_lab

        if not need_grad:
            continue
        if impl == "triton":
            tk.dense_grad_(z, lse1, c1, lset, ct, inv_tau, tau_dense)
        else:
            _dense_grad_torch_(z, lse1, c1, lset, ct, inv_tau, tau_dense)
        # Sparse entries: overwrite with their complete value (dense part + correction), rounded once.
        sink = n * v_local
        row = torch.arange(n, device=dev)[:, None] * v_local
        flat_ids = torch.where(own_ids, row + ids_c, sink)
        flat_lab = torch.where(own_lab, row[:, 0] + lab_c, sink)
        flat = torch.cat([flat_ids.reshape(-1), flat_lab])
        vals = torch.cat([val_ids.reshape(-1), val_lab]).to(buf.dtype)
        buf.scatter_(0, flat, vals)

        if need_grad_hidden:
            _acc_mm_(gh[t0:t1], z, weight, first=True)  # each chunk owns its rows
        if own_gw:
            _acc_mm_(gw, z.t(), h, first=t0 == 0)
        elif need_grad_weight:
            _acc_mm_(main_grad, z.t(), h, first=False, alpha=main_grad_scale)

    if need_grad_hidden and group is not None and reduce_grad_hidden:
        import torch.distributed as dist

        dist.all_reduce(gh, group=group)
    per_token = (_to_all_rows(x, rows, T) for x in (kl, ce, tmass, smass, agree))
    return (loss.to(acc_dtype), *per_token, gh, gw)


def _combine_across_ranks(m, s1, st, z_ids, z_lab, inv_tau, group):
    """Vocab-parallel: global max, then sums rescaled to it; gathered logits are zero where not owned.
    Every rank of the group holds the same labels, hence the same supervised rows and chunks."""
    import torch.distributed as dist

    gm = m.clone()
    dist.all_reduce(gm, op=dist.ReduceOp.MAX, group=group)
    parts = [s1 * torch.exp(m - gm)]
    if st is not None:
        parts.append(st * torch.exp((m - gm) * inv_tau))
    n, k = z_ids.shape
    packed = torch.cat([p.to(z_ids.dtype) for p in parts] + [z_lab, z_ids.reshape(-1)])
    dist.all_reduce(packed, group=group)
    s1 = packed[:n]
    off = n
    if st is not None:
        st = packed[off : off + n]
        off += n
    z_lab = packed[off : off + n]
    z_ids = packed[off + n :].view(n, k)
    return gm, s1, st, z_ids, z_lab


_Outputs = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


@torch.library.custom_op("vpmoe::sparse_kl", mutates_args=())
def _sparse_kl_op(
    hidden: Tensor, weight: Tensor, teacher_ids: Tensor, teacher_logprobs: Tensor, labels: Tensor,
    token_weights: Tensor, rows: Tensor, impl: str, tail_bucket: bool, temperature: float, ce_weight: float,
    vocab_start: int, group_name: str, reduce_grad_hidden: bool, need_grad_hidden: bool, need_grad_weight: bool,
) -> _Outputs:  # fmt: skip
    """Functional: mutates none of its inputs; grad_weight is returned (fp32) and handed to weight.grad."""
    return _sparse_kl_impl(
        hidden, weight, teacher_ids, teacher_logprobs, labels, token_weights, rows, impl, tail_bucket,
        temperature, ce_weight, vocab_start, group_name, reduce_grad_hidden, need_grad_hidden, need_grad_weight,
        None, 1.0,
    )  # fmt: skip


@torch.library.custom_op("vpmoe::sparse_kl_into_main_grad", mutates_args=("main_grad",))
def _sparse_kl_main_grad_op(
    hidden: Tensor, weight: Tensor, teacher_ids: Tensor, teacher_logprobs: Tensor, labels: Tensor,
    token_weights: Tensor, rows: Tensor, impl: str, tail_bucket: bool, temperature: float, ce_weight: float,
    vocab_start: int, group_name: str, reduce_grad_hidden: bool, need_grad_hidden: bool, need_grad_weight: bool,
    main_grad: Tensor, main_grad_scale: float,
) -> _Outputs:  # fmt: skip
    """Gradient-accumulation fusion: adds main_grad_scale x d loss / d weight into main_grad (declared
    mutated; torch.library gives mutating ops no autograd formula, so _IntoMainGrad wraps it)."""
    return _sparse_kl_impl(
        hidden, weight, teacher_ids, teacher_logprobs, labels, token_weights, rows, impl, tail_bucket,
        temperature, ce_weight, vocab_start, group_name, reduce_grad_hidden, need_grad_hidden, need_grad_weight,
        main_grad, main_grad_scale,
    )  # fmt: skip


@_sparse_kl_op.register_fake
def _fake(hidden, weight, teacher_ids, teacher_logprobs, labels, token_weights, rows, impl, tail_bucket,
          temperature, ce_weight, vocab_start, group_name, reduce_grad_hidden, need_grad_hidden, need_grad_weight,
          main_grad=None, main_grad_scale=1.0):  # fmt: skip
    T, H = hidden.shape
    acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    vec = hidden.new_empty(T, dtype=acc)
    gh = hidden.new_empty((rows.shape[0], H) if need_grad_hidden else (0,), dtype=acc)
    gw = weight.new_empty(tuple(weight.shape) if need_grad_weight and main_grad is None else (0,), dtype=acc)
    return (
        hidden.new_empty((), dtype=acc),
        vec,
        vec.clone(),
        vec.clone(),
        vec.clone(),
        hidden.new_empty(T, dtype=torch.bool),
        gh,
        gw,
    )


_sparse_kl_main_grad_op.register_fake(_fake)

# Positions in the op's inputs (both ops share the first 16; the main_grad op adds main_grad, its scale).
_ROWS, _IMPL, _NEED_GH, _NEED_GW, _MG_SCALE = 6, 7, 14, 15, 17


def _setup_context(ctx, inputs, output):
    hidden, weight = inputs[0], inputs[1]
    ctx.need = (inputs[_NEED_GH], inputs[_NEED_GW])
    ctx.dtypes = (hidden.dtype, weight.dtype)
    ctx.n_rows = hidden.shape[0]
    ctx.impl = inputs[_IMPL]
    # Into main_grad: weight.grad gets nothing (or Megatron DDP's placeholder); remember the promised scale.
    ctx.n_inputs = len(inputs)
    ctx.main_grad_scale = inputs[_MG_SCALE] if len(inputs) > _MG_SCALE else None
    ctx.weight = weight if ctx.main_grad_scale is not None else None
    ctx.save_for_backward(output[6], output[7], inputs[_ROWS])
    # The per-token outputs and the saved gradients get no incoming gradient; without this autograd
    # would materialise zeros for every output, a [V, H] fp32 one among them (2.16 GiB at V = 201088,
    # H = 2880, and a memset pass).
    ctx.set_materialize_grads(False)


def _scaled_grad(saved: Tensor, g: Tensor, dtype: torch.dtype, impl: str) -> Tensor:
    """saved x grad_output in the input's dtype, rounded once. In row slices: a dtype-casting mul over
    the whole tensor would materialise a full fp32 temporary (4 V H bytes). Never in place: the graph
    may be retained and backpropagated again (gradcheck does)."""
    out = torch.empty(saved.shape, dtype=dtype, device=saved.device)
    if impl == "triton" and saved.is_cuda:
        from kernels import sparse_kl_triton as tk

        tk.scale_cast_(out, saved, g)  # one pass, vectorised; torch's casting mul runs a slow path
        return out
    g = g.to(saved.dtype)
    rows = saved.shape[0]
    step = max(1, (64 * 2**20) // max(1, saved[:1].numel() * saved.element_size()))
    for r0 in range(0, rows, step):
        torch.mul(saved[r0 : r0 + step], g, out=out[r0 : r0 + step])
    return out


def _backward(ctx, g_loss, *_unused):
    gh, gw, rows = ctx.saved_tensors
    grad_h = grad_w = None
    if g_loss is None:  # only per-token outputs were backpropagated: they carry no gradient
        return (None,) * ctx.n_inputs
    if ctx.need[0] and ctx.needs_input_grad[0]:
        g_rows = _scaled_grad(gh, g_loss, ctx.dtypes[0], ctx.impl)
        # Ignored rows never entered the head: their gradient is exactly zero.
        grad_h = g_rows.new_zeros(ctx.n_rows, g_rows.shape[1]).index_copy_(0, rows, g_rows)
    if ctx.need[1] and ctx.needs_input_grad[1]:
        if ctx.main_grad_scale is None:
            grad_w = _scaled_grad(gw, g_loss, ctx.dtypes[1], ctx.impl)
        else:
            # The weight gradient went into main_grad in the forward, scaled by the promised grad_output.
            # Relative 1e-6, not equality: a schedule's x M / M (megatron's pipeline) may move it by an ulp.
            s = ctx.main_grad_scale
            torch._assert_async(
                (g_loss - s).abs() <= 1e-6 * abs(s),
                "sparse_kl(main_grad=...): loss was backpropagated with a grad_output other than main_grad_scale",
            )
            w = ctx.weight
            if hasattr(w, "grad_added_to_main_grad"):  # Megatron DDP: keep its backward hook firing
                w.grad_added_to_main_grad = True
                grad_w = torch.empty(w.shape, dtype=w.dtype, device=w.device)
    return (grad_h, grad_w) + (None,) * (ctx.n_inputs - 2)


_sparse_kl_op.register_autograd(_backward, setup_context=_setup_context)


class _IntoMainGrad(torch.autograd.Function):
    """Autograd for vpmoe::sparse_kl_into_main_grad: the same context and backward as the functional op."""

    @staticmethod
    def forward(ctx, *inputs):
        out = torch.ops.vpmoe.sparse_kl_into_main_grad(*inputs)
        _setup_context(ctx, inputs, out)
        ctx.mark_non_differentiable(*out[1:])
        return out

    @staticmethod
    def backward(ctx, *grads):
        return _backward(ctx, *grads)
