"""GroupedExperts (vpmoe/model/grouped_experts.py) against megatron's SequentialMLP, on CPU.

The grouped GEMM against a loop of linears (incl. the gradient layouts grouped_mm's backward rejects), the
experts module against SequentialMLP on the same weights, whole students from one seed, a checkpoint's
sharded tensors and its round trip across experts modules and expert-parallel sizes, and DP=2 x EP=2 over
four gloo processes against one process. The bf16 CUDA counterpart is tests/gpu/test_grouped_experts_gpu.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from test_student_model import (
    CPU,
    EQUIV_OVERRIDES,
    SEED,
    _one_step_state,
    batch,
    free_port,
    global_batch,
    make_trainer,
    tiny_config,
    train_step,
    world1,  # noqa: F401  (the fixture: world of one gloo process)
)

from vpmoe.model.build import (
    ParallelConfig,
    build_student,
    init_parallel,
    teardown_parallel,
)
from vpmoe.model.grouped_experts import GroupedExperts, grouped_linear, per_expert

# Rows per local expert: uneven, one expert without tokens, one with a single token.
COUNTS = [3, 0, 7, 1]
LAYER0_EXPERTS = "decoder.layers.0.mlp.experts"


def per_expert_tensors(module, *, prefix: str = "", grads: bool = False) -> dict[str, torch.Tensor]:
    """{per-expert name: tensor} of params (or their grads), grouped weights split as SequentialMLP's."""
    return {
        n: t.detach().clone()
        for name, p in module.named_parameters(prefix=prefix)
        for n, t in per_expert(name, p.grad if grads else p)
    }


def loop_of_linears(x: torch.Tensor, weight: torch.Tensor, counts: list[int]) -> torch.Tensor:
    return torch.cat([F.linear(rows, w) for rows, w in zip(torch.split(x, counts), weight, strict=True)])


# --- config ----------------------------------------------------------------------------------------------


def test_experts_knob_defaults_to_grouped_and_is_range_checked():
    assert tiny_config().experts == "grouped"
    assert tiny_config(experts="sequential").experts == "sequential"
    with pytest.raises(ValueError, match="experts must be one of"):
        tiny_config(experts="loop")


