"""`StudentConfig`: the vpMoE student's architecture and numerics, one flat dataclass.

Presets live in `conf/model/{tiny,small,base}.yaml` (Hydra composes them; this module never imports Hydra).
`vpmoe.model.build.transformer_config` maps a `StudentConfig` onto megatron-core's `TransformerConfig`;
everything the student decides is here, everything else keeps megatron-core's default.
"""

from __future__ import annotations

from dataclasses import dataclass

# o200k Harmony padded vocabulary of GPT-OSS-20B (contracts.md: "logits are sized by the padded vocabulary").
# The teacher's logprob ids index into this; a student with any other size cannot be distilled from it.
GPT_OSS_VOCAB_SIZE = 201088

LAYER_SPECS = ("local", "te")
EXPERTS = ("grouped", "sequential")
DTYPES = ("fp32", "bf16")


@dataclass(kw_only=True)
class StudentConfig:
    """Architecture of the MoE student (every layer is an MoE layer).

    Attention is grouped-query (num_query_groups KV heads shared by num_attention_heads query heads) with
    RoPE; the MLPs are SwiGLU experts without biases; norms are RMSNorm. There is no dense MLP and no
    shared expert, so megatron's `ffn_hidden_size` has nothing to size: `build.transformer_config` sets it
    to `moe_ffn_hidden_size` rather than exposing a knob without effect.
    """

    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    num_moe_experts: int
    moe_router_topk: int
    moe_ffn_hidden_size: int
    # Switch-style load-balancing loss weight (megatron-core `moe_router_load_balancing_type="aux_loss"`)
    # and router z-loss weight (ST-MoE, arXiv:2202.08906). 0 disables a term.
    moe_aux_loss_coeff: float = 1e-2
    moe_z_loss_coeff: float = 1e-3
    vocab_size: int = GPT_OSS_VOCAB_SIZE
    max_seq_len: int
    rotary_base: int = 10000
    init_method_std: float = 0.02
    # Untied by default: the student's output head is the sparse-KL head's weight and sees very different
    # gradients from the input embedding (GPT-OSS itself does not tie them).
    tie_embeddings: bool = False
    # Dropout defaults to 0: a distillation target is soft and dense; dropout only adds noise to it.
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    norm_epsilon: float = 1e-5
    # "local": megatron-core's own modules (CPU, any machine). "te": Transformer Engine modules (the
    # production GPU container). Both run tensor parallelism (sequence parallel; local: vpmoe RMSNorm).
    layer_spec: str = "local"
    # How each MoE layer runs its local experts. "grouped": one grouped GEMM per projection over all of them
    # (local spec: vpmoe.model.grouped_experts.GroupedExperts; te spec: megatron's TEGroupedMLP).
    # "sequential": megatron's SequentialMLP, one expert after another (host-bound on GPU; the reference).
    # Same weights from the same seed either way, and interchangeable checkpoints.
    experts: str = "grouped"
    # Parameter and compute dtype. bf16 on GPU (fp32 main params live in the optimizer), fp32 on CPU.
    dtype: str = "fp32"

    def __post_init__(self) -> None:
        positive = (
            "num_layers",
            "hidden_size",
            "num_attention_heads",
            "num_query_groups",
            "num_moe_experts",
            "moe_router_topk",
            "moe_ffn_hidden_size",
            "max_seq_len",
            "rotary_base",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.vocab_size != GPT_OSS_VOCAB_SIZE:
            raise ValueError(
                f"vocab_size must be {GPT_OSS_VOCAB_SIZE} (GPT-OSS o200k Harmony, padded): the teacher's "
                f"logprob ids index that vocabulary; got {self.vocab_size}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_query_groups:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not divisible by "
                f"num_query_groups {self.num_query_groups}"
            )
        if (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError(f"head dim {self.hidden_size // self.num_attention_heads} must be even for RoPE")
        if self.num_moe_experts < 2:
            raise ValueError(f"num_moe_experts must be >= 2 for a mixture, got {self.num_moe_experts}")
        if not 1 <= self.moe_router_topk <= self.num_moe_experts:
            raise ValueError(
                f"moe_router_topk must be in [1, num_moe_experts={self.num_moe_experts}], got {self.moe_router_topk}"
            )
        for name in ("moe_aux_loss_coeff", "moe_z_loss_coeff", "init_method_std", "norm_epsilon"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not self.init_method_std > 0:
            raise ValueError(f"init_method_std must be > 0, got {self.init_method_std}")
        for name in ("hidden_dropout", "attention_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.layer_spec not in LAYER_SPECS:
            raise ValueError(f"layer_spec must be one of {LAYER_SPECS}, got {self.layer_spec!r}")
        if self.experts not in EXPERTS:
            raise ValueError(f"experts must be one of {EXPERTS}, got {self.experts!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads
