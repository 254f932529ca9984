"""Training checkpoints: megatron `dist_checkpointing` for model + optimizer, plus RNG, loader position and
provenance; written atomically, marked complete, the last N kept, resumed from the newest complete one.

Layout (`<run_dir>/checkpoints/`):
    step_00000100/                  one complete checkpoint (the name is the number of optimizer steps done)
        <dist_checkpointing files>  model + optimizer, sharded by megatron (any parallel layout can load it)
        rng/rank_00000.pt           this rank's RNG states (python, numpy, torch, cuda, megatron's tracker)
        meta.json                   step, loader position, provenance (git sha, config + hash, tokenizer,
                                    dataset manifest hash, teacher store id)
        complete.json               the marker, written last
    .tmp-step_00000200/             a checkpoint being written (or debris of a crash; removed at startup)

Atomicity: rank 0 creates `.tmp-step_N/` and holds it locked (flock) while every rank writes into it; after
a barrier rank 0 writes `meta.json`, then the marker, then commits the directory as `step_N/` with the one
commit helper (vpmoe/utils/atomic.py: fsync of every file, one `rename`, atomic on POSIX, fsync of the
parent). A reader only considers `step_*` directories holding the marker, so a kill at any point leaves
either a complete checkpoint or debris that is never loaded; debris is removed at startup unless its lock
shows a live writer (another run sharing the run_dir), which is an error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vpmoe.utils.atomic import commit_directory, lock_existing, remove_if_stale

log = logging.getLogger(__name__)

MARKER = "complete.json"
META = "meta.json"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


class CheckpointError(RuntimeError):
    pass


@dataclass(kw_only=True)
class CheckpointConfig:
    interval: int = 100  # save every `interval` optimizer steps (and at the last step); 0 = only at the end
    keep_last: int = 3  # complete checkpoints kept (older ones deleted after a newer one is complete)
    resume: bool = True  # resume from the newest complete checkpoint in <run_dir>/checkpoints, if any

    def __post_init__(self) -> None:
        if self.interval < 0:
            raise ValueError(f"checkpoint.interval must be >= 0, got {self.interval}")
        if self.keep_last < 1:
            raise ValueError(f"checkpoint.keep_last must be >= 1, got {self.keep_last}")


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def complete_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / MARKER).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(root: str | Path) -> Path | None:
    done = complete_checkpoints(root)
    return done[-1][1] if done else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory / checkpoints root (-> its newest complete checkpoint)."""
    path = Path(path)
    if (path / MARKER).is_file():
        return path
    for root in (path / "checkpoints", path):
        latest = latest_checkpoint(root)
        if latest is not None:
            return latest
    if _STEP_DIR.match(path.name) and path.is_dir():
        raise CheckpointError(f"{path}: no {MARKER}; the checkpoint is incomplete (interrupted while saving)")
    raise CheckpointError(f"{path}: no complete checkpoint here (looked for step_*/{MARKER})")


def read_meta(ckpt: str | Path) -> dict:
    path = Path(ckpt) / META
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; not a vpmoe training checkpoint")
    return json.loads(path.read_text())


# --- RNG -------------------------------------------------------------------------------------------------


