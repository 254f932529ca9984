"""Input checks of ``kernels.sparse_kl``: argument shapes and options on the host, ids and values on the device.

Two kinds, kept apart on purpose:
  check_args      shapes, dtypes, devices and options: tensor metadata only, so no host sync;
  validate_ids    the data of supervised rows (ids in range, finite teacher log-probs, a given supervised-row
                  index that matches the labels) with ``torch._assert_async``: the check runs on the device
                  in stream order and the host never waits for it, so it costs no sync inside a training
                  step. A failure raises RuntimeError with the message on the CPU; on CUDA it is a
                  device-side assert (the process stops at the next synchronisation; the message is not
                  carried, so rerun the batch with impl="torch" on the CPU, or with CUDA_LAUNCH_BLOCKING=1,
                  to see which check failed).
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

IGNORE_INDEX = -100
NO_ID = -1  # a teacher slot without an id (padding of a sampled row): no mass on either side, skipped


def check_args(
    hidden: Tensor,
    weight: Tensor,
    teacher_ids: Tensor,
    teacher_logprobs: Tensor,
    labels: Tensor,
    token_weights: Tensor | None,
    supervised_rows: Tensor | None,
    *,
    impl: str,
    tail: str,
    temperature: float,
    ce_weight: float,
    main_grad: Tensor | None,
    main_grad_scale: float,
) -> None:
    """Fail loudly on malformed arguments (tensor metadata only: no host sync)."""
    if impl not in ("triton", "torch"):
        raise ValueError(f"impl must be 'triton' or 'torch', got {impl!r}")
    if tail not in ("bucket", "renorm"):
        raise ValueError(f"tail must be 'bucket' or 'renorm', got {tail!r}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    if not (ce_weight >= 0 and math.isfinite(ce_weight)):
        raise ValueError(f"ce_weight must be >= 0, got {ce_weight}")
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"hidden [T, H] and weight [V, H] expected, got {tuple(hidden.shape)}, {tuple(weight.shape)}"
        )
    T = hidden.shape[0]
    if teacher_ids.dim() != 2 or teacher_ids.shape[0] != T or teacher_logprobs.shape != teacher_ids.shape:
        raise ValueError(
            f"teacher_ids and teacher_logprobs must both be [T={T}, k], got "
            f"{tuple(teacher_ids.shape)} and {tuple(teacher_logprobs.shape)}"
        )
    if labels.shape != (T,):
        raise ValueError(f"labels must be [T={T}], got {tuple(labels.shape)}")
    if teacher_ids.dtype.is_floating_point or labels.dtype.is_floating_point:
        raise ValueError("teacher_ids and labels must be integer tensors")
    if hidden.dtype != weight.dtype:
        raise ValueError(f"hidden and weight dtypes differ: {hidden.dtype} vs {weight.dtype}")
    devs = {t.device for t in (hidden, weight, teacher_ids, teacher_logprobs, labels)}
    if token_weights is not None:
        if token_weights.shape != (T,):
            raise ValueError(f"token_weights must be [T={T}], got {tuple(token_weights.shape)}")
        devs.add(token_weights.device)
    if supervised_rows is not None:
        if supervised_rows.dim() != 1 or supervised_rows.dtype != torch.int64 or supervised_rows.numel() > T:
            raise ValueError(
                f"supervised_rows must be an int64 [R <= T={T}] index, got {supervised_rows.dtype} "
                f"{tuple(supervised_rows.shape)}"
            )
        devs.add(supervised_rows.device)
    if len(devs) != 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devs))}")
    if main_grad is not None:
        if (
            main_grad.shape != weight.shape
            or main_grad.dtype != torch.float32
            or main_grad.device != weight.device
        ):
            raise ValueError(
                f"main_grad must be fp32 {tuple(weight.shape)} on {weight.device} like weight, got "
                f"{main_grad.dtype} {tuple(main_grad.shape)} on {main_grad.device}"
            )
        if weight.dtype == torch.float64:
            raise ValueError("main_grad (an fp32 accumulator) is for bf16/fp32 weights, not fp64")
        if not (math.isfinite(main_grad_scale) and main_grad_scale != 0):
            raise ValueError(f"main_grad_scale must be finite and nonzero, got {main_grad_scale}")
    if impl == "triton":
        check_triton_usable(hidden.device)


def check_triton_usable(device: torch.device) -> None:
    """impl='triton' never falls back to torch: say exactly why it cannot run here."""
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if device.type != "cuda" and not interpret:
        raise RuntimeError(
            f"impl='triton' needs CUDA tensors (got {device}); on CPU use impl='torch', or set "
            "TRITON_INTERPRET=1 before importing triton to run the kernels in the (slow) interpreter"
        )
    try:
        import triton  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"impl='triton' needs the triton package: {e}") from e


def validate_ids(
    teacher_ids: Tensor,
    labels: Tensor,
    v_local: int,
    group,
    teacher_logprobs: Tensor,
    supervised_rows: Tensor | None = None,
) -> None:
    """Device-side checks of supervised rows (module docstring): ids and labels in [0, V), finite teacher
    log-probs (a NaN would vanish from the loss, where p log p is masked at p = 0, yet poison the gradient),
    and, when the caller passed ``supervised_rows``, that it is exactly the sorted index of the rows with
    label != -100 (a wrong index would silently drop or double-count rows). Ignored rows may carry
    anything. Vocab-parallel: V is the sum of the shards (an all-reduce, no host sync)."""
    v_total: int | Tensor = v_local
    if group is not None:
        import torch.distributed as dist

        # A fill, not torch.tensor([v_local]): that would copy from pageable host memory.
        v_total = torch.full((1,), v_local, dtype=torch.int64, device=labels.device)
        dist.all_reduce(v_total, group=group)
    valid = labels != IGNORE_INDEX
    has_id = teacher_ids != NO_ID  # a NO_ID slot's log-prob is not read (sampled rows pad it with -inf)
    bad_ids = ((teacher_ids < 0) | (teacher_ids >= v_total)) & has_id & valid[:, None]
    bad_lab = ((labels < 0) | (labels >= v_total)) & valid
    bad_lp = ~torch.isfinite(teacher_logprobs) & has_id & valid[:, None]
    torch._assert_async(
        ~bad_lp.any(), "sparse_kl: teacher log-probs of supervised rows are not finite (NaN or inf)"
    )
    torch._assert_async(
        ~(bad_ids.any() | bad_lab.any()),
        "sparse_kl: teacher ids or labels of supervised rows are outside [0, V) and not NO_ID (V: the whole "
        "vocabulary; ignored rows must carry label -100)",
    )
    T = labels.shape[0]
    if supervised_rows is not None and T > 0:  # T = 0: check_args already bounded the index to 0 rows
        rows = supervised_rows
        in_range = ((rows >= 0) & (rows < T)).all()
        increasing = (rows[1:] > rows[:-1]).all()
        # Strictly increasing, in range, all supervised and as many as there are supervised labels:
        # exactly the supervised rows. clamp keeps the gather in bounds before the assert has spoken.
        hit = valid.index_select(0, rows.clamp(0, T - 1)).all()
        count = valid.sum() == rows.numel()
        torch._assert_async(
            in_range & increasing & hit & count,
            "sparse_kl: supervised_rows is not the sorted index of the rows with label != -100",
        )
