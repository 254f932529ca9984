"""Grouped-GEMM experts for the local layer spec: all of a rank's experts in one GEMM per projection.

megatron-core 0.19.2 offers two training experts modules (`transformer/moe/experts.py`): `TEGroupedMLP`
(Transformer Engine) and `SequentialMLP`, which runs the local experts one after another (two linears, an
activation and a few small ops per expert: with 32 experts the GPU step is host-bound; platform notes:
11.7 ms for one layer's expert FFN as a loop against 1.3 ms grouped). `GroupedExperts` is the same maths
as `SequentialMLP` on megatron's `MLP` (`transformer/mlp.py`), with the weights of all local experts in one
[num_local_experts, out, in] parameter per projection and each projection one `grouped_linear` call.

The GEMM. `grouped_linear` is `torch.nn.functional.grouped_mm` on every device and dtype; which kernel
torch runs underneath depends on them (torch 2.11 `GroupedBlas.cpp`, torch 2.13 CPU), and is logged once
per (device, dtype):
- CUDA, bf16, compute capability 9.x/10.x (H100, H200, B200): torch's CUTLASS grouped GEMM, one launch.
  On an H200, one layer's fc1 at the `small` preset's shapes (32 experts, 32768 routed rows, forward and
  backward) takes 0.58 ms against 3.43 ms for a per-expert loop; the `small` KD step 288 ms against 698 ms
  with SequentialMLP (benchmarks/results/train_small_h200_experts.md).
- CUDA, any other dtype or GPU: torch's own per-group loop (`_grouped_mm_fallback`: `mm_out` per expert,
  after copying the offsets to the host). Exact, but host-bound like the sequential experts.
- CPU, fp32 and bf16: torch's CPU kernel, which is that same per-group `mm_out` loop in C++. It runs the
  same BLAS products as `SequentialMLP`'s `x @ w.t()`: the tiny student's fp32 loss and gradients came out
  identical to the sequential experts' (the tests allow ulps).
grouped_mm's backward validates the strides and the 16-byte alignment of the incoming gradient
(`GroupedMMUtils.h` check_valid_strides_and_return_transposed) and rejects e.g. the expanded [0, 0]-strided
gradient of `out.sum()` ("Invalid strides/sizes"; that is the CPU fp32 failure once seen with autograd, and
the same check runs on CUDA). `grouped_linear` hands it a contiguous, aligned gradient.

Router probabilities are applied where megatron 0.19.2 applies them for these experts: `MLP.forward` with
`per_token_scale` (`SequentialMLP` passes the permuted probs), unfused path (`bias_activation_fusion=False`):
after the activation (SwiGLU), before linear_fc2, `(act * probs[:, None]).to(act.dtype)`.

Parallelism and checkpoints follow megatron's expert linears: parameters are marked `allreduce=False` under
expert parallelism (DDP then reduces their gradients over the expert-data-parallel group) and carry the
tensor-parallel attributes of `ColumnParallelLinear` / `RowParallelLinear`; gradients go to `param.grad`,
which megatron's DDP accumulates into `main_grad` (the distributed optimizer shards that buffer as for any
parameter). `sharded_state_dict` exposes exactly `SequentialMLP`'s sharded tensors and objects (one per
global expert, linear_fc1 split into its SwiGLU halves), so checkpoints move between grouped and sequential
experts and between expert-parallel sizes. Expert tensor parallelism is not supported: the student keeps
expert_tensor_parallel_size at 1 (vpmoe/model/build.py), so under TP every tensor-parallel rank holds whole
experts and routes its own sequence shard through them.
"""

from __future__ import annotations

import logging
import re

import torch
import torch.nn.functional as F
from megatron.core.dist_checkpointing.mapping import ShardedTensorFactory
from megatron.core.tensor_parallel.layers import set_tensor_model_parallel_attributes
from megatron.core.tensor_parallel.random import (
    get_cuda_rng_tracker,
    get_expert_parallel_rng_tracker_name,
)
from megatron.core.transformer.mlp import apply_swiglu_sharded_factory
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.transformer.utils import (
    ensure_metadata_has_dp_cp_group,
    make_sharded_object_for_checkpoint,
)
from megatron.core.utils import make_tp_sharded_tensor_for_checkpoint
from torch import Tensor

log = logging.getLogger(__name__)

_LOGGED: set[tuple[str, torch.dtype]] = set()


