"""The narrow adaptations that let megatron-core 0.19.2 train on CPU (gloo). Never applied on GPU.

megatron-core assumes CUDA in a handful of places on the training path (platform notes, "megatron-core on
CPU"). `apply_cpu_adaptations()` handles each of them, and nothing else:

1. `torch.cuda.*` used as plumbing (the current device as a tensor device, streams, synchronize,
   `device='cuda'` literals in tensor factories) in the modules listed in `_PATCHED_MODULES`. Each of those
   modules gets its own stand-in for its global name `torch`: the real torch except that `torch.cuda`
   answers with the CPU device / no-op streams, and tensor factories map a CUDA device to the CPU. The
   rest of the process (and every other megatron module) keeps the real torch; a module we missed fails
   loudly with "Torch not compiled with CUDA enabled", it does not silently run differently.
2. `clip_grad_by_total_norm_fp32` asserts that grads are `torch.cuda.FloatTensor`s; the same maths without
   that assertion replaces it (`_PATCHED_FUNCTIONS`).
3. The RNG tracker: megatron forks named CUDA RNG states around dropout and expert initialization
   (`tensor_parallel/random.py` CudaRNGStatesTracker). We install a tracker with the same interface that
   keeps named CPU generator states instead, so seeded forks behave as on GPU.

Default causal masks are built on CUDA (`transformer/utils.py` get_default_causal_mask):
`vpmoe.model.build.forward_student` always passes an explicit mask instead, so no patch is needed.

Measured to run with these (tests/test_student_model.py): the model forward/backward, the allgather MoE
dispatcher under expert parallelism, Megatron DDP's grad all-reduce, Megatron's fp32 optimizer with grad
clipping, dist_checkpointing save/load, the 1F1B pipeline schedule and its p2p layer, sequence parallelism's
all-gathers and reduce-scatters with `finalize_model_grads`; world size 1 and 2 (DP=2, DP=2 x EP=2, PP=2;
TP=2 in tests/test_tensor_parallel.py). torch 2.13's
gloo runs every collective megatron uses there (`all_gather_into_tensor`, `reduce_scatter_tensor`, the
`_base` variants, with correct results): none needs an adaptation, only the CUDA device of the buffers they
write into (`tensor_parallel.mappings`, `tensor_parallel.layers`). Not covered, because the CPU path does
not use them: the alltoall dispatcher (`build.transformer_config` picks allgather on CPU),
DDP's overlapped grad reduce (CUDA streams), the distributed optimizer, the bf16 optimizer (refused on CPU).

Every patch checks that its target still exists and still contains the CUDA hard-code it works around:
after a megatron-core upgrade, `apply_cpu_adaptations()` (and tests/test_student_model.py) fail and say
which target changed, rather than patching something that is no longer there.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import types
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

_APPLIED = False


@dataclass(frozen=True)
class _ModulePatch:
    module: str
    # Source fragments that must still be in the module: the hard-codes this patch exists for.
    hard_codes: tuple[str, ...]
    why: str


# megatron-core 0.19.2; line numbers as installed (.venv/lib/python3.11/site-packages/megatron/core/...).
_PATCHED_MODULES = (
    _ModulePatch(
        "megatron.core.models.common.embeddings.rotary_pos_embedding",
        ("self.inv_freq.to(device=torch.cuda.current_device())",),
        "RotaryEmbedding.get_emb moves inv_freq to torch.cuda.current_device() on first use (line 162)",
    ),
    _ModulePatch(
        "megatron.core.transformer.moe.router",
        ("self.weight.data.to(device=torch.cuda.current_device())",),
        "Router.gating moves the router weight to torch.cuda.current_device() when it is on the CPU (line 98)",
    ),
    _ModulePatch(
        "megatron.core.utils",
        ("device=torch.cuda.current_device()", 'device="cuda"'),
        "GlobalMemoryBuffer.get_tensor (the attention matmul scratch buffer) allocates on "
        "torch.cuda.current_device() (line 715); local_multi_tensor_l2_norm (grad norm without Apex) returns "
        'a device="cuda" tensor (line 1332)',
    ),
    _ModulePatch(
        "megatron.core.tensor_parallel.mappings",
        ("device=torch.cuda.current_device()",),
        "the all-gather / reduce-scatter helpers allocate their outputs on torch.cuda.current_device() "
        "(lines 145, 180, ...): the allgather MoE dispatcher goes through them under expert parallelism",
    ),
    _ModulePatch(
        "megatron.core.tensor_parallel.layers",
        ("device=torch.cuda.current_device()",),
        "under sequence parallelism the column-parallel linears' backward allocates the reduce-scatter "
        "output of the input gradient on torch.cuda.current_device() (line 647, "
        "LinearWithGradAccumulationAndAsyncCommunication.backward)",
    ),
    _ModulePatch(
        "megatron.core.distributed.param_and_grad_buffer",
        ("device=torch.cuda.current_device()", "torch.cuda.current_stream()"),
        "DDP grad/param buffers are allocated on torch.cuda.current_device() (line 1186); the grad "
        "all-reduce waits on torch.cuda.current_stream() (line 632)",
    ),
    _ModulePatch(
        "megatron.core.optimizer.optimizer",
        ("device='cuda'",),
        "the grad-norm/found-inf helpers and the constant loss scale create device='cuda' tensors "
        "(lines 315, 1249)",
    ),
    _ModulePatch(
        "megatron.core.dist_checkpointing.strategies.filesystem_async",
        ("torch.cuda.synchronize()",),
        "dist_checkpointing.save synchronizes CUDA before handing tensors to the writer (line 248)",
    ),
    _ModulePatch(
        "megatron.core.dist_checkpointing.strategies.state_dict_saver",
        ("device='cuda'", "device=torch.cuda.current_device()"),
        "the save plan's cross-rank agreement flags are device='cuda' / current-device tensors (lines 204, 252)",
    ),
    _ModulePatch(
        "megatron.core.optimizer.clip_grads",
        ("device='cuda'",),
        "grad-norm accumulators and the overflow buffer are device='cuda' tensors (lines 96-112)",
    ),
    _ModulePatch(
        "megatron.core.pipeline_parallel.p2p_communication",
        ("device=torch.cuda.current_device()", "torch.cuda.synchronize()"),
        "pipeline stages receive activations into torch.cuda.current_device() buffers (lines 211-223, "
        "334-342) and synchronize CUDA around batched p2p (lines 263, 419)",
    ),
    _ModulePatch(
        "megatron.core.pipeline_parallel.schedules",
        ('device="cuda"',),
        'the 1F1B schedule counts tokens in a device="cuda" tensor (lines 749, 1121, 2292)',
    ),
)


def _clip_grad_by_total_norm_fp32_cpu(parameters, max_norm, total_norm, use_decoupled_grad=False):
    """megatron's `clip_grads.clip_grad_by_total_norm_fp32` without its CUDA type assertion.

    The original asserts `param.grad.type() == 'torch.cuda.FloatTensor'` (clip_grads.py line 174), which no
    CPU tensor passes, then scales every fp32 grad in place by max_norm / (total_norm + 1e-6) when that is
    below 1. Same maths here, with the dtype checked instead of the CUDA type string.
    """
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    attr = "decoupled_grad" if use_decoupled_grad else "grad"
    grads = [getattr(p, attr) for p in parameters if getattr(p, attr, None) is not None]
    for grad in grads:
        if grad.dtype != torch.float32 and not (use_decoupled_grad and grad.dtype == torch.bfloat16):
            raise TypeError(f"grad clipping expects fp32 main grads, got {grad.dtype}")
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if isinstance(clip_coeff, torch.Tensor):
        clip_coeff = clip_coeff.clamp_max(1.0)
    elif clip_coeff >= 1.0:
        return
    with torch.no_grad():
        for grad in grads:
            grad.mul_(clip_coeff)


@dataclass(frozen=True)
class _FunctionPatch:
    # Modules whose global `name` is the function (its home module and the modules that imported it).
    modules: tuple[str, ...]
    name: str
    hard_code: str
    replacement: object
    why: str


_PATCHED_FUNCTIONS = (
    _FunctionPatch(
        ("megatron.core.optimizer.clip_grads", "megatron.core.optimizer.optimizer"),
        "clip_grad_by_total_norm_fp32",
        "assert param.grad.type() == 'torch.cuda.FloatTensor'",
        _clip_grad_by_total_norm_fp32_cpu,
        "clip_grad_by_total_norm_fp32 asserts CUDA float grads (clip_grads.py line 174)",
    ),
)


class _NullStream:
    """CPU stand-in for torch.cuda.Stream: CPU ops are synchronous, so waiting is a no-op."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def wait_stream(self, stream) -> None:
        pass

    def wait_event(self, event) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def record_event(self, event=None):
        return event


