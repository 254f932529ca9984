"""Build the vpMoE student on megatron-core 0.19.2 and run it up to (not through) the LM head.

    init_parallel(ParallelConfig(expert_parallel=2), device=device)  # CPU: applies the CPU adaptations
    model = build_student(cfg, device=device, seed=1234)
    set_aux_loss_backward_scale(1.0 / num_microbatches, device=device)
    out = forward_student(model, input_ids)  # out.head.hidden [s, b, h], out.head.weight [V, h]
    loss = my_loss(out.head) ; loss.backward()  # router aux / z-loss gradients ride along

What `forward_student` hands over comes from `GPTModel.forward(..., output_processor=fn)` (megatron-core
0.19.2 `gpt_model.py`, `_postprocess`): after the decoder (whose last op is the final RMSNorm,
`transformer_block.py` `final_layernorm`) and before the output layer, `fn` is called with keyword arguments
`hidden_states` ([s, b, h], sequence-first; sequence-sharded [s/tp, b, h] under sequence parallel),
`output_layer` (the `ColumnParallelLinear` LM head), `output_weight` (None unless embeddings are tied:
then the shared embedding weight) and the batch (`labels`, `loss_mask`, `input_ids`, ...); whatever `fn`
returns is what `GPTModel.forward` returns. Our `fn` returns `LMHeadInputs` and never calls the output
layer, so the [s, b, V] logits are never built. docs/student_model.md has the long form.

MoE aux losses in megatron-core 0.19: each router computes its load-balancing loss and z-loss in the
forward pass and attaches them to its activations with `MoEAuxLossAutoScaler` (`moe_utils.py`): an
autograd identity whose backward injects d(coeff * aux)/d(router) scaled by the class-level
`main_loss_backward_scale`. So the aux gradients enter whatever backward passes through the MoE layers;
they are never added to the returned loss. Their values (unweighted, detached) are recorded per layer in
`get_moe_metrics_tracker()` (`moe_logging.py`); `forward_student` clears it before each pass and returns
copies of this pass's values.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from megatron.core import parallel_state, tensor_parallel
from megatron.core.models.gpt.gpt_model import GPTModel
from megatron.core.transformer.moe.moe_logging import get_moe_metrics_tracker
from megatron.core.transformer.moe.moe_utils import MoEAuxLossAutoScaler
from megatron.core.transformer.transformer_config import TransformerConfig
from torch import Tensor

from vpmoe.model.config import StudentConfig
from vpmoe.model.grouped_experts import per_expert
from vpmoe.model.megatron_cpu import adapt_megatron_for, cpu_adaptations_applied
from vpmoe.model.sdpa_attention import SDPAttention
from vpmoe.model.specs import decoder_spec
from vpmoe.model.tp_shards import tensor_parallel_shard

log = logging.getLogger(__name__)

# Names under which megatron-core 0.19 routers record their aux losses in the metrics tracker
# (router.py: `_apply_aux_loss` -> "load_balancing_loss", `apply_z_loss` -> "z_loss").
LOAD_BALANCING_LOSS = "load_balancing_loss"
Z_LOSS = "z_loss"


@dataclass(kw_only=True)
class ParallelConfig:
    """Model-parallel layout. Data parallelism is whatever is left of the world size."""

    tensor_parallel: int = 1
    expert_parallel: int = 1
    pipeline_parallel: int = 1  # megatron's 1F1B schedule over stages of num_layers / pp layers

    def __post_init__(self) -> None:
        for name in ("tensor_parallel", "expert_parallel", "pipeline_parallel"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


_CREATED_PROCESS_GROUP = False


def rank_device(kind: str) -> torch.device:
    """This process's device for `kind` ("cpu" | "cuda"): on CUDA the GPU of LOCAL_RANK (torchrun's; 0 in a
    single process), which `init_parallel` requires explicitly."""
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device cuda asked for, but CUDA is not available; use cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if kind != "cpu":
        raise ValueError(f"device must be cpu or cuda, got {kind!r}")
    return torch.device("cpu")


def init_parallel(cfg: ParallelConfig, *, device: torch.device) -> None:
    """Prepare megatron-core for `device`, initialize torch.distributed if needed, then the parallel state.

    On CPU this applies `megatron_cpu.apply_cpu_adaptations()` (on GPU never: `adapt_megatron_for`).
    torch.distributed is initialized from the environment (`torchrun`, or MASTER_ADDR/PORT, RANK,
    WORLD_SIZE set by the caller) with gloo on CPU and NCCL on GPU, unless the caller already did.
    """
    global _CREATED_PROCESS_GROUP
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        raise ValueError("pass this rank's GPU explicitly: torch.device('cuda', LOCAL_RANK)")
    adapt_megatron_for(device)
    if parallel_state.model_parallel_is_initialized():
        raise RuntimeError("megatron parallel state is already initialized; call teardown_parallel() first")
    if not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend="gloo" if device.type == "cpu" else "nccl")
        _CREATED_PROCESS_GROUP = True
    world = torch.distributed.get_world_size()
    pp = cfg.pipeline_parallel
    if world % pp or (world // pp) % (cfg.tensor_parallel * cfg.expert_parallel):
        raise ValueError(
            f"world size {world} does not split into pipeline_parallel={pp} stages of tensor_parallel="
            f"{cfg.tensor_parallel} x expert_parallel={cfg.expert_parallel} groups"
        )
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=cfg.tensor_parallel,
        pipeline_model_parallel_size=pp,
        expert_model_parallel_size=cfg.expert_parallel,
        # Experts are never split by tensor parallelism (GroupedExperts refuses it; transformer_config).
        expert_tensor_parallel_size=1,
    )
    log.info(
        "parallel: world %d = tp %d x pp %d x dp %d; experts: ep %d x expert-dp %d; backend %s",
        world,
        cfg.tensor_parallel,
        pp,
        parallel_state.get_data_parallel_world_size(),
        cfg.expert_parallel,
        parallel_state.get_expert_data_parallel_world_size(),
        torch.distributed.get_backend(),
    )


def teardown_parallel() -> None:
    """Undo `init_parallel`: megatron's parallel state, and the process group if init_parallel made it."""
    global _CREATED_PROCESS_GROUP
    parallel_state.destroy_model_parallel()
    if _CREATED_PROCESS_GROUP and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _CREATED_PROCESS_GROUP = False