def grouped_mm_kernel(device: torch.device, dtype: torch.dtype) -> str:
    """Which kernel torch's grouped_mm runs for a 2D x 3D product on `device` in `dtype` (module doc)."""
    if device.type == "cuda":
        if dtype == torch.bfloat16 and torch.cuda.get_device_capability(device)[0] in (9, 10):
            return "CUTLASS grouped GEMM (one launch per projection)"
        return "torch's per-expert mm loop inside grouped_mm (no grouped kernel for this dtype/GPU)"
    return "torch's CPU grouped_mm (per-expert mm in C++)"


def _gemm_operand(t: Tensor) -> Tensor:
    """`t` as grouped_mm accepts it: row-major, data 16-byte aligned (copied only when it is not).

    An empty tensor counts as contiguous whatever its strides, but grouped_mm checks them: always copy it.
    """
    if t.numel() > 0 and t.is_contiguous() and t.data_ptr() % 16 == 0:
        return t
    return t.clone(memory_format=torch.contiguous_format)


def grouped_linear(x: Tensor, weight: Tensor, offs: Tensor) -> Tensor:
    """`F.linear` per expert as one grouped GEMM: rows offs[e-1]:offs[e] of x [T, in] times weight[e].T.

    weight [E, out, in] (megatron's linear layout per expert); offs [E] int32 cumulative row ends on x's
    device. Rows of an expert with no tokens produce nothing; its weight gets a zero gradient.
    """
    y = F.grouped_mm(_gemm_operand(x), weight.transpose(1, 2), offs=offs)
    if y.requires_grad:
        y.register_hook(_gemm_operand)  # the gradient grouped_mm's backward receives (module docstring)
    return y


class ExpertWeights(torch.nn.Module):
    """One projection's weights for all local experts: `weight` [num_local_experts, out, in]."""

    def __init__(self, weight: torch.nn.Parameter) -> None:
        super().__init__()
        self.weight = weight

    def get_extra_state(self) -> None:
        """None, as megatron's local linears return (`ColumnParallelLinear.get_extra_state`)."""
        return None

    def set_extra_state(self, state) -> None:
        """Ignored, as by megatron's local linears (a checkpoint holds one None per expert)."""

    def extra_repr(self) -> str:
        e, out_features, in_features = self.weight.shape
        return f"experts={e}, in_features={in_features}, out_features={out_features}, bias=False"


