"""Megatron DDP + optimizer for the student, and the learning-rate schedule (a pure function of the step).

The schedule is recomputed from the step number on every step (linear warmup, then cosine to `min_lr`),
so nothing about it needs to be checkpointed and a resumed run gets exactly the uninterrupted LRs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

OPTIMIZERS = ("adam", "sgd")


@dataclass(kw_only=True)
class OptimConfig:
    optimizer: str = "adam"  # megatron-core's: adam (AdamW: decoupled weight decay) | sgd
    lr: float = 3e-4  # peak, reached at the end of warmup
    min_lr: float = 3e-5  # the cosine's floor, held after decay_steps
    warmup_steps: int = 100  # linear from lr / warmup_steps at step 1 to lr at warmup_steps
    decay_steps: int = 10000  # cosine from lr (step warmup_steps) to min_lr (step decay_steps)
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0  # global grad-norm clip; 0 disables clipping (the norm is still computed)
    # Shard optimizer state over data-parallel ranks (megatron's distributed optimizer). GPU only:
    # megatron-core's implementation uses CUDA buffers the CPU adaptations do not cover.
    distributed: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optim.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ValueError(
                f"optim: need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr} min_lr={self.min_lr}"
            )
        if self.warmup_steps < 0 or self.decay_steps < self.warmup_steps:
            raise ValueError(
                f"optim: need 0 <= warmup_steps <= decay_steps, got {self.warmup_steps}, {self.decay_steps}"
            )
        if self.weight_decay < 0 or self.clip_grad < 0:
            raise ValueError("optim.weight_decay and optim.clip_grad must be >= 0")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1 and self.adam_eps > 0):
            raise ValueError("optim: adam betas in [0, 1), adam_eps > 0")

    def lr_at(self, step: int) -> float:
        """LR of optimizer step `step` (1-based: the first update is step 1)."""
        if step < 1:
            raise ValueError(f"step is 1-based, got {step}")
        if step <= self.warmup_steps:
            return self.lr * step / self.warmup_steps
        if step >= self.decay_steps:
            return self.min_lr
        progress = (step - self.warmup_steps) / max(1, self.decay_steps - self.warmup_steps)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))


def build_ddp_and_optimizer(model, cfg: OptimConfig, *, device: torch.device):
    """Wrap the model in megatron's DDP and build megatron's optimizer over it.

    DDP reduces gradients in fp32 (`grad_reduce_in_fp32`) and averages them over the data-parallel group:
    the trainer scales its loss by the data-parallel size to turn that average into the step's sum
    (vpmoe/train/loss.py). No overlap of the reduce with backward on CPU (CUDA streams).
    Without Transformer Engine / Apex, megatron's Adam is torch's AdamW: made fused here (`use_fused_adamw`),
    and its grad-norm / clip helpers are replaced by torch's foreach ops (`use_foreach_clip_helpers`).
    """
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

    if cfg.distributed and device.type != "cuda":
        raise ValueError(
            "optim.distributed=true needs CUDA (megatron's distributed optimizer); set it false on CPU"
        )
    cuda = device.type == "cuda"
    ddp = DistributedDataParallel(
        model.config,
        DistributedDataParallelConfig(
            grad_reduce_in_fp32=True,
            overlap_grad_reduce=cuda,
            use_distributed_optimizer=cfg.distributed,
        ),
        model,
    )
    bf16 = bool(model.config.bf16)
    opt = get_megatron_optimizer(
        OptimizerConfig(
            optimizer=cfg.optimizer,
            lr=cfg.lr,
            min_lr=cfg.min_lr,
            weight_decay=cfg.weight_decay,
            adam_beta1=cfg.adam_beta1,
            adam_beta2=cfg.adam_beta2,
            adam_eps=cfg.adam_eps,
            clip_grad=cfg.clip_grad,
            bf16=bf16,
            params_dtype=torch.bfloat16 if bf16 else torch.float32,
            use_distributed_optimizer=cfg.distributed,
        ),
        [ddp],
    )
    use_fused_adamw(opt)
    use_foreach_clip_helpers()
    return ddp, opt


def megatron_optimizers(opt) -> list:
    """megatron's optimizer wrapper(s): a ChainedOptimizer's parts (one per param kind), or `opt` itself."""
    return list(getattr(opt, "chained_optimizers", [opt]))


def _inner_optimizers(opt) -> list:
    """The torch optimizers inside megatron's wrapper(s)."""
    return [o.optimizer for o in megatron_optimizers(opt) if o.optimizer is not None]


