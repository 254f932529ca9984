"""SDPAttention (vpmoe/model/sdpa_attention.py) equals megatron's materialized DotProductAttention on CPU:
same output and same input gradients, with grouped-query attention and odd lengths, and it refuses what it
does not implement."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from megatron.core import tensor_parallel
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from test_student_model import CPU, tiny_config, world1  # noqa: F401  (world1: the gloo world-1 fixture)

from vpmoe.model.build import causal_attention_mask, transformer_config
from vpmoe.model.sdpa_attention import SDPAttention


def _pair(**config_overrides):
    tensor_parallel.model_parallel_cuda_manual_seed(0)  # megatron's attention forks its RNG for dropout
    cfg = transformer_config(tiny_config(), device=CPU)
    cfg = dataclasses.replace(cfg, **config_overrides) if config_overrides else cfg
    ref = DotProductAttention(cfg, layer_number=1, attn_mask_type=AttnMaskType.causal, attention_type="self")
    ours = SDPAttention(cfg, layer_number=1, attn_mask_type=AttnMaskType.causal, attention_type="self")
    return cfg, ref, ours


@pytest.mark.parametrize("seq", [1, 7, 33])
@pytest.mark.parametrize("mask_given", [False, True])
def test_same_output_and_gradients_as_megatron(world1, seq, mask_given):  # noqa: F811
    cfg, ref, ours = _pair()
    b, heads, groups, d = 3, cfg.num_attention_heads, cfg.num_query_groups, cfg.kv_channels
    assert heads > groups  # grouped-query attention is exercised
    g = torch.Generator().manual_seed(seq)
    q = torch.randn(seq, b, heads, d, generator=g, dtype=torch.float64).float()
    k = torch.randn(seq, b, groups, d, generator=g, dtype=torch.float64).float()
    v = torch.randn(seq, b, groups, d, generator=g, dtype=torch.float64).float()
    grad_out = torch.randn(seq, b, heads * d, generator=g)
    mask = causal_attention_mask(seq, CPU)
    results = []
    for module in (ref, ours):
        leaves = [x.clone().requires_grad_(True) for x in (q, k, v)]
        # SDPAttention: None is causal (its kernel's mask); a given mask is applied as is
        given = mask if module is ref or mask_given else None
        out = module(*leaves, given, attn_mask_type=AttnMaskType.causal)
        out.backward(grad_out)
        results.append((out.detach(), [x.grad for x in leaves]))
    (out_ref, grads_ref), (out_ours, grads_ours) = results
    assert out_ours.shape == out_ref.shape == (seq, b, heads * d)
    torch.testing.assert_close(out_ours, out_ref, rtol=1e-5, atol=1e-5)
    for a, r in zip(grads_ours, grads_ref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


def test_refuses_what_it_does_not_implement(world1):  # noqa: F811
    with pytest.raises(ValueError, match="window_size"):
        _pair(window_size=(128, 0))
    with pytest.raises(ValueError, match="attention_dropout"):
        _pair(attention_dropout=0.1)
    cfg = transformer_config(tiny_config(), device=CPU)
    with pytest.raises(ValueError, match="attn_mask_type"):
        SDPAttention(cfg, layer_number=1, attn_mask_type=AttnMaskType.padding, attention_type="self")
