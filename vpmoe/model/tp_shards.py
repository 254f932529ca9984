"""Where a tensor-parallel parameter's local shard sits in the full (tp = 1) tensor.

`build._init_parameters` draws every weight from (seed, its layout-independent name) so that any parallel
layout starts from the one-process model. Under tensor parallelism a rank holds a slice of some weights;
it draws the full tensor and keeps its slice. megatron marks those parameters with `tensor_model_parallel`,
`partition_dim` and `partition_stride` (megatron-core 0.19.2 `tensor_parallel/layers.py`
set_tensor_model_parallel_attributes): `VocabParallelEmbedding` and the output layer split vocabulary rows
(dim 0), `ColumnParallelLinear` (linear_qkv) its output rows (dim 0; the fused QKV rows are ordered by
query group, so a contiguous slice is whole groups), `RowParallelLinear` (linear_proj) its input columns
(dim 1). Rank r holds the r-th of `parts` contiguous chunks along that dim (`_initialize_affine_weight_cpu`
splits the full master weight the same way).

Expert weights carry the same marks, but experts are split over the expert-tensor-parallel group, which
the student keeps at size 1 (build.init_parallel): megatron marks them `allreduce=False` whenever they use
the expert process groups (`ColumnParallelLinear(is_expert=True)`), and their group decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from megatron.core import parallel_state


@dataclass(frozen=True)
class Shard:
    dim: int  # the partition dim
    parts: int  # tensor-parallel size of the parameter's group
    index: int  # this rank's chunk

    def full_shape(self, local: torch.Size) -> tuple[int, ...]:
        shape = list(local)
        shape[self.dim] *= self.parts
        return tuple(shape)

    def of(self, full: torch.Tensor) -> torch.Tensor:
        return full.chunk(self.parts, dim=self.dim)[self.index]


def tensor_parallel_shard(param: torch.Tensor) -> Shard | None:
    """This rank's shard of `param` in the full tensor; None when `param` is whole on every rank."""
    if not getattr(param, "tensor_model_parallel", False):
        return None
    if getattr(param, "allreduce", True):  # a dense parameter: the tensor-parallel group
        parts = parallel_state.get_tensor_model_parallel_world_size()
        index = parallel_state.get_tensor_model_parallel_rank()
    else:  # an expert parameter: the expert-tensor-parallel group
        parts = parallel_state.get_expert_tensor_parallel_world_size()
        index = parallel_state.get_expert_tensor_parallel_rank()
    if parts == 1:
        return None
    if getattr(param, "partition_stride", 1) != 1:
        # A strided split (e.g. a SwiGLU fc1 split per half) is not one contiguous chunk.
        raise ValueError(f"strided tensor-parallel partition ({param.partition_stride}) is not supported")
    return Shard(dim=param.partition_dim, parts=parts, index=index)