def transformer_config(cfg: StudentConfig, *, device: torch.device) -> TransformerConfig:
    """Map the student's config onto megatron-core's TransformerConfig for this device and layout."""
    if cfg.layer_spec == "te" and device.type != "cuda":
        raise ValueError("layer_spec='te' needs CUDA (Transformer Engine); use layer_spec='local' on CPU")
    if cfg.dtype == "bf16" and device.type != "cuda":
        raise ValueError(
            "dtype='bf16' needs CUDA: megatron's mixed-precision optimizer accepts only torch.cuda parameters "
            "(optimizer.py Float16OptimizerWithFloat16Params); use dtype='fp32' on CPU"
        )
    tp = parallel_state.get_tensor_model_parallel_world_size()
    ep = parallel_state.get_expert_model_parallel_world_size()
    if cfg.num_query_groups % tp:
        # megatron also accepts tp a multiple of the groups (KV heads replicated); the layout-independent
        # init splits the fused QKV rows into whole query groups (tp_shards.py), so each rank needs its own.
        raise ValueError(f"num_query_groups {cfg.num_query_groups} is not divisible by tensor_parallel {tp}")
    if cfg.num_moe_experts % ep:
        raise ValueError(f"num_moe_experts {cfg.num_moe_experts} is not divisible by expert_parallel {ep}")
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    if cfg.num_layers % pp:
        raise ValueError(f"num_layers {cfg.num_layers} is not divisible by pipeline_parallel {pp}")
    if pp > 1 and cfg.tie_embeddings:
        raise ValueError("tie_embeddings with pipeline_parallel > 1 is not supported (untie, or pp = 1)")
    bf16 = cfg.dtype == "bf16"
    return TransformerConfig(
        num_layers=cfg.num_layers,
        hidden_size=cfg.hidden_size,
        ffn_hidden_size=cfg.moe_ffn_hidden_size,
        num_attention_heads=cfg.num_attention_heads,
        num_query_groups=cfg.num_query_groups,
        kv_channels=cfg.head_dim,
        num_moe_experts=cfg.num_moe_experts,
        moe_router_topk=cfg.moe_router_topk,
        moe_ffn_hidden_size=cfg.moe_ffn_hidden_size,
        moe_router_load_balancing_type="aux_loss",
        moe_aux_loss_coeff=cfg.moe_aux_loss_coeff,
        # None, not 0: the router records z_loss / coeff in its tracker (router.py apply_z_loss).
        moe_z_loss_coeff=cfg.moe_z_loss_coeff or None,
        # Router logits, softmax and aux losses in fp32 whatever the dtype: routing decisions and the
        # load-balancing statistics are sensitive to bf16 rounding.
        moe_router_dtype="fp32",
        # Transformer Engine's grouped GEMM (TEGroupedMLP); the local spec's GroupedExperts needs no flag.
        moe_grouped_gemm=cfg.layer_spec == "te" and cfg.experts == "grouped",
        # alltoall is megatron's dispatcher for expert parallelism on GPU; it creates a torch.cuda.Stream
        # when constructed (token_dispatcher.py:469), so CPU uses allgather. Both are exact (no capacity
        # factor, no token dropping): the choice changes communication, not the maths.
        moe_token_dispatcher_type="alltoall" if device.type == "cuda" else "allgather",
        # Bias-free linears everywhere: with biases the local experts' autograd breaks on CPU (platform
        # notes) and GPT-OSS-style students gain nothing from them.
        add_bias_linear=False,
        gated_linear_unit=True,
        activation_func=F.silu,
        normalization="RMSNorm",
        layernorm_epsilon=cfg.norm_epsilon,
        hidden_dropout=cfg.hidden_dropout,
        attention_dropout=cfg.attention_dropout,
        init_method_std=cfg.init_method_std,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        expert_model_parallel_size=ep,
        # Expert tensor parallelism is not supported: under tp > 1 every tensor-parallel rank holds all of
        # its expert-parallel rank's experts and routes its own sequence shard through them (megatron's
        # default would split each expert tp ways). Their gradients are summed over the expert-data-parallel
        # group, which then includes the tensor-parallel ranks (DDP, allreduce=False).
        expert_tensor_parallel_size=1,
        # MoE with tensor parallelism needs sequence parallelism (TransformerConfig refuses it otherwise);
        # the local spec's norm supports it (rms_norm.py).
        sequence_parallel=tp > 1,
        bf16=bf16,
        params_dtype=torch.bfloat16 if bf16 else torch.float32,
        # Activations exchanged between pipeline stages (p2p_communication) in the model's dtype. CPU:
        # gloo pairs isend/irecv itself; batched p2p is NCCL's path.
        pipeline_dtype=torch.bfloat16 if bf16 else torch.float32,
        batch_p2p_comm=device.type == "cuda",
        use_cpu_initialization=device.type == "cpu",
    )


