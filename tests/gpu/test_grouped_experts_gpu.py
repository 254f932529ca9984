"""GroupedExperts on CUDA in bf16 against megatron's SequentialMLP: the grouped GEMM at the `small` preset's
expert shapes (CUTLASS on H100/H200), whole students from one seed, and a step through megatron's DDP and
distributed optimizer. On the GPU machine: `python -m pytest -m gpu tests/gpu/test_grouped_experts_gpu.py`.
The CPU counterparts (fp32, exact) are in tests/test_grouped_experts.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

# Shared with the CPU tests (tests/ is on sys.path through its conftest).
from test_student_model import (
    SEED,
    batch,
    chunked_cross_entropy_sum,
    gpu_world_of_one,
    tiny_config,
    train_step,
)

from vpmoe.model.build import build_student, forward_student, set_aux_loss_backward_scale, teardown_parallel
from vpmoe.model.grouped_experts import GroupedExperts, grouped_linear, grouped_mm_kernel, per_expert

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

# The `small` preset's experts for one micro-batch of 8192 tokens: 32 experts, top-4, hidden 1024, ffn 512.
E, ROWS, H, FFN = 32, 4 * 8192, 1024, 512


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-30))


def counts_with_an_empty_expert(generator: torch.Generator) -> list[int]:
    weights = torch.rand(E, generator=generator, device="cuda") + 0.1
    weights[5] = 0.0
    counts = torch.multinomial(weights, ROWS, replacement=True, generator=generator).bincount(minlength=E)
    return counts.tolist()


def timed_ms(fn, repeats: int = 5) -> float:
    fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def test_grouped_linear_bf16_is_as_close_to_fp32_as_a_loop_of_linears():
    """fc1's shape (1024 -> 2 x 512), forward and both gradients: grouped_mm's error against the fp32 result
    of the same bf16 inputs is within that of megatron's per-expert F.linear (cuBLAS) in bf16."""
    g = torch.Generator(device="cuda").manual_seed(0)
    counts = counts_with_an_empty_expert(g)
    offs = torch.tensor(counts, device="cuda").cumsum(0).to(torch.int32)
    x0 = torch.randn(ROWS, H, device="cuda", generator=g).bfloat16()
    w0 = (torch.randn(E, 2 * FFN, H, device="cuda", generator=g) * 0.02).bfloat16()
    upstream = torch.randn(ROWS, 2 * FFN, device="cuda", generator=g).bfloat16()

    def loop(x, w):
        return torch.cat([F.linear(r, we) for r, we in zip(torch.split(x, counts), w, strict=True)])

    def run(fn, dtype):
        x, w = x0.to(dtype).requires_grad_(), w0.to(dtype).requires_grad_()
        y = fn(x, w)
        y.backward(upstream.to(dtype))
        return y.detach(), x.grad, w.grad

    reference = run(loop, torch.float32)
    grouped = run(lambda x, w: grouped_linear(x, w, offs), torch.bfloat16)
    looped = run(loop, torch.bfloat16)
    for what, ours, theirs, ref in zip(("out", "x.grad", "w.grad"), grouped, looped, reference, strict=True):
        assert rel(ours, ref) <= 1.5 * rel(theirs, ref) + 1e-3, (what, rel(ours, ref), rel(theirs, ref))
    assert float(grouped[2][5].abs().sum()) == 0.0, "the expert without tokens gets a zero gradient"

    kernel = grouped_mm_kernel(x0.device, torch.bfloat16)
    if torch.cuda.get_device_capability()[0] in (9, 10):
        assert kernel.startswith("CUTLASS")

        def step(fn):
            x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
            fn(x, w).backward(upstream)

        grouped_ms = timed_ms(lambda: step(lambda x, w: grouped_linear(x, w, offs)))
        loop_ms = timed_ms(lambda: step(loop))
        print(
            f"fc1 forward+backward, {E} experts, {ROWS} rows: "
            f"grouped {grouped_ms:.2f} ms, loop {loop_ms:.2f} ms"
        )
        assert grouped_ms < loop_ms


def _students(device) -> dict:
    return {
        k: build_student(tiny_config(dtype="bf16", experts=k), device=device, seed=SEED)
        for k in ("sequential", "grouped")
    }


def test_bf16_students_grouped_equals_sequential_within_rounding():
    device = gpu_world_of_one()
    try:
        students = _students(device)
        assert isinstance(students["grouped"].decoder.layers[0].mlp.experts, GroupedExperts)
        weights = {
            k: {n: t for name, p in m.named_parameters() for n, t in per_expert(name, p)}
            for k, m in students.items()
        }
        assert weights["grouped"].keys() == weights["sequential"].keys()
        for name, value in weights["sequential"].items():
            assert torch.equal(weights["grouped"][name], value), name
        ids, labels = (t.to(device) for t in batch(2, 64))
        results = {}
        for kind, model in students.items():
            set_aux_loss_backward_scale(1.0, device=device)
            loss = chunked_cross_entropy_sum(forward_student(model, ids).head, labels) / 126
            loss.backward()
            grads = {
                n: t.float() for name, p in model.named_parameters() for n, t in per_expert(name, p.grad)
            }
            results[kind] = (float(loss), grads)
        (seq_loss, seq_grads), (loss, grads) = results["sequential"], results["grouped"]
        assert loss == pytest.approx(seq_loss, rel=1e-2)
        for name, value in seq_grads.items():
            assert rel(grads[name], value) < 5e-2, (name, rel(grads[name], value))
    finally:
        teardown_parallel()


def test_distributed_optimizer_step_grouped_equals_sequential():
    """megatron's DDP (overlapped grad reduce) and distributed optimizer over the grouped weights."""
    from vpmoe.train.optim import OptimConfig, build_ddp_and_optimizer

    device = gpu_world_of_one()
    try:
        ids, labels = (t.to(device) for t in batch(2, 64))
        results = {}
        for kind, model in _students(device).items():
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            ddp, opt = build_ddp_and_optimizer(model, OptimConfig(lr=1e-3, distributed=True), device=device)
            loss, grad_norm = train_step(ddp, opt, ids, labels)
            # Matrices only: a bf16 norm weight at 1.0 does not move by lr 1e-3 (its ulp there is 2^-8).
            unchanged = [
                n for n, p in model.named_parameters() if p.dim() > 1 and torch.equal(before[n], p.detach())
            ]
            assert unchanged == [], (kind, unchanged)
            params = {
                n: t.float() for name, p in model.named_parameters() for n, t in per_expert(name, p.detach())
            }
            results[kind] = (loss, grad_norm, params)
        (seq_loss, seq_norm, seq_params), (loss, norm, params) = results["sequential"], results["grouped"]
        assert loss == pytest.approx(seq_loss, rel=1e-2) and norm == pytest.approx(seq_norm, rel=5e-2)
        for name, value in seq_params.items():
            assert rel(params[name], value) < 1e-2, (name, rel(params[name], value))
    finally:
        teardown_parallel()