_NULL_STREAM = _NullStream()


def _cpu_device(device):
    """A CUDA device spec (str, torch.device or ordinal) becomes the CPU; anything else is unchanged."""
    if isinstance(device, int) and not isinstance(device, bool):
        return torch.device("cpu")
    if isinstance(device, str) and device.startswith("cuda"):
        return torch.device("cpu")
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    return device


class _CpuCuda(types.SimpleNamespace):
    """What a patched module sees as `torch.cuda`; names not defined here come from the real torch.cuda."""

    def __getattr__(self, name):
        return getattr(torch.cuda, name)

    @staticmethod
    def current_device() -> torch.device:
        return torch.device("cpu")

    Stream = _NullStream

    @staticmethod
    def current_stream(device=None) -> _NullStream:
        return _NULL_STREAM

    @staticmethod
    def stream(stream):
        return contextlib.nullcontext()

    @staticmethod
    def synchronize(device=None) -> None:
        pass

    @staticmethod
    def empty_cache() -> None:
        pass


def _factory_on_cpu(fn):
    def wrapper(*args, **kwargs):
        if "device" in kwargs:
            kwargs["device"] = _cpu_device(kwargs["device"])
        return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = f"torch.{fn.__name__} with a CUDA device mapped to the CPU (vpmoe.model.megatron_cpu)."
    return wrapper


