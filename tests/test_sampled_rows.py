"""Sampled teacher rows (RS-KD, vpmoe/teacher/sampling.py) and the loss on them: seeded draws, unbiased
counts, the padded shape the loss takes (NO_ID slots), both impls and the Triton kernel against an fp64
closed form, and the gradient's expectation against bucket KD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import kernels.sparse_kl_head as head
from kernels import NO_ID, sparse_kl
from vpmoe.teacher import sampling

INTERPRETER = (
    not torch.cuda.is_available()
)  # the kernels in the CPU interpreter (conftest.triton_interpreter)
pytestmark = [
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.usefixtures("triton_interpreter"),
]


def topk_rows(rows=6, k=8, V=301, seed=0, tail=True):
    """A teacher's top-k log-probs in rank order (full-vocabulary log-softmax, so a tail remains), or,
    with tail=False, a distribution over k ids only (top-k mass 1)."""
    g = np.random.default_rng(seed)
    logits = g.normal(0, 2.0, (rows, V))
    lp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    ids = np.argsort(-lp, axis=1)[:, :k]
    top = np.take_along_axis(lp, ids, 1)
    if not tail:
        top = top - np.logaddexp.reduce(top, axis=1, keepdims=True)
    return ids.astype(np.uint32), top


def test_draws_depend_only_on_key_position_and_index():
    pos = np.array([3, 9, 10, 400])
    u = sampling.uniforms(sampling.sample_key("s1", 0), pos, 50)
    assert u.shape == (4, 50) and (u >= 0).all() and (u < 1).all()
    # the same position gives the same draws whatever else is in the call (batching, resume)
    assert np.array_equal(sampling.uniforms(sampling.sample_key("s1", 0), pos[2:3], 50), u[2:3])
    assert not np.array_equal(sampling.uniforms(sampling.sample_key("s2", 0), pos, 50), u)
    assert not np.array_equal(sampling.uniforms(sampling.sample_key("s1", 1), pos, 50), u)
    assert abs(u.mean() - 0.5) < 0.05 and len(np.unique(u)) == u.size


def test_counts_are_unbiased_for_the_k_plus_1_way_distribution():
    """E[c_i / N] = p_i for the k ids and the tail (the multinomial means), over many sample keys."""
    _, lp = topk_rows(rows=3, k=8, seed=1)
    p = np.exp(lp)
    want = np.concatenate([p, 1 - p.sum(1, keepdims=True)], axis=1)
    assert want[:, -1].min() > 0.05  # a real tail
    n, draws = 50, 4000
    total = np.zeros_like(want)
    for s in range(draws):
        c = sampling.draw_counts(lp, sampling.uniforms(sampling.sample_key(f"s{s}", 0), np.arange(3), n))
        assert (c.sum(axis=1) == n).all()
        total += c
    est = total / (n * draws)
    se = np.sqrt(want * (1 - want) / (n * draws))
    assert (np.abs(est - want) <= 5 * se + 1e-12).all(), np.abs(est - want) / se


def test_sampled_rows_and_padding_round_trip():
    ids, lp = topk_rows(rows=40, k=8, seed=2)
    rows = sampling.sampled_rows(ids, lp, np.arange(40), sampling.sample_key("x", 0), 5)
    n = rows["row_unique"].astype(int)
    assert len(rows["sampled_ids"]) == len(rows["sampled_counts"]) == n.sum()
    starts = np.cumsum(n) - n
    for r in range(40):
        got = rows["sampled_ids"][starts[r] : starts[r] + n[r]]
        assert len(set(got.tolist())) == n[r]  # unique per row
        assert list(got) == [i for i in ids[r] if i in set(got.tolist())]  # the teacher's rank order
        assert rows["sampled_counts"][starts[r] : starts[r] + n[r]].sum() + rows["tail_count"][r] == 5
    assert (rows["tail_count"] > 0).any() and (rows["tail_count"] == 0).any()
    pid, plp = sampling.padded_rows(rows["row_unique"], rows["sampled_ids"], rows["sampled_counts"], 5, 8)
    assert pid.dtype == np.int32 and plp.dtype == np.float16
    assert ((pid == NO_ID) == np.isneginf(plp)).all()
    mass = np.exp(plp.astype(np.float64)).sum(1) + rows["tail_count"] / 5
    assert np.allclose(mass, 1, atol=2e-3)  # fp16 log(c / N)
    with pytest.raises(sampling.SamplingError, match="width"):
        sampling.padded_rows(rows["row_unique"], rows["sampled_ids"], rows["sampled_counts"], 5, 2)
    with pytest.raises(sampling.SamplingError, match="samples"):
        sampling.sampled_rows(ids, lp, np.arange(40), 0, 256)


# ------------------------------------------------------------------------------------------- the loss


def sampled_case(T=29, H=24, V=301, k=9, N=6, *, dtype=torch.float32, seed=3):
    """A student and padded sampled rows of a teacher that mostly agrees with it (peaked), some ignored
    rows with huge logits and garbage teacher slots, a row whose draws all fell in the tail (no id) and
    a row with all N draws on one id."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(T, H, generator=g, dtype=torch.float64)
    weight = torch.randn(V, H, generator=g, dtype=torch.float64) * (4.0 / math.sqrt(H))
    t_lp = (hidden @ weight.T + torch.randn(T, V, generator=g, dtype=torch.float64)).log_softmax(-1)
    lp, ids = t_lp.topk(k, dim=-1)
    rows = sampling.sampled_rows(
        ids.numpy().astype(np.uint32), lp.numpy(), np.arange(T), sampling.sample_key("case", seed), N
    )
    n = rows["row_unique"].copy()
    counts, tail, flat = rows["sampled_counts"].copy(), rows["tail_count"].copy(), rows["sampled_ids"]
    starts = np.cumsum(n) - n
    # row 1: every draw in the tail; row 2: every draw on one id
    keep = np.ones(len(flat), bool)
    keep[starts[1] : starts[1] + n[1]] = False
    keep[starts[2] + 1 : starts[2] + n[2]] = False
    counts[starts[2]] = N
    tail[1], tail[2], n[1], n[2] = N, 0, 0, 1
    pid, plp = sampling.padded_rows(n, flat[keep], counts[keep], N, k)
    labels = torch.multinomial(t_lp.exp(), 1, generator=g).squeeze(1)
    labels[::7] = -100
    ign = labels == -100
    hidden[ign] *= 1e4
    pid_t, plp_t = torch.from_numpy(pid).long(), torch.from_numpy(plp.astype(np.float32))
    pid_t[ign], plp_t[ign] = 12345, float("nan")  # ignored rows: never read
    tw = 0.5 + torch.rand(T, generator=g, dtype=torch.float64)
    case = dict(hidden=hidden.to(dtype), weight=weight.to(dtype), teacher_ids=pid_t, teacher_logprobs=plp_t,
                labels=labels, token_weights=tw.float())  # fmt: skip
    return case, tail / N


