"""Build the teacher reference of a dataset's held-out split: the teacher's full softmax at every supervised
held-out position, kept as M draws with their log-probabilities, the exact entropy and the argmax
(format: vpmoe/train/teacher_reference.py). `pipelines.evaluate reference=<file>` then measures a student's
KL to the teacher's full distribution, which a top-k or sampled store cannot give.

    python benchmarks/quality/teacher_reference.py --teacher data/real/teacher-real-h64 \\
        --dataset data/real/study/prepared --store <top-k store> --out <file.npz> [--draws 16]

The teacher runs with transformers in fp32 (the dtype vLLM scored it in, conf/teacher/cpu.yaml) over the
same token sequences the trainer's loader builds. Before anything is written, its log-probabilities at the
store's top-k ids are compared with the store's (vLLM's): a teacher that transformers and vLLM run
differently would make the reference describe another model, so a mismatch above --tolerance stops the
build, naming the sample.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from vpmoe.data.harmony_render import IGNORE_INDEX  # noqa: E402
from vpmoe.teacher.store_reader import TeacherStoreReader  # noqa: E402
from vpmoe.train.data import MicroBatchBuilder, SampleIndex  # noqa: E402
from vpmoe.train.teacher_reference import write_reference  # noqa: E402

CHUNK_ROWS = 256  # rows of [V] fp32 logits at a time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="the teacher's checkpoint dir (safetensors + config)")
    p.add_argument("--dataset", required=True, help="the prepared dataset")
    p.add_argument("--store", required=True, help="a top-k store of this teacher on the dataset")
    p.add_argument("--out", required=True, help="the reference file to write (.npz)")
    p.add_argument("--draws", type=int, default=16, help="draws per position (M)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-fraction", type=float, default=0.05, help="the trainer's data.eval_fraction")
    p.add_argument("--tolerance", type=float, default=0.05, help="max |log p| difference to the store")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.draws < 1:
        p.error("--draws must be >= 1")
    return args


def sample_generator(seed: int, shard: int, row: int) -> torch.Generator:
    """Draws seeded by (seed, dataset shard, row): the same sample draws the same ids in any order."""
    return torch.Generator().manual_seed((seed * 1_000_003 + shard) * 1_000_003 + row)


def score_sample(
    model, ids: torch.Tensor, sup: np.ndarray, draws: int, gen: torch.Generator, stored_ids: torch.Tensor
) -> dict:
    """The teacher's full softmax at the supervised positions `sup` of one sequence `ids` [s], and its
    log-probabilities at `stored_ids` [len(sup), k] (the store's top-k, for the check against vLLM). Only
    one chunk of [rows, vocab] log-probs is held at a time."""
    with torch.no_grad():
        hidden = model.model(input_ids=ids[None]).last_hidden_state[0, torch.from_numpy(sup)]
        out = {"draws": [], "draw_logprobs": [], "entropy": [], "argmax": [], "stored_logp": []}
        for a in range(0, len(sup), CHUNK_ROWS):
            logp = torch.log_softmax(model.lm_head(hidden[a : a + CHUNK_ROWS]).float(), dim=-1)
            p = logp.exp()
            d = torch.multinomial(p, draws, replacement=True, generator=gen)
            out["draws"].append(d)
            out["draw_logprobs"].append(logp.gather(1, d))
            out["entropy"].append(-(p * logp).sum(-1))
            out["argmax"].append(logp.argmax(-1))
            out["stored_logp"].append(logp.gather(1, stored_ids[a : a + CHUNK_ROWS]))
    return {k: torch.cat(v) for k, v in out.items()}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    reader = TeacherStoreReader(args.dataset, args.store)
    if reader.storage != "topk":
        raise SystemExit(f"--store {args.store} is a {reader.storage} store; the check needs a top-k store")
    index = SampleIndex.build(reader, args.eval_fraction)
    held = np.flatnonzero(index.held_out)
    if not len(held):
        raise SystemExit(f"no held-out sample at eval_fraction {args.eval_fraction}")
    builder = MicroBatchBuilder(args.dataset, reader.root, index, reader.k)
    model = AutoModelForCausalLM.from_pretrained(args.teacher, dtype=torch.float32).eval()
    print(
        f"{len(held)} held-out samples, {args.draws} draws per position, teacher {args.teacher}", flush=True
    )

    parts: dict[str, list] = {k: [] for k in ("positions", "draws", "draw_logprobs", "entropy", "argmax")}
    offsets, worst, diffs, t0 = [0], (0.0, ""), [], time.perf_counter()
    shard_names = [s.name for s in reader.dataset.manifest.shards]
    for n, i in enumerate(held, start=1):
        mb = builder.build(np.array([i]))
        length = int(mb["lengths"][0])
        labels = mb["labels"][0, :length].numpy()
        sup = np.flatnonzero(labels != IGNORE_INDEX)
        name = f"{shard_names[index.shard[i]]} row {index.row[i]}"
        gen = sample_generator(args.seed, int(index.shard[i]), int(index.row[i]))
        # vLLM's log-probs at its own top-k (fp16 in the batch) against transformers' at those ids
        stored_ids = mb["teacher_ids"][0, sup].long()
        got = score_sample(model, mb["input_ids"][0, :length].long(), sup, args.draws, gen, stored_ids)
        diff = (got["stored_logp"] - mb["teacher_logprobs"][0, sup].float()).abs()
        diffs.append(diff.mean().item())
        if diff.max().item() > worst[0]:
            worst = (diff.max().item(), name)
        if worst[0] > args.tolerance:
            raise SystemExit(
                f"sample {name}: the teacher's log-probs differ from the store's by up to {worst[0]:.4f} "
                f"(> --tolerance {args.tolerance}); transformers and vLLM do not run this teacher alike"
            )
        parts["positions"].append(sup.astype(np.int32))
        for k in ("draws", "draw_logprobs", "entropy", "argmax"):
            parts[k].append(got[k].numpy())
        offsets.append(offsets[-1] + len(sup))
        if n % 20 == 0 or n == len(held):
            rate = offsets[-1] / (time.perf_counter() - t0)
            print(f"  {n}/{len(held)} samples, {offsets[-1]} positions ({rate:.0f}/s)", flush=True)

    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    write_reference(
        args.out, manifest_hash=reader.dataset.manifest_hash, seed=args.seed, shard=index.shard[held],
        row=index.row[held], crc=index.crc[held], offsets=np.array(offsets, np.int64), **arrays,
    )  # fmt: skip
    summary = {
        "reference": args.out,
        "bytes": Path(args.out).stat().st_size,
        "samples": len(held),
        "positions": int(offsets[-1]),
        "draws_per_position": args.draws,
        "teacher_entropy": float(arrays["entropy"].mean()),
        "store_logprob_abs_diff_max": worst[0],
        "store_logprob_abs_diff_mean": float(np.mean(diffs)),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
