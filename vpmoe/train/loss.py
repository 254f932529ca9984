"""The distillation objective: span-normalized KD (+ optional CE) through the fused sparse-KL head.

Contract (docs/distillation_mechanics.md): for span types s in {reasoning, final},

    loss = sum_s w_s * (sum over tokens t in s of [KL_t + ce_weight * CE_t]) / N_s

with N_s the number of supervised tokens of span s in the whole optimizer step: every micro-batch and
every data-parallel rank. The head computes sum_t token_weight_t * (KL_t + ce_weight * CE_t); giving token
t the weight w_{s(t)} / N_{s(t)} makes the sum over all micro-batches and ranks exactly the loss above,
whatever the split. DDP averages gradients over data-parallel ranks, so each rank back-propagates its
part times the data-parallel size (`backward_scale`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from vpmoe.data.harmony_render import IGNORE_INDEX, Span

IMPLS = ("triton", "torch")
TAILS = ("bucket", "renorm")
TARGETS = ("teacher", "labels")


@dataclass(kw_only=True)
class SpanWeights:
    reasoning: float = 1.0
    final: float = 1.0

    def __post_init__(self) -> None:
        if self.reasoning < 0 or self.final < 0 or self.reasoning + self.final == 0:
            raise ValueError(f"loss.weights must be >= 0 and not all 0, got {self}")


@dataclass(kw_only=True)
class LossConfig:
    weights: SpanWeights = field(default_factory=SpanWeights)
    ce_weight: float = 0.0  # hard-label CE on the actual next token, added per token to the KL
    temperature: float = 1.0
    tail: str = "bucket"  # bucket (default, unbiased) | renorm (renormalized top-k; biased, for ablations)
    impl: str = "triton"  # triton (GPU) | torch (the reference; CPU)
    # Ablations (benchmarks/quality/): train on the first `teacher_k` of the stored top-k (0: all of it),
    # or on the labels instead of the teacher (target=labels: a one-hot teacher, so KL = CE, no teacher).
    teacher_k: int = 0
    target: str = "teacher"

    def __post_init__(self) -> None:
        if isinstance(self.weights, dict):
            self.weights = SpanWeights(**self.weights)
        if self.impl not in IMPLS:
            raise ValueError(f"loss.impl must be one of {IMPLS}, got {self.impl!r}")
        if self.tail not in TAILS:
            raise ValueError(f"loss.tail must be one of {TAILS}, got {self.tail!r}")
        if self.temperature <= 0:
            raise ValueError("loss.temperature must be > 0")
        if self.ce_weight < 0:
            raise ValueError("loss.ce_weight must be >= 0")
        if self.teacher_k < 0:
            raise ValueError(f"loss.teacher_k must be >= 0 (0: the store's k), got {self.teacher_k}")
        if self.target not in TARGETS:
            raise ValueError(f"loss.target must be one of {TARGETS}, got {self.target!r}")
        one_id = self.target == "labels" or self.teacher_k == 1
        if one_id and self.tail == "renorm":
            # renormalized over a single id, teacher and student both put mass 1 on it: loss and gradient 0
            raise ValueError(
                "loss.tail=renorm over one teacher id (loss.target=labels or loss.teacher_k=1) is a loss of 0; "
                "use loss.tail=bucket"
            )
        if self.target == "labels" and (self.temperature != 1.0 or self.ce_weight != 0.0):
            # KL to the one-hot label is the CE only at temperature 1, and ce_weight would add it again
            raise ValueError(
                "loss.target=labels is the CE itself: it needs loss.temperature=1 and loss.ce_weight=0"
            )

    def check_store(self, k: int, storage: str = "topk") -> None:
        """Refuse what the store cannot give. A sampled store's rows (RS-KD: drawn ids with counts c, the
        teacher's probabilities estimated as c / N, vpmoe/teacher/sampling.py) are not a ranking, so no
        first teacher_k of them and no renormalized tail (the bucket holds the tail draws); and c / N
        estimates the distribution at temperature 1 only (tempering it needs importance weights, which
        are not implemented). loss.target=labels reads no teacher and takes any store."""
        if self.teacher_k > k:
            raise ValueError(f"loss.teacher_k={self.teacher_k} > the teacher store's k={k}")
        if storage == "sampled" and self.target != "labels":
            bad = [f"{name}={value}" for name, value, ok in (
                ("loss.teacher_k", self.teacher_k, self.teacher_k == 0),
                ("loss.tail", self.tail, self.tail == "bucket"),
                ("loss.temperature", self.temperature, self.temperature == 1.0),
            ) if not ok]  # fmt: skip
            if bad:
                raise ValueError(
                    f"{', '.join(bad)} on a sampled teacher store: its rows are draws (counts / N at "
                    "temperature 1), so it takes loss.teacher_k=0, loss.tail=bucket and loss.temperature=1"
                )

    def check_reader(self, reader) -> None:
        """`check_store` against an open TeacherStoreReader, refused as a StoreError naming the store (the
        error the training and evaluation CLIs report without a traceback)."""
        from vpmoe.teacher.store import StoreError

        try:
            self.check_store(reader.k, reader.storage)
        except ValueError as e:
            raise StoreError(f"{reader.root}: {e}") from None

    def measured(self) -> LossConfig:
        """What held-out evaluation computes, whatever the training ablation: KL to the stored teacher's
        whole top-k with the bucket, so every run's eval KL measures the same thing."""
        return replace(self, teacher_k=0, target="teacher", tail="bucket")


