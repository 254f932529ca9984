"""Held-out evaluation: KL to the teacher, CE and top-1 agreement per span, over the eval split; the
student's calibration (ECE) and, given a teacher reference, the KL to the teacher's full distribution
(vpmoe/train/full_softmax.py).

The eval split is declared by `data.eval_fraction` (a sample is held out iff the hash of its id says so,
vpmoe/train/data.py), so it is disjoint from training by sample id and the same in every run on the same
dataset. Metrics are token means per span, summed over all data-parallel ranks before dividing.
"""

from __future__ import annotations

import numpy as np
import torch

from vpmoe.data.harmony_render import Span
from vpmoe.train.data import MicroBatchBuilder, pad_batch
from vpmoe.train.full_softmax import (
    CALIB_SUMS,
    ECE_BINS,
    REFERENCE_SUMS,
    calibration_sums,
    full_softmax_metrics,
    full_softmax_rows,
    reference_sums,
)
from vpmoe.train.loss import LOSS_SPAN_IDS, LossConfig, head_loss, supervised_rows
from vpmoe.train.schedule import run_micro_batches, sum_over_pipeline

SPANS = ("reasoning", "final")
assert tuple(int(s) for s in (Span.REASONING, Span.FINAL)) == LOSS_SPAN_IDS

# Per-span sums, in this order: tokens, kl, ce, teacher top-k mass, student mass on the teacher's ids, top-1.
SUMS = ("tokens", "kl", "ce", "teacher_mass", "student_mass", "top1")


def head_sums(res, position_spans: torch.Tensor) -> torch.Tensor:
    """[2, len(SUMS)] float64 per-span sums of the head's per-token outputs (in Megatron's [s, b] order)."""
    spans = position_spans.transpose(0, 1).reshape(-1).to(res.kl.device)
    rows = []
    for sid in LOSS_SPAN_IDS:
        m = spans == sid
        vals = (m, res.kl, res.ce, res.teacher_topk_mass, res.student_mass_on_teacher_ids, res.top1_agree)
        rows.append(torch.stack([(v.to(torch.float64) * m).sum() for v in vals]))
    return torch.stack(rows)


def common_shapes(model, micro: list[dict], device) -> list[dict]:
    """Under expert parallelism with the allgather dispatcher (CPU), every rank of the expert group must
    run micro-batch j with the same [b, s] (build.py _check_allgather_token_counts): pad to the group's max.
    Under pipeline parallelism every micro-batch of the step gets the step's largest [b, s] (one activation
    shape between stages). Under tensor parallelism the sequence is split evenly over the tensor-parallel
    ranks (sequence parallelism): s is rounded up to a multiple of their number. The padding is masked
    (labels -100, padding mask), so the loss and gradients do not change."""
    from megatron.core import parallel_state

    # model: the GPTModel or megatron's DDP around it; both carry the TransformerConfig as .config
    shapes = torch.tensor([list(mb["input_ids"].shape) for mb in micro], dtype=torch.long, device=device)
    pipelined = parallel_state.get_pipeline_model_parallel_world_size() > 1
    if pipelined:  # the 1F1B schedule sends one [s, b, h] activation shape for every micro-batch
        shapes[:] = shapes.amax(dim=0)
    group = parallel_state.get_expert_tensor_and_model_parallel_group()
    allgather = (
        model.config.moe_token_dispatcher_type == "allgather" and group is not None and group.size() > 1
    )
    if allgather:
        torch.distributed.all_reduce(shapes, op=torch.distributed.ReduceOp.MAX, group=group)
    tp = parallel_state.get_tensor_model_parallel_world_size()
    if tp > 1:
        shapes[:, 1] = (shapes[:, 1] + tp - 1) // tp * tp
    if not (pipelined or allgather or tp > 1):
        return micro
    return [pad_batch(mb, int(b), int(s)) for mb, (b, s) in zip(micro, shapes.tolist(), strict=True)]