def use_fused_adamw(opt) -> None:
    """Switch torch AdamW inside megatron's optimizer to its fused kernel (one pass over params, grads and
    both moments per step). Idempotent; call again after loading optimizer state (a checkpoint's param
    groups carry the flags they were saved with).

    Why: without Transformer Engine or Apex, megatron-core 0.19.2 builds `torch.optim.AdamW` without `fused`
    (optimizer/__init__.py, USING_PYTORCH_OPTIMIZER), so torch picks its foreach path: several passes over
    the fp32 state, 18.3 ms per step for `small` on an H200 (benchmarks/results/train_small_h200.md).
    torch's fused AdamW runs on CUDA and CPU (torch >= 2.4) with the same update rule; where a parameter's
    device or dtype is unsupported, torch's own check raises in the first step (no silent fallback).
    TE's / Apex's FusedAdam (not a torch.optim.AdamW) is left as it is.
    """
    for inner in _inner_optimizers(opt):
        if type(inner) is not torch.optim.AdamW:
            continue
        inner.defaults.update(fused=True, foreach=False)
        for group in inner.param_groups:
            group.update(fused=True, foreach=False)
            for p in group["params"]:
                state = inner.state.get(p, {})
                step = state.get("step")
                # Fused AdamW keeps `step` as a float32 tensor on the parameter's device; the foreach path
                # (and megatron's distributed-optimizer load, one shared CPU tensor) keep it on the CPU.
                if step is not None and (step.device != p.device or step.dtype != torch.float32):
                    state["step"] = step.detach().to(device=p.device, dtype=torch.float32, copy=True)


def _foreach_l2_norm(chunk_size, noop_flag, tensor_lists, per_tensor, *args):
    """Drop-in for megatron's `local_multi_tensor_l2_norm` (utils.py): the same [1] fp32 norm, from one
    `torch._foreach_norm` instead of a `torch.norm` per tensor each read back to the host (one device sync
    per parameter) and a `device="cuda"` literal."""
    (tensors,) = tensor_lists
    if not tensors:  # megatron's helper returns a zero norm (torch's foreach ops refuse empty lists)
        return torch.zeros(
            1, dtype=torch.float32, device="cuda" if torch.cuda.is_available() else "cpu"
        ), None
    norms = torch._foreach_norm(tensors)
    return torch.linalg.vector_norm(torch.stack(norms)).reshape(1).float(), None


def _foreach_scale(chunk_size, noop_flag, tensor_lists, scale):
    """Drop-in for megatron's `local_multi_tensor_scale`: dst = src * scale as one foreach op instead of a
    multiply and a copy per tensor. In place when src is dst (the grad clip); a plain (casting) copy when
    scale is 1 (the bf16 optimizer's fp32 main params -> bf16 model params, every step)."""
    src, dst = tensor_lists
    if not dst:  # megatron's helper does nothing then (torch's foreach ops refuse empty lists)
        return
    if all(a is b for a, b in zip(src, dst, strict=True)):
        torch._foreach_mul_(dst, scale)
    elif scale == 1.0:
        torch._foreach_copy_(dst, src)
    else:
        torch._foreach_copy_(dst, torch._foreach_mul(src, scale))


def use_foreach_clip_helpers() -> None:
    """Replace megatron's per-tensor fallbacks (used without Transformer Engine / Apex) for the grad norm,
    the clip and the bf16 optimizer's main -> model param copy with the foreach versions above. Applied
    only where megatron fell back to its local helpers (it warns "Falling back to local implementations");
    raises if megatron's names moved, so an upgrade cannot leave the slow path in place unnoticed."""
    from megatron.core import utils as mutils
    from megatron.core.optimizer import clip_grads
    from megatron.core.optimizer import optimizer as moptimizer

    names = {
        clip_grads: ("l2_norm_impl", "multi_tensor_scale_impl"),
        moptimizer: ("multi_tensor_scale_impl",),
    }
    for module, attrs in names.items():
        for name in (*attrs, "multi_tensor_applier"):
            if not hasattr(module, name):
                raise RuntimeError(f"{module.__name__}.{name} is gone: revisit use_foreach_clip_helpers")
    if clip_grads.multi_tensor_applier is mutils.local_multi_tensor_applier:
        clip_grads.l2_norm_impl = _foreach_l2_norm
        clip_grads.multi_tensor_scale_impl = _foreach_scale
    if moptimizer.multi_tensor_applier is mutils.local_multi_tensor_applier:
        moptimizer.multi_tensor_scale_impl = _foreach_scale


def set_lr(opt, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