class _CpuTorch(types.ModuleType):
    """A patched module's `torch`: the real torch, except `.cuda` and device-taking tensor factories."""

    _FACTORIES = (
        "tensor",
        "zeros",
        "ones",
        "empty",
        "full",
        "arange",
        "zeros_like",
        "ones_like",
        "empty_like",
    )

    def __init__(self) -> None:
        super().__init__("torch")
        self.cuda = _CpuCuda()
        for name in self._FACTORIES:
            setattr(self, name, _factory_on_cpu(getattr(torch, name)))

    def __getattr__(self, name):
        return getattr(torch, name)


class CpuRNGStatesTracker:
    """megatron's CudaRNGStatesTracker interface over named CPU generator states.

    megatron forks named RNG states around dropout (`dot_product_attention.py` line 217, the embedding and
    transformer block) and around expert-parallel initialization. On CPU the named states are states of the
    CPU default generator: `fork(name)` swaps that state in, runs the block, saves it back and restores the
    caller's state, exactly what the CUDA tracker does with the CUDA generator.
    """

    def __init__(self) -> None:
        self.reset()

    def is_initialized(self) -> bool:
        return self._is_initialized

    def reset(self) -> None:
        self._is_initialized = False
        self.states_: dict[str, torch.Tensor] = {}
        self.seeds_: set[int] = set()

    def get_states(self) -> dict[str, torch.Tensor]:
        return {name: state.clone() for name, state in self.states_.items()}

    def set_states(self, states: dict[str, torch.Tensor]) -> None:
        self._is_initialized = True
        self.states_ = {name: state.clone() for name, state in states.items()}

    def add(self, name: str, seed: int) -> None:
        if seed in self.seeds_:
            raise RuntimeError(f"RNG seed {seed} already exists in the tracker")
        if name in self.states_:
            raise RuntimeError(f"RNG state {name} already exists in the tracker")
        self._is_initialized = True
        self.seeds_.add(seed)
        caller_state = torch.get_rng_state()
        torch.manual_seed(seed)
        self.states_[name] = torch.get_rng_state()
        torch.set_rng_state(caller_state)

    @contextlib.contextmanager
    def fork(self, name: str | None = None):
        from megatron.core.tensor_parallel import random as mrandom

        name = mrandom._MODEL_PARALLEL_RNG_TRACKER_NAME if name is None else name
        if name not in self.states_:
            raise RuntimeError(f"RNG state {name} is not added (call model_parallel_cuda_manual_seed first)")
        caller_state = torch.get_rng_state()
        torch.set_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(caller_state)