@torch.no_grad()
def evaluate(
    model,
    builder: MicroBatchBuilder,
    micro: list,
    loss_cfg: LossConfig,
    *,
    device: torch.device,
    dp_group=None,
    reference=None,
) -> dict:
    """Evaluate on this rank's held-out micro-batches (`micro`: (sample indices, real) pairs from
    `rank_eval_batches`; real=False is a padding pass that keeps collectives aligned). Collective.
    The KL is to the stored teacher's whole top-k with the bucket (`LossConfig.measured`), whatever the run
    trained on, so runs of different `loss.teacher_k`, `loss.tail` or `loss.target` compare.
    `reference`: a ReferenceLookup (vpmoe/train/teacher_reference.py) over `builder`'s samples, for the KL to
    the teacher's full distribution; every held-out sample must have its rows there."""
    loss_cfg = loss_cfg.measured()
    was_training = model.training
    model.eval()
    try:
        sums = torch.zeros(len(LOSS_SPAN_IDS), len(SUMS), dtype=torch.float64, device=device)
        calib = torch.zeros(ECE_BINS, len(CALIB_SUMS), dtype=torch.float64, device=device)
        ref_sums = torch.zeros(len(REFERENCE_SUMS), dtype=torch.float64, device=device)
        for samples, real in micro:
            batch = common_shapes(model, [builder.build(samples)], device)[0]
            ref_rows = reference.batch_rows(samples, batch["labels"]) if reference and real else None

            def loss_fn(mb, head, real=real, ref_rows=ref_rows):
                nonlocal sums
                res = head_loss(
                    head, mb["labels"], mb["teacher_ids"], mb["teacher_logprobs"],
                    torch.ones(mb["labels"].shape), loss_cfg,
                )  # fmt: skip
                # every tensor-parallel rank runs this (its collectives), padding passes included
                dev = head.hidden.device
                ref = None if ref_rows is None else {k: v.to(dev) for k, v in ref_rows.items()}
                rows = supervised_rows(mb["labels"]).to(dev)
                full = full_softmax_rows(
                    head.hidden.reshape(-1, head.hidden.shape[-1])[rows], head.weight,
                    ids=None if ref is None else ref["draws"], vocab_start=head.vocab_start,
                    tp_group=head.tp_group,
                )  # fmt: skip
                if real:
                    sums += head_sums(res, mb["position_spans"])
                    next_tokens = mb["labels"].transpose(0, 1).reshape(-1).to(dev)[rows].long()
                    calib.add_(calibration_sums(full, next_tokens))
                    if ref is not None:
                        ref_sums.add_(reference_sums(full, ref))
                return res.loss

            run_micro_batches(model, [batch], loss_fn, device=device, forward_only=True)
        if torch.distributed.is_initialized():
            for t in (sums, calib, ref_sums):
                sum_over_pipeline(t)  # only the last stage holds the head's sums
                torch.distributed.all_reduce(t, group=dp_group)
    finally:
        model.train(was_training)
    return {
        **eval_metrics(sums.cpu(), loss_cfg),
        **full_softmax_metrics(calib.cpu(), ref_sums.cpu() if reference else None),
    }


def eval_metrics(sums: torch.Tensor, loss_cfg: LossConfig) -> dict:
    out: dict = {}
    weights = {"reasoning": loss_cfg.weights.reasoning, "final": loss_cfg.weights.final}
    loss = 0.0
    for i, span in enumerate(SPANS):
        n = float(sums[i, 0])
        out[f"tokens_{span}"] = int(n)
        for j, name in enumerate(SUMS[1:], start=1):
            out[f"{name}_{span}"] = float(sums[i, j]) / n if n else float("nan")
        if n:
            loss += weights[span] * (out[f"kl_{span}"] + loss_cfg.ce_weight * out[f"ce_{span}"])
    total = sums.sum(0)
    n = float(total[0])
    for j, name in enumerate(SUMS[1:], start=1):
        out[name] = float(total[j]) / n if n else float("nan")
    out["tokens"] = int(n)
    # The objective (without aux losses) on held-out data, as measured: KL to the stored top-k with the bucket
    # (LossConfig.measured), which is the training objective unless the run trained on an ablation.
    out["loss"] = loss
    return out


