"""Which modules the student is built from: megatron-core's layer specs, and vpmoe's swaps in the local one.

`decoder_spec` is what `build.build_student` hands GPTModel. `te`: megatron's Transformer Engine layer spec
as is. `local`: megatron's local spec (`get_gpt_layer_local_spec`, RMSNorm) with three modules swapped, each
swap checking that megatron's spec still has the shape it replaces (a megatron-core upgrade fails here, it
does not silently build something else):
- core attention: `SDPAttention` (sdpa_attention.py) for `DotProductAttention`;
- norms: `RMSNorm` (rms_norm.py, sequence-parallel capable) for `WrappedTorchNorm`, in every layer and as
  the final norm;
- experts (`experts: grouped`): `GroupedExperts` (grouped_experts.py) for `SequentialMLP`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging

from megatron.core.models.gpt.gpt_layer_specs import (
    get_gpt_layer_local_spec,
    get_gpt_layer_with_transformer_engine_spec,
)
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.moe.experts import SequentialMLP
from megatron.core.transformer.moe.moe_layer import MoELayer, MoESubmodules
from megatron.core.transformer.torch_norm import WrappedTorchNorm
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.transformer.transformer_layer import BaseTransformerLayer

from vpmoe.model.config import StudentConfig
from vpmoe.model.grouped_experts import GroupedExperts
from vpmoe.model.rms_norm import RMSNorm
from vpmoe.model.sdpa_attention import SDPAttention

log = logging.getLogger(__name__)


def layer_spec(cfg: StudentConfig):
    """The layer spec: megatron-core's own modules or Transformer Engine's; grouped or sequential experts."""
    grouped = cfg.experts == "grouped"
    if cfg.layer_spec == "te":
        if importlib.util.find_spec("transformer_engine") is None:
            raise RuntimeError(
                "layer_spec='te' but transformer_engine is not installed; use the production container "
                "or layer_spec='local'"
            )
        log.info(
            "layer spec: te (Transformer Engine modules), experts: %s",
            "TEGroupedMLP (grouped GEMM)" if grouped else "SequentialMLP (one expert at a time)",
        )
        return get_gpt_layer_with_transformer_engine_spec(
            num_experts=cfg.num_moe_experts, moe_grouped_gemm=grouped
        )
    spec = _with_rms_norm(
        _with_sdpa_attention(
            get_gpt_layer_local_spec(
                num_experts=cfg.num_moe_experts, moe_grouped_gemm=False, normalization="RMSNorm"
            )
        )
    )
    if not grouped:
        log.info(
            "layer spec: local (megatron-core modules, SDPA attention, vpmoe RMSNorm), experts: SequentialMLP (one expert at a time)"
        )
        return spec
    log.info(
        "layer spec: local (megatron-core modules, SDPA attention, vpmoe RMSNorm), experts: GroupedExperts (grouped GEMM)"
    )
    return _with_grouped_experts(spec)


def decoder_spec(cfg: StudentConfig, tcfg: TransformerConfig):
    """What GPTModel builds its decoder from: the layer spec (te), or the whole block spec (local).

    Given a layer spec, megatron's TransformerBlock builds [spec] * layers and a final norm of its own
    choosing, `transformer_block.LayerNormImpl` (`_get_block_submodules`): TENorm where Transformer Engine
    is installed, apex's FusedLayerNorm where apex is, else `WrappedTorchNorm`, which refuses sequence
    parallelism. The local spec spells the block out, so its final norm is the layers' `RMSNorm`.
    """
    spec = layer_spec(cfg)
    if cfg.layer_spec == "te":
        return spec
    if not issubclass(spec.module, BaseTransformerLayer):
        raise RuntimeError(
            f"megatron-core's local layer spec changed shape ({spec.module}); revisit specs.decoder_spec"
        )
    return TransformerBlockSubmodules(layer_specs=[spec] * get_num_layers_to_build(tcfg), layer_norm=RMSNorm)


def _with_rms_norm(spec):
    """The local spec with vpmoe's `RMSNorm` (sequence-parallel capable, rms_norm.py) as the layers' input
    and pre-MLP norms in place of `WrappedTorchNorm` (megatron-core 0.19.2 `LocalSpecProvider.layer_norm`)."""
    sub = spec.submodules
    norms = (getattr(sub, "input_layernorm", None), getattr(sub, "pre_mlp_layernorm", None))
    if norms != (WrappedTorchNorm, WrappedTorchNorm):
        raise RuntimeError(
            f"megatron-core's local norm spec changed shape ({norms}); revisit specs._with_rms_norm"
        )
    sub.input_layernorm = sub.pre_mlp_layernorm = RMSNorm
    return spec


def _with_sdpa_attention(spec):
    """The local spec with `SDPAttention` (fused kernel) as the self-attention's core attention in place of
    megatron's `DotProductAttention`, which materializes [b * heads, s, s] scores (sdpa_attention.py)."""
    attn = getattr(getattr(spec.submodules, "self_attention", None), "submodules", None)
    if getattr(attn, "core_attention", None) is not DotProductAttention:
        raise RuntimeError(
            f"megatron-core's local attention spec changed shape ({attn!r}); revisit specs._with_sdpa_attention"
        )
    attn.core_attention = SDPAttention
    return spec


def _with_grouped_experts(spec):
    """The local spec with `GroupedExperts` in place of `SequentialMLP` (all else, router included, kept).

    megatron-core 0.19.2's local spec builds the MoE layer as `partial(MoELayer, submodules=MoESubmodules(
    experts=partial(SequentialMLP, ...), ...))` (`moe_module_specs.get_moe_module_spec_for_backend`) and
    offers no hook for another experts module; any module with the experts interface may go there.
    """
    mlp = spec.submodules.mlp
    moe = mlp.keywords.get("submodules") if isinstance(mlp, functools.partial) else None
    experts = getattr(moe, "experts", None)
    if not (
        isinstance(moe, MoESubmodules)
        and mlp.func is MoELayer
        and isinstance(experts, functools.partial)
        and experts.func is SequentialMLP
    ):
        raise RuntimeError(
            f"megatron-core's local MoE spec changed shape (mlp={mlp!r}); revisit specs._with_grouped_experts"
        )
    grouped = dataclasses.replace(moe, experts=GroupedExperts)
    spec.submodules.mlp = functools.partial(MoELayer, *mlp.args, **{**mlp.keywords, "submodules": grouped})
    return spec
