"""The optimizer path on CUDA (vpmoe/train/optim.py): torch's fused AdamW and the foreach grad-norm / clip
helpers inside megatron's distributed optimizer give the same steps as megatron's own fallback (foreach
AdamW, per-tensor norm and clip), and a checkpoint round trip keeps the fused kernel, also from a checkpoint
saved on the foreach path. On the GPU machine: `python -m pytest -m gpu tests/gpu/test_optim_gpu.py`.
"""

from __future__ import annotations

import pytest
import torch

# Shared with the CPU tests (tests/ is on sys.path through its conftest).
from test_student_model import SEED, batch, gpu_world_of_one, tiny_config, train_step

from vpmoe.model.build import build_student, teardown_parallel

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

CLIP = 0.05  # below the tiny model's grad norm, so every step scales the gradients


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-30))


def _build(device, distributed: bool):
    from vpmoe.train.optim import OptimConfig, build_ddp_and_optimizer

    model = build_student(tiny_config(dtype="bf16"), device=device, seed=SEED)
    ddp, opt = build_ddp_and_optimizer(
        model, OptimConfig(lr=1e-3, clip_grad=CLIP, distributed=distributed), device=device
    )
    return model, ddp, opt


def _megatron_fallback(opt, monkeypatch) -> None:
    """Back to what megatron-core builds without TE / Apex: torch AdamW's default (foreach) path and the
    per-tensor norm and clip helpers."""
    from megatron.core import utils as mutils
    from megatron.core.optimizer import clip_grads
    from megatron.core.optimizer import optimizer as moptimizer

    from vpmoe.train.optim import _inner_optimizers

    for inner in _inner_optimizers(opt):
        inner.defaults.update(fused=None, foreach=None)
        for group in inner.param_groups:
            group.update(fused=None, foreach=None)
    monkeypatch.setattr(clip_grads, "l2_norm_impl", mutils.local_multi_tensor_l2_norm)
    monkeypatch.setattr(clip_grads, "multi_tensor_scale_impl", mutils.local_multi_tensor_scale)
    monkeypatch.setattr(moptimizer, "multi_tensor_scale_impl", mutils.local_multi_tensor_scale)


def _fused_everywhere(opt) -> None:
    from vpmoe.train.optim import _inner_optimizers

    inners = _inner_optimizers(opt)
    assert inners and all(type(o) is torch.optim.AdamW for o in inners)
    for inner in inners:
        for group in inner.param_groups:
            assert group["fused"] and not group["foreach"]
            for p in group["params"]:
                step = inner.state[p].get("step")
                assert step is None or (step.device == p.device and step.dtype == torch.float32)


@pytest.mark.parametrize("distributed", [False, True], ids=["bf16_optimizer", "distributed_optimizer"])
def test_fused_adamw_and_foreach_clip_equal_megatrons_fallback(monkeypatch, distributed):
    device = gpu_world_of_one()
    try:
        ids, labels = (t.to(device) for t in batch(2, 64))
        runs = {}
        for kind in ("fallback", "ours"):
            with monkeypatch.context() as m:
                model, ddp, opt = _build(device, distributed)
                if kind == "fallback":
                    _megatron_fallback(opt, m)
                else:
                    _fused_everywhere(opt)
                norms = [train_step(ddp, opt, ids, labels)[1] for _ in range(3)]
                if kind == "ours":
                    _fused_everywhere(opt)  # and the step states it created live on the device
                runs[kind] = (norms, {n: p.detach().float().clone() for n, p in model.named_parameters()})
        (ref_norms, ref), (norms, params) = runs["fallback"], runs["ours"]
        assert all(n > CLIP for n in ref_norms), ref_norms  # the clip scaled every step
        assert norms == pytest.approx(ref_norms, rel=1e-4)
        for name, value in ref.items():
            # Same update rule; fp32 rounding of the moments differs, then the bf16 cast of the weights.
            assert rel(params[name], value) < 1e-3, (name, rel(params[name], value))
    finally:
        teardown_parallel()


@pytest.mark.parametrize("distributed", [False, True], ids=["bf16_optimizer", "distributed_optimizer"])
def test_checkpoint_round_trip_keeps_fused_adamw(tmp_path, monkeypatch, distributed):
    """Saved on megatron's foreach path (a checkpoint from before the fused AdamW), resumed fused: the
    resumed step equals the uninterrupted one and runs the fused kernel with its step states on the GPU.
    Both optimizers: the distributed one is saved in its canonical form (checkpoint.py
    DISTRIBUTED_OPTIMIZER_FORMAT); megatron's default form failed to save in megatron-core 0.19.2
    ("ShardedTensor.flattened_range is not supported")."""
    from vpmoe.train.checkpoint import load_model_and_optimizer, save_checkpoint
    from vpmoe.train.optim import _inner_optimizers

    device = gpu_world_of_one()
    try:
        ids, labels = (t.to(device) for t in batch(2, 64))
        with monkeypatch.context() as m:
            model, ddp, opt = _build(device, distributed)
            _megatron_fallback(opt, m)
            for _ in range(2):
                train_step(ddp, opt, ids, labels)
            path = save_checkpoint(tmp_path, 2, model, opt, meta={}, keep_last=1)
            norm_a = train_step(ddp, opt, ids, labels)[1]
            uninterrupted = {n: p.detach().float().clone() for n, p in model.named_parameters()}
        model, ddp, opt = _build(device, distributed)
        load_model_and_optimizer(path, model, opt)
        _fused_everywhere(opt)
        steps = {float(s["step"]) for o in _inner_optimizers(opt) for s in o.state.values()}
        assert steps == {2.0}, steps
        norm_b = train_step(ddp, opt, ids, labels)[1]
        assert norm_b == pytest.approx(norm_a, rel=1e-4)
        for name, value in uninterrupted.items():
            p = dict(model.named_parameters())[name].detach().float()
            assert rel(p, value) < 1e-3, (name, rel(p, value))
    finally:
        teardown_parallel()
