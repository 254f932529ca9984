"""The span-normalized objective through the trainer's step (vpmoe/train/trainer.py step_gradients):
the same loss and gradients whatever the micro-batch split (1 x 2 vs 2 x 1) and the data-parallel size
(DP=2 over two gloo processes vs one process); the loss only sees supervised (assistant) positions; the
head sees teacher row t with label t (checked against logits computed directly)."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from omegaconf import OmegaConf

from vpmoe.data.harmony_render import IGNORE_INDEX
from vpmoe.model.build import (
    ParallelConfig,
    _global_param_name,
    build_student,
    forward_student,
    init_parallel,
    pipeline_layer_offset,
    teardown_parallel,
)
from vpmoe.model.config import StudentConfig
from vpmoe.model.grouped_experts import per_expert
from vpmoe.teacher.store_reader import TeacherStoreReader
from vpmoe.train.data import DataConfig, MicroBatchBuilder, SampleIndex, epoch_steps, eval_batches, split_step
from vpmoe.train.evaluate import evaluate, rank_eval_batches
from vpmoe.train.loss import LossConfig, SpanWeights, head_loss, span_counts, token_weights
from vpmoe.train.optim import OptimConfig, build_ddp_and_optimizer
from vpmoe.train.trainer import step_gradients

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
GLOBAL = 2
# Unequal span weights, CE on: every term of the objective is exercised. The router aux / z-losses are
# off: they are per-micro-batch statistics (megatron's convention), not sums over tokens, so they are not
# split-invariant, and the contract's invariance is about the KD objective.
LOSS = LossConfig(weights=SpanWeights(reasoning=0.7, final=1.9), ce_weight=0.3, impl="torch")


def tiny(**kw) -> StudentConfig:
    fields = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / "tiny.yaml"))
    return StudentConfig(**{**fields, "moe_aux_loss_coeff": 0.0, "moe_z_loss_coeff": 0.0, **kw})


def _port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def step_and_grads(
    dataset, store, *, micro: int, dp: int, rank: int, ep: int = 1
) -> tuple[torch.Tensor, dict]:
    """One step's packed sums (then the initial model's held-out kl, ce, top-1, tokens) and the reduced
    gradients, on the first global batch of the plan."""
    reader = TeacherStoreReader(dataset, store)
    index = SampleIndex.build(reader, 0.2)
    cfg = DataConfig(global_batch_size=GLOBAL, micro_batch_size=micro, num_workers=0)
    step = epoch_steps(index, cfg, 0)[0]
    builder = MicroBatchBuilder(dataset, store, index, reader.k)
    batches = [builder.build(mb) for mb in split_step(index, step, cfg, dp, rank)]
    model = build_student(tiny(), device=CPU, seed=1234)
    ddp, opt = build_ddp_and_optimizer(model, OptimConfig(optimizer="sgd"), device=CPU)
    from megatron.core import parallel_state

    dp_group = parallel_state.get_data_parallel_group()
    # Held-out eval of the initial model (forward only; under pipelining through the same schedule).
    held_out = rank_eval_batches(eval_batches(index, cfg), dp=dp, rank=rank)
    ev = evaluate(ddp, builder, held_out, LOSS, device=CPU, dp_group=dp_group)
    out = step_gradients(ddp, opt, batches, LOSS, dp=dp, dp_group=dp_group, device=CPU)
    out["packed"] = torch.cat([out["packed"], torch.tensor([ev["kl"], ev["ce"], ev["top1"], ev["tokens"]])])
    # Expert parameters by their global index: under expert parallelism each rank holds a slice of them.
    ep_rank = parallel_state.get_expert_model_parallel_rank()
    num_local = tiny().num_moe_experts // ep
    # Layers by their global index: a pipeline stage numbers its own from 0.
    offset = pipeline_layer_offset(tiny().num_layers)
    grads = {
        _global_param_name(n, num_local, ep_rank, offset): g.detach().clone()
        for name, p in model.named_parameters()
        for n, g in per_expert(name, full_tensor(p, p.main_grad))  # grouped experts: per-expert matrices
    }
    return out["packed"], grads


def full_tensor(param, t: torch.Tensor) -> torch.Tensor:
    """A tensor-parallel shard gathered into the full tensor (tp_shards.py); anything else as is."""
    from megatron.core import parallel_state

    from vpmoe.model.tp_shards import tensor_parallel_shard

    shard = tensor_parallel_shard(param)
    if shard is None:
        return t
    parts = [torch.empty_like(t) for _ in range(shard.parts)]
    torch.distributed.all_gather(
        parts, t.contiguous(), group=parallel_state.get_tensor_model_parallel_group()
    )
    return torch.cat(parts, dim=shard.dim)


@pytest.fixture(scope="module")
def world1():
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=_port())
    init_parallel(ParallelConfig(), device=CPU)
    yield
    teardown_parallel()


@pytest.fixture(scope="module")
def reference(world1, small_dataset, scored_store):
    return step_and_grads(small_dataset, scored_store, micro=GLOBAL, dp=1, rank=0)


def assert_same(a, b):
    (pa, ga), (pb, gb) = a, b
    torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-9)
    assert ga.keys() == gb.keys()
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-4, atol=1e-7, msg=name)


def test_micro_batch_split_does_not_change_loss_or_gradients(reference, small_dataset, scored_store):
    packed, grads = reference
    assert packed[0] > 0 and all(float(g.abs().sum()) > 0 for g in grads.values())
    assert packed[-1] > 0 and packed[-4] > 0  # the held-out eval scored tokens
    assert_same(step_and_grads(small_dataset, scored_store, micro=1, dp=1, rank=0), reference)


def _dp2_worker(rank: int, port: str, dataset: str, store: str, out: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port
    )
    torch.set_num_threads(1)
    torch.distributed.init_process_group(backend="gloo")  # ours: kept across the two layouts
    for layout, ep, pp, tp in (("dp2", 1, 1, 1), ("dp2-ep2", 2, 1, 1), ("pp2", 1, 2, 1), ("tp2", 1, 1, 2)):
        init_parallel(
            ParallelConfig(expert_parallel=ep, pipeline_parallel=pp, tensor_parallel=tp), device=CPU
        )
        try:
            dp = 2 // (pp * tp)  # pp2 / tp2: both ranks see data-parallel rank 0's micro-batches
            result = step_and_grads(dataset, store, micro=1, dp=dp, rank=rank if dp > 1 else 0, ep=ep)
            torch.save(result, Path(out) / f"{layout}-rank{rank}.pt")
        finally:
            teardown_parallel()
    torch.distributed.destroy_process_group()


def test_data_expert_and_pipeline_parallel_two_processes_match_one(
    reference, small_dataset, scored_store, tmp_path
):
    """DP=2, DP=2 x EP=2 (each rank holds half of the experts), PP=2 (megatron's 1F1B schedule over
    two stages of one layer each, micro-batches of one sequence) and TP=2 (sequence parallel, the
    vocabulary-parallel head; the step finishes with finalize_model_grads), over two gloo processes."""
    mp.spawn(_dp2_worker, args=(_port(), str(small_dataset), str(scored_store), str(tmp_path)), nprocs=2)
    for rank in range(2):
        assert_same(torch.load(tmp_path / f"dp2-rank{rank}.pt", weights_only=False), reference)
    ranks = [torch.load(tmp_path / f"dp2-ep2-rank{r}.pt", weights_only=False) for r in range(2)]
    assert ranks[0][1].keys() != ranks[1][1].keys()
    merged = {**ranks[0][1], **ranks[1][1]}
    assert_same((ranks[0][0], merged), reference)
    assert_same((ranks[1][0], merged), reference)
    stages = [torch.load(tmp_path / f"pp2-rank{r}.pt", weights_only=False) for r in range(2)]
    assert not stages[0][1].keys() & stages[1][1].keys()  # each stage holds its own layers
    assert any("embedding" in n for n in stages[0][1]) and any("output_layer" in n for n in stages[1][1])
    merged = {**stages[0][1], **stages[1][1]}
    assert_same((stages[0][0], merged), reference)  # the packed sums are summed over the pipeline
    assert_same((stages[1][0], merged), reference)
    for rank in range(2):  # tp2: full gradients gathered from the shards
        assert_same(torch.load(tmp_path / f"tp2-rank{rank}.pt", weights_only=False), reference)


def test_objective_is_the_span_normalized_sum(reference, small_dataset, scored_store):
    """packed: loss sum, aux, per-span loss sums, per-span [tokens, kl, ce, ...]: the loss is
    sum_s w_s (sum_t in s (kl + ce_w ce)) / N_s over the whole step."""
    packed, _ = reference
    sums = packed[4:16].reshape(2, 6)
    expect = sum(
        w * float(sums[i, 1] + LOSS.ce_weight * sums[i, 2]) / float(sums[i, 0])
        for i, w in enumerate((LOSS.weights.reasoning, LOSS.weights.final))
    )
    assert float(packed[0]) == pytest.approx(expect, rel=1e-6)


def test_loss_sees_only_supervised_positions_and_aligned_teacher_rows(world1, small_dataset, scored_store):
    reader = TeacherStoreReader(small_dataset, scored_store)
    index = SampleIndex.build(reader, 0.0)
    builder = MicroBatchBuilder(small_dataset, scored_store, index, reader.k)
    b = builder.build(np.array([0, 1]))  # two rows: [s, b] flattening must not mix them up
    model = build_student(tiny(), device=CPU, seed=1234)
    model.eval()
    counts = span_counts([b["position_spans"]])
    w = token_weights(b["position_spans"], counts, LOSS.weights)
    assert torch.equal(w > 0, b["labels"] != IGNORE_INDEX), "weights exactly on supervised positions"
    with torch.no_grad():
        head = forward_student(model, b["input_ids"]).head
        res = head_loss(head, b["labels"], b["teacher_ids"], b["teacher_logprobs"], w, LOSS)
        # Garbage in every unsupervised position (teacher rows, labels stay -100): the loss is unchanged.
        sup = b["labels"] != IGNORE_INDEX
        t_ids, t_lps = b["teacher_ids"].clone(), b["teacher_logprobs"].clone()
        t_ids[~sup] = 17
        t_lps[~sup] = -0.01
        res2 = head_loss(head, b["labels"], t_ids, t_lps, w, LOSS)
        assert float(res2.loss) == float(res.loss)
        # Direct check of a few positions of row 1: logits at position t against teacher row t, label t.
        kl = res.kl.reshape(head.hidden.shape[0], 2)  # head outputs come in Megatron's [s, b] order
        ce = res.ce.reshape(head.hidden.shape[0], 2)
        positions = torch.nonzero(sup[1]).flatten()
        for t in positions[:: max(1, len(positions) // 4)].tolist():
            logq = torch.log_softmax((head.hidden[t, 1] @ head.weight.T).double(), -1)
            ids, lp = b["teacher_ids"][1, t], b["teacher_logprobs"][1, t].double()
            p_tail = 1 - lp.exp().sum()
            q_tail = 1 - logq[ids].exp().sum()
            direct_kl = float((lp.exp() * (lp - logq[ids])).sum() + p_tail * math.log(p_tail / q_tail))
            assert float(kl[t, 1]) == pytest.approx(direct_kl, rel=1e-3, abs=1e-4)
            assert float(ce[t, 1]) == pytest.approx(float(-logq[b["labels"][1, t]]), rel=1e-4)
