"""CPU tests of kernels.sparse_kl: the torch reference against fp64 closed-form maths (full logits are fine
at V = 301), the Triton kernels under TRITON_INTERPRET=1 against the reference, vocab-parallel over two gloo
processes, gradcheck and the custom op's schema checks. The GPU matrix is tests/gpu/test_sparse_kl_gpu.py.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

import kernels.sparse_kl_head as head
from kernels import sparse_kl

# The Triton kernels run in the CPU interpreter here (conftest.triton_interpreter); on a CUDA machine
# these tests are skipped (tests/gpu runs the compiled kernels).
INTERPRETER = not torch.cuda.is_available()
needs_interpreter = pytest.mark.skipif(
    not INTERPRETER, reason="Triton CPU interpreter tests run without CUDA"
)
pytestmark = [
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),  # where() lanes
    pytest.mark.usefixtures("triton_interpreter"),
]


def make_case(
    T=37, H=40, V=301, k=7, *, peaked=False, seed=0, dtype=torch.float32, ignore_every=5, ignored_scale=1.0
):
    """Odd sizes on purpose (none a power of two). Peaked: student logits std 6 with a teacher that
    mostly agrees (trained-like); flat: std 0.3 and an unrelated teacher. Labels are sampled from the
    teacher, so they often coincide with a teacher id (the duplicate-position path). ignored_scale
    multiplies the hidden states of ignored rows (after the teacher is drawn): 1e4 puts logits in the
    thousands there, which must change nothing (exp(z) overflows fp32 above ~88.7)."""
    g = torch.Generator().manual_seed(seed)
    s = 6.0 if peaked else 0.3
    hidden = torch.randn(T, H, generator=g, dtype=torch.float64)
    weight = torch.randn(V, H, generator=g, dtype=torch.float64) * (s / math.sqrt(H))
    if peaked:
        t_logits = hidden @ weight.T + torch.randn(T, V, generator=g, dtype=torch.float64)
    else:
        t_logits = 2.0 * torch.randn(T, V, generator=g, dtype=torch.float64)
    t_lp = t_logits.log_softmax(-1)
    lp, ids = t_lp.topk(k, dim=-1)
    perm = torch.randperm(k, generator=g)  # the kernel must not assume the top-1 comes first
    lp, ids = lp[:, perm].contiguous(), ids[:, perm].contiguous()
    labels = torch.multinomial(t_lp.exp(), 1, generator=g).squeeze(1)
    if ignore_every:
        labels[::ignore_every] = -100
    hidden[labels == -100] *= ignored_scale
    tw = 0.5 + torch.rand(T, generator=g, dtype=torch.float64)
    return dict(
        hidden=hidden.to(dtype),
        weight=weight.to(dtype),
        teacher_ids=ids,
        teacher_logprobs=lp.float(),
        labels=labels,
        token_weights=tw.float(),
    )


def oracle(case, *, tail, temperature, ce_weight):
    """fp64 closed form on the full logits, gradients by autograd: independent of the chunked code
    (plain 1 - sum for the tails, no log1mexp, no clamping). Ignored rows enter with zero hidden states
    (their gradient is then exactly 0, and whatever they carry cannot leak NaN through where())."""
    h = case["hidden"].detach().double().clone().requires_grad_()
    w = case["weight"].detach().double().clone().requires_grad_()
    ids, lp, lab = case["teacher_ids"], case["teacher_logprobs"].double(), case["labels"]
    tw = case["token_weights"].double()
    tau = temperature
    valid = lab != -100
    z = torch.where(valid[:, None], h, 0.0) @ w.T
    logq1 = z.log_softmax(-1)
    if tail == "bucket":
        lq_ids = (z / tau).log_softmax(-1).gather(1, ids)
        q_tail = 1 - lq_ids.exp().sum(-1)
        p_tail = (1 - lp.exp().sum(-1)).clamp(min=0)
        a = torch.cat([lp, p_tail.log()[:, None]], -1) / tau
        logp = a.log_softmax(-1)
        logq = torch.cat([lq_ids, q_tail.log()[:, None]], -1)
    else:
        logp = (lp / tau).log_softmax(-1)
        logq = (z.gather(1, ids) / tau).log_softmax(-1)
    p = logp.exp()
    kl = tau**2 * torch.where(p > 0, p * (logp - logq), 0).sum(-1)
    ce = -logq1.gather(1, lab.clamp(min=0)[:, None]).squeeze(1)
    kl, ce = torch.where(valid, kl, 0), torch.where(valid, ce, 0)
    loss = (torch.where(valid, tw, 0) * (kl + ce_weight * ce)).sum()
    gh, gw = torch.autograd.grad(loss, (h, w))
    top1 = ids.gather(1, lp.argmax(-1, keepdim=True)).squeeze(1)
    return dict(
        loss=loss.detach(),
        kl=kl.detach(),
        ce=ce.detach(),
        tmass=torch.where(valid, lp.exp().sum(-1), 0),
        smass=torch.where(valid, logq1.exp().gather(1, ids).sum(-1), 0).detach(),
        agree=(z.argmax(-1) == top1) & valid,
        gh=gh,
        gw=gw,
    )


def run(case, *, impl, grad_output=1.0, **kw):
    h = case["hidden"].clone().requires_grad_()
    w = case["weight"].clone().requires_grad_()
    args = {k: v for k, v in case.items() if k not in ("hidden", "weight")}
    r = sparse_kl(h, w, impl=impl, **args, **kw)
    (r.loss * grad_output).backward()
    return r, h.grad, w.grad


def rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp(min=1e-300)) if b.norm() > 0 else float((a - b).norm())


@pytest.fixture
def small_chunks(monkeypatch):
    """Force several row chunks (the last one partial) at test sizes."""
    monkeypatch.setattr(head, "_CHUNK_BYTES", 301 * 8 * 10)


# --------------------------------------------------------------------------------------------- reference


@pytest.mark.parametrize("tail", ["bucket", "renorm"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("peaked", [False, True])
def test_torch_reference_matches_fp64_closed_form(tail, temperature, peaked, small_chunks):
    case = make_case(peaked=peaked, dtype=torch.float64, seed=1, ignored_scale=1e4)
    kw = dict(tail=tail, temperature=temperature, ce_weight=0.7)
    ref = oracle(case, **kw)
    r, gh, gw = run(case, impl="torch", grad_output=1.0, **kw)
    assert r.loss.dtype == torch.float64
    assert rel(r.loss, ref["loss"]) < 1e-12
    assert rel(r.kl, ref["kl"]) < 1e-10
    assert rel(r.ce, ref["ce"]) < 1e-12
    assert rel(r.teacher_topk_mass, ref["tmass"]) < 1e-12
    assert rel(r.student_mass_on_teacher_ids, ref["smass"]) < 1e-12
    assert torch.equal(r.top1_agree, ref["agree"])
    assert rel(gh, ref["gh"]) < 1e-10
    assert rel(gw, ref["gw"]) < 1e-10


def test_gradcheck_tiny_fp64():
    case = make_case(T=6, H=5, V=13, k=3, seed=2, dtype=torch.float64, ignore_every=4)
    args = {k: v for k, v in case.items() if k not in ("hidden", "weight")}
    h = case["hidden"].clone().requires_grad_()
    w = case["weight"].clone().requires_grad_()
    for tail in ("bucket", "renorm"):

        def f(h, w, tail=tail):
            return sparse_kl(h, w, impl="torch", tail=tail, temperature=1.5, ce_weight=0.3, **args).loss

        assert torch.autograd.gradcheck(f, (h, w), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_opcheck_schema():
    case = make_case(T=6, H=5, V=13, k=3, seed=3, dtype=torch.float32)
    h = case["hidden"].clone().requires_grad_()
    w = case["weight"].clone().requires_grad_()
    op_args = (
        h,
        w,
        case["teacher_ids"],
        case["teacher_logprobs"],
        case["labels"],
        case["token_weights"],
        torch.nonzero(case["labels"] != -100).squeeze(1),
        "torch",
        True,
        1.5,
        0.3,
        0,
        "",
        True,  # reduce_grad_hidden
        True,
        True,
    )
    torch.library.opcheck(
        torch.ops.vpmoe.sparse_kl.default,
        op_args,
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )
    # With main_grad: the schema must declare the write (test_schema fails on an undeclared mutation).
    mg = torch.zeros(w.shape, dtype=torch.float32)
    torch.library.opcheck(
        torch.ops.vpmoe.sparse_kl_into_main_grad.default,
        (*op_args, mg, 2.0),
        test_utils=("test_schema", "test_faketensor"),
    )


def test_per_token_outputs_are_detached_and_inputs_untouched():
    case = make_case(seed=4)
    before = {k: v.clone() for k, v in case.items()}
    r, _, _ = run(case, impl="torch", grad_output=3.0, ce_weight=0.2)
    assert r.loss.requires_grad
    assert not any(t.requires_grad for t in r[1:])
    for k, v in case.items():
        assert torch.equal(v, before[k]), k


def test_all_ignored_batch_is_zero_and_finite(small_chunks):
    case = make_case(seed=5)
    case["labels"][:] = -100
    for impl in ["torch"] + (["triton"] if INTERPRETER else []):
        r, gh, gw = run(case, impl=impl, temperature=1.3, ce_weight=0.5)
        assert float(r.loss) == 0.0
        assert torch.count_nonzero(r.kl) == 0 and torch.count_nonzero(r.ce) == 0
        assert torch.count_nonzero(gh) == 0 and torch.count_nonzero(gw) == 0
        assert not r.top1_agree.any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("impl", ["torch", pytest.param("triton", marks=needs_interpreter)])
def test_ignored_rows_with_huge_logits_change_nothing(impl, dtype, small_chunks):
    """Issue 15: an ignored row whose logits pass ~88.7 (exp overflows fp32) turned grad_hidden and
    grad_weight into NaN (its dense gradient was 0 x exp(z - 0)). Ignored rows are gathered out before the
    GEMMs now: loss and both gradients equal those of the same call without those rows, bit for bit; the
    ignored rows get grad_hidden 0 and per-token outputs 0 / False, whatever ids and log-probs they carry."""
    case = make_case(peaked=True, dtype=dtype, seed=8, ignore_every=4, ignored_scale=1e4)
    ign = case["labels"] == -100
    assert (case["hidden"][ign].double() @ case["weight"].double().T).abs().max() > 1000
    case["teacher_ids"][ign] = -7  # garbage: never read
    case["teacher_logprobs"][ign] = float("nan")
    kept = {k: v if k == "weight" else v[~ign].clone() for k, v in case.items()}
    kw = dict(tail="bucket", temperature=1.5, ce_weight=0.4, grad_output=1.7)
    r, gh, gw = run(case, impl=impl, **kw)
    r0, gh0, gw0 = run(kept, impl=impl, **kw)
    assert torch.isfinite(r.loss) and torch.isfinite(gh).all() and torch.isfinite(gw).all()
    assert torch.equal(r.loss, r0.loss)
    assert torch.equal(gw, gw0)
    assert torch.equal(gh[~ign], gh0) and torch.count_nonzero(gh[ign]) == 0
    for name, v, v0 in zip(r._fields[1:], r[1:], r0[1:], strict=True):
        assert torch.equal(v[~ign], v0), name
        assert not v[ign].any(), name


def test_supervised_rows_given_equals_computed_and_is_checked():
    """The trainer passes the supervised-row index built on the host (no host sync); it gives the same
    result as the index computed from labels, and an index that does not match the labels is an error."""
    case = make_case(seed=9)  # T = 37, rows 0, 5, ..., 35 ignored
    rows = torch.nonzero(case["labels"] != -100).squeeze(1)
    r, gh, gw = run(case, impl="torch", ce_weight=0.3)
    r1, gh1, gw1 = run(case, impl="torch", ce_weight=0.3, supervised_rows=rows)
    assert torch.equal(r1.loss, r.loss) and torch.equal(gh1, gh) and torch.equal(gw1, gw)
    assert rows[-1] == 36 and rows[-2] == 34
    bad = {
        "missing": rows[1:],
        "with an ignored row": torch.cat([torch.tensor([0]), rows]),
        "swapped for an ignored row": torch.cat([rows[:-1], torch.tensor([35])]),
        "duplicate": torch.cat([rows[:1], rows]),
        "unsorted": rows.flip(0),
        "out of range": torch.cat([rows[:-1], torch.tensor([37])]),
    }
    for name, b in bad.items():
        with pytest.raises(RuntimeError, match="supervised_rows is not the sorted index"):
            run(case, impl="torch", supervised_rows=b)
            pytest.fail(name)
    with pytest.raises(ValueError, match="int64"):
        run(case, impl="torch", supervised_rows=rows.int())


def test_tail_floor_keeps_gradient_direction():
    """Student puts ~all its mass on the teacher ids while the teacher keeps tail mass: q_tail is below
    Q_TAIL_FLOOR. Loss and gradient stay finite, and the gradient still raises every tail logit
    (d loss / d z_j < 0 for j outside the teacher ids)."""
    T, H, V, k = 4, 8, 50, 5
    g = torch.Generator().manual_seed(6)
    hidden = torch.eye(T, H, dtype=torch.float64)
    weight = torch.zeros(V, H, dtype=torch.float64)
    ids = torch.stack([torch.randperm(V, generator=g)[:k] for _ in range(T)])
    for t in range(T):
        weight[ids[t], t] = 40.0  # q_tail ~ V e^-40: far below the floor
    lp = torch.full((T, k), math.log(0.9 / k))  # teacher tail mass 0.1
    labels = ids[:, 0].clone()
    hidden.requires_grad_()
    z = (hidden @ weight.T).detach().requires_grad_()
    # Gradient with respect to the logits through an identity "weight": hidden = I, so grad_weight rows
    # are d loss / d z_j for the row that sees them.
    w = weight.clone().requires_grad_()
    r = sparse_kl(hidden.detach(), w, ids, lp, labels, impl="torch")
    r.loss.backward()
    assert math.isfinite(float(r.loss)) and torch.isfinite(w.grad).all()
    for t in range(T):
        tail = torch.ones(V, dtype=torch.bool)
        tail[ids[t]] = False
        assert (w.grad[tail, t] < 0).all()
    del z


def test_rejects_bad_ids_and_cpu_triton(monkeypatch):
    case = make_case(T=5, H=4, V=11, k=2, seed=7)
    case["teacher_ids"][1, 0] = 11
    case["labels"][1] = 3
    with pytest.raises(RuntimeError, match="outside"):  # checked on the device: _assert_async
        run(case, impl="torch")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="needs CUDA"):
        run(make_case(T=5, H=4, V=11, k=2, seed=7), impl="triton")
    with pytest.raises(ValueError, match="process_group"):
        run(make_case(T=5, H=4, V=11, k=2, seed=7), impl="torch", vocab_start=3)
    with pytest.raises(ValueError, match="reduce_grad_hidden=False is for vocab-parallel"):
        run(make_case(T=5, H=4, V=11, k=2, seed=7), impl="torch", reduce_grad_hidden=False)


# ---------------------------------------------------------------------------- Triton (CPU interpreter)

# Slack of the kernel's error over the torch reference's own error, both against fp64 maths on the same
# rounded inputs. Both share the logits GEMM; they differ in fp32 reduction order (tiles of 128 vs slices),
# so errors agree to within a small factor; ABS_FLOOR covers fp32 rounding when both errors are ~1e-7.
SLACK = 2.0
ABS_FLOOR = {torch.float32: 2e-6, torch.bfloat16: 2e-6}


@needs_interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("peaked", [False, True], ids=["flat", "peaked"])
@pytest.mark.parametrize(
    "tail,temperature", [("bucket", 1.0), ("bucket", 2.0), ("renorm", 1.0), ("renorm", 0.7)]
)
def test_triton_interpreter_vs_reference(dtype, peaked, tail, temperature, small_chunks):
    case = make_case(peaked=peaked, dtype=dtype, seed=11, ignored_scale=1e4)
    before = {k: v.clone() for k, v in case.items()}
    kw = dict(tail=tail, temperature=temperature, ce_weight=0.5, grad_output=2.5)
    ref = oracle(case, tail=tail, temperature=temperature, ce_weight=0.5)
    ref["gh"], ref["gw"], ref["loss"] = 2.5 * ref["gh"], 2.5 * ref["gw"], ref["loss"]
    rt, gh_t, gw_t = run(case, impl="torch", **kw)
    rk, gh_k, gw_k = run(case, impl="triton", **kw)
    for k, v in case.items():
        assert torch.equal(v, before[k]), f"{k} modified"
    assert gh_k.dtype == dtype and gw_k.dtype == dtype
    assert torch.equal(rk.top1_agree, rt.top1_agree)
    pairs = {
        "loss": (rk.loss, rt.loss, ref["loss"]),
        "kl": (rk.kl, rt.kl, ref["kl"]),
        "ce": (rk.ce, rt.ce, ref["ce"]),
        "smass": (rk.student_mass_on_teacher_ids, rt.student_mass_on_teacher_ids, ref["smass"]),
        "grad_hidden": (gh_k, gh_t, ref["gh"]),
        "grad_weight": (gw_k, gw_t, ref["gw"]),
    }
    for name, (k_out, t_out, r_out) in pairs.items():
        assert torch.isfinite(k_out).all(), name
        e_k, e_t = rel(k_out, r_out), rel(t_out, r_out)
        assert e_k <= SLACK * e_t + ABS_FLOOR[dtype], f"{name}: kernel {e_k:.3g} vs torch {e_t:.3g}"


# ------------------------------------------------------------------------------- vocab-parallel (gloo)


def _vp_worker(rank, world, init_file, case, configs, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        V = case["weight"].shape[0]
        bounds = [0, 140, V]  # uneven shards
        lo, hi = bounds[rank], bounds[rank + 1]
        results = []
        for cfg in configs:
            h = case["hidden"].clone().requires_grad_()
            w = case["weight"][lo:hi].clone().requires_grad_()
            args = {k: v for k, v in case.items() if k not in ("hidden", "weight")}
            r = sparse_kl(h, w, impl="torch", vocab_start=lo, process_group=dist.group.WORLD, **args, **cfg)
            (r.loss * 1.5).backward()
            results.append(({k: v for k, v in r._asdict().items()}, h.grad, w.grad))
        # reduce_grad_hidden=False (hidden gathered from sequence-parallel shards): this rank's share only.
        h = case["hidden"].clone().requires_grad_()
        w = case["weight"][lo:hi].clone().requires_grad_()
        args = {k: v for k, v in case.items() if k not in ("hidden", "weight")}
        r = sparse_kl(
            h, w, impl="torch", vocab_start=lo, process_group=dist.group.WORLD, reduce_grad_hidden=False,
            **args, **configs[0],
        )  # fmt: skip
        (r.loss * 1.5).backward()
        results.append((float(r.loss), h.grad, w.grad))
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_vocab_parallel_two_gloo_ranks_equal_single_process(tmp_path):
    import torch.multiprocessing as mp

    case = make_case(peaked=True, dtype=torch.float64, seed=21, ignored_scale=1e4)
    configs = [
        dict(tail="bucket", temperature=1.7, ce_weight=0.4),
        dict(tail="renorm", temperature=1.0, ce_weight=0.0),
    ]
    mp.spawn(_vp_worker, args=(2, str(tmp_path / "init"), case, configs, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{i}.pt") for i in range(2)]
    for c, cfg in enumerate(configs):
        r1, gh1, gw1 = run(case, impl="torch", grad_output=1.5, **cfg)
        full = r1._asdict()
        for rank in range(2):
            res, gh, _ = ranks[rank][c]
            for key, v in full.items():
                if v.dtype == torch.bool:
                    assert torch.equal(res[key], v), key
                else:
                    assert rel(res[key], v) < 1e-12, key
            assert rel(gh, gh1) < 1e-12
        assert rel(torch.cat([ranks[0][c][2], ranks[1][c][2]]), gw1) < 1e-12
    # Partial grad_hidden: the ranks' shares add up to the whole gradient (the caller's reduce-scatter
    # sums them); loss and grad_weight are unchanged.
    r1, gh1, gw1 = run(case, impl="torch", grad_output=1.5, **configs[0])
    partial = [ranks[rank][len(configs)] for rank in range(2)]
    assert all(rel(p[1], gh1) > 1e-3 for p in partial), "each rank's share alone is not the gradient"
    assert rel(partial[0][1] + partial[1][1], gh1) < 1e-12
    assert all(abs(p[0] - float(r1.loss)) < 1e-12 * abs(float(r1.loss)) for p in partial)
    assert rel(torch.cat([partial[0][2], partial[1][2]]), gw1) < 1e-12


def test_non_finite_teacher_logprobs_are_rejected():
    torch.manual_seed(0)
    T, H, V, k = 6, 8, 31, 3
    hidden, weight = torch.randn(T, H, requires_grad=True), torch.randn(V, H)
    ids = torch.stack([torch.randperm(V)[:k] for _ in range(T)])
    lps = torch.log_softmax(torch.randn(T, k), -1) - 0.1
    labels = torch.randint(0, V, (T,))
    labels[0] = -100
    lps[0, 0] = float("nan")  # an ignored row may carry anything
    assert torch.isfinite(sparse_kl(hidden, weight, ids, lps, labels, impl="torch").loss)
    lps[3, 1] = float("nan")
    with pytest.raises(RuntimeError, match="teacher log-probs of supervised rows are not finite"):
        sparse_kl(hidden, weight, ids, lps, labels, impl="torch")


# ------------------------------------------------------------------------- gradient-accumulation fusion


@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_main_grad_accumulation_equals_weight_grad(impl, small_chunks):
    """grad_W into Megatron's fp32 main_grad (scaled by the promised grad_output, added to what is
    there) equals the ordinary weight.grad path; hidden's gradient and the loss are unchanged."""
    case = make_case(peaked=True, seed=11, dtype=torch.bfloat16)
    kw = dict(tail="bucket", temperature=1.5, ce_weight=0.2)
    r_ref, gh_ref, gw_ref = run(case, impl=impl, grad_output=3.0, **kw)

    h = case["hidden"].clone().requires_grad_()
    w = case["weight"].clone().requires_grad_()
    before = torch.randn(w.shape, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    main_grad = before.clone()
    args = {k: v for k, v in case.items() if k not in ("hidden", "weight")}
    r = sparse_kl(h, w, impl=impl, **args, **kw, main_grad=main_grad, main_grad_scale=3.0)
    assert not torch.equal(main_grad, before)  # written in the forward (eager gradient)
    (r.loss * 3.0).backward()
    assert w.grad is None  # nothing went to weight.grad
    assert torch.equal(r.loss, r_ref.loss)
    assert torch.equal(h.grad, gh_ref)
    added = main_grad - before
    # gw_ref is the fp32 accumulator rounded once to bf16; main_grad keeps the fp32 sum.
    assert rel(added, gw_ref.float()) < 2**-8


def test_main_grad_wrong_grad_output_and_bad_buffer_are_errors():
    case = make_case(seed=12)
    args = {k: v for k, v in case.items() if k not in ("hidden", "weight")}
    w = case["weight"].clone().requires_grad_()
    with pytest.raises(ValueError, match="main_grad must be fp32"):
        sparse_kl(case["hidden"], w, impl="torch", **args, main_grad=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="main_grad_scale"):
        sparse_kl(
            case["hidden"], w, impl="torch", **args, main_grad=torch.zeros(w.shape), main_grad_scale=0.0
        )
    r = sparse_kl(
        case["hidden"], w, impl="torch", **args, main_grad=torch.zeros(w.shape), main_grad_scale=2.0
    )
    with pytest.raises(RuntimeError, match="grad_output other than main_grad_scale"):
        r.loss.backward()  # grad_output 1, but 2 was promised and already applied


def test_main_grad_megatron_ddp_protocol():
    """A Megatron DDP parameter (it carries grad_added_to_main_grad) gets the flag set and a placeholder
    gradient, so DDP's per-parameter backward hook still fires and skips adding the placeholder."""
    case = make_case(seed=13)
    args = {k: v for k, v in case.items() if k not in ("hidden", "weight")}
    w = case["weight"].clone().requires_grad_()
    w.grad_added_to_main_grad = False
    w.main_grad = torch.zeros(w.shape)
    fired = []
    w.register_post_accumulate_grad_hook(lambda p: fired.append(p.grad_added_to_main_grad))
    r = sparse_kl(case["hidden"], w, impl="torch", **args, main_grad=w.main_grad)
    r.loss.backward()
    assert fired == [True]
    assert w.main_grad.abs().sum() > 0
