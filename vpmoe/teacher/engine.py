"""The teacher engine: GPT-OSS in vLLM's offline `LLM`, prompt-logprob mode. The one scoring path.

`LLM(skip_tokenizer_init=True, max_logprobs=k, logprobs_mode="raw_logprobs")` over `TokensPrompt`s with
`SamplingParams(max_tokens=1, prompt_logprobs=k, flat_logprobs=True, detokenize=False)`: raw logprobs
are the fp32 log-softmax over the full vocabulary (raw logits would lose the normaliser); flat outputs
make the Python-side conversion ~8x cheaper than dicts (platform notes).

Prompt-logprob capture (`install_prompt_logprob_capture`): vLLM computes each prompt's logprobs as tensors
(`LogprobsTensors`: token ids [n, k+1] with column 0 the actual prompt token and 1..k the top-k in rank
order, fp32 log-probs [n, k+1], the actual token's rank [n]) and then pythonizes them into `FlatLogprobs`
lists. Turning those lists back into numpy costs ~35-40 ns per element (array.array; np.asarray is slower),
i.e. 5-6 us per position at k=64: more than the scorer's whole budget for its own work (>= 200k positions
per CPU-second). So `LogprobsProcessor._update_prompt_logprobs` (vllm/v1/engine/logprobs.py) is wrapped,
once and explicitly when the engine is built: it keeps a numpy copy of each call's tensors on the
`FlatLogprobs` object and calls vLLM's original on the actual token's column only, so vLLM's own
pythonization (four list appends per item: ~0.3 ms a position at k=1024, one host core) is not spent on
the top-k the scorer never reads from its lists; the returned `FlatLogprobs` has one item per entry
(benchmarks/results/capture_cpu.md). `VllmTeacher.score` concatenates the copies and checks them against
vLLM's entries (vLLM 0.32's runner gathers a chunked-prefill prompt and delivers it in one call -- checked
with a 1553-token prompt at max_num_batched_tokens=512 -- but the method appends, so a runner that delivers
chunk by chunk is handled too; tests/test_score.py feeds it two chunks). The wrapper relies on that
method's name and signature, `LogprobsTensors`' first three fields (a NamedTuple: `_replace`), and
`FlatLogprobs` holding attributes; any difference raises `TeacherError` when the engine is built, naming
the vLLM version and this file.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vpmoe.teacher.convert import PromptLogprobArrays
from vpmoe.teacher.memory import (
    PROMPT_LOGPROB_BYTES_PER_TOKEN_PER_VOCAB,
    TeacherMemoryError,
    check_cpu_fits,
    host_available_bytes,
    plan_memory,
)
from vpmoe.utils.hashing import sha256_file

log = logging.getLogger(__name__)

DTYPES = ("auto", "bfloat16", "float16", "float32")
CPU_MAX_BATCHED_TOKENS = 512  # measured on CPU: keeps peak RSS near 3 GB at vocab 201088


class TeacherError(RuntimeError):
    pass


# teacher.k when it is null, by teacher.storage. A top-k store keeps k ids and log-probs a position, so its
# bytes grow with k (64: ~148 B/position on a real teacher). A sampled store keeps only the ids drawn, so k
# sets how much of the teacher the draws can reach: every draw beyond the top-k falls in one tail bucket,
# which biases the loss (docs/distillation_mechanics.md "Sampled teacher rows"). Measured on the real-text
# teacher (docs/quality.md): N = 50 draws from the top-1024 gave a student 0.23 nats better in held-out CE
# than top-64 KD and 0.31 better than the same draws from the top-64 (51.3 B/position; N = 32: as good, 38.4).
DEFAULT_K = {"topk": 64, "sampled": 1024}


@dataclass(kw_only=True)
class TeacherConfig:
    model: str = "???"  # a local model directory (GPT-OSS-20B, or the tiny test teacher)
    dtype: str = "auto"
    k: int | None = None  # None: DEFAULT_K[storage]
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 8192
    max_num_batched_tokens: int | None = None  # None: derived from free memory (logged)
    # An absolute KV cache: room for this many concurrent sequences of max_model_len tokens, passed to vLLM
    # as kv_cache_memory_bytes. Required on CPU, where vLLM would otherwise budget gpu_memory_utilization x
    # the NUMA node's MemTotal, a figure that starts small on machines that receive memory as it is first
    # used (platform notes). None (GPU): vLLM sizes the cache from gpu_memory_utilization after profiling.
    kv_cache_sequences: int | None = None
    enforce_eager: bool = False
    seed: int = 0  # vLLM's seed, and the draws' of a sampled store
    # What the store keeps per position: "topk" (the k ids and log-probs vLLM returns) or "sampled" (RS-KD:
    # `samples` seeded draws from the (k+1)-way distribution, kept as the unique ids drawn with their
    # counts and the tail count; vpmoe/teacher/sampling.py, docs/teacher_store.md "Sampled stores").
    storage: str = "topk"
    samples: int = 50

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"teacher.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.storage not in DEFAULT_K:
            raise ValueError(f"teacher.storage must be 'topk' or 'sampled', got {self.storage!r}")
        if self.k is None:
            self.k = DEFAULT_K[self.storage]
        if not 1 <= self.k <= 1024:
            raise ValueError(f"teacher.k must be in [1, 1024], got {self.k}")
        if self.tensor_parallel_size < 1:
            raise ValueError("teacher.tensor_parallel_size must be >= 1")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(
                f"teacher.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )
        if self.max_model_len < 16:
            raise ValueError("teacher.max_model_len must be >= 16")
        if self.max_num_batched_tokens is not None and self.max_num_batched_tokens < 16:
            raise ValueError("teacher.max_num_batched_tokens must be >= 16 (or null for automatic)")
        if not 1 <= self.samples <= 255:  # counts are stored as uint8 (sampling.MAX_SAMPLES)
            raise ValueError(f"teacher.samples must be in [1, 255], got {self.samples}")
        if self.kv_cache_sequences is not None and self.kv_cache_sequences < 1:
            raise ValueError("teacher.kv_cache_sequences must be >= 1 (or null: vLLM sizes it, GPU only)")


@dataclass(frozen=True, kw_only=True)
class TeacherIdentity:
    path: str
    name: str
    weights_sha256: str
    config: dict

    def teacher_id(self, dtype: str, k: int, samples: int | None = None) -> str:
        """`samples`: a sampled store's draws per position (its id ends -s<N>; a top-k store's with -k<k>)."""
        base = f"{self.name}-{self.weights_sha256[:12]}-{dtype}-k{k}"
        return base if samples is None else f"{base}-s{samples}"


def teacher_identity(model_dir: str | Path, expected_vocab: int) -> TeacherIdentity:
    """Read and check the teacher before any work: GPT-OSS architecture and the dataset's vocab size."""
    path = Path(model_dir)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise TeacherError(
            f"teacher.model={model_dir}: no config.json (expected a local GPT-OSS model directory)"
        )
    config = json.loads(cfg_file.read_text())
    if config.get("model_type") != "gpt_oss":
        raise TeacherError(
            f"{cfg_file}: model_type {config.get('model_type')!r}; the teacher is GPT-OSS only"
        )
    vocab = config.get("vocab_size")
    if vocab != expected_vocab:
        raise TeacherError(
            f"{cfg_file}: vocab_size {vocab} != the dataset tokenizer's padded vocab {expected_vocab}; "
            "teacher and dataset tokenizer disagree"
        )
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise TeacherError(f"{path}: no *.safetensors weights")
    check_untied_output_layer(cfg_file, config, weights)
    h = hashlib.sha256()
    for w in weights:  # hash of (name, sha256) pairs: stable across re-sharding into the same files
        h.update(f"{w.name}:{sha256_file(w)}\n".encode())
    return TeacherIdentity(
        path=str(path.resolve()),
        name=path.resolve().name,
        weights_sha256=h.hexdigest(),
        config=config,
    )