# --- the grouped GEMM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("grad", ["sum", "transposed", "dense"])
def test_grouped_linear_matches_a_loop_of_linears(dtype, grad):
    """Forward and both gradients. `out.sum()` hands grouped_mm's backward an expanded [0, 0]-strided
    gradient and a transposed one is not row-major: grouped_mm alone raises on both on CPU ("Invalid
    strides/sizes", "strides should be multiple of 16 bytes")."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(sum(COUNTS), 64, generator=g).to(dtype)
    w0 = torch.randn(len(COUNTS), 96, 64, generator=g).to(dtype)
    offs = torch.tensor(COUNTS).cumsum(0).to(torch.int32)
    upstream = {
        "sum": None,
        "transposed": torch.randn(96, sum(COUNTS), generator=g).to(dtype).t(),
        "dense": torch.randn(sum(COUNTS), 96, generator=g).to(dtype),
    }[grad]
    results = []
    for fn in (lambda x, w: grouped_linear(x, w, offs), lambda x, w: loop_of_linears(x, w, COUNTS)):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        y = fn(x, w)
        y.sum().backward() if upstream is None else y.backward(upstream)
        results.append((y.detach(), x.grad, w.grad))
    tol = {"rtol": 1e-6, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-2}
    for ours, ref, what in zip(*results, ("out", "x.grad", "w.grad"), strict=True):
        torch.testing.assert_close(ours, ref, **tol, msg=what)
    assert float(results[0][2][1].abs().sum()) == 0.0, "the expert without tokens gets a zero gradient"


def test_grouped_linear_with_no_rows():
    """An expert-parallel rank whose experts receive no tokens still runs (and gives zero gradients)."""
    x = torch.zeros(0, 64, requires_grad=True)
    w = torch.randn(2, 32, 64, requires_grad=True)
    y = grouped_linear(x, w, torch.zeros(2, dtype=torch.int32))
    assert y.shape == (0, 32)
    y.sum().backward()
    assert w.grad is not None and float(w.grad.abs().sum()) == 0.0


# --- the module against SequentialMLP ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def students(world1):  # noqa: F811
    """{experts kind: the tiny student} from one seed."""
    return {
        kind: build_student(tiny_config(experts=kind), device=CPU, seed=SEED)
        for kind in ("sequential", "grouped")
    }


def test_same_seed_same_weights_and_megatron_parameter_attributes(students):
    seq, grp = (per_expert_tensors(students[k]) for k in ("sequential", "grouped"))
    assert seq.keys() == grp.keys()
    for name in seq:
        assert torch.equal(seq[name], grp[name]), name
    experts = students["grouped"].decoder.layers[0].mlp.experts
    assert isinstance(experts, GroupedExperts)
    sequential_fc1 = students["sequential"].decoder.layers[0].mlp.experts.local_experts[0].linear_fc1.weight
    for param in (experts.linear_fc1.weight, experts.linear_fc2.weight):
        # DDP picks the reduction group by `allreduce` (True: the data-parallel group, as megatron's expert
        # linears under EP=1; the four-process test checks False under EP=2).
        assert param.allreduce is sequential_fc1.allreduce is True
        assert param.tensor_model_parallel is True


def test_module_forward_and_gradients_match_sequential_mlp(students):
    """Same permuted tokens, counts and router probs into both experts modules of layer 0 (fp32)."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(sum(COUNTS), 64, generator=g)
    probs0 = torch.rand(sum(COUNTS), generator=g)
    upstream = torch.randn(sum(COUNTS), 64, generator=g)
    results = {}
    for kind, model in students.items():
        experts = model.decoder.layers[0].mlp.experts
        experts.zero_grad(set_to_none=True)
        x, probs = x0.clone().requires_grad_(), probs0.clone().requires_grad_()
        out, bias = experts(x, torch.tensor(COUNTS), probs)
        assert bias is None
        out.backward(upstream)
        grads = per_expert_tensors(experts, prefix=LAYER0_EXPERTS, grads=True)
        experts.zero_grad(set_to_none=True)
        results[kind] = (out.detach(), x.grad, probs.grad, grads)
    (seq_out, seq_dx, seq_dp, seq_dw), (out, dx, dp, dw) = results["sequential"], results["grouped"]
    tight = {"rtol": 1e-6, "atol": 1e-7}
    torch.testing.assert_close(out, seq_out, **tight)
    torch.testing.assert_close(dx, seq_dx, **tight)
    torch.testing.assert_close(dp, seq_dp, **tight)  # probs scale the activation: they get a gradient
    assert dw.keys() == seq_dw.keys() and len(dw) == 2 * len(COUNTS)
    for name in dw:
        torch.testing.assert_close(dw[name], seq_dw[name], **tight, msg=name)
    assert float(dw[f"{LAYER0_EXPERTS}.local_experts.1.linear_fc1.weight"].abs().sum()) == 0.0  # no tokens


def test_module_refuses_token_counts_that_do_not_add_up(students):
    experts = students["grouped"].decoder.layers[0].mlp.experts
    with pytest.raises(ValueError, match="sums to 11, the input has 12 rows"):
        experts(torch.zeros(12, 64), torch.tensor(COUNTS), torch.ones(12))


# --- checkpoints -------------------------------------------------------------------------------------------


def flat_sharded(model) -> dict:
    """{(key, global offset): ShardedTensor or ShardedObject} of the model's sharded state dict."""
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedObject, ShardedTensor, apply_factories

    sharded = model.sharded_state_dict()
    apply_factories(sharded)
    items = list(nested_values(sharded))
    assert all(isinstance(x, (ShardedTensor, ShardedObject)) for x in items)
    return {(x.key, x.global_offset): x for x in items}