def build_student(cfg: StudentConfig, *, device: torch.device, seed: int) -> GPTModel:
    """Build the student on `device` after `init_parallel`.

    `seed` determines the weights (`_init_parameters`: the same whatever the parallel layout) and seeds
    megatron's named RNG states for dropout (the same seed on every rank, as megatron's own training does).
    The caller's default RNG stream is left as it was. The model is on `device` in `cfg.dtype`, train mode.
    """
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {device}")
    if not parallel_state.model_parallel_is_initialized() or (
        device.type == "cpu" and not cpu_adaptations_applied()
    ):
        raise RuntimeError(f"call init_parallel(..., device={device}) before build_student")
    tcfg = transformer_config(cfg, device=device)
    # The named RNG states for dropout (data-parallel, model-parallel, expert) are seeded for the run; the
    # construction itself runs on a forked default generator, so building never shifts the caller's RNG
    # stream (and how much megatron draws depends on the layout).
    tensor_parallel.model_parallel_cuda_manual_seed(seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = GPTModel(
            config=tcfg,
            transformer_layer_spec=decoder_spec(cfg, tcfg),
            vocab_size=cfg.vocab_size,
            max_sequence_length=cfg.max_seq_len,
            share_embeddings_and_output_weights=cfg.tie_embeddings,
            position_embedding_type="rope",
            # Pipeline stages: the embedding on the first, the final norm and LM-head weight on the last.
            pre_process=parallel_state.is_pipeline_first_stage(),
            post_process=parallel_state.is_pipeline_last_stage(),
            rotary_base=cfg.rotary_base,
        )
    model.to(device)
    if tcfg.bf16:
        # The local spec's norms are plain torch.nn.RMSNorm (no apex/TE), built in the default fp32 whatever
        # params_dtype says. Megatron's own trainer casts the whole model (Float16Module); without that the
        # mixed-precision optimizer files these as fp32 params and its sharded_state_dict fails to map
        # them ("Param id ... does not match any model sharded param", megatron-core 0.19.2), and the norm
        # runs the unfused mixed-dtype path. Parameters only: buffers keep their dtype.
        for p in model.parameters():
            if p.dtype != torch.bfloat16:
                p.data = p.data.to(torch.bfloat16)
    _init_parameters(model, cfg, seed=seed)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "student: %d layers, hidden %d, %d experts top-%d, %.1fM parameters on this rank, %s on %s",
        cfg.num_layers,
        cfg.hidden_size,
        cfg.num_moe_experts,
        cfg.moe_router_topk,
        n_params / 1e6,
        cfg.dtype,
        device,
    )
    return model


