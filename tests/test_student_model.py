"""The vpMoE student on megatron-core, on CPU: build, the output_processor forward, aux losses, a training
step through Megatron's DDP and optimizer, the CPU adaptations, and DP=2 / EP=2 over two gloo processes.

One process-wide megatron parallel state (world size 1) serves the in-process tests; the two-process tests
spawn fresh processes. The CPU adaptations, once applied, stay applied for the rest of the session (they
only touch megatron modules).
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from vpmoe.model import megatron_cpu
from vpmoe.model.build import (
    LOAD_BALANCING_LOSS,
    Z_LOSS,
    LMHeadInputs,
    ParallelConfig,
    _global_param_name,
    build_student,
    forward_student,
    init_parallel,
    set_aux_loss_backward_scale,
    teardown_parallel,
    transformer_config,
)
from vpmoe.model.config import GPT_OSS_VOCAB_SIZE, StudentConfig
from vpmoe.model.grouped_experts import per_expert

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
SEED = 1234


def tiny_config(**overrides) -> StudentConfig:
    fields = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / "tiny.yaml"))
    fields.update(overrides)
    return StudentConfig(**fields)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch(rows: int, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [rows, seq] and next-token labels (last position ignored), the same on every call."""
    ids = torch.randint(0, GPT_OSS_VOCAB_SIZE, (rows, seq), generator=torch.Generator().manual_seed(7))
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:]
    return ids, labels


def chunked_cross_entropy_sum(
    head: LMHeadInputs, labels: torch.Tensor, *, chunk_rows: int = 8
) -> torch.Tensor:
    """Summed next-token CE from the hidden states and output weight, [chunk_rows, V] logits at a time.

    A stand-in for the sparse-KL head: a function of (hidden, weight) only. labels [b, s], -100 ignored.
    """
    hidden = head.hidden.transpose(0, 1).reshape(-1, head.hidden.shape[-1])  # [s, b, h] -> [b*s, h]
    flat = labels.reshape(-1)
    total = hidden.new_zeros(())
    for start in range(0, flat.numel(), chunk_rows):
        logits = hidden[start : start + chunk_rows] @ head.weight.t()
        total = total + F.cross_entropy(logits.float(), flat[start : start + chunk_rows], reduction="sum")
    return total


def make_trainer(model, *, optimizer: str, lr: float, bf16: bool = False):
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

    ddp = DistributedDataParallel(
        model.config,
        DistributedDataParallelConfig(grad_reduce_in_fp32=True, use_distributed_optimizer=False),
        model,
    )
    opt = get_megatron_optimizer(
        OptimizerConfig(
            optimizer=optimizer,
            lr=lr,
            weight_decay=0.0,
            clip_grad=1.0,
            bf16=bf16,
            use_distributed_optimizer=False,
        ),
        [ddp],
    )
    return ddp, opt


def train_step(
    ddp, opt, ids: torch.Tensor, labels: torch.Tensor, *, tokens_in_step: int | None = None, dp_size: int = 1
) -> tuple[float, float]:
    """One step; returns (this rank's share of the step loss, grad norm).

    The loss is normalized by the token count of the whole step (all ranks; default: this batch's) and
    backpropagated x dp_size, since DDP averages over data-parallel ranks (docs/student_model.md).
    """
    ddp.zero_grad_buffer()
    opt.zero_grad()
    set_aux_loss_backward_scale(1.0, device=ids.device)  # one micro-batch
    out = forward_student(ddp, ids)
    tokens = int((labels != -100).sum()) if tokens_in_step is None else tokens_in_step
    share = chunked_cross_entropy_sum(out.head, labels) / tokens
    (share * dp_size).backward()
    ddp.finish_grad_sync()
    ok, grad_norm, _ = opt.step()
    assert ok, "optimizer step was skipped"
    return float(share.detach()), float(grad_norm)


@pytest.fixture(scope="module")
def world1():
    if torch.cuda.is_available():
        pytest.skip("CPU-path tests: the CPU adaptations refuse a machine with CUDA (run -m gpu there)")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(free_port())
    os.environ["RANK"], os.environ["WORLD_SIZE"] = "0", "1"
    init_parallel(ParallelConfig(), device=CPU)
    yield
    teardown_parallel()