def check_targets() -> None:
    """Raise if any adaptation's target is gone or no longer hard-codes CUDA (a megatron-core upgrade)."""
    from megatron.core.tensor_parallel import random as mrandom

    problems = []
    for patch in _PATCHED_MODULES:
        try:
            module = importlib.import_module(patch.module)
        except ImportError as e:
            problems.append(f"{patch.module}: cannot import ({e})")
            continue
        if not isinstance(getattr(module, "torch", None), (types.ModuleType, _CpuTorch)):
            problems.append(f"{patch.module}: has no global `torch` to adapt")
            continue
        source = inspect.getsource(module)
        missing = [code for code in patch.hard_codes if code not in source]
        if missing:
            problems.append(f"{patch.module}: no longer contains {missing} ({patch.why}); revisit this patch")
    for fpatch in _PATCHED_FUNCTIONS:
        home = importlib.import_module(fpatch.modules[0])
        original = getattr(home, fpatch.name, None)
        if original is None:
            problems.append(f"{fpatch.modules[0]}.{fpatch.name} is gone ({fpatch.why})")
            continue
        if original is not fpatch.replacement and fpatch.hard_code not in inspect.getsource(original):
            problems.append(f"{fpatch.modules[0]}.{fpatch.name} no longer contains {fpatch.hard_code!r}")
        for name in fpatch.modules[1:]:
            if getattr(importlib.import_module(name), fpatch.name, None) not in (
                original,
                fpatch.replacement,
            ):
                problems.append(f"{name}.{fpatch.name} is no longer {fpatch.modules[0]}.{fpatch.name}")
    for attr in (
        "_CUDA_RNG_STATE_TRACKER",
        "_CUDA_RNG_STATE_TRACKER_INITIALIZED",
        "_MODEL_PARALLEL_RNG_TRACKER_NAME",
    ):
        if not hasattr(mrandom, attr):
            problems.append(f"megatron.core.tensor_parallel.random.{attr} is gone (RNG tracker patch)")
    if not hasattr(mrandom, "CudaRNGStatesTracker"):
        problems.append("megatron.core.tensor_parallel.random.CudaRNGStatesTracker is gone")
    else:
        theirs = {
            n for n, v in vars(mrandom.CudaRNGStatesTracker).items() if callable(v) and not n.startswith("_")
        }
        ours = {n for n, v in vars(CpuRNGStatesTracker).items() if callable(v) and not n.startswith("_")}
        if theirs - ours:
            problems.append(
                f"CudaRNGStatesTracker grew methods the CPU tracker lacks: {sorted(theirs - ours)}"
            )
    if problems:
        raise RuntimeError(
            "megatron-core no longer matches vpmoe.model.megatron_cpu (was written for 0.19.2):\n  "
            + "\n  ".join(problems)
        )


def apply_cpu_adaptations() -> None:
    """Adapt megatron-core to run on CPU. Idempotent; refuses to run where CUDA is available.

    Call it once, before building models or optimizers, in a process that trains on CPU.
    """
    global _APPLIED
    if torch.cuda.is_available():
        raise RuntimeError(
            "apply_cpu_adaptations() is for CPU-only processes; CUDA is available here, run on the GPU instead"
        )
    if _APPLIED:
        return
    check_targets()
    from megatron.core.tensor_parallel import random as mrandom

    for patch in _PATCHED_MODULES:
        module = importlib.import_module(patch.module)
        module.torch = _CpuTorch()
        log.debug("megatron_cpu: %s (%s)", patch.module, patch.why)
    for fpatch in _PATCHED_FUNCTIONS:
        for name in fpatch.modules:
            setattr(importlib.import_module(name), fpatch.name, fpatch.replacement)
        log.debug("megatron_cpu: %s (%s)", fpatch.name, fpatch.why)
    mrandom._CUDA_RNG_STATE_TRACKER = CpuRNGStatesTracker()
    mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = True
    _APPLIED = True
    log.info("megatron-core CPU adaptations applied to %d modules + RNG tracker", len(_PATCHED_MODULES))


def cpu_adaptations_applied() -> bool:
    return _APPLIED


def adapt_megatron_for(device: torch.device) -> None:
    """The one place that decides: CPU gets the adaptations, CUDA never does.

    A process whose megatron was adapted for the CPU must not then train on CUDA: the patched modules would
    put CUDA-side buffers on the CPU.
    """
    device = torch.device(device)
    if device.type == "cpu":
        apply_cpu_adaptations()
    elif device.type == "cuda":
        if _APPLIED:
            raise RuntimeError(
                "megatron-core was adapted for CPU in this process; it cannot also run on CUDA"
            )
    else:
        raise ValueError(f"megatron-core runs on cpu or cuda, not {device.type}")