def test_checkpoint_layout_is_sequential_mlps(students):
    """Same keys, offsets, shapes, replica ids and values as SequentialMLP's sharded state dict."""
    seq, grp = (flat_sharded(students[k]) for k in ("sequential", "grouped"))
    assert seq.keys() == grp.keys()
    assert any(key.endswith(".experts.experts.linear_fc1.weight") for key, _ in grp)
    fields = ("global_shape", "local_shape", "axis_fragmentations", "replica_id", "prepend_axis_num")
    for where, ours in grp.items():
        ref = seq[where]
        assert type(ours) is type(ref), where
        for field in fields if isinstance(ref.data, torch.Tensor) else ("global_shape", "replica_id"):
            assert getattr(ours, field) == getattr(ref, field), (where, field)
        if isinstance(ref.data, torch.Tensor):
            assert torch.equal(ours.data, ref.data), where
        else:
            assert ours.data is None and ref.data is None, where


def state(model, opt) -> dict:
    sharded = {"model": model.sharded_state_dict()}
    sharded["optimizer"] = opt.sharded_state_dict(sharded)
    return sharded


def assert_same_weights(ours: dict, ref: dict, **tol) -> None:
    assert ours.keys() == ref.keys()
    for name, value in ref.items():
        torch.testing.assert_close(ours[name], value, **(tol or {"rtol": 0, "atol": 0}), msg=name)


def test_training_steps_and_checkpoint_match_sequential(world1, tmp_path):  # noqa: F811
    """Whole students from one seed through megatron's DDP and Adam: the same step (loss, grad norm,
    weights). Then the sequential model's checkpoint (model + Adam state, two steps in) loads into the
    grouped model, and the next step agrees again: one checkpoint format for both experts modules."""
    from megatron.core import dist_checkpointing

    ids, labels = batch(2, 8)
    runs = {}
    for kind in ("sequential", "grouped"):
        model = build_student(tiny_config(experts=kind), device=CPU, seed=SEED)
        ddp, opt = make_trainer(model, optimizer="adam", lr=1e-3)
        runs[kind] = (model, ddp, opt, train_step(ddp, opt, ids, labels))
    (seq, seq_ddp, seq_opt, seq_first), (grp, grp_ddp, grp_opt, grp_first) = runs.values()
    assert grp_first[0] == pytest.approx(seq_first[0], rel=1e-6)
    assert grp_first[1] == pytest.approx(seq_first[1], rel=1e-5)
    assert_same_weights(per_expert_tensors(grp), per_expert_tensors(seq), rtol=1e-5, atol=1e-7)

    train_step(seq_ddp, seq_opt, ids, labels)  # the checkpoint is a step ahead of the grouped model
    dist_checkpointing.save(state(seq, seq_opt), str(tmp_path))
    loaded = dist_checkpointing.load(state(grp, grp_opt), str(tmp_path))
    grp.load_state_dict(loaded["model"])
    grp_opt.load_state_dict(loaded["optimizer"])
    assert_same_weights(per_expert_tensors(grp), per_expert_tensors(seq))
    seq_next, grp_next = train_step(seq_ddp, seq_opt, ids, labels), train_step(grp_ddp, grp_opt, ids, labels)
    assert grp_next[0] == pytest.approx(seq_next[0], rel=1e-6)
    assert grp_next[1] == pytest.approx(seq_next[1], rel=1e-5)
    assert_same_weights(per_expert_tensors(grp), per_expert_tensors(seq), rtol=1e-5, atol=1e-7)


# --- DP=2 x EP=2 over four gloo processes ------------------------------------------------------------------

WORLD, EP = 4, 2