OUTPUT_LAYER = "lm_head.weight"  # the output layer's tensor in a transformers GPT-OSS checkpoint
UNTIE_FIX = (
    "save it untied: load it with transformers, set config.tie_word_embeddings = False, copy the "
    "embedding into the output layer (model.lm_head.weight = a copy of model.model.embed_tokens.weight) "
    f"and save_pretrained, so that the safetensors hold {OUTPUT_LAYER}"
)


def check_untied_output_layer(cfg_file: Path, config: dict, weights: list[Path]) -> None:
    """Refuse a checkpoint whose output layer vLLM's GPT-OSS would not load (issue 18).

    vLLM 0.32.0's GPT-OSS never ties the output layer to the embedding: `GptOssForCausalLM.__init__`
    (vllm/model_executor/models/gpt_oss.py) builds `self.lm_head = ParallelLMHead(...)` and never calls
    `lm_head.tie_weights(...)`, whereas e.g. `LlamaForCausalLM` does when `config.tie_word_embeddings`
    (models/llama.py). Its `load_weights` (`AutoWeightsLoader`) fills `lm_head.weight` only from a tensor of
    that name, and the loader's missing-weight check (`DefaultModelLoader.track_weights_loading`,
    model_loader/default_loader.py) exempts modules with a quant method that post-processes weights, which
    the unquantized `ParallelLMHead` has. So a tied checkpoint (`save_pretrained` of a tied model writes no
    `lm_head.weight`) loads without a word and its output layer stays as allocated (`torch.empty`; zeros on
    a fresh CPU allocation: every row exactly uniform, top-1 probability 1/vocab). A checkpoint that says
    tied but does hold `lm_head.weight` is refused too: transformers would use the embedding, vLLM the
    stored tensor, and which one the teacher is would depend on the engine."""
    problems = []
    if config.get("tie_word_embeddings"):
        problems.append("config.json has tie_word_embeddings: true (vLLM's GPT-OSS ignores it)")
    names = set().union(*(safetensors_tensor_names(w) for w in weights))
    if OUTPUT_LAYER not in names:
        problems.append(f"no {OUTPUT_LAYER} tensor in {', '.join(w.name for w in weights)}")
    if problems:
        raise TeacherError(
            f"{cfg_file.parent}: the teacher's output layer is tied to its embedding ({'; '.join(problems)}). "
            "vLLM's GPT-OSS model (checked in 0.32.0) does not tie weights, so it would run this teacher with "
            f"an output layer that was never loaded and store meaningless rows. Fix: {UNTIE_FIX}"
        )


