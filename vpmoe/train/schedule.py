"""One way to run a step's micro-batches through the student, with or without pipeline parallelism.

Without pipeline parallelism: a loop, forward -> `loss_fn` -> backward per micro-batch, DDP's gradient
reduction deferred to the last one (what megatron's no-pipelining schedule does). With it
(`parallel.pipeline_parallel > 1`): megatron's non-interleaved 1F1B schedule
(`pipeline_parallel/schedules.py`), activations sent between stages by its p2p layer, `loss_fn` called on
the last stage, which holds the LM head. Both leave the gradients unreduced: the caller finishes the
reduction (`ddp.finish_grad_sync()`).

Scaling: megatron divides the loss its loss function returns by the number of micro-batches before
backward; ours hands it `loss_fn(...) * M`, so backward sees exactly the caller's loss (span weights
already normalize over the whole step, vpmoe/train/loss.py). megatron sets the MoE aux-loss scale to 1 / M
after each forward, as `set_aux_loss_backward_scale(1 / M)` does without pipelining.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor

from vpmoe.model.build import forward_student


def padding_mask(batch: dict, device: torch.device) -> torch.Tensor:
    """[b, s] True on right padding (excluded from MoE routing statistics)."""
    s = batch["input_ids"].shape[1]
    return (torch.arange(s)[None, :] >= batch["lengths"][:, None]).to(device)


def sum_over_pipeline(t: Tensor) -> Tensor:
    """In place: the sum over the pipeline stages (the head's sums live on the last stage, each stage's
    aux loss on its own layers). No-op without pipeline parallelism."""
    from megatron.core import parallel_state

    if parallel_state.get_pipeline_model_parallel_world_size() > 1:
        torch.distributed.all_reduce(t, group=parallel_state.get_pipeline_model_parallel_group())
    return t


def run_micro_batches(
    ddp,
    micro: list[dict],
    loss_fn: Callable[[dict, object], Tensor],
    *,
    device: torch.device,
    forward_only: bool = False,
) -> Tensor:
    """Forward every micro-batch (same [b, s] for all when pipelined), `loss_fn(mb, head)` on the rank
    holding the LM head, backward of its result unless `forward_only`. Returns this rank's summed MoE
    aux-loss objective (its own layers only under pipelining: sum over the pipeline group for the total)."""
    from megatron.core import parallel_state

    aux = torch.zeros((), dtype=torch.float64, device=device)
    if parallel_state.get_pipeline_model_parallel_world_size() == 1:
        for j, mb in enumerate(micro):
            last = j == len(micro) - 1
            sync = contextlib.nullcontext() if forward_only or last else ddp.no_sync()
            with sync:
                out = forward_student(
                    ddp, mb["input_ids"].to(device).long(), padding_mask=padding_mask(mb, device)
                )
                loss = loss_fn(mb, out.head)
                if not forward_only:
                    loss.backward()
            aux += out.aux_loss_weighted.to(torch.float64)
        return aux

    from megatron.core.pipeline_parallel import get_forward_backward_func

    shapes = {tuple(mb["input_ids"].shape) for mb in micro}
    if len(shapes) != 1:
        raise ValueError(f"pipelined micro-batches need one [batch, seq] shape, got {sorted(shapes)}")
    (b, s) = shapes.pop()
    config = ddp.config
    config.no_sync_func = ddp.no_sync  # reduce gradients once, after the last micro-batch
    config.finalize_model_grads_func = None  # the caller runs ddp.finish_grad_sync()
    config.grad_scale_func = None
    m = len(micro)

    def forward_step(data_iterator, model):
        nonlocal aux
        mb = next(data_iterator)
        out = forward_student(model, mb["input_ids"].to(device).long(), padding_mask=padding_mask(mb, device))
        aux += out.aux_loss_weighted.to(torch.float64)
        return out.head, lambda head: (loss_fn(mb, head) * m, {})

    get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=iter(micro),
        model=[ddp],
        num_microbatches=m,
        seq_length=s,
        micro_batch_size=b,
        forward_only=forward_only,
    )
    return aux