def sampled_oracle(case, p_tail):
    """fp64 closed form on full logits: p = c/N on the drawn ids and the rest, 1 - sum p (the tail count
    / N up to the fp16 rounding of log(c / N), checked here), in a bucket; the student's bucket is
    everything but the row's drawn ids (1 - their q)."""
    h = case["hidden"].detach().double().clone().requires_grad_()
    w = case["weight"].detach().double().clone().requires_grad_()
    ids, lab, tw = case["teacher_ids"], case["labels"], case["token_weights"].double()
    valid = lab != -100
    has = (ids >= 0) & valid[:, None]
    z = torch.where(valid[:, None], h, 0.0) @ w.T
    logq = z.log_softmax(-1)
    lq_ids = torch.where(has, logq.gather(1, ids.clamp(0, w.shape[0] - 1)), -math.inf)
    p = torch.where(has, case["teacher_logprobs"].double().exp(), 0.0)
    pt = torch.where(valid, (1 - p.sum(-1)).clamp(min=0), 0.0)
    assert (pt - torch.where(valid, torch.as_tensor(p_tail, dtype=torch.float64), 0)).abs().max() < 2e-3
    q_tail = 1 - lq_ids.exp().sum(-1)
    kl = torch.where(p > 0, p * (torch.where(has, p.log(), 0) - torch.where(has, lq_ids, 0)), 0).sum(-1)
    kl = kl + torch.where(pt > 0, pt * (pt.log() - q_tail.log()), 0)
    kl = torch.where(valid, kl, 0)
    loss = (torch.where(valid, tw, 0) * kl).sum()
    gh, gw = torch.autograd.grad(loss, (h, w))
    return loss.detach(), kl.detach(), gh, gw


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(
    "impl", ["torch", pytest.param("triton", marks=pytest.mark.skipif(not INTERPRETER, reason="interpreter"))]
)
def test_loss_on_padded_sampled_rows_matches_fp64_closed_form(impl, dtype, monkeypatch):  # fmt: skip
    """The loss skips NO_ID slots on both sides: its bucket holds the tail count / N and the student's mass
    off the drawn ids. Rows with no id and rows with one id included; grad_output != 1; odd shapes;
    several row chunks; inputs untouched."""
    monkeypatch.setattr(head, "_CHUNK_BYTES", 301 * 8 * 10)
    case, p_tail = sampled_case(dtype=dtype)
    before = {k: v.clone() for k, v in case.items()}
    loss0, kl0, gh0, gw0 = sampled_oracle(case, p_tail)
    h = case["hidden"].clone().requires_grad_()
    w = case["weight"].clone().requires_grad_()
    r = sparse_kl(h, w, **{k: v for k, v in case.items() if k not in ("hidden", "weight")}, impl=impl)
    (r.loss * 1.7).backward()
    for k, v in case.items():
        assert torch.equal(v, before[k]) or (v.isnan() == before[k].isnan()).all(), f"{k} modified"
    # bf16: the head's logits are bf16 GEMM outputs (|z| ~ 10 here, 2^-8 relative), the oracle's exact
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    assert torch.isfinite(h.grad).all() and torch.isfinite(w.grad).all()
    assert abs(float(r.loss.detach()) - float(loss0)) <= tol * abs(float(loss0))
    assert torch.allclose(r.kl.double(), kl0, rtol=tol, atol=5 * tol)
    for got, want in ((h.grad, 1.7 * gh0), (w.grad, 1.7 * gw0)):
        err = float((got.double() - want).norm() / want.norm())
        assert err <= (5e-2 if dtype == torch.bfloat16 else 1e-5), err
    assert not r.top1_agree[1]  # the no-id row has no teacher top-1
    assert float(r.teacher_topk_mass[1]) == 0.0 and abs(float(r.teacher_topk_mass[2]) - 1) < 1e-3


