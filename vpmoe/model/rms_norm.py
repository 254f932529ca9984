"""RMSNorm for the local spec that supports sequence parallelism.

Tensor parallelism with MoE needs sequence parallelism (megatron-core 0.19.2 `TransformerConfig`
refuses tp > 1 with experts without it), and the local spec's norm refuses it: `WrappedTorchNorm`
(`transformer/torch_norm.py`) asserts `not config.sequence_parallel`. Under sequence parallelism each
tensor-parallel rank normalizes its own [s / tp, b, h] slice of the sequence with the same (replicated)
weight, so the forward needs nothing; the weight's gradient on each rank covers only that rank's tokens
and must be summed over the tensor-parallel group. megatron does that for every parameter marked
`sequence_parallel = True` (apex's `FusedLayerNorm` marks its weight that way, `fusions/fused_layer_norm.py`;
TE's norms too) in `finalize_model_grads` -> `_allreduce_non_tensor_model_parallel_grads`
(`distributed/finalize_model_grads.py`): one coalesced all-reduce (SUM) over the tensor-parallel group
after DDP's data-parallel reduction. The router's weight is marked the same way (`moe/router.py`).

So `RMSNorm` is `torch.nn.RMSNorm` built by megatron's norm interface (`config`, `hidden_size`, `eps`),
with its weight marked as megatron marks sequence-parallel parameters. With tp == 1 it is exactly
`torch.nn.RMSNorm`, what `WrappedTorchNorm` builds for normalization="RMSNorm". What `WrappedTorchNorm`
refuses besides sequence parallelism (zero-centred gamma, persist_layer_norm, memory-efficient norm) this
refuses too.
"""

from __future__ import annotations

import torch
from megatron.core.transformer.transformer_config import TransformerConfig


class RMSNorm(torch.nn.RMSNorm):
    """`torch.nn.RMSNorm(hidden_size, eps)`; weight marked `sequence_parallel` under sequence parallelism."""

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-5) -> None:
        refused = {
            f"normalization {config.normalization!r}": config.normalization != "RMSNorm",
            "layernorm_zero_centered_gamma": config.layernorm_zero_centered_gamma,
            "persist_layer_norm": config.persist_layer_norm,
            "memory_efficient_layer_norm": config.memory_efficient_layer_norm,
        }
        bad = [k for k, v in refused.items() if v]
        if bad:
            raise ValueError(f"vpmoe RMSNorm supports plain RMSNorm only; got {bad}")
        super().__init__(normalized_shape=hidden_size, eps=eps)
        # Grad summed over the tensor-parallel group by megatron's finalize_model_grads (module docstring).
        self.weight.sequence_parallel = config.sequence_parallel
