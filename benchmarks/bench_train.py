"""Training-step benchmark of the student (issue 5, "GPU benchmark"): KD through the fused sparse-KL head
next to CE-only through the same head and Megatron's own unfused logits + CE, same model and batches.

Rows (one process, one model; median step time over --steps timed steps after --warmup):
  kd           the trainer's step (vpmoe/train/trainer.py step_gradients + optimizer step): teacher top-k
               rows (k = --k, peaked, trained-like), span-normalized weights, aux losses on.
  ce_fused     the same step and head with a one-hot teacher (k = 1: the label with log-prob 0). The
               tail-bucket KL of a one-hot teacher is exactly -log q(label), i.e. CE, so this is "CE only
               through the same fused head, no teacher" at the head's minimum width.
  megatron_ce  GPTModel.forward(labels=...): Megatron's own [s, b, V] logits + vocab-parallel CE.
  kd_loader    (only with --dataset/--store) the full trainer step fed by the real loader (spawned
               workers, teacher store): tokens/s and the data-wait fraction (target < 2%).
Each row: ms/step, tokens/s, MFU (GPU), peak GiB (GPU), data-wait fraction. Ratios kd / ce_fused (issue 15's
target <= 1.05) and kd / megatron_ce (target < 1). --profile: kernels, GPU-busy ms and host syncs of one step.

    python benchmarks/bench_train.py --model small --device cuda --out-dir benchmarks/results \
        [--seq 2048 --micro 4 --micro-batches 2 --steps 8 --warmup 3] [--rows kd,megatron_ce] [--profile]
        [--dataset D --store S]
    python benchmarks/bench_train.py --model tiny --device cpu --seq 128 --micro 1 --steps 2 --warmup 1  (smoke)
writes <out-dir>/train_<model>_<device>_<experts>_<attention>_<micro-batches>x<micro>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.profiling import busy_and_span_ms, kernel_timeline  # noqa: E402
from vpmoe.data.harmony_render import Span  # noqa: E402
from vpmoe.model.build import (  # noqa: E402
    ParallelConfig,
    build_student,
    causal_attention_mask,
    init_parallel,
)
from vpmoe.model.config import StudentConfig  # noqa: E402
from vpmoe.train.data import new_packed_micro_batch, unpack_micro_batch  # noqa: E402
from vpmoe.train.loss import LossConfig  # noqa: E402
from vpmoe.train.metrics import H100_BF16_PEAK_TFLOPS, flops_per_token  # noqa: E402
from vpmoe.train.optim import OptimConfig, build_ddp_and_optimizer, set_lr  # noqa: E402
from vpmoe.train.trainer import step_gradients  # noqa: E402

GIB = 2**30


def synthetic_micro(b: int, s: int, k: int, vocab: int, gen: torch.Generator, *, pin: bool = False) -> dict:
    """One micro-batch as the loader delivers it (vpmoe/train/data.py: one packed buffer of int32 fields and
    fp16 log-probs, unpacked to views; page-locked on CUDA as TrainLoader pins it): full-length rows, the
    first quarter a prompt (masked), then reasoning, then final; teacher rows peaked (top-1 ~0.6, tail ~2%)
    over k distinct ids. (Pageable int64/fp32 teacher rows, 4x the loader's bytes and copied synchronously,
    slowed the kd row against ce_fused by 26-42 ms per step at 65k tokens.)"""
    ids = torch.randint(0, vocab, (b, s), generator=gen)
    labels = torch.full((b, s), -100, dtype=torch.long)
    labels[:, :-1] = ids[:, 1:]
    labels[:, : s // 4] = -100
    spans = torch.full((b, s), -1, dtype=torch.int8)
    spans[:, s // 4 : 3 * s // 4] = int(Span.REASONING)
    spans[:, 3 * s // 4 : s - 1] = int(Span.FINAL)
    if k == 1:  # one-hot teacher on the label: the bucket KL is exactly CE
        t_ids = labels.clamp(min=0)[..., None]
        t_lps = torch.zeros(b, s, 1)
    else:
        # k distinct ids per row, the label first: label + j * stride (mod vocab), j < k, a random stride
        # below vocab / k per row (one randperm of the vocabulary per row took minutes at 65k rows).
        stride = torch.randint(1, vocab // k, (b, s, 1), generator=gen)
        t_ids = (labels.clamp(min=0)[..., None] + torch.arange(k) * stride) % vocab
        probs = torch.softmax(-torch.arange(k, dtype=torch.float32) * 0.35, 0) * 0.98
        t_lps = probs.log().expand(b, s, k).clone()
    packed, (v_ids, v_input, v_labels, v_spans, v_lengths, v_lps) = new_packed_micro_batch(b, s, k)
    v_ids.copy_(t_ids)
    v_input.copy_(ids)
    v_labels.copy_(labels)
    v_spans.copy_(spans)
    v_lengths.fill_(s)
    v_lps.copy_(t_lps)
    if pin:  # as TrainLoader pins its batches on CUDA: asynchronous host-to-device copies
        packed["buffer"] = packed["buffer"].pin_memory()
    return unpack_micro_batch(packed)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step_fn, device, *, warmup: int, steps: int) -> dict:
    for _ in range(warmup):
        step_fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, waits = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        wait = step_fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        waits.append(wait or 0.0)
    ms = statistics.median(times) * 1e3
    peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None
    return {"ms": ms, "data_wait_fraction": sum(waits) / sum(times), "peak_gib": peak}


def profile_step(name: str, fn, out: Path) -> None:
    """One step under torch.profiler: the top CUDA ops and how busy the GPU was over the step."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    out.mkdir(parents=True, exist_ok=True)
    kern, _ = kernel_timeline(prof, out)
    busy, span = busy_and_span_ms(kern)
    averages = prof.key_averages()
    table = averages.table(sort_by="cuda_time_total", row_limit=45)
    # Host waits on the device inside the step (each drains the GPU's queue): stream/device synchronizes
    # and device-to-host reads (`.item()`, `.cpu()`, `float(t)` all go through _local_scalar_dense / copy).
    syncs = sum(e.count for e in averages if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize"))
    head = f"{name}: {len(kern)} kernels, GPU busy {busy:.1f} ms over {span:.1f} ms, {syncs} host syncs\n"
    print(head + table, flush=True)
    (out / f"profile_{name}.txt").write_text(head + table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small")
    ap.add_argument("--layer-spec", default=None, help="override model.layer_spec (local | te)")
    ap.add_argument("--experts", default=None, help="override model.experts (grouped | sequential)")
    ap.add_argument(
        "--attention",
        default="sdpa",
        choices=("sdpa", "megatron"),
        help="local spec core attention: SDPAttention (the default) or megatron's materialized "
        "DotProductAttention (the before row)",
    )
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--micro", type=int, default=4, help="sequences per micro-batch")
    ap.add_argument("--micro-batches", type=int, default=2, help="micro-batches per step")
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--store", default=None)
    ap.add_argument("--workers", type=int, default=4, help="loader workers for the kd_loader row")
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_PEAK_TFLOPS)
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--profile", action="store_true", help="profile one step of each row in --rows (CUDA)")
    ap.add_argument(
        "--rows",
        default="kd,ce_fused,megatron_ce",
        help="comma-separated subset of kd, ce_fused, megatron_ce to time (kd_loader follows --dataset)",
    )
    args = ap.parse_args()

    device = torch.device(args.device, 0) if args.device == "cuda" else torch.device("cpu")
    fields = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / f"{args.model}.yaml"))
    if args.layer_spec:
        fields["layer_spec"] = args.layer_spec
    if args.experts:
        fields["experts"] = args.experts
    if device.type == "cpu":
        fields.update(layer_spec="local", dtype="fp32")
    cfg = StudentConfig(**fields)
    if args.attention == "megatron":  # the before row: swap the spec's core attention back
        from megatron.core.transformer.dot_product_attention import DotProductAttention

        import vpmoe.model.specs as specs

        specs.SDPAttention = (
            DotProductAttention  # the spec builder's name; forward_student then passes the mask
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(port))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    init_parallel(ParallelConfig(), device=device)
    from megatron.core import parallel_state

    model = build_student(cfg, device=device, seed=1234)
    optim = OptimConfig(
        lr=1e-4, min_lr=1e-5, warmup_steps=0, decay_steps=10**6, distributed=device.type == "cuda"
    )
    ddp, opt = build_ddp_and_optimizer(model, optim, device=device)
    set_lr(opt, optim.lr)
    dp_group = parallel_state.get_data_parallel_group()
    impl = "triton" if device.type == "cuda" else "torch"
    gen = torch.Generator().manual_seed(0)
    tokens = args.micro * args.seq * args.micro_batches
    flops = flops_per_token(cfg, args.seq)

    def head_step(loss_cfg, micro):
        def fn():
            out = step_gradients(ddp, opt, micro, loss_cfg, dp=1, dp_group=dp_group, device=device)
            assert not out["bad_grads"]
            opt.step()

        return fn

    rows = {}
    kd_micro = [
        synthetic_micro(args.micro, args.seq, args.k, cfg.vocab_size, gen, pin=device.type == "cuda")
        for _ in range(args.micro_batches)
    ]
    ce_micro = [
        synthetic_micro(args.micro, args.seq, 1, cfg.vocab_size, gen, pin=device.type == "cuda")
        for _ in range(args.micro_batches)
    ]
    wanted = set(args.rows.split(","))
    if wanted - {"kd", "ce_fused", "megatron_ce"}:
        ap.error(f"--rows: unknown {sorted(wanted - {'kd', 'ce_fused', 'megatron_ce'})}")
    if "kd" in wanted:
        rows["kd"] = time_steps(
            head_step(LossConfig(impl=impl), kd_micro), device, warmup=args.warmup, steps=args.steps
        )
    if "ce_fused" in wanted:
        rows["ce_fused"] = time_steps(
            head_step(LossConfig(impl=impl), ce_micro), device, warmup=args.warmup, steps=args.steps
        )

    from vpmoe.model.build import set_aux_loss_backward_scale

    # SDPA (the local spec's attention) takes no mask as causal; megatron's own attention needs the tensor.
    mask = None if args.attention == "sdpa" else causal_attention_mask(args.seq, device)
    pos = torch.arange(args.seq, device=device).expand(args.micro, args.seq)

    def megatron_ce():
        ddp.zero_grad_buffer()
        opt.zero_grad()
        set_aux_loss_backward_scale(1.0 / args.micro_batches, device=device)
        for mb in ce_micro:
            labels = mb["labels"].to(device, non_blocking=True).long()  # int32 in the loader's batches
            per_tok = ddp(
                mb["input_ids"].to(device, non_blocking=True).long(), pos, mask, labels=labels.clamp(min=0)
            )
            valid = labels != -100
            ((per_tok * valid).sum() / (valid.sum() * args.micro_batches)).backward()
        ddp.finish_grad_sync()
        opt.step()

    if "megatron_ce" in wanted:
        rows["megatron_ce"] = time_steps(megatron_ce, device, warmup=args.warmup, steps=args.steps)
    if args.profile and device.type == "cuda":
        steps = {
            "kd": head_step(LossConfig(impl=impl), kd_micro),
            "ce_fused": head_step(LossConfig(impl=impl), ce_micro),
            "megatron_ce": megatron_ce,
        }
        for name in (n for n in steps if n in wanted):
            profile_step(name, steps[name], Path(args.out_dir or "."))

    if args.dataset and args.store:
        from vpmoe.teacher.store_reader import TeacherStoreReader
        from vpmoe.train.data import DataConfig, MicroBatchBuilder, SampleIndex, TrainLoader

        reader = TeacherStoreReader(args.dataset, args.store)
        index = SampleIndex.build(reader, 0.0)
        dcfg = DataConfig(
            global_batch_size=args.micro * args.micro_batches,
            micro_batch_size=args.micro,
            num_workers=args.workers,
        )
        builder = MicroBatchBuilder(args.dataset, args.store, index, reader.k)
        # page-locked batches, as the trainer's loader on CUDA (vpmoe/train/trainer.py)
        loader = TrainLoader(builder, dcfg, dp=1, rank=0, pin_memory=device.type == "cuda")
        it = iter(loader)
        real = []

        def loader_step():
            t0 = time.perf_counter()
            micro = next(it)
            wait = time.perf_counter() - t0
            real.append(sum(int(m["tokens"]) for m in micro))
            head_step(LossConfig(impl=impl), micro)()
            return wait

        rows["kd_loader"] = time_steps(loader_step, device, warmup=args.warmup, steps=args.steps)
        rows["kd_loader"]["tokens_per_step"] = statistics.mean(real[-args.steps :])
        loader.close()

    for r in rows.values():
        n = r.get("tokens_per_step", tokens)
        r["tokens_per_s"] = n / (r["ms"] / 1e3)
        r["mfu"] = flops * r["tokens_per_s"] / (args.peak_tflops * 1e12) if device.type == "cuda" else None
    ratio = rows["kd"]["ms"] / rows["ce_fused"]["ms"] if {"kd", "ce_fused"} <= rows.keys() else None
    result = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "model": args.model,
        "layer_spec": cfg.layer_spec,
        "experts": cfg.experts,
        "attention": args.attention,
        "dtype": cfg.dtype,
        "seq": args.seq,
        "micro": args.micro,
        "micro_batches": args.micro_batches,
        "k": args.k,
        "tokens_per_step": tokens,
        "rows": rows,
        "kd_over_ce_fused": ratio,
        "torch": torch.__version__,
    }
    lines = [
        f"# bench_train: {args.model} on {result['device']} ({cfg.layer_spec} spec, {cfg.experts} experts, "
        f"{args.attention} attention, "
        f"{cfg.dtype}), "
        f"{args.micro_batches} x [{args.micro}, {args.seq}] per step, k={args.k}",
        "",
        "| row | ms/step | tokens/s | MFU | peak GiB | data wait |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        mfu = "-" if r["mfu"] is None else f"{r['mfu']:.1%}"
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        lines.append(
            f"| {name} | {r['ms']:.1f} | {r['tokens_per_s']:.0f} | {mfu} | {peak} | {r['data_wait_fraction']:.2%} |"
        )
    if ratio is not None:
        lines += ["", f"KD / fused CE-only step time: {ratio:.3f} (target <= 1.05)"]
    if {"kd", "megatron_ce"} <= rows.keys():
        lines += [f"KD / megatron_ce step time: {rows['kd']['ms'] / rows['megatron_ce']['ms']:.3f}"]
    print("\n".join(lines))
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"train_{args.model}_{device.type}_{cfg.experts}_{args.attention}_{args.micro_batches}x{args.micro}"
        (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
