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
    return ddp, opt


def set_lr(opt, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