# Expert parameter names: local spec `...mlp.experts.local_experts.<i>.linear_fc1.weight` (SequentialMLP;
# GroupedExperts' [E, out, in] weights are initialized per expert under these names, `per_expert`), TE grouped
# GEMM `...mlp.experts.linear_fc1.weight<i>`; <i> is the index among this rank's experts.
_LOCAL_EXPERT = re.compile(r"(\.local_experts\.)(\d+)(\.)")
_GROUPED_EXPERT = re.compile(r"(\.experts\.linear_fc[12]\.weight)(\d+)$")
# Output projections get megatron's scaled init N(0, std / sqrt(2 * num_layers)) (transformer_config.py,
# utils.scaled_init_method_normal; used by attention.py linear_proj, mlp.py and experts.py linear_fc2).
_OUTPUT_PROJECTION = re.compile(r"\.(linear_proj|linear_fc2)\.weight\d*$")


_LAYER = re.compile(r"^(decoder\.layers\.)(\d+)(\.)")


def pipeline_layer_offset(num_layers: int) -> int:
    """Global index of this pipeline stage's first layer (a stage numbers its own layers from 0)."""
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    return parallel_state.get_pipeline_model_parallel_rank() * (num_layers // pp)


def _global_param_name(name: str, num_local_experts: int, ep_rank: int, layer_offset: int = 0) -> str:
    """The parameter's name with local expert indices and (pipeline stage) layer indices made global."""

    def to_global(match: re.Match) -> str:
        return f"{match.group(1)}{ep_rank * num_local_experts + int(match.group(2))}{match.group(3)}"

    name = _LAYER.sub(lambda m: f"{m.group(1)}{layer_offset + int(m.group(2))}{m.group(3)}", name)
    name = _LOCAL_EXPERT.sub(to_global, name)
    return _GROUPED_EXPERT.sub(lambda m: f"{m.group(1)}{ep_rank * num_local_experts + int(m.group(2))}", name)


def _param_seed(seed: int, global_name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{global_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@torch.no_grad()
def _init_parameters(model: GPTModel, cfg: StudentConfig, *, seed: int) -> None:
    """Initialize every weight matrix from (seed, its global name): the same model whatever the layout.

    megatron initializes from one RNG stream in construction order, so the weights depend on the parallel
    layout (under expert parallelism each rank builds only its experts, and the draws of every later layer
    shift). Seeding each matrix by its layout-independent name makes a DP=2 or EP=2 run start from exactly
    the one-process model, which the "same loss as one process" tests need. Distributions are megatron's:
    N(0, init_method_std), output projections N(0, init_method_std / sqrt(2 * num_layers)); norm weights
    keep their ones. Grouped experts draw each expert's slice under its sequential name, so grouped and
    sequential experts start identical. A tensor-parallel shard is this rank's slice of the full draw
    (tp_shards.py), so a TP=2 model is the one-process model split.
    """
    ep = parallel_state.get_expert_model_parallel_world_size()
    ep_rank = parallel_state.get_expert_model_parallel_rank()
    num_local_experts = cfg.num_moe_experts // ep
    layer_offset = pipeline_layer_offset(cfg.num_layers)
    scaled_std = cfg.init_method_std / math.sqrt(2.0 * cfg.num_layers)
    for name, param in model.named_parameters():
        if param.dim() < 2:
            continue
        shard = tensor_parallel_shard(param)
        for local_name, target in per_expert(name, param):
            global_name = _global_param_name(local_name, num_local_experts, ep_rank, layer_offset)
            std = scaled_std if _OUTPUT_PROJECTION.search(local_name) else cfg.init_method_std
            generator = torch.Generator(device=param.device).manual_seed(_param_seed(seed, global_name))
            shape = target.shape if shard is None else shard.full_shape(target.shape)
            draw = torch.empty(shape, dtype=torch.float32, device=param.device)
            draw.normal_(mean=0.0, std=std, generator=generator)
            target.copy_(draw if shard is None else shard.of(draw))


@dataclass(frozen=True)
class LMHeadInputs:
    """What the loss head needs instead of logits: logits would be `hidden @ weight.T`.

    hidden: [s, b, h], sequence-first, after the final RMSNorm; the full sequence of this rank's
        micro-batch (all-gathered from the sequence-parallel shards when tp > 1: `sequence_parallel`).
    weight: [V_local, h], this tensor-parallel rank's vocabulary rows vocab_start .. vocab_start + V_local
        of the output layer (the whole 201088-row vocabulary when tp == 1). A parameter: the loss's
        gradient flows into it directly.
    vocab_start: first vocabulary row held by `weight`.
    tp_group: the vocabulary-parallel process group (None when tp == 1), for the loss head's all-reduces.
    weight_shared: the weight is the input embedding's (tied): its gradient has a second source, so the
        loss head must not write it into megatron's main_grad directly (vpmoe/train/loss.py).
    sequence_parallel: hidden came through the sequence-parallel all-gather, whose backward reduce-scatters
        (sums over tp_group, keeps this rank's rows), as for megatron's own output layer
        (ColumnParallelLinear with sequence_parallel). The gradient reaching hidden must therefore be this
        rank's partial sum, the share of its vocabulary rows; a head that reduced it over tp_group itself
        would count it tp times (kernels.sparse_kl: reduce_grad_hidden=False).
    """

    hidden: Tensor
    weight: Tensor
    vocab_start: int
    tp_group: torch.distributed.ProcessGroup | None
    weight_shared: bool = False
    sequence_parallel: bool = False


@dataclass(frozen=True)
class StudentForward:
    """One forward pass: the LM head inputs, and this pass's MoE aux-loss values.

    head: LMHeadInputs on the last pipeline stage (always, without pipeline parallelism); on an earlier
        stage the stage's output hidden states [s, b, h], which megatron's schedule sends on.

    aux_losses: {"load_balancing_loss": [num_layers], "z_loss": [num_layers]} unweighted per-layer values
        of this forward pass (detached; only in train mode with grad enabled and a non-zero coefficient).
        Their gradients are already attached to the graph (module docstring); these are for logging.
    aux_loss_weighted: sum over terms of coeff * sum over layers: the aux part of the objective (detached).
    """

    head: LMHeadInputs | Tensor
    aux_losses: dict[str, Tensor]
    aux_loss_weighted: Tensor


def _lm_head_inputs(
    *, hidden_states: Tensor, output_layer, output_weight: Tensor | None, **_batch
) -> LMHeadInputs:
    """The `output_processor` (megatron-core 0.19.2 `GPTModel._postprocess` calls it by keyword)."""
    weight = output_weight if output_weight is not None else output_layer.weight
    tp_group = output_layer.tp_group if output_layer.tp_group.size() > 1 else None
    if output_layer.sequence_parallel:
        # Backward: one reduce-scatter of the head's partial grad_hidden ((tp - 1) / tp of [s, b, h] per
        # rank, in the hidden's dtype) both sums the vocabulary shards' shares and hands each rank its
        # sequence rows, as megatron's ColumnParallelLinear does. The alternative, the head all-reducing
        # grad_hidden and this gather only splitting (tensor_parallel_output_grad=False), moves twice the
        # bytes (an all-reduce is a reduce-scatter plus an all-gather) and in fp32.
        hidden_states = tensor_parallel.gather_from_sequence_parallel_region(
            hidden_states, tensor_parallel_output_grad=True, group=output_layer.tp_group
        )
    vocab_start = output_layer.tp_group.rank() * weight.shape[0] if tp_group is not None else 0
    return LMHeadInputs(
        hidden=hidden_states,
        weight=weight,
        vocab_start=vocab_start,
        tp_group=tp_group,
        weight_shared=output_weight is not None,
        sequence_parallel=bool(output_layer.sequence_parallel),
    )


def _uses_sdpa(gpt: GPTModel) -> bool:
    layers = getattr(getattr(gpt, "decoder", None), "layers", None) or []
    return bool(layers) and isinstance(layers[0].self_attention.core_attention, SDPAttention)


def causal_attention_mask(seq_len: int, device: torch.device) -> Tensor:
    """[1, 1, s, s] bool, True = masked (megatron's `attention_mask_func` fills True with -10000).

    Passed explicitly because megatron's default causal mask is built on CUDA
    (`transformer/utils.py` get_default_causal_mask).
    """
    return torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool, device=device), diagonal=1)[None, None]


def set_aux_loss_backward_scale(scale: float, *, device: torch.device) -> None:
    """Set the factor on the router aux / z-loss gradients for the coming backward passes.

    The aux gradient that enters backward is `scale * coeff * d(aux)/d(theta)` per forward pass, before
    DDP's data-parallel reduction. With DDP averaging over data-parallel ranks (its default), use
    1 / num_microbatches: the aux terms are then averaged over micro-batches and ranks, as megatron's own
    schedule does (`schedules.py` forward_step_calc_loss).
    """
    if not (scale > 0 and scale < float("inf")):
        raise ValueError(f"aux loss backward scale must be positive and finite, got {scale}")
    # Shape [1], as megatron's schedules set it (`_get_moe_loss_scale`): set_loss_scale copies into the
    # first tensor it was given, so both must agree.
    MoEAuxLossAutoScaler.set_loss_scale(torch.tensor([float(scale)], dtype=torch.float32, device=device))


def _check_allgather_token_counts(cfg: TransformerConfig, tokens: int, device: torch.device) -> None:
    """The allgather dispatcher (CPU) needs the same token count on every rank of its tp x ep group.

    It all-gathers tokens without split sizes (`token_dispatcher.py` MoEAllGatherTokenDispatcher.token_dispatch);
    with unequal micro-batch shapes gloo aborts the process ("Received data size doesn't match expected
    size"). One small all-gather here turns that into an error that says what to do. The alltoall
    dispatcher (GPU) exchanges counts itself and has no such constraint.
    """
    if cfg.moe_token_dispatcher_type != "allgather":
        return
    group = parallel_state.get_expert_tensor_and_model_parallel_group()
    if group is None or group.size() == 1:
        return
    counts = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(group.size())]
    torch.distributed.all_gather(counts, torch.tensor([tokens], dtype=torch.long, device=device), group=group)
    counts = [int(c) for c in counts]
    if len(set(counts)) > 1:
        raise ValueError(
            f"tokens per micro-batch differ across the expert-parallel group {counts}: the allgather MoE "
            "dispatcher (used on CPU) needs the same [batch, seq] on every rank; pad micro-batches to a "
            "common shape"
        )