def _grads(lp_rows, ids, hidden, weight):
    h = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    T = h.shape[0]
    r = sparse_kl(h, w, ids, lp_rows, torch.arange(T) % w.shape[0], impl="torch")
    r.loss.backward()
    return torch.cat([h.grad.ravel(), w.grad.ravel()])


def test_gradient_expectation_is_bucket_kd_when_the_top_k_holds_all_mass():
    """With no tail (a teacher whose top-k holds all its mass) the sampled loss is linear in the counts,
    so its expected gradient is bucket KD's on the (k+1)-way distribution (here: KD on the k ids):
    averaged over 600 seeds, within 5 standard errors per coordinate. With a tail it is not: a tail draw
    puts the student's bucket over every id not drawn (docs/distillation_mechanics.md)."""
    T, H, V, k, N = 5, 8, 53, 6, 50
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(T, H, generator=g, dtype=torch.float64)
    weight = torch.randn(V, H, generator=g, dtype=torch.float64) * 0.5
    ids_np, lp_np = topk_rows(rows=T, k=k, V=V, seed=5, tail=False)
    ids = torch.from_numpy(ids_np.astype(np.int64))
    exact = _grads(torch.from_numpy(lp_np), ids, hidden, weight)
    per_seed = []
    for s in range(600):
        rows = sampling.sampled_rows(ids_np, lp_np, np.arange(T), sampling.sample_key(f"s{s}", 0), N)
        assert (rows["tail_count"] == 0).all()
        pid, _ = sampling.padded_rows(rows["row_unique"], rows["sampled_ids"], rows["sampled_counts"], N, k)
        # exact log(c / N) in fp64 (the fp16 of padded_rows rounds it: a storage effect, not the estimator's)
        lp64 = np.full(pid.shape, -np.inf)
        n = rows["row_unique"].astype(int)
        col = np.arange(len(rows["sampled_ids"])) - np.repeat(np.cumsum(n) - n, n)
        lp64[np.repeat(np.arange(T), n), col] = np.log(rows["sampled_counts"] / N)
        per_seed.append(_grads(torch.from_numpy(lp64), torch.from_numpy(pid).long(), hidden, weight))
    per_seed = torch.stack(per_seed)
    mean, se = per_seed.mean(0), per_seed.std(0) / math.sqrt(len(per_seed))
    assert ((mean - exact).abs() <= 5 * se + 1e-12).all()
    assert float((mean - exact).norm() / exact.norm()) < 0.05


def test_a_row_without_ids_is_finite_under_either_tail():
    """A row whose slots are all NO_ID: zero KL and finite gradients with the bucket (all teacher mass in
    the tail) and with renorm (no teacher ids: nothing to match), both impls."""
    g = torch.Generator().manual_seed(9)
    h = torch.randn(3, 8, generator=g, dtype=torch.float64)
    w = torch.randn(29, 8, generator=g, dtype=torch.float64)
    ids = torch.tensor([[3, 5, NO_ID], [NO_ID, NO_ID, NO_ID], [7, NO_ID, NO_ID]])
    lp = torch.tensor([[-0.5, -1.5, -math.inf], [-math.inf] * 3, [-0.1, -math.inf, -math.inf]])
    labels = torch.tensor([3, 4, 7])
    for impl in ("torch", "triton") if INTERPRETER else ("torch",):
        for tail in ("bucket", "renorm"):
            hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
            r = sparse_kl(hh, ww, ids, lp, labels, impl=impl, tail=tail, ce_weight=0.3)
            r.loss.backward()
            assert torch.isfinite(hh.grad).all() and torch.isfinite(ww.grad).all(), (impl, tail)
            assert float(r.kl[1]) == 0.0, (impl, tail)
