"""Tensor parallelism on the local spec (sequence parallel, vpmoe RMSNorm), on CPU: TP=2 over two gloo
processes takes the one-process step of the fused sparse-KL head (loss, MoE aux losses, every gradient, grad
norm, updated weights), evaluates held-out data the same, and writes a checkpoint that loads into one
process. Also: the local spec's norms are vpmoe's RMSNorm, marked sequence-parallel only under TP.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_student_model import (
    CPU,
    SEED,
    free_port,
    make_trainer,
    tiny_config,
    world1,  # noqa: F401  (the fixture: world of one gloo process)
)

from vpmoe.model.build import (
    ParallelConfig,
    build_student,
    forward_student,
    init_parallel,
    set_aux_loss_backward_scale,
    teardown_parallel,
)
from vpmoe.model.config import GPT_OSS_VOCAB_SIZE
from vpmoe.model.rms_norm import RMSNorm
from vpmoe.model.tp_shards import tensor_parallel_shard
from vpmoe.train.full_softmax import full_softmax_rows
from vpmoe.train.loss import LossConfig, head_loss

LOSS = LossConfig(impl="torch", ce_weight=0.3, temperature=1.5)
ROWS, SEQ, K = 2, 16, 8


def distill_batch(seed: int) -> dict[str, torch.Tensor]:
    """Token ids [ROWS, SEQ], next-token labels (row 0's first 5 positions and every last one ignored),
    a random sparse teacher (K distinct ids per position) and token weights 1 / supervised count."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, GPT_OSS_VOCAB_SIZE, (ROWS, SEQ), generator=g)
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:]
    labels[0, :5] = -100
    t_ids = torch.stack([torch.randperm(GPT_OSS_VOCAB_SIZE, generator=g)[:K] for _ in range(ROWS * SEQ)])
    t_lp = torch.log_softmax(3 * torch.randn(ROWS * SEQ, K + 1, generator=g), -1)[:, :K]
    weights = (labels != -100).float() / int((labels != -100).sum())
    return {
        "ids": ids,
        "labels": labels,
        "teacher_ids": t_ids.view(ROWS, SEQ, K),
        "teacher_logprobs": t_lp.view(ROWS, SEQ, K),
        "weights": weights,
    }


def _head(out, b: dict[str, torch.Tensor]):
    return head_loss(out.head, b["labels"], b["teacher_ids"], b["teacher_logprobs"], b["weights"], LOSS)


def _with_shard(p: torch.nn.Parameter, t: torch.Tensor) -> tuple[torch.Tensor, int | None]:
    shard = tensor_parallel_shard(p)
    return t.detach().clone(), None if shard is None else shard.dim


def step_and_eval(ddp, opt, model) -> dict:
    """One training step through the sparse-KL head, then a held-out eval of the updated model.

    Gradients are finished by megatron's finalize_model_grads: DDP's reduction, then the sum over the
    tensor-parallel group of the sequence-parallel parameters' gradients (norms, routers)."""
    from megatron.core.distributed import finalize_model_grads

    train, held_out = distill_batch(7), distill_batch(8)
    ddp.zero_grad_buffer()
    opt.zero_grad()
    set_aux_loss_backward_scale(1.0, device=CPU)
    out = forward_student(ddp, train["ids"])
    res = _head(out, train)
    res.loss.backward()
    finalize_model_grads([ddp])
    grads = {n: _with_shard(p, p.main_grad) for n, p in model.named_parameters()}
    ok, grad_norm, _ = opt.step()
    assert ok, "optimizer step was skipped"
    model.eval()
    with torch.no_grad():
        out = forward_student(ddp, held_out["ids"])
        ev = _head(out, held_out)
        # the whole softmax over the vocabulary-parallel head (evaluation's ECE and full-distribution KL)
        h = out.head.hidden
        probe = held_out["teacher_ids"].transpose(0, 1).reshape(-1, K)
        full = full_softmax_rows(
            h.reshape(-1, h.shape[-1]), out.head.weight, ids=probe, vocab_start=out.head.vocab_start,
            tp_group=out.head.tp_group,
        )  # fmt: skip
    model.train()
    return {
        "loss": float(res.loss),
        "aux": out.aux_losses,
        "grad_norm": float(grad_norm),
        "grads": grads,
        "params": {n: _with_shard(p, p) for n, p in model.named_parameters()},
        "eval": {"loss": ev.loss, "kl": ev.kl, "ce": ev.ce, "top1": ev.top1_agree},
        "full_softmax": {"confidence": full.confidence, "logq": full.logq},
        "full_argmax": full.argmax,
    }


def decoder_sharded_state(model) -> dict:
    """The decoder's part of the sharded state dict (the 201088-row embedding and head would dominate)."""
    return {k: v for k, v in model.sharded_state_dict().items() if k.startswith("decoder.")}