def _reduce_over_sequence_shards(aux_losses: dict[str, Tensor]) -> None:
    """In place: the whole micro-batch's aux-loss values from each tensor-parallel rank's sequence shard.

    Under sequence parallelism each rank's router sees s / tp tokens (megatron-core 0.19.2 `router.py`): the
    load-balancing loss is computed from its own probabilities and the group's token counts, a partial sum
    (recorded with reduce_group=tp_cp: SUM); the z-loss is its shard's token mean (recorded with an averaging
    group: MEAN over the equal shards). Their gradients need nothing: the router weight's is summed over
    the group by finalize_model_grads (it is marked sequence_parallel).
    """
    group = parallel_state.get_tensor_model_parallel_group()
    for name, values in aux_losses.items():
        torch.distributed.all_reduce(values, group=group)
        if name == Z_LOSS:
            values /= group.size()
        elif name != LOAD_BALANCING_LOSS:
            raise RuntimeError(f"unknown MoE metric {name!r}: how it reduces over sequence shards is unknown")


def _unwrap(model) -> GPTModel:
    inner = model
    while not isinstance(inner, GPTModel):
        if not hasattr(inner, "module"):
            raise TypeError(f"expected a GPTModel or a wrapper of one (DDP), got {type(model).__name__}")
        inner = inner.module
    return inner