def _four_process_worker(rank: int, port: int, out_dir: str) -> None:
    """EP=2 x expert-DP=2 (dense DP=4): one row per rank, one SGD step, then a dist checkpoint."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    from megatron.core import dist_checkpointing, parallel_state

    init_parallel(ParallelConfig(expert_parallel=EP), device=CPU)
    model = build_student(tiny_config(**EQUIV_OVERRIDES), device=CPU, seed=SEED)
    experts = model.decoder.layers[0].mlp.experts
    marks = {
        "expert": {p.allreduce for p in experts.parameters()},
        "dense": {getattr(p, "allreduce", True) for n, p in model.named_parameters() if ".experts." not in n},
    }
    ddp, opt = make_trainer(model, optimizer="sgd", lr=0.5)
    ids, labels = global_batch()
    tokens_in_step = int((labels != -100).sum())  # a trainer all-reduces this count
    ep_rank = parallel_state.get_expert_model_parallel_rank()
    rows = slice(rank, rank + 1)  # this data-parallel rank's row of the global batch
    result = _one_step_state(
        ddp,
        opt,
        model,
        ids[rows],
        labels[rows],
        ep=EP,
        ep_rank=ep_rank,
        tokens_in_step=tokens_in_step,
        dp_size=WORLD,
    )
    torch.save((*result, marks), Path(out_dir) / f"rank{rank}.pt")
    dist_checkpointing.save(decoder_sharded_state(model), str(Path(out_dir) / "ckpt"))
    teardown_parallel()


def decoder_sharded_state(model) -> dict:
    """The decoder's part of the sharded state dict: the experts, without the 201088-row embedding and
    output head, whose bytes would dominate the save (about 4 s per rank here)."""
    return {k: v for k, v in model.sharded_state_dict().items() if k.startswith("decoder.")}


def test_dp2_ep2_four_gloo_processes_match_one_sequential_process(world1, tmp_path):  # noqa: F811
    """Grouped experts under EP=2 x expert-DP=2 take the one-process step of sequential experts; their
    checkpoint, saved under EP=2, loads into the one-process (EP=1) sequential model."""
    from megatron.core import dist_checkpointing

    (tmp_path / "ckpt").mkdir()
    mp.spawn(_four_process_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    model = build_student(tiny_config(experts="sequential", **EQUIV_OVERRIDES), device=CPU, seed=SEED)
    ddp, opt = make_trainer(model, optimizer="sgd", lr=0.5)
    ids, labels = global_batch()
    tokens_in_step = int((labels != -100).sum())
    ref_loss, ref_grad_norm, ref_params = _one_step_state(
        ddp, opt, model, ids, labels, ep=1, ep_rank=0, tokens_in_step=tokens_in_step, dp_size=1
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    for _, _, _, marks in ranks:  # expert weights reduce over the expert-DP group, the rest over DP
        assert marks == {"expert": {False}, "dense": {True}}
    assert sum(loss for loss, _, _, _ in ranks) == pytest.approx(ref_loss, abs=1e-5)
    for _, grad_norm, _, _ in ranks:
        assert grad_norm == pytest.approx(ref_grad_norm, rel=1e-5)
    assert ranks[0][2].keys() != ranks[1][2].keys(), "EP ranks 0 and 1 hold different experts"
    merged = {}
    for _, _, params, _ in ranks:
        for name, value in params.items():
            if name in merged:  # replicas (expert-DP, DP) agree exactly
                torch.testing.assert_close(value, merged[name], rtol=0, atol=0, msg=name)
            merged[name] = value
    assert_same_weights(merged, ref_params, rtol=1e-5, atol=1e-6)

    # Zero the reference's weights, then load: every decoder weight comes from the EP=2 checkpoint.
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    loaded = dist_checkpointing.load(decoder_sharded_state(model), str(tmp_path / "ckpt"))
    result = model.load_state_dict(loaded, strict=False)
    assert not result.unexpected_keys and all(not k.startswith("decoder.") for k in result.missing_keys)
    decoder = {n: t for n, t in per_expert_tensors(model).items() if n.startswith("decoder.")}
    assert any(".local_experts.3." in n for n in decoder)
    assert_same_weights(decoder, {n: merged[n] for n in decoder})