def _tp2_worker(rank: int, port: int, out_dir: str) -> None:
    from megatron.core import dist_checkpointing

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    init_parallel(ParallelConfig(tensor_parallel=2), device=CPU)
    try:
        model = build_student(tiny_config(), device=CPU, seed=SEED)
        ddp, opt = make_trainer(model, optimizer="sgd", lr=0.5)
        result = step_and_eval(ddp, opt, model)
        result["norm_marks"] = {
            n: getattr(p, "sequence_parallel", None) for n, p in model.named_parameters() if "norm" in n
        }
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
        dist_checkpointing.save(decoder_sharded_state(model), str(Path(out_dir) / "ckpt"))
        try:  # a sequence sequence parallelism cannot split evenly: a clear error, before any collective
            forward_student(ddp, torch.zeros(1, SEQ - 1, dtype=torch.long))
        except ValueError as e:
            (Path(out_dir) / f"odd-rank{rank}.txt").write_text(str(e))
    finally:
        teardown_parallel()


def merge(ranks: list[dict[str, tuple]], name: str) -> torch.Tensor:
    """The full tensor from the two ranks': replicas must agree exactly, shards are concatenated."""
    (a, dim), (b, _) = ranks[0][name], ranks[1][name]
    if dim is None:
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name}: replicas differ")
        return a
    return torch.cat([a, b], dim=dim)


def test_local_spec_norms_are_vpmoe_rmsnorm(world1):  # noqa: F811
    model = build_student(tiny_config(), device=CPU, seed=SEED)
    # Every norm with a weight (q/k layernorms are IdentityOp in this spec).
    norms = {n: type(m) for n, m in model.named_modules() if n.endswith("norm") and len(list(m.parameters()))}
    assert norms and set(norms.values()) == {RMSNorm}, norms
    assert "decoder.final_layernorm" in norms
    # tp == 1: not marked, so finalize_model_grads leaves them alone
    assert {p.sequence_parallel for n, p in model.named_parameters() if "norm" in n} == {False}


def test_tensor_parallel_two_gloo_processes_match_one_process(world1, tmp_path):  # noqa: F811
    """TP=2 (sequence parallel, vocabulary-parallel head, experts replicated over the two ranks) against one
    process, same seed, same batch: loss, aux losses, gradients, grad norm, updated weights, held-out eval."""
    from megatron.core import dist_checkpointing

    (tmp_path / "ckpt").mkdir()
    mp.spawn(_tp2_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    model = build_student(tiny_config(), device=CPU, seed=SEED)
    ddp, opt = make_trainer(model, optimizer="sgd", lr=0.5)
    ref = step_and_eval(ddp, opt, model)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]

    for r in ranks:
        assert r["loss"] == pytest.approx(ref["loss"], rel=1e-6)
        for name, values in ref["aux"].items():  # the whole sequence's, from each rank's shard
            torch.testing.assert_close(r["aux"][name], values, rtol=1e-5, atol=1e-7)
        assert r["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-5)
        for key, value in ref["eval"].items():
            torch.testing.assert_close(r["eval"][key], value, rtol=1e-5, atol=1e-6, msg=key)
        for key, value in ref["full_softmax"].items():
            torch.testing.assert_close(r["full_softmax"][key], value, rtol=1e-5, atol=1e-6, msg=key)
        assert torch.equal(r["full_argmax"], ref["full_argmax"])
        assert set(r["norm_marks"].values()) == {True}, r["norm_marks"]
    for what in ("grads", "params"):
        assert ranks[0][what].keys() == ref[what].keys()
        sharded = [n for n, (_, dim) in ranks[0][what].items() if dim is not None]
        assert any("linear_qkv" in n for n in sharded) and "output_layer.weight" in sharded
        for name, (value, _) in ref[what].items():
            # A gradient counted tp times (a head that all-reduces grad_hidden before the sequence-parallel
            # gather's reduce-scatter) fails here by a factor of 2 in every decoder gradient.
            torch.testing.assert_close(merge([r[what] for r in ranks], name), value, rtol=1e-5, atol=1e-7)

    # The TP=2 checkpoint of the decoder loads into the one-process model: its updated weights.
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.zero_()
    loaded = dist_checkpointing.load(decoder_sharded_state(model), str(tmp_path / "ckpt"))
    result = model.load_state_dict(loaded, strict=False)
    assert not result.unexpected_keys and all(not k.startswith("decoder.") for k in result.missing_keys)
    for name, p in model.decoder.named_parameters(prefix="decoder"):
        torch.testing.assert_close(p.detach(), ref["params"][name][0], rtol=1e-5, atol=1e-7, msg=name)

    for r in range(2):
        assert "not divisible by tensor_parallel 2" in (tmp_path / f"odd-rank{r}.txt").read_text()