LOSS_SPAN_IDS = (int(Span.REASONING), int(Span.FINAL))


def span_counts(position_spans: list[Tensor]) -> Tensor:
    """Supervised tokens per span (reasoning, final) over this rank's micro-batches of a step, float64."""
    return torch.tensor(
        [sum(int((p == s).sum()) for p in position_spans) for s in LOSS_SPAN_IDS], dtype=torch.float64
    )


def token_weights(position_spans: Tensor, step_counts: Tensor, weights: SpanWeights) -> Tensor:
    """w_{s(t)} / N_{s(t)} per position (0 where unsupervised or the span has no token in the step)."""
    out = torch.zeros(position_spans.shape, dtype=torch.float32)
    for s, w, n in zip(LOSS_SPAN_IDS, (weights.reasoning, weights.final), step_counts.tolist(), strict=True):
        if n > 0:
            out[position_spans == s] = w / n
    return out


def head_loss(
    head,
    labels: Tensor,
    teacher_ids: Tensor,
    teacher_logprobs: Tensor,
    weights_tok: Tensor,
    cfg: LossConfig,
    *,
    backward_scale: float | None = None,
):
    """Run the fused head on one micro-batch. Inputs in [b, s] layout; the head's hidden is [s, b, h].

    backward_scale: the grad_output the caller will backpropagate ``loss`` with (the trainer's
    data-parallel factor). Given, and the output weight is a megatron DDP parameter of its own (not tied
    to the embedding), the head adds the weight's gradient straight into its fp32 ``main_grad`` (megatron's
    gradient-accumulation fusion; kernels/sparse_kl_head.py): no [V, H] fp32 accumulator of the head's
    own, no bf16 weight.grad, no DDP copy pass.

    The head skips rows with label -100 (prompts, padding). Their index sizes its GEMMs, so it must be known
    on the host: it is taken here from the batch's labels, which the loader delivers as host tensors, so
    the step has no host sync for it. Labels already on the GPU (a caller of its own) leave it to the head:
    one host sync per call (kernels/sparse_kl_head.py, step 0).
    """
    from kernels import sparse_kl

    main_grad = getattr(head.weight, "main_grad", None)
    fuse = backward_scale is not None and main_grad is not None and not head.weight_shared

    s, b, h = head.hidden.shape
    dev = head.hidden.device
    # Megatron's hidden is sequence-first: flatten the small per-token tensors in [s, b] order to match,
    # on the device (a host-side transpose would copy the loader's page-locked batch to pageable memory).
    seq_first = lambda x: x.transpose(0, 1).reshape(s * b, *x.shape[2:])  # noqa: E731
    flat = lambda x: seq_first(_to_device(x, dev))  # noqa: E731
    rows = _to_device(supervised_rows(labels), dev) if labels.device.type == "cpu" else None
    labels = flat(labels).long()  # int32 from the loader (vpmoe/train/data.py)
    if cfg.target == "labels":
        # A one-hot teacher on the next token (log-prob 0; ignored rows' id 0 is never read): KL = CE.
        ids = labels.clamp_min(0).unsqueeze(1)
        lps = torch.zeros(ids.shape, dtype=torch.float32, device=dev)
    else:
        # batched as int32 / fp16 (exact; vpmoe/train/data.py), widened here; stored descending, so the
        # first teacher_k columns are the top teacher_k
        k = cfg.teacher_k or teacher_ids.shape[-1]
        if k > teacher_ids.shape[-1]:
            raise ValueError(f"loss.teacher_k={k} > the batch's teacher k={teacher_ids.shape[-1]}")
        ids = flat(teacher_ids)[:, :k].long()
        lps = flat(teacher_logprobs)[:, :k].float()
    return sparse_kl(
        head.hidden.reshape(s * b, h),
        head.weight,
        ids,
        lps,
        labels,
        flat(weights_tok),
        supervised_rows=rows,
        impl=cfg.impl,
        tail=cfg.tail,
        temperature=cfg.temperature,
        ce_weight=cfg.ce_weight,
        vocab_start=head.vocab_start,
        process_group=head.tp_group,
        # Sequence parallel: the hidden's all-gather reduce-scatters its gradient in backward, so the head
        # leaves grad_hidden partial (one collective, not an all-reduce on top: vpmoe/model/build.py).
        reduce_grad_hidden=not head.sequence_parallel,
        main_grad=main_grad if fuse else None,
        main_grad_scale=backward_scale if fuse else 1.0,
    )


def supervised_rows(labels: Tensor) -> Tensor:
    """The rows the head computes a loss for: indices of labels != IGNORE_INDEX in the head's
    sequence-first order ([b, s] labels flattened as r = t * b + i, Megatron's [s, b])."""
    return torch.nonzero(labels.transpose(0, 1).reshape(-1) != IGNORE_INDEX).squeeze(1)


def _to_device(x: Tensor, dev: torch.device) -> Tensor:
    """Host -> GPU from page-locked memory: CUDA may copy from pageable memory synchronously (it stages
    through a pinned buffer and may wait for the stream), which would stall the host inside the step."""
    if dev.type == "cuda" and x.device.type == "cpu" and not x.is_pinned():
        x = x.pin_memory()
    return x.to(dev, non_blocking=True)
