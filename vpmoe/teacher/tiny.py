"""A tiny random GPT-OSS-architecture teacher for tests and the demo (real vocab, real vLLM path).

Same architecture family as GPT-OSS-20B (`transformers` `GptOssForCausalLM`: attention sinks, yarn RoPE,
alternating sliding/full attention, MoE with biases), at a size a 2-core CPU scores in seconds, with the
real padded vocabulary 201088 so every vocab-sized path (logits, top-k, ids in the store) is exercised.

A random model's next-token distribution is nearly uniform over 201k ids (entropy ~12 nats), unlike a
trained one. Two deterministic changes make its outputs look trained where it matters for scoring,
storage and the loss: (1) the output layer is scaled (`logit_scale`) so the top-k holds most of the mass;
(2) a unigram-like prior: embeddings carry a constant feature and the output rows for small ids read it
with a weight decaying like log-Zipf, since BPE ids are roughly ordered by merge frequency. The store's
compression is measured on this teacher; docs/teacher_store.md says how real GPT-OSS-20B data compares.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vpmoe.tokenizer import PADDED_VOCAB_SIZE


@dataclass(kw_only=True)
class TinyTeacherConfig:
    seed: int = 0
    dtype: str = "float32"  # float32 | bfloat16 (MXFP4 does not load on CPUs without AMX)
    hidden_size: int = 128
    num_layers: int = 2
    num_experts: int = 4
    experts_per_token: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 32
    sliding_window: int = 128
    max_position_embeddings: int = 131072  # GPT-OSS: yarn factor 32 x 4096
    logit_scale: float = 6.0
    prior_strength: float = 20.0
    prior_feature: float = 0.1
    # True saves the output layer tied to the embedding (no lm_head.weight in the safetensors), as
    # save_pretrained does for a tied model: vLLM's GPT-OSS would not load it, so the scorer refuses it
    # (vpmoe/teacher/engine.py check_untied_output_layer). Only for reproducing that refusal.
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be float32 or bfloat16, got {self.dtype!r}")
        if self.num_layers < 2:
            raise ValueError("num_layers must be >= 2 (one sliding and one full attention layer)")
        if self.logit_scale <= 0:
            raise ValueError("logit_scale must be > 0")


def build_tiny_teacher(cfg: TinyTeacherConfig):
    from transformers import GptOssConfig, GptOssForCausalLM

    torch.manual_seed(cfg.seed)
    layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(cfg.num_layers)]
    hf_cfg = GptOssConfig(
        vocab_size=PADDED_VOCAB_SIZE,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        num_local_experts=cfg.num_experts,
        num_experts_per_tok=cfg.experts_per_token,
        layer_types=layer_types,
        sliding_window=cfg.sliding_window,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        torch_dtype=cfg.dtype,
    )
    model = GptOssForCausalLM(hf_cfg).eval()
    with torch.no_grad():
        h = cfg.hidden_size
        emb = model.model.embed_tokens.weight
        emb[:, 0] = cfg.prior_feature  # the constant feature the prior reads
        w = model.lm_head.weight
        w.normal_(0.0, 1.0 / h**0.5)
        w.mul_(cfg.logit_scale)
        ranks = torch.arange(1, PADDED_VOCAB_SIZE + 1, dtype=torch.float32)
        w[:, 0] = cfg.prior_strength * (torch.log(ranks[-1]) - torch.log(ranks)) / torch.log(ranks[-1])
    return model.to(getattr(torch, cfg.dtype))


def save_tiny_teacher(cfg: TinyTeacherConfig, output: str | Path) -> Path:
    """Build and save for vLLM (`save_pretrained`, safetensors, no tokenizer files)."""
    from transformers.utils import logging as hf_logging

    from vpmoe.utils.atomic import atomic_directory

    output = Path(output)
    model = build_tiny_teacher(cfg)
    hf_logging.disable_progress_bar()  # a one-file save; its bar would only clutter the stage's output
    with atomic_directory(output, overwrite=True, kind="tiny_teacher") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
    return output
