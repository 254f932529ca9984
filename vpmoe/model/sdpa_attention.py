"""Core attention for the local spec through PyTorch's fused `scaled_dot_product_attention`.

megatron-core's local `DotProductAttention` (megatron/core/transformer/dot_product_attention.py, 0.19.2)
materializes the scores: a [b * heads, s, s] `baddbmm`, a masked softmax over it, and a `bmm` with V, and
it repeats K and V to every query head under grouped-query attention. At the `small` student's shapes
(b 4, 16 heads, s 2048) that is 1 GiB of bf16 scores per layer per micro-batch kept for backward. SDPA
runs FlashAttention (or memory-efficient attention) on the GPU and never forms them; on the CPU it picks
its own fused or math kernel. Same maths: softmax(q k^T * scale + causal mask) v.

`SDPAttention` subclasses `DotProductAttention` so that construction, its checks and the sharded state
dict are megatron's; only `forward` changes. What it does not implement it refuses at construction
(no silent fallback): masks other than causal, sliding windows, softmax offsets (sinks), dropout on the
attention probabilities, and query-key layer scaling.
"""

from __future__ import annotations

import torch.nn.functional as F
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from torch import Tensor


class SDPAttention(DotProductAttention):
    """`DotProductAttention` with the fused kernel (module docstring). Inputs [s, b, heads or groups, d];
    output [s, b, heads * d], as megatron's."""

    def __init__(self, config, layer_number, attn_mask_type, attention_type, attention_dropout=None, **kw):
        super().__init__(config, layer_number, attn_mask_type, attention_type, attention_dropout, **kw)
        dropout = config.attention_dropout if attention_dropout is None else attention_dropout
        refused = {
            f"attn_mask_type {attn_mask_type}": attn_mask_type != AttnMaskType.causal,
            f"window_size {config.window_size}": config.window_size is not None,
            f"softmax_type {config.softmax_type}": config.softmax_type != "vanilla",
            f"attention_dropout {dropout}": dropout != 0.0,
            "apply_query_key_layer_scaling": config.apply_query_key_layer_scaling,
        }
        bad = [k for k, v in refused.items() if v]
        if bad:
            raise ValueError(
                f"SDPAttention supports causal, windowless, vanilla-softmax attention only; got {bad}"
            )
        self.groups_repeat = self.num_attention_heads_per_partition // self.num_query_groups_per_partition

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attention_mask: Tensor | None,
        attn_mask_type: AttnMaskType | None = None,
        attention_bias: Tensor | None = None,
        packed_seq_params=None,
    ) -> Tensor:
        if packed_seq_params is not None or attention_bias is not None:
            raise ValueError("SDPAttention: packed sequences and attention bias are not supported")
        if attn_mask_type not in (None, AttnMaskType.causal):
            raise ValueError(f"SDPAttention: attn_mask_type {attn_mask_type} (causal only)")
        # No mask: causal, the kernel's own (FlashAttention on the GPU; vpmoe/model/build.py forward_student
        # passes None for the default). A mask ([1 or b, 1, s, s] bool, True = masked, megatron's convention,
        # e.g. packed documents) is applied as given: it must already include causality.
        s, b = query.shape[0], query.shape[1]
        q, k, v = (x.permute(1, 2, 0, 3) for x in (query, key, value))  # [b, heads or groups, s, d]
        mask = None if attention_mask is None else ~attention_mask
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None,
            scale=self.softmax_scale,
            enable_gqa=self.groups_repeat > 1,  # K/V broadcast to the query heads without copies
        )
        return out.permute(2, 0, 1, 3).reshape(s, b, self.hidden_size_per_partition)
