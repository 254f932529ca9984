"""Step metrics: the fixed-format log line, `metrics.jsonl`, and the FLOP count behind MFU.

Every figure is over the whole optimizer step (all micro-batches, all data-parallel ranks), reduced once
per step in one all-reduce (trainer.py). Token-level means (kl, ce, masses, top-1) weight every
supervised token equally; `loss` is the span-normalized objective the gradient comes from (loss.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from vpmoe.model.config import StudentConfig
from vpmoe.utils.atomic import commit_file

# Dense bf16 peak of one H100 SXM (NVIDIA H100 datasheet: 989 TFLOP/s without sparsity): MFU's denominator
# unless train.peak_tflops says otherwise.
H100_BF16_PEAK_TFLOPS = 989.0


def flops_per_token(cfg: StudentConfig, mean_seq_len: float) -> float:
    """Model FLOPs of one token, forward + backward (x3 of forward), counting what runs:
    attention projections, the top-k experts' SwiGLU GEMMs, the router, the LM head, and the causal
    attention scores (QK^T and AV over on average s/2 keys). Embedding lookups and norms are free.
    The usual 6 x parameters-per-token rule (Kaplan et al. 2020, arXiv:2001.08361, section 2.1) over the
    parameters a token actually runs through, plus the attention scores."""
    h, L = cfg.hidden_size, cfg.num_layers
    kv = cfg.num_query_groups * cfg.head_dim
    attn_proj = h * h + 2 * h * kv + h * h  # q, k, v, o
    experts = cfg.moe_router_topk * 3 * h * cfg.moe_ffn_hidden_size  # fc1 (gate + up) and fc2
    router = h * cfg.num_moe_experts
    matmul_params = L * (attn_proj + experts + router) + h * cfg.vocab_size
    scores = L * 2 * h * (mean_seq_len / 2)  # QK^T and AV: 2 x (s/2) x h MACs per token per layer
    return 3 * 2 * (matmul_params + scores)


def format_step_line(m: dict, max_steps: int) -> str:
    """One line per step, fixed fields in a fixed order (grep- and eye-friendly)."""

    def f(key: str, fmt: str) -> str:
        v = m.get(key)
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    return (
        f"step {m['step']}/{max_steps} | loss {f('loss', '.4f')} (r {f('loss_reasoning', '.4f')} "
        f"f {f('loss_final', '.4f')}) | kl {f('kl', '.4f')} ce {f('ce', '.4f')} | tmass {f('teacher_mass', '.3f')} "
        f"smass {f('student_mass', '.3f')} top1 {f('top1', '.3f')} | aux {f('aux_loss', '.4f')} | "
        f"gnorm {f('grad_norm', '.3f')} | lr {f('lr', '.2e')} | tok/s {f('tokens_per_s', '.0f')} | "
        f"pad {f('padding_fraction', '.1%')} wait {f('data_wait_fraction', '.1%')} | "
        f"mfu {f('mfu', '.1%')} mem {f('peak_mem_gib', '.1f')}G"
    )


def format_eval_line(m: dict) -> str:
    parts = [f"eval step {m['step']}"]
    for span in ("reasoning", "final"):
        parts.append(
            f"{span}: kl {m[f'kl_{span}']:.4f} ce {m[f'ce_{span}']:.4f} top1 {m[f'top1_{span}']:.3f} "
            f"({m[f'tokens_{span}']} tok)"
        )
    parts.append(f"all: kl {m['kl']:.4f} ce {m['ce']:.4f} top1 {m['top1']:.3f} loss {m['loss']:.4f}")
    parts.append(f"ece {m['ece']:.4f} accuracy {m['accuracy']:.3f}")
    if "kl_full" in m:  # against a teacher reference (vpmoe/train/teacher_reference.py)
        parts.append(
            f"full-distribution kl {m['kl_full']:.4f} ± {m['kl_full_se']:.4f} top1 {m['top1_full']:.3f}"
        )
    return " | ".join(parts)


class MetricsLog:
    """Appends JSON records to <run_dir>/metrics.jsonl (rank 0 only), one per line, flushed each time.

    With `tensorboard=True` the same numbers also go to TensorBoard event files in the same directory, as
    `<kind>/<key>` scalars at the record's step (the viewer Megatron and torchtitan users already use:
    `tensorboard --logdir <run dir or sweep dir>` shows a run, or a sweep's jobs side by side)."""

    def __init__(self, path: str | Path, *, resume_step: int, tensorboard: bool = False) -> None:
        self.path = Path(path)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError(
                    f"train.tensorboard=true needs the tensorboard package ({e}); install it "
                    "(deps/versions.txt pins it) or set train.tensorboard=false"
                ) from None
            # purge_step: the viewer drops events a killed run wrote past its last checkpoint, as the
            # jsonl drops those records below.
            self._tb = SummaryWriter(
                str(self.path.parent), purge_step=resume_step + 1 if resume_step else None
            )
        if self.path.exists():
            # Records past the step we resume from belong to a run that was killed after its last
            # checkpoint: that history is gone, and the resumed run writes those steps again.
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= resume_step
            ]
            # Durably replaced, never rewritten in place: a crash here keeps the old history whole.
            commit_file(self.path, "".join(line + "\n" for line in kept))
        self._f = open(self.path, "a")  # noqa: SIM115 (closed in close())

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, allow_nan=True) + "\n")
        self._f.flush()
        if self._tb is not None:
            kind, step = record.get("kind", "train"), record["step"]
            for key, value in record.items():
                if (
                    key not in ("kind", "step")
                    and isinstance(value, int | float)
                    and not isinstance(value, bool)
                ):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)
            self._tb.flush()

    def close(self) -> None:
        self._f.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path, kind: str | None = None) -> list[dict]:
    records = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    return [r for r in records if kind is None or r.get("kind") == kind]