def forward_student(
    model,
    input_ids: Tensor,
    *,
    position_ids: Tensor | None = None,
    attention_mask: Tensor | None = None,
    padding_mask: Tensor | None = None,
) -> StudentForward:
    """Run the student (a GPTModel or its DDP wrapper) on input_ids [b, s] up to the LM head.

    position_ids default to 0..s-1 per row; attention_mask to causal ([1, 1, s, s] or [b, 1, s, s] bool,
    True = masked); padding_mask [b, s] bool, True = padding (excluded from MoE routing statistics).
    In train mode with aux losses on, `set_aux_loss_backward_scale` must have been called.
    """
    gpt = _unwrap(model)
    cfg = gpt.config
    if input_ids.dim() != 2 or input_ids.dtype.is_floating_point:
        raise ValueError(
            f"input_ids must be integer [batch, seq], got {input_ids.dtype} {tuple(input_ids.shape)}"
        )
    model_device = next(gpt.parameters()).device
    if input_ids.device != model_device:
        raise ValueError(f"input_ids are on {input_ids.device}, the model on {model_device}")
    b, s = input_ids.shape
    if s > gpt.max_sequence_length:
        raise ValueError(f"sequence length {s} exceeds the model's max_seq_len {gpt.max_sequence_length}")
    if cfg.sequence_parallel and s % cfg.tensor_model_parallel_size:
        raise ValueError(
            f"sequence length {s} is not divisible by tensor_parallel {cfg.tensor_model_parallel_size}: "
            "sequence parallelism splits the sequence evenly; pad micro-batches to a multiple of it"
        )
    aux_on = cfg.moe_aux_loss_coeff > 0 or cfg.moe_z_loss_coeff is not None
    if gpt.training and aux_on and MoEAuxLossAutoScaler.main_loss_backward_scale is None:
        raise RuntimeError(
            "MoE aux-loss backward scale is unset (megatron would silently use 1.0): call "
            "set_aux_loss_backward_scale(1 / num_microbatches) before training forwards"
        )
    _check_allgather_token_counts(cfg, b * s, input_ids.device)
    if position_ids is None:
        position_ids = torch.arange(s, device=input_ids.device).unsqueeze(0).expand(b, s)
    if attention_mask is None and not _uses_sdpa(gpt):
        # megatron's DotProductAttention / TE take the causal mask as a tensor; SDPAttention takes None as
        # "causal" and runs its kernel's own mask (FlashAttention on the GPU), no [s, s] tensor at all.
        attention_mask = causal_attention_mask(s, input_ids.device)
    # The tracker accumulates until cleared; we clear it per pass (an ever-growing sum would lose the
    # precision of each pass's share) and hand back copies, so megatron's own report() sees one pass only.
    tracker = get_moe_metrics_tracker()
    tracker.clear()
    head = model(
        input_ids,
        position_ids,
        attention_mask,
        padding_mask=padding_mask,
        output_processor=_lm_head_inputs,
    )
    if gpt.post_process and not isinstance(head, LMHeadInputs):
        raise RuntimeError(
            f"GPTModel.forward returned {type(head).__name__}, not the output_processor's result"
        )
    aux_losses = {name: entry.values.clone() for name, entry in tracker.metrics.items()}
    if cfg.sequence_parallel:
        _reduce_over_sequence_shards(aux_losses)
    coeffs = {LOAD_BALANCING_LOSS: cfg.moe_aux_loss_coeff, Z_LOSS: cfg.moe_z_loss_coeff or 0.0}
    weighted = sum(
        (coeffs[name] * values.sum() for name, values in aux_losses.items() if name in coeffs),
        torch.zeros((), device=input_ids.device),
    )
    return StudentForward(head=head, aux_losses=aux_losses, aux_loss_weighted=weighted)