@pytest.fixture(scope="module")
def tiny(world1):
    return build_student(tiny_config(), device=CPU, seed=SEED)


# --- config -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_presets_compose(preset):
    fields = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / f"{preset}.yaml"))
    cfg = StudentConfig(**fields)
    assert cfg.vocab_size == GPT_OSS_VOCAB_SIZE
    assert set(fields) == {f.name for f in dataclasses.fields(StudentConfig)}, "presets spell out every field"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"vocab_size": 200000}, "vocab_size must be 201088"),
        ({"num_query_groups": 3}, "not divisible by num_query_groups"),
        ({"moe_router_topk": 5}, "moe_router_topk"),
        ({"layer_spec": "apex"}, "layer_spec"),
        ({"dtype": "fp16"}, "dtype"),
        ({"hidden_dropout": 1.0}, "hidden_dropout"),
        ({"num_layers": 0}, "num_layers"),
    ],
)
def test_config_rejects(override, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**override)


def test_te_spec_is_refused_on_cpu(world1):
    with pytest.raises(ValueError, match="needs CUDA"):
        transformer_config(tiny_config(layer_spec="te"), device=CPU)


# --- forward: hidden + weight, never logits -------------------------------------------------------------


class _VocabSizedOutputs(TorchDispatchMode):
    """Records every op output that has a vocabulary-sized dimension."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and GPT_OSS_VOCAB_SIZE in t.shape:
                self.seen.append((str(func), tuple(t.shape)))
        return out


def test_forward_hands_over_final_hidden_and_weight_without_logits(tiny):
    ids, _ = batch(2, 16)
    set_aux_loss_backward_scale(1.0, device=CPU)
    with _VocabSizedOutputs() as spy:
        out = forward_student(tiny, ids)
    assert spy.seen == [], f"an op produced vocabulary-sized output: {spy.seen}"
    head = out.head
    assert head.hidden.shape == (16, 2, 64)  # [s, b, h]
    assert head.weight is tiny.output_layer.weight
    assert head.weight.shape == (GPT_OSS_VOCAB_SIZE, 64)
    assert head.vocab_start == 0 and head.tp_group is None
    # hidden @ weight.T is exactly megatron's own logits: the hidden states are after the final norm.
    with torch.no_grad():
        logits = tiny(ids, torch.arange(16).expand(2, 16), _causal(16))  # [b, s, V], the default path
        ours = head.hidden.detach().transpose(0, 1) @ head.weight.detach().t()
    torch.testing.assert_close(ours, logits, rtol=1e-5, atol=1e-5)


def test_tied_embeddings_hand_over_the_embedding_weight(world1):
    model = build_student(tiny_config(tie_embeddings=True), device=CPU, seed=SEED)
    ids, _ = batch(2, 16)
    set_aux_loss_backward_scale(1.0, device=CPU)
    head = forward_student(model, ids).head
    assert head.weight is model.embedding.word_embeddings.weight  # megatron's `output_weight`
    with torch.no_grad():
        logits = model(ids, torch.arange(16).expand(2, 16), _causal(16))
        torch.testing.assert_close(
            head.hidden.transpose(0, 1) @ head.weight.t(), logits, rtol=1e-5, atol=1e-5
        )


def test_packed_documents_with_block_diagonal_mask(tiny):
    """A [b, 1, s, s] mask (True = masked) plus restarted positions isolates packed documents."""
    ids, _ = batch(2, 16)
    doc = torch.tensor([0] * 8 + [1] * 8)
    mask = ((doc[:, None] != doc[None, :]) | _causal(16)[0, 0])[None, None].expand(2, 1, 16, 16)
    positions = torch.cat([torch.arange(8), torch.arange(8)]).expand(2, 16)
    set_aux_loss_backward_scale(1.0, device=CPU)
    with torch.no_grad():
        packed = forward_student(tiny, ids, position_ids=positions, attention_mask=mask).head.hidden
        alone = forward_student(tiny, ids[:, 8:]).head.hidden
    torch.testing.assert_close(packed[8:], alone, rtol=1e-5, atol=1e-5)


def _causal(s: int) -> torch.Tensor:
    return torch.triu(torch.ones(s, s, dtype=torch.bool), diagonal=1)[None, None]


def test_aux_losses_are_returned_and_enter_backward(tiny, monkeypatch):
    from megatron.core.transformer.moe.moe_utils import MoEAuxLossAutoScaler

    ids, _ = batch(2, 16)
    router = tiny.decoder.layers[0].mlp.router.weight

    def aux_only_router_grad(scale: float) -> torch.Tensor:
        tiny.zero_grad(set_to_none=True)
        set_aux_loss_backward_scale(scale, device=CPU)
        out = forward_student(tiny, ids)
        # The main loss contributes nothing: every router gradient comes from the aux / z-loss terms.
        (out.head.hidden.sum() * 0.0).backward()
        return out, router.grad.clone()

    out, grad1 = aux_only_router_grad(1.0)
    cfg = tiny_config()
    assert set(out.aux_losses) == {LOAD_BALANCING_LOSS, Z_LOSS}
    for values in out.aux_losses.values():
        assert values.shape == (cfg.num_layers,) and torch.isfinite(values).all() and (values > 0).all()
    # Switch load balancing is ~1 at uniform routing (its minimum); a random router is near it.
    assert 0.9 < float(out.aux_losses[LOAD_BALANCING_LOSS].mean()) < 1.5
    expected = cfg.moe_aux_loss_coeff * out.aux_losses[LOAD_BALANCING_LOSS].sum()
    expected = expected + cfg.moe_z_loss_coeff * out.aux_losses[Z_LOSS].sum()
    torch.testing.assert_close(out.aux_loss_weighted, expected)
    assert grad1.abs().sum() > 0
    out2, grad2 = aux_only_router_grad(2.0)
    torch.testing.assert_close(grad2, 2.0 * grad1)
    for name, values in out.aux_losses.items():  # per pass, not accumulated across passes
        torch.testing.assert_close(out2.aux_losses[name], values)
    tiny.zero_grad(set_to_none=True)

    monkeypatch.setattr(MoEAuxLossAutoScaler, "main_loss_backward_scale", None)
    with pytest.raises(RuntimeError, match="set_aux_loss_backward_scale"):
        forward_student(tiny, ids)


def test_eval_forward_has_no_aux_losses(tiny):
    ids, _ = batch(1, 8)
    tiny.eval()
    try:
        with torch.no_grad():
            out = forward_student(tiny, ids)
    finally:
        tiny.train()
    assert all(float(v.abs().sum()) == 0.0 for v in out.aux_losses.values())


# --- one training step through Megatron DDP + optimizer -------------------------------------------------


def test_training_steps_change_parameters_and_reduce_loss(world1):
    model = build_student(tiny_config(), device=CPU, seed=SEED)
    ddp, opt = make_trainer(model, optimizer="adam", lr=3e-3)
    ids, labels = batch(2, 16)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss0, grad_norm = train_step(ddp, opt, ids, labels)
    assert torch.isfinite(torch.tensor([loss0, grad_norm])).all() and grad_norm > 0
    unchanged = [n for n, p in model.named_parameters() if torch.equal(before[n], p.detach())]
    assert unchanged == [], f"parameters not updated: {unchanged}"
    losses = [train_step(ddp, opt, ids, labels)[0] for _ in range(3)]
    assert losses[-1] < loss0, (loss0, losses)


def test_build_is_deterministic_and_leaves_caller_rng_alone(world1):
    torch.manual_seed(99)
    expected_next = torch.rand(3)
    torch.manual_seed(99)
    a = build_student(tiny_config(), device=CPU, seed=SEED)
    torch.testing.assert_close(torch.rand(3), expected_next)
    b = build_student(tiny_config(), device=CPU, seed=SEED)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(pa, pb), name


def test_dist_checkpointing_roundtrip_on_cpu(world1, tmp_path):
    """dist_checkpointing save/load of model + optimizer state runs on CPU (two of the patched modules)."""
    from megatron.core import dist_checkpointing

    def state(model, opt):
        sharded = {"model": model.sharded_state_dict()}
        sharded["optimizer"] = opt.sharded_state_dict(sharded)
        return sharded

    model = build_student(tiny_config(), device=CPU, seed=SEED)
    ddp, opt = make_trainer(model, optimizer="adam", lr=1e-3)
    train_step(ddp, opt, *batch(2, 8))
    dist_checkpointing.save(state(model, opt), str(tmp_path))
    other = build_student(tiny_config(), device=CPU, seed=SEED + 1)
    other_ddp, other_opt = make_trainer(other, optimizer="adam", lr=1e-3)
    loaded = dist_checkpointing.load(state(other, other_opt), str(tmp_path))
    other.load_state_dict(loaded["model"])
    other_opt.load_state_dict(loaded["optimizer"])
    for (name, a), (_, b) in zip(model.named_parameters(), other.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    # Same state, same next step.
    assert train_step(ddp, opt, *batch(2, 8)) == train_step(other_ddp, other_opt, *batch(2, 8))


# --- CPU adaptations -------------------------------------------------------------------------------------


def test_cpu_adaptation_targets_still_exist(world1):
    """Fails when a megatron-core upgrade removes or fixes a CUDA hard-code we patch: revisit megatron_cpu."""
    assert megatron_cpu.cpu_adaptations_applied()
    megatron_cpu.check_targets()


def test_cpu_grad_clipping_matches_torch():
    """The replacement for megatron's clip_grad_by_total_norm_fp32 scales as torch's clip_grad_norm_ does."""

    def params_with_grads() -> list[torch.nn.Parameter]:
        params = [torch.nn.Parameter(torch.zeros(5)) for _ in range(3)]
        for i, p in enumerate(params):
            p.grad = torch.randn(5, generator=torch.Generator().manual_seed(i))
        return params

    ours, reference = params_with_grads(), params_with_grads()
    total_norm = float(torch.nn.utils.clip_grad_norm_(reference, max_norm=0.5))  # clips `reference` in place
    assert total_norm > 0.5
    megatron_cpu._clip_grad_by_total_norm_fp32_cpu(ours, 0.5, total_norm)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    megatron_cpu._clip_grad_by_total_norm_fp32_cpu(ours, 1e9, total_norm)  # under the limit: untouched
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def test_cpu_adaptation_check_fails_loudly_on_a_changed_target(monkeypatch):
    moved = megatron_cpu._ModulePatch("megatron.core.utils", ("torch.cuda.no_such_call()",), "test")
    gone = megatron_cpu._ModulePatch("megatron.core.no_such_module", ("x",), "test")
    monkeypatch.setattr(megatron_cpu, "_PATCHED_MODULES", (moved, gone))
    with pytest.raises(RuntimeError) as err:
        megatron_cpu.check_targets()
    assert "megatron.core.utils: no longer contains" in str(err.value)
    assert "megatron.core.no_such_module: cannot import" in str(err.value)


def test_cpu_adaptations_are_never_applied_for_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(megatron_cpu, "apply_cpu_adaptations", lambda: calls.append("applied"))
    monkeypatch.setattr(megatron_cpu, "_APPLIED", False)
    megatron_cpu.adapt_megatron_for(torch.device("cuda", 0))
    assert calls == []
    megatron_cpu.adapt_megatron_for(CPU)
    assert calls == ["applied"]
    # A CPU-adapted process refuses CUDA, and the adaptations refuse a machine with CUDA.
    monkeypatch.setattr(megatron_cpu, "_APPLIED", True)
    with pytest.raises(RuntimeError, match="cannot also run on CUDA"):
        megatron_cpu.adapt_megatron_for(torch.device("cuda"))
    monkeypatch.undo()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(RuntimeError, match="CPU-only"):
        megatron_cpu.apply_cpu_adaptations()


# --- two gloo processes: DP=2 and EP=2 give the one-process step ------------------------------------------

# The load-balancing loss is a statistic of each micro-batch's routing (not a sum over tokens), so it is
# not additive over data-parallel shards; it is off here. The z-loss is a per-token mean and stays on.
EQUIV_OVERRIDES = {"moe_aux_loss_coeff": 0.0}
GLOBAL_ROWS, SEQ = 4, 16


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Rank 0's rows (0, 1) have fewer supervised tokens than rank 1's: per-rank means would be wrong."""
    ids, labels = batch(GLOBAL_ROWS, SEQ)
    labels[0, :10] = -100
    return ids, labels


