"""The training loop: teacher-forced KD of the vpMoE student on Megatron Core (docs/training.md).

One optimizer step:
  1. the loader yields this rank's M micro-batches (built and prefetched in spawned workers);
  2. the step's supervised-token counts per span are summed over the micro-batches, then all-reduced over
     the data-parallel group, BEFORE any forward (loss.py: w_s / N_s with N_s over the whole step);
  3. per micro-batch: forward to the LM head inputs, the fused sparse-KL head with per-token weights
     w_s / N_s, backward of (head loss x dp) (DDP averages over dp ranks; x dp turns it into the step's
     sum). The router aux / z-losses ride along with backward scale 1 / M (averaged over micro-batches,
     and by DDP over ranks, as megatron's own schedule does);
  4. DDP's gradient all-reduce, then the finite check: the step's loss and every gradient must be finite,
     else the run stops with an error (policy: fail loudly; see NonFiniteError) before the update;
  5. LR from the schedule (a function of the step), megatron's optimizer step (clipping included);
  6. metrics (one all-reduce), the step line, metrics.jsonl; periodic eval and checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from megatron.core.distributed import finalize_model_grads

from vpmoe.model.build import (
    ParallelConfig,
    build_student,
    init_parallel,
    rank_device,
    set_aux_loss_backward_scale,
    teardown_parallel,
)
from vpmoe.model.config import StudentConfig
from vpmoe.teacher.store_reader import TeacherStoreReader
from vpmoe.train import checkpoint as ckpt
from vpmoe.train.data import DataConfig, MicroBatchBuilder, SampleIndex, TrainLoader, eval_batches
from vpmoe.train.evaluate import SPANS, common_shapes, evaluate, head_sums, rank_eval_batches
from vpmoe.train.loss import LossConfig, head_loss, span_counts, token_weights
from vpmoe.train.metrics import (
    H100_BF16_PEAK_TFLOPS,
    MetricsLog,
    flops_per_token,
    format_eval_line,
    format_step_line,
)
from vpmoe.train.optim import OptimConfig, build_ddp_and_optimizer, set_lr
from vpmoe.train.provenance import config_differences, provenance
from vpmoe.train.schedule import run_micro_batches, sum_over_pipeline
from vpmoe.utils.atomic import commit_file

log = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda")


class NonFiniteError(RuntimeError):
    """A step produced a non-finite loss or gradient. The run stops before applying it.

    Why fail rather than skip: with a cached teacher and fp32 loss maths a NaN is a bug or corrupt data,
    not noise; skipping hides it and silently changes the data the model sees. The newest complete
    checkpoint is intact, so a fixed run resumes from it.
    """


@dataclass(kw_only=True)
class TrainConfig:
    max_steps: int  # stop after this many optimizer steps in total (a resumed run continues to it)
    log_interval: int = 1  # step line every N steps (metrics.jsonl gets every step)
    # Held-out eval every N steps and at step 0 of a fresh run (the baseline); 0 = only at the end. The end
    # of a run always evaluates.
    eval_interval: int = 0
    device: str = "cpu"  # cpu (gloo) | cuda (NCCL; one GPU per process, LOCAL_RANK)
    seed: int = 1234  # model initialization and the process RNGs
    peak_tflops: float = H100_BF16_PEAK_TFLOPS  # per GPU, the MFU denominator (GPU only)
    tensorboard: bool = True  # event files beside metrics.jsonl (rank 0), the same scalars

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"train.max_steps must be >= 1, got {self.max_steps}")
        if self.log_interval < 1 or self.eval_interval < 0:
            raise ValueError("train.log_interval >= 1 and train.eval_interval >= 0")
        if self.device not in DEVICES:
            raise ValueError(f"train.device must be one of {DEVICES}, got {self.device!r}")
        if self.peak_tflops <= 0:
            raise ValueError("train.peak_tflops must be > 0")


@dataclass(kw_only=True)
class RunSpec:
    """Everything a training run needs: paths, the typed config slices, and the resolved config (for
    provenance and the resume check)."""

    dataset: str
    store: str
    run_dir: str
    model: StudentConfig
    parallel: ParallelConfig
    data: DataConfig
    loss: LossConfig
    optim: OptimConfig
    checkpoint: ckpt.CheckpointConfig
    train: TrainConfig
    config: dict


def _device(train: TrainConfig) -> torch.device:
    return rank_device(train.device)


_OWN_ENV = False


def _single_process_env() -> None:
    """Outside torchrun, a world of one: torch.distributed still needs a rendezvous address. A fresh port
    per run, so that several runs in one process (a Hydra multirun) never race a closing rendezvous."""
    global _OWN_ENV
    if torch.distributed.is_initialized() or ("WORLD_SIZE" in os.environ and not _OWN_ENV):
        return
    _OWN_ENV = True
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )


def _seed_everything(seed: int, rank: int) -> None:
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def open_data(spec: RunSpec) -> tuple[TeacherStoreReader, SampleIndex]:
    """Pair the dataset with its teacher store (refusing a mismatch or an incomplete store) and index it."""
    reader = TeacherStoreReader(spec.dataset, spec.store, index_cache_bytes=spec.data.index_cache_bytes)
    spec.loss.check_reader(reader)  # the loss this run asks for must be one this store can give
    index = SampleIndex.build(reader, spec.data.eval_fraction)
    longest = int(index.lengths.max())
    if longest > spec.model.max_seq_len:
        raise ValueError(
            f"{spec.dataset}: longest sequence {longest} tokens > model.max_seq_len {spec.model.max_seq_len}"
        )
    return reader, index


class Trainer:
    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.device = _device(spec.train)
        self.reader, self.index = open_data(spec)
        self.run_dir = Path(spec.run_dir)
        _single_process_env()
        init_parallel(spec.parallel, device=self.device)
        try:
            self._setup()
        except BaseException:
            teardown_parallel()  # a refused resume or a bad config must not leave megatron initialized
            raise

    def _setup(self) -> None:
        from megatron.core import parallel_state

        spec = self.spec
        self.rank = torch.distributed.get_rank()
        self.dp = parallel_state.get_data_parallel_world_size()
        self.dp_rank = parallel_state.get_data_parallel_rank()
        self.dp_group = parallel_state.get_data_parallel_group()
        self.M = spec.data.micro_batches_per_rank(self.dp)
        self.model = build_student(spec.model, device=self.device, seed=spec.train.seed)
        self.ddp, self.opt = build_ddp_and_optimizer(self.model, spec.optim, device=self.device)
        self.provenance = provenance(spec.config, spec.dataset, self.reader.root)
        self.step, loader_pos = 0, {"epoch": 0, "step": 0}
        _seed_everything(spec.train.seed, self.rank)
        root = ckpt.checkpoint_root(self.run_dir)
        latest = ckpt.latest_checkpoint(root) if spec.checkpoint.resume else None
        if latest is not None:
            self.step, loader_pos = self._resume(latest)
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clean_debris(root)
            commit_file(self.run_dir / "provenance.json", json.dumps(self.provenance, indent=2) + "\n")
            self.metrics = MetricsLog(
                self.run_dir / "metrics.jsonl", resume_step=self.step, tensorboard=spec.train.tensorboard
            )
        builder = MicroBatchBuilder(
            spec.dataset,
            self.reader.root,
            self.index,
            self.reader.k,
            index_cache_bytes=self.reader.index_cache_bytes,
        )
        self.loader = TrainLoader(
            builder,
            spec.data,
            dp=self.dp,
            rank=self.dp_rank,
            pin_memory=self.device.type == "cuda",
            **loader_pos,
        )
        self.eval_builder = MicroBatchBuilder(
            spec.dataset,
            self.reader.root,
            self.index,
            self.reader.k,
            index_cache_bytes=self.reader.index_cache_bytes,
        )
        self.eval_micro = rank_eval_batches(
            eval_batches(self.index, spec.data), dp=self.dp, rank=self.dp_rank
        )
        self.flops_per_token = flops_per_token(spec.model, float(self.index.lengths.mean()))

    def _resume(self, path: Path) -> tuple[int, dict]:
        meta = ckpt.read_meta(path)
        saved = meta["provenance"]
        diffs = config_differences(saved["config"], self.spec.config)
        if diffs:
            raise ckpt.CheckpointError(
                f"{path}: the checkpoint's config differs from this run's (resume with the same config, or "
                f"use a new run_dir / checkpoint.resume=false): " + "; ".join(diffs)
            )
        if saved["dataset"]["manifest_hash"] != self.provenance["dataset"]["manifest_hash"]:
            raise ckpt.CheckpointError(
                f"{path}: trained on dataset {saved['dataset']['manifest_hash']}, this run's dataset is "
                f"{self.provenance['dataset']['manifest_hash']}"
            )
        if saved["teacher_store"]["teacher_id"] != self.provenance["teacher_store"]["teacher_id"]:
            raise ckpt.CheckpointError(
                f"{path}: trained on teacher store {saved['teacher_store']['teacher_id']}, this run's is "
                f"{self.provenance['teacher_store']['teacher_id']}"
            )
        ckpt.load_model_and_optimizer(path, self.model, self.opt)
        ckpt.restore_rng(path)
        log.info("resumed from %s (step %d, loader %s)", path, meta["step"], meta["loader"])
        return meta["step"], {"epoch": meta["loader"]["epoch"], "step": meta["loader"]["step"]}

    # --- one step ------------------------------------------------------------------------------------------

    def train_step(self, micro: list[dict]) -> dict:
        return step_gradients(
            self.ddp, self.opt, micro, self.spec.loss, dp=self.dp, dp_group=self.dp_group, device=self.device
        )

    def _metrics(self, out: dict, *, grad_norm, lr, step_time, wait) -> dict:
        packed = out["packed"]
        loss, aux, span_loss, sums = packed[0], packed[1], packed[2:4], packed[4:].reshape(2, 6)
        n = sums[:, 0]
        total = sums.sum(0)
        ntok = float(total[0])
        real, padded = out["tokens"]  # reduced with the rest in step_gradients' one all-reduce
        m = {
            "kind": "train",
            "step": self.step,
            "loss": float(loss) + float(aux) / (self.M * self.dp),
            "loss_kd": float(loss),
            **{
                f"loss_{s}": float(span_loss[i] / n[i]) if n[i] else float("nan") for i, s in enumerate(SPANS)
            },
            "kl": float(total[1]) / ntok,
            "ce": float(total[2]) / ntok,
            "teacher_mass": float(total[3]) / ntok,
            "student_mass": float(total[4]) / ntok,
            "top1": float(total[5]) / ntok,
            **{f"tokens_{s}": int(n[i]) for i, s in enumerate(SPANS)},
            "aux_loss": float(aux) / (self.M * self.dp),
            "grad_norm": grad_norm,
            "lr": lr,
            "tokens": int(real),
            "tokens_per_s": real / step_time,
            "padding_fraction": 1.0 - real / padded,
            "data_wait_fraction": wait / step_time,
            "step_time_s": step_time,
            "mfu": None,
            "peak_mem_gib": None,
        }
        if self.device.type == "cuda":
            world = torch.distributed.get_world_size()
            achieved = self.flops_per_token * real / step_time
            m["mfu"] = achieved / (self.spec.train.peak_tflops * 1e12 * world)
            m["peak_mem_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return m

    # --- the loop ------------------------------------------------------------------------------------------

    def run(self) -> dict:
        spec = self.spec
        last = None
        it = iter(self.loader)
        try:
            if self.step == 0 and spec.train.eval_interval:
                self._eval()  # the untrained baseline of a fresh run: what the eval curve falls from
            while self.step < spec.train.max_steps:
                t0 = time.perf_counter()
                micro = next(it)
                wait = time.perf_counter() - t0
                step = self.step + 1
                lr = spec.optim.lr_at(step)
                set_lr(self.opt, lr)
                out = self.train_step(micro)
                loss = float(out["packed"][0])
                if out["bad_grads"] or not np.isfinite(loss):
                    raise NonFiniteError(
                        f"step {step}: loss {loss}, non-finite gradients: {out['bad_grads']}; stopping before "
                        f"the update (resume from the newest checkpoint in {ckpt.checkpoint_root(self.run_dir)})"
                    )
                ok, grad_norm, _ = self.opt.step()
                if not ok:
                    raise NonFiniteError(f"step {step}: megatron's optimizer rejected the update")
                grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
                if spec.optim.clip_grad > 0 and not np.isfinite(grad_norm):
                    raise NonFiniteError(f"step {step}: grad norm {grad_norm}")
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                self.step = step
                step_time = time.perf_counter() - t0
                last = self._metrics(out, grad_norm=grad_norm, lr=lr, step_time=step_time, wait=wait)
                if self.rank == 0:
                    self.metrics.write(last)
                    if step % spec.train.log_interval == 0 or step == spec.train.max_steps:
                        log.info(format_step_line(last, spec.train.max_steps))
                final = step == spec.train.max_steps
                if final or (spec.train.eval_interval and step % spec.train.eval_interval == 0):
                    self._eval()
                if final or (spec.checkpoint.interval and step % spec.checkpoint.interval == 0):
                    self._save()
            if last is None:  # resumed at max_steps: nothing to train, the end still evaluates
                self._eval()
        finally:
            self.loader.close()
        return {"step": self.step, "train": last, "eval": self.last_eval}

    last_eval: dict | None = None

    def _eval(self) -> None:
        m = evaluate(
            self.ddp,
            self.eval_builder,
            self.eval_micro,
            self.spec.loss,
            device=self.device,
            dp_group=self.dp_group,
        )
        self.last_eval = {"kind": "eval", "step": self.step, **m}
        if self.rank == 0:
            self.metrics.write(self.last_eval)
            log.info(format_eval_line(self.last_eval))
            commit_file(self.run_dir / "eval.json", json.dumps(self.last_eval, indent=2) + "\n")

    def _save(self) -> None:
        meta = {"provenance": self.provenance, "loader": self.loader.state(), "eval": self.last_eval}
        path = ckpt.save_checkpoint(
            self.run_dir, self.step, self.model, self.opt, meta=meta, keep_last=self.spec.checkpoint.keep_last
        )
        if self.rank == 0:
            log.info("checkpoint: %s", path)

    def close(self) -> None:
        if self.rank == 0 and hasattr(self, "metrics"):
            self.metrics.close()
        teardown_parallel()


def step_gradients(ddp, opt, micro: list[dict], cfg: LossConfig, *, dp: int, dp_group, device) -> dict:
    """Steps 2-4 of the module docstring: leaves the step's reduced gradients in DDP's buffers.

    Returns {"packed": float64 [4 + 12] (loss sum, aux sum, per-span loss sums, per-span head sums,
    all summed over micro-batches and data-parallel ranks), "tokens": (real, padded) over the data-parallel
    ranks, "bad_grads": bool (any rank), "counts"}. Host syncs: the span counts' all-reduce at the start
    (token weights are built on the host; the device is idle then, after the last step's update) and one
    read of the results at the end (the update gate); none between the micro-batches.
    Collective over the data-parallel group (and the world, for the finite flag).
    """

    # The loader's real and padded token counts (host ints: no device read), before any parallelism padding.
    tokens = [float(sum(int(mb[key]) for mb in micro)) for key in ("tokens", "padded_tokens")]
    micro = common_shapes(ddp, micro, device)
    counts = span_counts([mb["position_spans"] for mb in micro]).to(device)
    torch.distributed.all_reduce(counts, group=dp_group)
    counts = counts.cpu()
    ddp.zero_grad_buffer()
    opt.zero_grad()
    set_aux_loss_backward_scale(1.0 / len(micro), device=device)
    sums = torch.zeros(2, 6, dtype=torch.float64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    span_loss = torch.zeros(2, dtype=torch.float64, device=device)

    def loss_fn(mb: dict, head) -> torch.Tensor:
        nonlocal loss_sum, sums, span_loss
        w = token_weights(mb["position_spans"], counts, cfg.weights)
        res = head_loss(
            head, mb["labels"], mb["teacher_ids"], mb["teacher_logprobs"], w, cfg, backward_scale=dp
        )
        loss_sum += res.loss.detach().to(torch.float64)
        s = head_sums(res, mb["position_spans"])
        sums += s
        span_loss += s[:, 1] + cfg.ce_weight * s[:, 2]
        return res.loss * dp  # backpropagated as is: grad_output dp, what head_loss was promised

    aux = run_micro_batches(ddp, micro, loss_fn, device=device)
    # DDP's reduction, then the tensor-parallel sum of sequence-parallel parameters' gradients (norms, routers)
    finalize_model_grads([ddp])
    # Non-finite gradients anywhere (any rank, any buffer) -> flag, reduced with MAX over the world. A sum
    # is non-finite exactly when an element is (NaN and +-inf propagate; +inf + -inf is NaN), short of
    # finite gradients summing past 3.4e38, which the grad norm could not survive either. One read of each
    # fp32 buffer: `isfinite(...).any()` wrote and re-read a bool copy of every buffer (4.1 ms per step for
    # `small` on an H200, benchmarks/results/train_small_h200.md).
    sums_of_grads = torch.stack([buf.grad_data.sum() for buf in [*ddp.buffers, *ddp.expert_parallel_buffers]])
    bad = (~torch.isfinite(sums_of_grads.sum())).to(torch.float64).reshape(1)
    # The step's figures and its real/padded token counts (host ints: no device read) in one all-reduce.
    tokens = [
        float(sum(int(mb["tokens"]) for mb in micro)),
        float(sum(int(mb["padded_tokens"]) for mb in micro)),
    ]
    packed = torch.cat([loss_sum[None], aux[None], span_loss, sums.flatten()])
    sum_over_pipeline(packed)
    packed = torch.cat([packed, torch.tensor(tokens, dtype=torch.float64, device=device)])
    torch.distributed.all_reduce(packed, group=dp_group)
    torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
    # The step's one read of the device (besides the span counts above): the update must not run on
    # non-finite gradients, so the host waits here for the step's result. megatron's optimizer step
    # reads the grad norm (clip_grad) anyway, so this wait costs no overlap the step could otherwise have.
    host = torch.cat([packed, bad]).cpu()
    return {
        "packed": host[:-3],
        "tokens": (float(host[-3]), float(host[-2])),
        "bad_grads": bool(host[-1] > 0),
        "counts": counts,
    }


def run_training(spec: RunSpec) -> dict:
    """Train (or resume) to `train.max_steps`, evaluate, checkpoint. Returns the last step's and eval's
    metrics. Initializes and tears down the parallel state (and the process group if it made it)."""
    trainer = Trainer(spec)
    try:
        return trainer.run()
    finally:
        trainer.close()