class GroupedExperts(MegatronModule):
    """megatron's experts interface (`moe_layer.ExpertsInterface`) with grouped GEMMs (module docstring).

    Built by `MoELayer` as `submodules.experts(num_local_experts, config, pg_collection=..., name=...)`.
    Parameters: `linear_fc1.weight` [E, 2 * ffn, hidden] (SwiGLU: gate rows then linear rows, as megatron's
    fc1) and `linear_fc2.weight` [E, hidden, ffn]; expert e's slices are `SequentialMLP`'s
    `local_experts.<e>.linear_fc{1,2}.weight`.
    """

    def __init__(self, num_local_experts: int, config: TransformerConfig, pg_collection=None, name=None):
        super().__init__(config=config)
        self._check_config(config)
        if pg_collection is None:
            raise ValueError(
                "GroupedExperts needs the MoE layer's pg_collection (ep, expt_tp, expt_dp groups)"
            )
        self.num_local_experts = num_local_experts
        self.ep_group = pg_collection.ep
        self.tp_group = pg_collection.expt_tp
        self.dp_group = pg_collection.expt_dp  # the group experts are replicated over (SequentialMLP)
        if self.tp_group.size() != 1:
            raise ValueError(
                f"GroupedExperts supports expert tensor parallel size 1, got {self.tp_group.size()}"
            )
        ffn = config.moe_ffn_hidden_size
        fc1_out = 2 * ffn if config.gated_linear_unit else ffn
        # grouped_mm needs every row stride to be a multiple of 16 bytes (GroupedMMUtils.h).
        element = torch.empty((), dtype=config.params_dtype).element_size()
        for what, size in (("hidden_size", config.hidden_size), ("moe_ffn_hidden_size", ffn)):
            if (size * element) % 16:
                raise ValueError(
                    f"{what}={size} in {config.params_dtype}: grouped_mm needs rows of a multiple of 16 bytes"
                )
        device = torch.device("cpu") if config.use_cpu_initialization else torch.cuda.current_device()

        def weight(out_features: int, in_features: int) -> torch.nn.Parameter:
            shape = (num_local_experts, out_features, in_features)
            return torch.nn.Parameter(torch.empty(shape, dtype=config.params_dtype, device=device))

        self.linear_fc1 = ExpertWeights(weight(fc1_out, config.hidden_size))
        self.linear_fc2 = ExpertWeights(weight(config.hidden_size, ffn))
        # As ColumnParallelLinear / RowParallelLinear mark expert weights (tensor_parallel/layers.py): reduced
        # over the expert-data-parallel group (allreduce=False) once experts use their own process groups;
        # tensor-parallel partition dim of the per-expert [out, in] matrix, shifted by the expert dim.
        use_expert_pgs = (
            config.expert_model_parallel_size > 1
            or config.expert_tensor_parallel_size != config.tensor_model_parallel_size
        )
        fc1_stride = 2 if config.gated_linear_unit else 1
        for param, dim, stride in ((self.linear_fc1.weight, 1, fc1_stride), (self.linear_fc2.weight, 2, 1)):
            set_tensor_model_parallel_attributes(param, is_parallel=True, dim=dim, stride=stride)
            param.allreduce = not use_expert_pgs
        if config.perform_initialization:
            # megatron draws expert weights under the expert-parallel RNG state (layers.py
            # _initialize_affine_weight_gpu), so experts on different EP ranks differ.
            with torch.no_grad(), get_cuda_rng_tracker().fork(get_expert_parallel_rng_tracker_name()):
                for e in range(num_local_experts):
                    config.init_method(self.linear_fc1.weight[e])
                    config.output_layer_init_method(self.linear_fc2.weight[e])

    @staticmethod
    def _check_config(config: TransformerConfig) -> None:
        """Refuse what this module does not implement (SequentialMLP would run it differently)."""
        refused = {
            "add_bias_linear": config.add_bias_linear,  # the student has no biases (build.transformer_config)
            "bias_activation_fusion": config.bias_activation_fusion,  # fused kernel: other rounding
            "use_te_activation_func": config.use_te_activation_func,
            "moe_apply_probs_on_input": config.moe_apply_probs_on_input,
            "moe_latent_size": config.moe_latent_size is not None,
            "fp8": bool(config.fp8),
            "fp4": bool(config.fp4),
        }
        on = sorted(name for name, value in refused.items() if value)
        if on:
            raise ValueError(f"GroupedExperts does not implement {on}; use experts='sequential'")
        if config.moe_ffn_hidden_size is None:
            raise ValueError("GroupedExperts needs config.moe_ffn_hidden_size")

    def _activation(self, h: Tensor) -> Tensor:
        """megatron MLP.forward's unfused activation (mlp.py, `glu`), SwiGLU when gated_linear_unit."""
        cfg = self.config
        if not cfg.gated_linear_unit:
            return cfg.activation_func(h)
        x_glu, x_linear = torch.chunk(h, 2, dim=-1)
        if (val := cfg.activation_func_clamp_value) is not None:
            x_glu = x_glu.clamp(min=None, max=val)
            x_linear = x_linear.clamp(min=-val, max=val)
        return cfg.activation_func(x_glu) * (x_linear + cfg.glu_linear_offset)

    def _offsets(self, tokens_per_expert: Tensor, rows: int, device: torch.device) -> Tensor:
        if tokens_per_expert.numel() != self.num_local_experts:
            raise ValueError(
                f"tokens_per_expert has {tokens_per_expert.numel()} entries for "
                f"{self.num_local_experts} experts"
            )
        # megatron's dispatchers hand the counts over on the host (allgather: `.cpu()`, alltoall:
        # `_maybe_dtoh_and_synchronize`), where checking them is free; grouped_mm leaves rows past the last
        # offset unwritten, so a mismatch would be silent garbage.
        if tokens_per_expert.device.type == "cpu" and int(tokens_per_expert.sum()) != rows:
            raise ValueError(
                f"tokens_per_expert sums to {int(tokens_per_expert.sum())}, the input has {rows} rows"
            )
        return tokens_per_expert.cumsum(0).to(device=device, dtype=torch.int32, non_blocking=True)

    def forward(
        self, permuted_local_hidden_states: Tensor, tokens_per_expert: Tensor, permuted_probs: Tensor
    ) -> tuple[Tensor, None]:
        """Rows grouped by local expert [T, hidden], counts [E], router probs [T] -> ([T, hidden], None)."""
        x = permuted_local_hidden_states
        key = (x.device.type, x.dtype)
        if key not in _LOGGED:
            _LOGGED.add(key)
            log.info(
                "grouped experts on %s %s: %s", x.device.type, x.dtype, grouped_mm_kernel(x.device, x.dtype)
            )
        offs = self._offsets(tokens_per_expert, x.shape[0], x.device)
        h = self._activation(grouped_linear(x, self.linear_fc1.weight, offs))
        # MLP.forward, per_token_scale: scale after the activation, keep the activation's dtype.
        h = (h * permuted_probs.unsqueeze(-1)).to(h.dtype)
        return grouped_linear(h, self.linear_fc2.weight, offs), None

    def backward_dw(self) -> None:
        """Nothing to do: weight gradients come in the backward pass, as for local linears."""

    def sharded_state_dict(self, prefix: str = "", sharded_offsets: tuple = (), metadata: dict | None = None):
        """SequentialMLP's sharded state (experts.py `SequentialMLP.sharded_state_dict`) from our weights.

        Keys `{prefix}experts.linear_fc{1,2}.weight`, one ShardedTensor per global expert along a prepended
        expert axis (linear_fc1 as its two SwiGLU halves, `apply_swiglu_sharded_factory`), and the linears'
        `_extra_state` objects; replica id over the expert-data-parallel group. Each weight is one
        ShardedTensorFactory around the parameter itself, so megatron's optimizers map their state onto the
        same per-expert layout; loading stacks it back.
        """
        metadata = ensure_metadata_has_dp_cp_group(metadata)
        if metadata.get("singleton_local_shards", False):
            raise NotImplementedError(
                "GroupedExperts.sharded_state_dict: singleton_local_shards is not supported"
            )
        dp_cp_group = metadata["dp_cp_group"]
        ep_axis = len(sharded_offsets)
        num_global = self.ep_group.size() * self.num_local_experts
        first = self.ep_group.rank() * self.num_local_experts
        # megatron's default (pp, tp, dp) replica id with the dp coordinate over the expert-DP group.
        replica_id = (0, 0, self.dp_group.rank())
        glu = self.config.gated_linear_unit
        out = {}
        # TP axis of the per-expert matrix: fc1 is column parallel (axis 0), fc2 row parallel (axis 1).
        for name, tp_axis, swiglu in (("linear_fc1", 0, glu), ("linear_fc2", 1, False)):

            def build(key, data, replica_id, flattened_range, tp_axis=tp_axis, swiglu=swiglu):
                if flattened_range is not None:
                    raise NotImplementedError("GroupedExperts: flattened optimizer state is not supported")
                shards = []
                for e in range(data.shape[0]):
                    offsets = (*sharded_offsets, (ep_axis, first + e, num_global))
                    sh_ten = make_tp_sharded_tensor_for_checkpoint(
                        data[e],
                        key,
                        tp_axis=tp_axis,
                        replica_id=replica_id,
                        prepend_offsets=offsets,
                        tp_group=self.tp_group,
                        dp_cp_group=dp_cp_group,
                    )
                    if swiglu:
                        factory = apply_swiglu_sharded_factory(
                            sh_ten, offsets, tp_group=self.tp_group, dp_group=dp_cp_group
                        )
                        sh_ten = factory.build()  # [gate half, linear half]
                    shards.append(sh_ten)
                return shards

            def merge(loaded, swiglu=swiglu):
                return torch.stack([torch.cat(t, dim=0) if swiglu else t for t in loaded])

            param = getattr(self, name).weight
            out[f"{prefix}{name}.weight"] = ShardedTensorFactory(
                f"{prefix}experts.{name}.weight", param, build, merge, replica_id
            )
            # SequentialMLP's linears also save an `_extra_state` object (None) per expert; a sequential
            # model loading this checkpoint asks for them.
            out[f"{prefix}{name}._extra_state"] = [
                make_sharded_object_for_checkpoint(
                    None,
                    f"{prefix}experts.{name}._extra_state",
                    (*sharded_offsets, (ep_axis, first + e, num_global)),
                    replica_id=replica_id,
                )
                for e in range(self.num_local_experts)
            ]
        return out


# GroupedExperts' weights are `<...>.experts.linear_fc{1,2}.weight`; SequentialMLP names expert e's
# `<...>.experts.local_experts.<e>.linear_fc{1,2}.weight` (megatron-core experts.py).
_GROUPED_WEIGHT = re.compile(r"\.experts\.(linear_fc[12]\.weight)$")


def per_expert(name: str, tensor: Tensor) -> list[tuple[str, Tensor]]:
    """A GroupedExperts weight (or its grad, main_grad) as SequentialMLP's per-expert (name, [out, in]).

    Any other parameter comes back as [(name, tensor)]. Local expert indices, as SequentialMLP's names;
    `build._global_param_name` makes them global. Lets init and tests treat both experts modules alike.
    """
    match = _GROUPED_WEIGHT.search(name)
    if match is None:
        return [(name, tensor)]
    if tensor.dim() != 3:
        raise ValueError(f"{name}: expected a grouped expert weight [E, out, in], got {tuple(tensor.shape)}")
    stem = name[: match.start()]
    return [(f"{stem}.experts.local_experts.{e}.{match.group(1)}", tensor[e]) for e in range(tensor.shape[0])]