def _one_step_state(
    ddp, opt, model, ids, labels, *, ep: int, ep_rank: int, tokens_in_step: int, dp_size: int
):
    loss, grad_norm = train_step(ddp, opt, ids, labels, tokens_in_step=tokens_in_step, dp_size=dp_size)
    num_local = tiny_config().num_moe_experts // ep
    params = {
        _global_param_name(n, num_local, ep_rank): t.detach().clone()
        for name, p in model.named_parameters()
        for n, t in per_expert(name, p)  # grouped experts' [E, out, in] weights as per-expert matrices
    }
    return loss, grad_norm, params


LAYOUTS = {"dp2": 1, "dp2-ep2": 2}  # name -> expert_parallel, over world size 2


def _two_process_worker(rank: int, port: int, out_dir: str) -> None:
    """Both layouts in one pair of processes (each process pays megatron's import once)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    from megatron.core import parallel_state

    torch.distributed.init_process_group(backend="gloo")  # ours: teardown_parallel keeps it between layouts
    for layout, ep in LAYOUTS.items():
        init_parallel(ParallelConfig(expert_parallel=ep), device=CPU)
        model = build_student(tiny_config(**EQUIV_OVERRIDES), device=CPU, seed=SEED)
        ddp, opt = make_trainer(model, optimizer="sgd", lr=0.5)
        ids, labels = global_batch()
        rows = slice(rank * GLOBAL_ROWS // 2, (rank + 1) * GLOBAL_ROWS // 2)  # this data-parallel rank's half
        ep_rank = parallel_state.get_expert_model_parallel_rank()
        tokens_in_step = int((labels != -100).sum())  # a trainer all-reduces this count
        result = _one_step_state(
            ddp,
            opt,
            model,
            ids[rows],
            labels[rows],
            ep=ep,
            ep_rank=ep_rank,
            tokens_in_step=tokens_in_step,
            dp_size=2,
        )
        torch.save(result, Path(out_dir) / f"{layout}-rank{rank}.pt")
        if ep == 2:  # unequal micro-batch shapes under EP: a clear error on every rank, not a gloo abort
            uneven = torch.zeros(1, SEQ + 8 * rank, dtype=torch.long)
            try:
                forward_student(ddp, uneven)
            except ValueError as e:
                (Path(out_dir) / f"uneven-rank{rank}.txt").write_text(str(e))
        teardown_parallel()
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def one_process_reference(world1):
    model = build_student(tiny_config(**EQUIV_OVERRIDES), device=CPU, seed=SEED)
    ddp, opt = make_trainer(model, optimizer="sgd", lr=0.5)
    ids, labels = global_batch()
    tokens_in_step = int((labels != -100).sum())
    return _one_step_state(
        ddp, opt, model, ids, labels, ep=1, ep_rank=0, tokens_in_step=tokens_in_step, dp_size=1
    )


def test_two_gloo_processes_match_one_process(one_process_reference, tmp_path):
    """DP=2 and DP=2 x EP=2 over two gloo processes: the one-process step on the same global batch.

    The ranks hold different token counts; the loss is normalized by the step's count and scaled by dp_size
    against DDP's averaging (docs/student_model.md), which is what makes the step layout-independent.
    """
    mp.spawn(_two_process_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    ref_loss, ref_grad_norm, ref_params = one_process_reference
    for layout in LAYOUTS:
        ranks = [torch.load(tmp_path / f"{layout}-rank{r}.pt", weights_only=False) for r in range(2)]
        # Each rank's loss is its share of the global-batch mean; the shares add up to it.
        assert abs(ranks[0][0] + ranks[1][0] - ref_loss) < 1e-5, layout
        for _, grad_norm, _ in ranks:
            assert abs(grad_norm - ref_grad_norm) < 1e-5 * ref_grad_norm, layout
        merged = {**ranks[0][2], **ranks[1][2]}
        assert merged.keys() == ref_params.keys(), layout
        for name, value in ref_params.items():
            torch.testing.assert_close(merged[name], value, rtol=1e-5, atol=1e-6, msg=f"{layout}: {name}")
        if LAYOUTS[layout] == 2:  # each rank holds half of the experts
            assert ranks[0][2].keys() != ranks[1][2].keys()
    for r in range(2):
        assert "pad micro-batches to a common shape" in (tmp_path / f"uneven-rank{r}.txt").read_text()


# --- GPU (run on the GPU machine: python -m pytest -m gpu tests/test_student_model.py) ---------------------


def gpu_world_of_one() -> torch.device:
    """NCCL world of one on GPU 0 (the caller tears it down)."""
    device = torch.device("cuda", 0)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(free_port())
    os.environ["RANK"], os.environ["WORLD_SIZE"] = "0", "1"
    init_parallel(ParallelConfig(), device=device)
    return device


@pytest.mark.gpu
def test_gpu_bf16_step_without_cpu_adaptations():
    """The same API on CUDA: NCCL, alltoall dispatcher, bf16, Megatron's bf16 optimizer; no CPU patches."""
    device = gpu_world_of_one()
    try:
        model = build_student(tiny_config(dtype="bf16"), device=device, seed=SEED)
        assert not megatron_cpu.cpu_adaptations_applied()
        assert model.config.moe_token_dispatcher_type == "alltoall"
        assert model.output_layer.weight.dtype == torch.bfloat16 and model.output_layer.weight.is_cuda
        # Every parameter bf16 (the local spec's torch RMSNorm is built fp32): the mixed-precision
        # optimizer's checkpoint mapping needs it.
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
        ddp, opt = make_trainer(model, optimizer="adam", lr=3e-3, bf16=True)
        ids, labels = (t.to(device) for t in batch(2, 64))
        loss0, grad_norm = train_step(ddp, opt, ids, labels)
        assert math.isfinite(loss0) and math.isfinite(grad_norm) and grad_norm > 0
        losses = [train_step(ddp, opt, ids, labels)[0] for _ in range(3)]
        assert losses[-1] < loss0, (loss0, losses)
    finally:
        teardown_parallel()


