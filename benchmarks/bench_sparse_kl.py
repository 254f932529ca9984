"""Benchmark of the sparse-KL loss head against the 3-GEMM floor, a naive PyTorch sparse KL, Cut
Cross-Entropy and Liger (hard-label CE; benchmark-only comparisons, carried as wheels, never dependencies).

Forward + backward of LM head + loss, bf16, H = 2880, V = 201088, T in {8192, 16384}; "random" inputs
(output weight std 0.02: student entropy ~11.6 nats, where CCE's gradient filter skips nearly everything)
and "peaked" ones (std 0.08: ~4.7 nats, trained-like, what training sees). Median of --reps timed runs
(CUDA events, after --warmup runs); "extra GiB" = peak allocated during the step minus what was allocated
before it (inputs; for the main_grad row also the fp32 main_grad a Megatron run holds anyway) minus the
.grad tensors the step produced (bf16 grad of hidden and weight; hidden's only, for the main_grad row).

    python benchmarks/bench_sparse_kl.py --out-dir DIR [--T 8192 16384] [--reps 7]
writes DIR/sparse_kl_<device>.json and .md (copy them to benchmarks/results/).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.profiling import busy_and_span_ms, kernel_timeline
from kernels import sparse_kl

V, H = 201088, 2880
GIB = 2**30


def timed(fn, params, *, warmup: int, reps: int):
    """Median ms over reps and peak extra memory (GiB) of one fwd+bwd step."""
    for _ in range(warmup):
        for p in params:
            p.grad = None
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        for p in params:
            p.grad = None
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    for p in params:
        p.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    grads = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    extra = (torch.cuda.max_memory_allocated() - base - grads) / GIB
    for p in params:
        p.grad = None
    return statistics.median(times), extra, times


def once(fn, params) -> float:
    for p in params:
        p.grad = None
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    s.record()
    fn()
    e.record()
    e.synchronize()
    return s.elapsed_time(e)


def burst(fn, params, n: int = 4) -> float:
    """ms per call of n calls enqueued back to back (one sync at the end): the host enqueues call i + 1
    while the GPU runs call i, as in a training step where the head is queued behind the decoder's work.
    `once` starts from an idle GPU, so it also counts the host's latency to a call's first kernel."""
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(n):
        for p in params:
            p.grad = None
        fn()
    e.record()
    e.synchronize()
    return s.elapsed_time(e) / n


def make_inputs(T: int, kind: str, kmax: int, seed: int = 0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    std = 0.02 if kind == "random" else 0.08
    h = torch.randn(T, H, device="cuda", generator=g).bfloat16().requires_grad_()
    w = (torch.randn(V, H, device="cuda", generator=g) * std).bfloat16().requires_grad_()
    # Teacher = the student's own top-kmax (log-probs lowered by 0.05 so some mass stays in the tail);
    # entropy and top-1 probability describe the student distribution of this input kind.
    ids = torch.empty(T, kmax, dtype=torch.int64, device="cuda")
    lp = torch.empty(T, kmax, dtype=torch.float32, device="cuda")
    ent = torch.empty(T, device="cuda")
    top1 = torch.empty(T, device="cuda")
    with torch.no_grad():
        for t0 in range(0, T, 1024):
            z = (h[t0 : t0 + 1024] @ w.T).float()
            lse = z.logsumexp(-1, keepdim=True)
            v, i = z.topk(kmax, dim=-1)
            ids[t0 : t0 + 1024], lp[t0 : t0 + 1024] = i, v - lse - 0.05
            logq = z - lse
            ent[t0 : t0 + 1024] = -(logq.exp() * logq).sum(-1)
            top1[t0 : t0 + 1024] = logq.max(-1).values.exp()
            del z, logq
    labels = ids[:, 0].clone()
    labels[torch.rand(T, device="cuda", generator=g) < 0.05] = -100
    stats = dict(student_entropy=float(ent.mean()), student_top1_prob=float(top1.mean()))
    return h, w, ids, lp, labels, stats


def log1mexp(x):
    x = x.clamp(max=0)
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def naive_sparse_kl(h, w, ids, lp, labels):
    """What DistillKit / Megatron-style code does: full [T, V] fp32 logits, tail bucket, autograd."""
    z = (h @ w.T).float()
    logq = z.log_softmax(-1)
    lq = logq.gather(1, ids)
    lq_tail = log1mexp(lq.logsumexp(-1)).clamp(min=math.log(2**-20))
    lp_tail = log1mexp(lp.logsumexp(-1))
    p, p_tail = lp.exp(), lp_tail.exp()
    kl = (p * (lp - lq)).sum(-1) + torch.where(p_tail > 0, p_tail * (lp_tail - lq_tail), 0)
    return torch.where(labels != -100, kl, 0).sum()


def bench_case(T: int, kind: str, args, record, rows: list, out: Path) -> None:
    """All rows for one (T, input kind); inputs die with the frame."""
    h, w, ids_all, lp_all, labels, stats = make_inputs(T, kind, max(args.ks))
    if args.prompt_fraction:  # a prompt share with no loss, as in training (the first rows of each batch)
        labels[: int(T * args.prompt_fraction)] = -100
    params = (h, w)
    # The head skips rows with label -100, so its floor is the three GEMMs over the supervised rows only.
    h_sup = h[labels != -100].contiguous()
    Ts = h_sup.shape[0]
    stats["supervised_rows"] = Ts

    # Floor: the three bf16 GEMMs alone (logits, grad_hidden, grad_weight) into preallocated outputs.
    bufs = dict(
        z=torch.empty(Ts, V, dtype=torch.bfloat16, device="cuda"),
        gh=torch.empty(Ts, H, dtype=torch.bfloat16, device="cuda"),
        gw=torch.empty(V, H, dtype=torch.bfloat16, device="cuda"),
    )

    def floor():
        with torch.no_grad():
            torch.mm(h_sup, w.T, out=bufs["z"])
            torch.mm(bufs["z"], w, out=bufs["gh"])  # the logits stand in for the gradient: nonzero data
            torch.mm(bufs["z"].T, h_sup, out=bufs["gw"])

    record(T, kind, stats, "floor: 3 bf16 GEMMs over the supervised rows", floor, params)
    floor_flops = 3 * 2 * Ts * V * H
    rows[-1]["tflops"] = round(floor_flops / rows[-1]["ms"] / 1e9, 1) if "ms" in rows[-1] else None
    bufs.clear()
    torch.cuda.empty_cache()

    ids64, lp64 = ids_all[:, :64].contiguous(), lp_all[:, :64].contiguous()
    record(
        T,
        kind,
        stats,
        "naive PyTorch sparse KL k=64 (full logits)",
        lambda: naive_sparse_kl(h, w, ids64, lp64, labels).backward(),
        params,
    )

    try:
        from cut_cross_entropy import linear_cross_entropy

        record(
            T,
            kind,
            stats,
            "CCE linear_cross_entropy (hard labels)",
            lambda: linear_cross_entropy(h, w, labels).backward(),
            params,
        )
    except ImportError as e:
        rows.append(dict(T=T, kind=kind, method="CCE", error=str(e), **stats))
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        lf = LigerFusedLinearCrossEntropyLoss()
        record(
            T,
            kind,
            stats,
            "Liger fused linear CE (hard labels)",
            lambda: lf(w, h, labels).backward(),
            params,
        )
    except ImportError as e:
        rows.append(dict(T=T, kind=kind, method="Liger", error=str(e), **stats))

    for k in args.ks:
        ids, lp = ids_all[:, :k].contiguous(), lp_all[:, :k].contiguous()
        record(
            T,
            kind,
            stats,
            f"ours triton k={k}",
            lambda ids=ids, lp=lp: sparse_kl(h, w, ids, lp, labels, impl="triton").loss.backward(),
            params,
        )
    record(
        T, kind, stats, "ours triton k=64 tau=2 ce=0.1",
        lambda: sparse_kl(h, w, ids64, lp64, labels, impl="triton", temperature=2.0, ce_weight=0.1).loss.backward(),
        params,
    )  # fmt: skip
    # Megatron's gradient-accumulation fusion: grad_W goes into the fp32 main_grad a Megatron run already
    # holds (allocated before the step, so counted with the gradients, not as extra).
    main_grad = torch.zeros(V, H, dtype=torch.float32, device="cuda")

    def ours_main_grad():
        sparse_kl(h, w, ids64, lp64, labels, impl="triton", main_grad=main_grad).loss.backward()

    record(T, kind, stats, "ours triton k=64, grad_W into fp32 main_grad", ours_main_grad, params)
    # The trainer's call (vpmoe/train/loss.py head_loss): the supervised-row index built on the host from
    # the batch's CPU labels, so the head never waits for the device (without it: one torch.nonzero sync).
    sup_rows = torch.nonzero(labels.cpu() != -100).squeeze(1).to("cuda")

    def ours_trainer_call():
        sparse_kl(
            h, w, ids64, lp64, labels, impl="triton", main_grad=main_grad, supervised_rows=sup_rows
        ).loss.backward()

    record(
        T,
        kind,
        stats,
        "ours triton k=64, main_grad + supervised_rows (the trainer's call)",
        ours_trainer_call,
        params,
    )
    record(
        T,
        kind,
        stats,
        "ours torch reference k=64",
        lambda: sparse_kl(h, w, ids64, lp64, labels, impl="torch").loss.backward(),
        params,
    )

    # Interleaved pairs: the GEMMs' speed drifts by several % with clocks and power (peaked data draws more),
    # so the ratio that matters is taken from alternating runs of the floor and ours.
    bufs = dict(
        z=torch.empty(Ts, V, dtype=torch.bfloat16, device="cuda"),
        gh=torch.empty(Ts, H, dtype=torch.bfloat16, device="cuda"),
        gw=torch.empty(V, H, dtype=torch.bfloat16, device="cuda"),
    )
    variants = {
        "weight.grad": lambda: sparse_kl(h, w, ids64, lp64, labels, impl="triton").loss.backward(),
        "main_grad": ours_main_grad,
        "main_grad, supervised_rows given": ours_trainer_call,
    }
    for name, fn in variants.items():
        fl, ou = [], []
        for i in range(2 + args.reps):
            a = once(floor, params)
            b = once(fn, params)
            if i >= 2:
                fl.append(a)
                ou.append(b)
        ratio = statistics.median(b / a for a, b in zip(fl, ou, strict=True))
        rows.append(
            dict(T=T, kind=kind, method=f"paired: ours triton k=64 (grad_W into {name}) vs floor", ms=round(statistics.median(ou), 2),
                 floor_ms=round(statistics.median(fl), 2), ratio=round(ratio, 3), **stats)
        )  # fmt: skip
        print(f"T={T:6d} {kind:7s} paired k=64 {name}: ours {statistics.median(ou):.2f} ms, floor "
              f"{statistics.median(fl):.2f} ms, median ratio {ratio:.3f}", flush=True)  # fmt: skip
    # The trainer's call, pipelined (`burst`): pairs of back-to-back bursts of the floor and of ours.
    fl, ou = [], []
    for i in range(2 + args.reps):
        a, b = burst(floor, params), burst(ours_trainer_call, params)
        if i >= 2:
            fl.append(a)
            ou.append(b)
    ratio = statistics.median(b / a for a, b in zip(fl, ou, strict=True))
    rows.append(
        dict(T=T, kind=kind, method="paired, 4 calls back to back: ours triton k=64 (the trainer's call) vs floor",
             ms=round(statistics.median(ou), 2), floor_ms=round(statistics.median(fl), 2), ratio=round(ratio, 3), **stats)
    )  # fmt: skip
    print(f"T={T:6d} {kind:7s} paired back-to-back k=64 trainer's call: ours {statistics.median(ou):.2f} ms, floor "
          f"{statistics.median(fl):.2f} ms, median ratio {ratio:.3f}", flush=True)  # fmt: skip
    bufs.clear()
    torch.cuda.empty_cache()

    if args.profile and kind == "peaked":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            sparse_kl(h, w, ids64, lp64, labels, impl="triton").loss.backward()
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=15)
        print(table)
        (out / f"profile_ours_k64_T{T}.txt").write_text(table)


def diagnose(out: Path, T: int = 8192, prompt_fraction: float = 0.0) -> None:
    """Where does ours spend time beyond its kernels (GPU idle gaps) and memory beyond its buffers?"""
    h, w, ids, lp, labels, _ = make_inputs(T, "peaked", 64)
    labels[: int(T * prompt_fraction)] = -100  # prompts, as bench_case marks them
    sup_rows = torch.nonzero(labels.cpu() != -100).squeeze(1).to("cuda")  # as the trainer passes it

    def fn():
        sparse_kl(h, w, ids, lp, labels, impl="triton", supervised_rows=sup_rows).loss.backward()

    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    for _ in range(3):
        h.grad = w.grad = None
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        print(f"diag T={T}: enqueue {1e3 * (t1 - t0):.1f} ms, total {1e3 * (t2 - t0):.1f} ms", flush=True)
    from torch.profiler import ProfilerActivity, profile

    h.grad = w.grad = None
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    kern, cpu = kernel_timeline(prof, out)
    busy, span = busy_and_span_ms(kern)
    print(f"diag kernels: {len(kern)}, busy {busy:.1f} ms over span {span:.1f} ms", flush=True)
    for a, b in itertools.pairwise(kern):
        gap = b["ts"] - (a["ts"] + a["dur"])
        if gap > 100:
            during = [c["name"] for c in cpu if a["ts"] + a["dur"] <= c["ts"] <= b["ts"]][:6]
            print(
                f"diag gap {gap / 1e3:.2f} ms after {a['name'][:40]} before {b['name'][:40]}; cpu ops: {during}"
            )
    # Memory, step by step, for one forward and backward.
    h.grad = w.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    r = sparse_kl(h, w, ids, lp, labels, impl="triton")
    torch.cuda.synchronize()
    fwd_peak = torch.cuda.max_memory_allocated() - base
    held = torch.cuda.memory_allocated() - base
    torch.cuda.reset_peak_memory_stats()
    r.loss.backward()
    torch.cuda.synchronize()
    bwd_peak = torch.cuda.max_memory_allocated() - base
    print(
        f"diag mem GiB: forward peak {fwd_peak / GIB:.2f}, held after forward {held / GIB:.2f}, "
        f"backward peak {bwd_peak / GIB:.2f}, grads {(h.grad.nbytes + w.grad.nbytes) / GIB:.2f}",
        flush=True,
    )
    acc = torch.empty(V, H, device="cuda")
    z = torch.randn(2048, V, device="cuda").bfloat16()
    torch.cuda.synchronize()
    b2 = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    torch.addmm(acc, z.t(), h[:2048].detach(), beta=1.0, out_dtype=torch.float32, out=acc)
    torch.cuda.synchronize()
    print(f"diag addmm(out_dtype) temp GiB: {(torch.cuda.max_memory_allocated() - b2) / GIB:.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--T", type=int, nargs="+", default=[8192, 16384])
    ap.add_argument("--kinds", nargs="+", default=["random", "peaked"])
    ap.add_argument("--ks", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument(
        "--prompt-fraction",
        type=float,
        default=0.0,
        help="label -100 on this leading share of rows too (prompts); the floor counts supervised rows only",
    )
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="print a kernel-time table for ours, k=64")
    ap.add_argument("--diagnose", action="store_true", help="only: GPU idle gaps and memory steps of ours")
    args = ap.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.diagnose:
        diagnose(out, args.T[0], args.prompt_fraction)
        return

    import triton

    versions = dict(
        torch=torch.__version__,
        triton=triton.__version__,
        cuda=torch.version.cuda,
        python=platform.python_version(),
    )
    for mod in ("cut_cross_entropy", "liger_kernel"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod.replace("_", "-"))
        except Exception as e:  # benchmark-only extras may be absent
            versions[mod] = f"absent ({type(e).__name__})"
    dev_name = torch.cuda.get_device_name()
    slug = "h100" if "H100" in dev_name else ("h200" if "H200" in dev_name else dev_name.split()[-1].lower())
    rows = []
    t_start = time.time()

    def record(T, kind, stats, method, fn, params, note=""):
        try:
            ms, extra, all_ms = timed(fn, params, warmup=args.warmup, reps=args.reps)
            rows.append(
                dict(
                    T=T,
                    kind=kind,
                    method=method,
                    ms=round(ms, 2),
                    extra_gib=round(extra, 2),
                    all_ms=[round(x, 2) for x in all_ms],
                    note=note,
                    **stats,
                )
            )
            print(f"T={T:6d} {kind:7s} {method:44s} {ms:8.2f} ms  extra {extra:6.2f} GiB", flush=True)
        except Exception as e:
            rows.append(dict(T=T, kind=kind, method=method, error=f"{type(e).__name__}: {e}"[:300], **stats))
            print(f"T={T:6d} {kind:7s} {method:44s} ERROR {type(e).__name__}: {str(e)[:200]}", flush=True)
        torch.cuda.empty_cache()

    for T in args.T:
        for kind in args.kinds:
            bench_case(T, kind, args, record, rows, out)
            torch.cuda.empty_cache()

    result = dict(
        device=dev_name,
        versions=versions,
        V=V,
        H=H,
        dtype="bfloat16",
        rows=rows,
        wall_s=round(time.time() - t_start, 1),
    )
    (out / f"sparse_kl_{slug}.json").write_text(json.dumps(result, indent=1))
    md = [
        f"# sparse-KL loss head benchmark on {dev_name}",
        "",
        f"Forward + backward of LM head + loss, bf16, H={H}, V={V}; median of {args.reps} runs after {args.warmup} warm-ups; "
        "extra GiB = peak allocated beyond inputs and the bf16 gradients. Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ".",
        "",
        "| T | inputs (student entropy, top-1 prob) | method | ms | x floor | extra GiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    floors = {(r["T"], r["kind"]): r.get("ms") for r in rows if r["method"].startswith("floor")}
    for r in rows:
        fl = floors.get((r["T"], r["kind"]))
        inputs = f"{r['kind']} ({r['student_entropy']:.2f} nats, {r['student_top1_prob']:.3f})"
        if "ratio" in r:
            md.append(
                f"| {r['T']} | {inputs} | {r['method']} (floor {r['floor_ms']:.1f} ms) | {r['ms']:.1f} | {r['ratio']:.2f} | |"
            )
        elif "ms" in r:
            ratio = f"{r['ms'] / fl:.2f}" if fl else "-"
            md.append(
                f"| {r['T']} | {inputs} | {r['method']} | {r['ms']:.1f} | {ratio} | {r['extra_gib']:.2f} |"
            )
        else:
            md.append(f"| {r['T']} | {inputs} | {r['method']} | error: {r['error'][:80]} | | |")
    (out / f"sparse_kl_{slug}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    main()