def rank_eval_batches(all_micro: list, *, dp: int, rank: int) -> list[tuple]:
    """Deal held-out micro-batches round-robin as (samples, real) pairs; ranks left short repeat the first
    batch with real=False, so every rank runs the same number of forward passes (expert parallelism has
    collectives inside the forward)."""
    if not all_micro:
        raise ValueError("the held-out split is empty: raise data.eval_fraction or use a larger dataset")
    mine = [(m, True) for m in all_micro[rank::dp]]
    per_rank = -(-len(all_micro) // dp)
    return mine + [(all_micro[0], False)] * (per_rank - len(mine))


def evaluate_checkpoint(
    path: str,
    *,
    dataset: str | None = None,
    store: str | None = None,
    device: str | None = None,
    reference: str | None = None,
) -> dict:
    """Standalone eval of a training checkpoint (a `step_*` dir, or a run dir: its newest complete one).

    The model, data and loss configs come from the checkpoint's provenance; dataset / store default to the
    ones it was trained on. Runs as one process (world of 1: megatron reshards the checkpoint on load).
    `reference`: a teacher reference of the dataset's held-out samples (vpmoe/train/teacher_reference.py)
    adds the KL to the teacher's full distribution and top-1 agreement with its full argmax.
    """
    from vpmoe.model.build import ParallelConfig, build_student, init_parallel, rank_device, teardown_parallel
    from vpmoe.model.config import StudentConfig
    from vpmoe.teacher.store_reader import TeacherStoreReader
    from vpmoe.train.checkpoint import load_model_and_optimizer, read_meta, resolve_checkpoint
    from vpmoe.train.data import DataConfig, SampleIndex, eval_batches

    ckpt = resolve_checkpoint(path)
    meta = read_meta(ckpt)
    prov = meta["provenance"]
    config = prov["config"]
    dataset = dataset or prov["dataset"]["path"]
    store = store or prov["teacher_store"]["path"]
    # the GPU of this process (LOCAL_RANK), as the trainer picks it: a bare "cuda" is refused by init_parallel
    dev = rank_device(torch.device(device or config["train"]["device"]).type)
    model_cfg = StudentConfig(**config["model"])
    data_cfg = DataConfig(**config["data"])
    loss_cfg = LossConfig(**config["loss"])
    if dev.type == "cpu" and loss_cfg.impl == "triton":
        loss_cfg.impl = "torch"  # the same maths (kernels/sparse_kl_head.py); triton needs CUDA
    cache = data_cfg.index_cache_bytes
    # refuses a store of another dataset, or an incomplete one
    reader = TeacherStoreReader(dataset, store, index_cache_bytes=cache)
    loss_cfg.measured().check_reader(reader)  # e.g. trained at temperature 2, evaluated on a sampled store
    index = SampleIndex.build(reader, data_cfg.eval_fraction)
    if reader.dataset.manifest_hash != prov["dataset"]["manifest_hash"]:
        import logging

        logging.getLogger(__name__).warning(
            "evaluating on dataset %s; the checkpoint was trained on %s",
            reader.dataset.manifest_hash,
            prov["dataset"]["manifest_hash"],
        )
    lookup = None
    if reference is not None:
        from vpmoe.train.teacher_reference import ReferenceLookup, TeacherReference

        ref = TeacherReference.load(reference)
        ref.check_dataset(reader.dataset.manifest_hash)
        lookup = ReferenceLookup(ref, index, [s.name for s in reader.dataset.manifest.shards])
        lookup.check_samples(np.flatnonzero(index.held_out))  # before the model is built
    init_parallel(ParallelConfig(), device=dev)
    try:
        model = build_student(model_cfg, device=dev, seed=0)
        load_model_and_optimizer(ckpt, model, None)
        builder = MicroBatchBuilder(dataset, reader.root, index, reader.k, index_cache_bytes=cache)
        micro = rank_eval_batches(eval_batches(index, data_cfg), dp=1, rank=0)
        metrics = evaluate(model, builder, micro, loss_cfg, device=dev, reference=lookup)
    finally:
        teardown_parallel()
    return {
        "kind": "eval",
        "checkpoint": str(ckpt),
        "step": meta["step"],
        "dataset_manifest_hash": reader.dataset.manifest_hash,
        **(
            {"reference": reference, "reference_draws": lookup.reference.draws_per_position} if lookup else {}
        ),
        **metrics,
    }