@pytest.mark.gpu
def test_gpu_main_grad_fusion_under_overlapped_ddp():
    """The trainer's head path on CUDA (distributed optimizer, overlap_grad_reduce): the output weight's
    gradient written straight into megatron's main_grad in the forward (head_loss backward_scale=...)
    equals the ordinary weight.grad route, DDP's bucket hooks still fire (finish_grad_sync would
    raise otherwise), and every other gradient is unchanged."""
    from vpmoe.train.loss import LossConfig, head_loss
    from vpmoe.train.optim import OptimConfig, build_ddp_and_optimizer

    device = gpu_world_of_one()
    try:
        model = build_student(tiny_config(dtype="bf16"), device=device, seed=SEED)
        ddp, _ = build_ddp_and_optimizer(model, OptimConfig(lr=1e-3, distributed=True), device=device)
        assert ddp.ddp_config.overlap_grad_reduce
        ids, labels = (t.to(device) for t in batch(2, 64))
        g = torch.Generator().manual_seed(3)
        t_ids = torch.stack([torch.randperm(GPT_OSS_VOCAB_SIZE, generator=g)[:16] for _ in range(2 * 64)])
        t_ids = t_ids.view(2, 64, 16)
        t_lp = torch.log_softmax(torch.randn(2, 64, 17, generator=g), -1)[..., :16]
        w_tok = torch.full((2, 64), 1.0 / 128)
        cfg = LossConfig(impl="triton", ce_weight=0.3)
        grads = {}
        for mode in ("weight.grad", "main_grad"):
            ddp.zero_grad_buffer()
            set_aux_loss_backward_scale(1.0, device=device)
            out = forward_student(ddp, ids)
            scale = 2.0 if mode == "main_grad" else None
            res = head_loss(out.head, labels, t_ids, t_lp, w_tok, cfg, backward_scale=scale)
            (res.loss * 2.0).backward()
            ddp.finish_grad_sync()
            grads[mode] = {n: p.main_grad.detach().clone() for n, p in model.named_parameters()}
        out_w = [n for n in grads["main_grad"] if "output_layer" in n]
        assert out_w, "no output layer parameter found"
        for n, a in grads["main_grad"].items():
            b = grads["weight.grad"][n]
            err = float((a - b).norm() / b.norm().clamp(min=1e-30))
            # weight.grad route rounds the fp32 sum to bf16 once; main_grad keeps fp32.
            assert err < (2**-7 if n in out_w else 1e-3), (n, err)
    finally:
        teardown_parallel()