def rng_state() -> dict:
    from megatron.core import tensor_parallel

    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "megatron_tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    from megatron.core import tensor_parallel

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["megatron_tracker"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# --- save / load ------------------------------------------------------------------------------------------


# megatron's distributed optimizer state in its canonical per-parameter form (gathered on data-parallel rank 0
# at save): the default, 'fully_sharded_model_space', writes flattened ShardedTensors that megatron-core 0.19.2's
# own dist_checkpointing refuses ("ShardedTensor.flattened_range is not supported", seen on the H200), and
# 'dp_reshardable' (Megatron-LM's default) reshards only over data parallelism. The canonical form resumes
# under any layout, like the non-distributed optimizer's state, at the cost of the gather.
DISTRIBUTED_OPTIMIZER_FORMAT = {"distrib_optim_sharding_type": "fully_reshardable"}


def _distributed_optimizers(opt) -> list:
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    from vpmoe.train.optim import megatron_optimizers

    return [o for o in megatron_optimizers(opt) if isinstance(o, DistributedOptimizer)]


@contextlib.contextmanager
def _torch_adamw_step_kept():
    """Work around megatron-core 0.19.2 loading a distributed optimizer over torch's AdamW (no TE / Apex):
    `load_state_dict` first gives every parameter's state a `step` tensor (from the param groups), then
    `_set_main_param_and_optimizer_states` copies each tensor of the state from the checkpoint's, which
    has no `step` (megatron saves it in the param groups): KeyError 'step' (seen on the H200). The step is
    already loaded, so it is marked as nothing to copy (megatron skips non-tensor entries)."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    original = DistributedOptimizer._set_main_param_and_optimizer_states

    def keep_step(self, model_param, tensors):
        return original(self, model_param, {"step": None, **tensors})

    DistributedOptimizer._set_main_param_and_optimizer_states = keep_step
    try:
        yield
    finally:
        DistributedOptimizer._set_main_param_and_optimizer_states = original


def _sharded_state(model, opt, *, is_loading: bool) -> dict:
    sharded = {"model": model.sharded_state_dict()}
    dist_opts = _distributed_optimizers(opt)
    if is_loading:
        for o in dist_opts:
            if o.optimizer is not None and not o.optimizer.state:
                # A fresh optimizer has no state, and megatron's loading path reads its `step` first
                # (DistributedOptimizer.state_dict asserts one step value without TE/Apex). One step on zero
                # grads creates every state in place, as megatron does for its FSDP format; the load below
                # overwrites all of it (moments, step and the fp32 main params).
                o._init_optimizer_states_with_dummy_values()
    kw = {"metadata": DISTRIBUTED_OPTIMIZER_FORMAT} if dist_opts else {}
    sharded["optimizer"] = opt.sharded_state_dict(sharded, is_loading=is_loading, **kw)
    return sharded


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _busy(path: Path) -> CheckpointError:
    return CheckpointError(f"{path} is locked by a live process: another run is saving into this run_dir")


def clean_debris(root: str | Path) -> None:
    """Remove `.tmp-*` directories left by an interrupted save (rank 0, before training)."""
    root = Path(root)
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".tmp-"):
                log.warning("checkpoint: removing incomplete %s (interrupted save)", p)
                if not remove_if_stale(p):
                    raise _busy(p)


def save_checkpoint(run_dir: str | Path, step: int, model, opt, *, meta: dict, keep_last: int) -> Path:
    """Collective: every rank calls it. Returns the complete checkpoint's path."""
    from megatron.core import dist_checkpointing

    root = checkpoint_root(run_dir)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{final.name}"
    held = None
    if _rank() == 0:
        if final.exists():
            raise CheckpointError(f"{final} already exists: two runs share this run_dir?")
        if not remove_if_stale(tmp):
            raise _busy(tmp)
        tmp.mkdir(parents=True)
        held = lock_existing(tmp)  # released after the commit; proves to cleaners that we are alive
        if held is None:
            raise _busy(tmp)
    _barrier()
    dist_checkpointing.save(_sharded_state(model, opt, is_loading=False), str(tmp))
    (tmp / "rng").mkdir(exist_ok=True)
    torch.save(rng_state(), tmp / "rng" / f"rank_{_rank():05d}.pt")
    _barrier()
    if _rank() == 0:
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        (tmp / META).write_text(json.dumps({**meta, "step": step, "world_size": world}, indent=2) + "\n")
        (tmp / MARKER).write_text(json.dumps({"step": step}) + "\n")
        try:
            commit_directory(tmp, final)
        finally:
            held.close()
        for _, old in complete_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old)
    _barrier()
    return final


def load_model_and_optimizer(ckpt: str | Path, model, opt) -> None:
    """Collective. Loads model (+ optimizer state when `opt` is given) in place."""
    from megatron.core import dist_checkpointing

    ckpt = Path(ckpt)
    if opt is None:
        loaded = dist_checkpointing.load({"model": model.sharded_state_dict()}, str(ckpt))
        model.load_state_dict(loaded["model"])
        return
    loaded = dist_checkpointing.load(_sharded_state(model, opt, is_loading=True), str(ckpt))
    model.load_state_dict(loaded["model"])
    with _torch_adamw_step_kept():
        opt.load_state_dict(loaded["optimizer"])
    # The loaded param groups carry the flags they were saved with (a checkpoint from before the fused
    # AdamW would switch it back to torch's foreach path): fused again, its `step` states on the device.
    from vpmoe.train.optim import use_fused_adamw

    use_fused_adamw(opt)


def restore_rng(ckpt: str | Path) -> bool:
    """This rank's RNG states from the checkpoint. False (and a warning) when the world size changed."""
    path = Path(ckpt) / "rng" / f"rank_{_rank():05d}.pt"
    meta = read_meta(ckpt)
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if meta.get("world_size") != world or not path.is_file():
        log.warning(
            "checkpoint: saved with world size %s, resumed with %s: RNG states NOT restored (data order and "
            "weights are; only dropout streams differ, and dropout is 0 in every shipped config)",
            meta.get("world_size"),
            world,
        )
        return False
    set_rng_state(torch.load(path, weights_only=False))
    return True