SAFETENSORS_MAX_HEADER = 100_000_000  # safetensors refuses larger headers (its MAX_HEADER_SIZE)


def safetensors_tensor_names(file: Path) -> set[str]:
    """Tensor names of one .safetensors file from its JSON header alone (no weights read). Format
    (github.com/huggingface/safetensors, "Format"): 8 bytes, the header size N as a little-endian u64,
    then N bytes of JSON mapping each tensor name to its dtype, shape and offsets (plus `__metadata__`)."""
    with open(file, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if not 2 <= size <= SAFETENSORS_MAX_HEADER:
            raise TeacherError(f"{file}: not a safetensors file (header size {size})")
        try:
            header = json.loads(f.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TeacherError(f"{file}: unreadable safetensors header: {e}") from None
    if not isinstance(header, dict):
        raise TeacherError(f"{file}: safetensors header is not a JSON object")
    return set(header) - {"__metadata__"}


def derive_max_num_batched_tokens(cfg: TeacherConfig, vocab_size: int) -> tuple[int, str]:
    """Tokens per scheduler step, bounded by the memory the prompt-logprob pass needs outside vLLM's budget."""
    if cfg.max_num_batched_tokens is not None:
        return cfg.max_num_batched_tokens, "set in config"
    per_token = PROMPT_LOGPROB_BYTES_PER_TOKEN_PER_VOCAB * vocab_size
    import torch

    if not torch.cuda.is_available():
        return (
            CPU_MAX_BATCHED_TOKENS,
            f"CPU default {CPU_MAX_BATCHED_TOKENS} (bounds peak RSS of the {vocab_size}-wide log-softmax)",
        )
    free, total = torch.cuda.mem_get_info()
    # vLLM takes gpu_memory_utilization x total for weights, KV cache and activations; the prompt-logprob
    # tensors must fit in what is left, with 10% slack for fragmentation.
    outside = total * (1.0 - cfg.gpu_memory_utilization) - (total - free)  # minus what others already use
    headroom = 0.9 * outside
    n = int(max(0.0, headroom) // per_token) // 256 * 256
    n = max(256, min(n, 16384))
    why = (
        f"{outside / 2**30:.1f} GiB outside vLLM's "
        f"gpu_memory_utilization={cfg.gpu_memory_utilization} budget / {per_token * 1024 / 2**30:.2f} GiB per 1024 "
        f"prompt-logprob tokens (vocab {vocab_size}), 10% slack, clamped to [256, 16384]"
    )
    return n, why


CAPTURE_ATTR = "vpmoe_prompt_logprob_chunks"  # on vLLM's FlatLogprobs: [(token_ids, logprobs, ranks), ...]
CAPTURE_VLLM_VERSION = "0.32.0"  # the vLLM whose internals the capture was written against


def _capture_error(vllm_version: str, what: str) -> TeacherError:
    return TeacherError(
        f"vLLM {vllm_version}: {what}. The prompt-logprob capture was written against vLLM "
        f"{CAPTURE_VLLM_VERSION} (vllm/v1/engine/logprobs.py LogprobsProcessor._update_prompt_logprobs); "
        "update install_prompt_logprob_capture in vpmoe/teacher/engine.py for this vLLM"
    )


def install_prompt_logprob_capture() -> None:
    """Wrap vLLM's `LogprobsProcessor._update_prompt_logprobs` to also keep its tensors (module docstring).

    Idempotent. Raises `TeacherError` if the vLLM internals it relies on are not as expected."""
    import vllm
    from vllm.logprobs import FlatLogprobs
    from vllm.v1.engine import logprobs as engine_logprobs
    from vllm.v1.outputs import LogprobsTensors

    version = vllm.__version__
    cls = getattr(engine_logprobs, "LogprobsProcessor", None)
    original = getattr(cls, "_update_prompt_logprobs", None)
    if original is None:
        raise _capture_error(
            version, "vllm.v1.engine.logprobs.LogprobsProcessor._update_prompt_logprobs is missing"
        )
    if getattr(original, "_vpmoe_capture", False):
        return
    params = list(inspect.signature(original).parameters)
    if params != ["self", "prompt_logprobs_tensors"]:
        raise _capture_error(
            version, f"LogprobsProcessor._update_prompt_logprobs{tuple(params)} has another signature"
        )
    if LogprobsTensors._fields[:3] != ("logprob_token_ids", "logprobs", "selected_token_ranks"):
        raise _capture_error(version, f"LogprobsTensors fields are {LogprobsTensors._fields}")
    probe = FlatLogprobs()
    try:
        setattr(probe, CAPTURE_ATTR, [])
    except AttributeError:
        raise _capture_error(version, "FlatLogprobs takes no attributes") from None
    if not all(hasattr(probe, a) for a in ("start_indices", "end_indices", "token_ids")):
        raise _capture_error(version, "FlatLogprobs lacks start_indices/end_indices/token_ids")

    @functools.wraps(original)
    def update_prompt_logprobs(self, prompt_logprobs_tensors):
        flat = self.prompt_logprobs
        if not isinstance(flat, FlatLogprobs):  # not a scorer's request (flat_logprobs=False): vLLM's own
            original(self, prompt_logprobs_tensors)
            return
        flat.__dict__.setdefault(CAPTURE_ATTR, []).append(tensors_to_numpy(prompt_logprobs_tensors))
        # vLLM's lists get the actual token's column only: pythonizing the top-k costs four list appends per
        # item, ~0.02 ms a position at k=64 and ~0.3 ms at k=1024 on one host core (bench_capture.py), which
        # would cap GPU scoring at a few thousand positions/s; the scorer reads the capture, not the lists.
        ids, lps = prompt_logprobs_tensors[0], prompt_logprobs_tensors[1]
        original(self, prompt_logprobs_tensors._replace(logprob_token_ids=ids[:, :1], logprobs=lps[:, :1]))

    update_prompt_logprobs._vpmoe_capture = True
    cls._update_prompt_logprobs = update_prompt_logprobs


def tensors_to_numpy(prompt_logprobs_tensors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token ids, log-probs, ranks) of one `LogprobsTensors` chunk as numpy. Copies, not views: the
    tensors may be slices of buffers vLLM reuses (a copy costs ~0.1 us per position)."""
    return tuple(t.numpy(force=True).copy() for t in prompt_logprobs_tensors[:3])


def captured_arrays(flat, k: int) -> PromptLogprobArrays:
    """The tensors captured for one prompt's `FlatLogprobs`, concatenated and checked against it."""
    chunks = getattr(flat, CAPTURE_ATTR, None)
    entries = len(flat)
    if not chunks:
        if entries > 1:
            raise TeacherError(
                f"vLLM returned {entries} prompt-logprob entries but none were captured: "
                "install_prompt_logprob_capture() was not applied before scoring"
            )
        empty = np.empty((0, k + 1))
        return PromptLogprobArrays(empty.astype(np.int32), empty.astype(np.float32), np.empty(0, np.int32))
    parts = [np.concatenate(c) if len(chunks) > 1 else c[0] for c in zip(*chunks, strict=True)]
    token_ids, logprobs, ranks = parts
    # vLLM's lists hold one item per entry after the first: the actual token, column 0 of the capture
    if (
        token_ids.shape[0] != entries - 1
        or len(flat.token_ids) != entries - 1
        or not np.array_equal(np.asarray(flat.token_ids, dtype=token_ids.dtype), token_ids[:, 0])
    ):
        raise TeacherError(
            f"captured prompt logprobs ({token_ids.shape} token ids in {len(chunks)} chunk(s)) disagree with "
            f"vLLM's FlatLogprobs ({entries} entries, {len(flat.token_ids)} items)"
        )
    return PromptLogprobArrays(token_ids, logprobs, ranks)


def engine_process_mode(on_cuda: bool) -> str:
    """Where vLLM's engine core runs; sets VLLM_ENABLE_V1_MULTIPROCESSING unless the caller already did.

    GPU: its own process (vLLM's default), so scheduling and the GPU's work overlap the front end's output
    processing, where the scorer converts and writes rows. CPU: this process, which starts in ~3 s instead
    of ~17 s (platform notes) and leaves the 2 cores to the work. The prompt-logprob capture wraps the front
    end's `LogprobsProcessor`, which runs in this process in both modes (tests/test_engine_process.py)."""
    default = "1" if on_cuda else "0"
    chosen = os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", default)
    where = "its own process (V1 multiprocessing)" if chosen == "1" else "this process"
    why = (
        "set in VLLM_ENABLE_V1_MULTIPROCESSING"
        if chosen != default
        else ("GPU default" if on_cuda else "CPU default: ~3 s start")
    )
    log.info("teacher: engine in %s (%s)", where, why)
    return chosen


class VllmTeacher:
    """vLLM engine in prompt-logprob mode. `score(list of token-id lists)` -> `PromptLogprobArrays` per prompt."""

    def __init__(self, cfg: TeacherConfig, vocab_size: int) -> None:
        import torch

        on_cuda = torch.cuda.is_available()
        self.engine_process = engine_process_mode(on_cuda)
        install_prompt_logprob_capture()  # before any request; raises if vLLM's internals moved
        from vllm import LLM, SamplingParams

        self.cfg = cfg
        self.max_num_batched_tokens, self.batching_reason = derive_max_num_batched_tokens(cfg, vocab_size)
        log.info("teacher: max_num_batched_tokens=%d (%s)", self.max_num_batched_tokens, self.batching_reason)
        model_dir = Path(cfg.model)
        self.memory = plan_memory(
            model_config=json.loads((model_dir / "config.json").read_text()),
            dtype=cfg.dtype,
            weights_bytes_stored=sum(w.stat().st_size for w in model_dir.glob("*.safetensors")),
            max_model_len=cfg.max_model_len,
            kv_cache_sequences=cfg.kv_cache_sequences,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_num_batched_tokens=self.max_num_batched_tokens,
            vocab_size=vocab_size,
            on_cuda=on_cuda,
        )
        log.info("teacher: KV cache %s", self.memory.kv_cache_source)
        if not on_cuda:
            check_cpu_fits(self.memory, host_available_bytes())
        try:
            self.llm = LLM(
                model=cfg.model,
                skip_tokenizer_init=True,
                dtype=cfg.dtype,
                tensor_parallel_size=cfg.tensor_parallel_size,
                gpu_memory_utilization=cfg.gpu_memory_utilization,
                kv_cache_memory_bytes=self.memory.kv_cache_bytes,
                max_model_len=cfg.max_model_len,
                max_num_batched_tokens=self.max_num_batched_tokens,
                max_logprobs=cfg.k,
                logprobs_mode="raw_logprobs",
                enforce_eager=cfg.enforce_eager,
                seed=cfg.seed,
                enable_prefix_caching=False,  # prompt-logprob requests skip it anyway
                use_tqdm_on_load=False,  # the scorer's own progress bar is the one shown
            )
        except ValueError as e:
            # vLLM's memory refusals ("Available memory on node ...", "KV cache is needed, which is larger
            # than the available KV cache memory") as one error naming our keys, not its traceback.
            if "memory" not in str(e).lower():
                raise
            raise TeacherMemoryError(
                f"vLLM refused to start the teacher: {e} -- KV cache {self.memory.kv_cache_source}. "
                "Change teacher.kv_cache_sequences or teacher.max_model_len (CPU), "
                "teacher.gpu_memory_utilization (GPU), or teacher.max_num_batched_tokens"
            ) from None
        self.sampling = SamplingParams(
            max_tokens=1, prompt_logprobs=cfg.k, flat_logprobs=True, detokenize=False
        )

    def score(self, prompts: list[list[int]]) -> list[PromptLogprobArrays]:
        from vllm.inputs import TokensPrompt

        outs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], self.sampling, use_tqdm=False
        )
        return [captured_arrays(o.prompt_logprobs, self.cfg.k) for o in outs]

    def close(self) -> None:
        """Stop the engine now (its own process, ZMQ sockets and threads under V1 multiprocessing), not at
        interpreter exit: left to exit-time teardown, vLLM's threads could be destroyed while still
        joinable, and a run that had committed everything would die with SIGABRT ("terminate called
        without an active exception") and a failing exit status. Idempotent."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()

    def __enter__(self) -> VllmTeacher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def settings(self) -> dict:
        return {
            **asdict(self.cfg),
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "kv_cache_memory_bytes": self.memory.kv_cache_bytes,
        }
