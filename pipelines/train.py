"""Train the vpMoE student by KD from the cached teacher: `python -m pipelines.train`.

    python -m pipelines.train dataset=<prepared dir> store=<teacher store dir> run_dir=<dir> model=tiny \
        [experiment=cpu_debug] [loss.weights.reasoning=0.5] ...
    torchrun --nproc-per-node 8 -m pipelines.train ... run_dir=<shared dir>      (data/expert parallel)
    python -m pipelines.train -m ... loss.weights.reasoning=0.5,1.0 loss.weights.final=1.0,2.0     (sweep)

Compose, convert the slices to their dataclasses, validate, run (vpmoe/train/trainer.py). docs/training.md.
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pipelines._console import route_console, stage_log_file
from pipelines._hydra import apply_storage, require, to_container

log = logging.getLogger("vpmoe.train")


def build_spec(cfg: DictConfig, run_dir: str):
    """The typed run spec (`RunSpec`) from a composed config (also used by tests and pipelines.evaluate)."""
    # Imported here, not at module top: megatron and Triton warn at import, and main() routes those
    # to the run's log file first (pipelines/_console.py).
    from vpmoe.model.build import ParallelConfig
    from vpmoe.model.config import StudentConfig
    from vpmoe.train.checkpoint import CheckpointConfig
    from vpmoe.train.data import DataConfig
    from vpmoe.train.loss import LossConfig
    from vpmoe.train.optim import OptimConfig
    from vpmoe.train.trainer import RunSpec, TrainConfig

    dataset, store = str(require(cfg, "dataset")), str(require(cfg, "store"))
    try:
        spec = RunSpec(
            dataset=dataset,
            store=store,
            run_dir=run_dir,
            model=StudentConfig(**to_container(cfg, "model")),
            parallel=ParallelConfig(**to_container(cfg, "parallel")),
            data=DataConfig(**to_container(cfg, "data")),
            loss=LossConfig(**to_container(cfg, "loss")),
            optim=OptimConfig(**to_container(cfg, "optim")),
            checkpoint=CheckpointConfig(**to_container(cfg, "checkpoint")),
            train=TrainConfig(**to_container(cfg, "train")),
            config={
                k: to_container(cfg, k) if OmegaConf.is_dict(cfg[k]) else cfg[k]
                for k in cfg
                if k not in ("hydra", "verbose")
            },
        )
    except (TypeError, ValueError) as e:
        raise SystemExit(f"invalid config: {e}") from e
    spec.config["run_dir"] = run_dir
    return spec


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # megatron logs every parameter's bucket at INFO when it builds DDP; its warnings still show.
    logging.getLogger("megatron").setLevel(logging.WARNING)
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = hc.runtime.output_dir if multirun else str(cfg.run_dir)
    apply_storage(cfg)
    route_console(stage_log_file("train", run_dir), verbose=cfg.verbose)
    from vpmoe.data.manifest import ManifestError
    from vpmoe.teacher.store import StoreError
    from vpmoe.train.checkpoint import CheckpointError
    from vpmoe.train.trainer import NonFiniteError, run_training

    spec = build_spec(cfg, run_dir)
    try:
        result = run_training(spec)
    except (ManifestError, StoreError, CheckpointError, NonFiniteError) as e:
        log.error("%s", e)
        sys.exit(1)
    if int(os.environ.get("RANK", "0")) == 0 and result["eval"] is not None:
        e = result["eval"]
        print(f"run_dir={run_dir}")
        print(f"final eval (step {e['step']}): kl {e['kl']:.4f} ce {e['ce']:.4f} top1 {e['top1']:.3f}")


def _torchrun_guard() -> None:
    """Under torchrun every rank composes the config: they must agree on the run dir (so it is required
    on the command line) and only rank 0 writes Hydra's files."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    args = sys.argv[1:]
    if any(a in ("-m", "--multirun") for a in args):
        raise SystemExit("a multirun cannot be launched under torchrun: launch one torchrun per setting")
    if not any(a.startswith("run_dir=") for a in args):
        raise SystemExit("under torchrun pass run_dir=<dir> explicitly: every rank must share one run dir")
    if int(os.environ.get("RANK", "0")) != 0:
        sys.argv.append("hydra.output_subdir=null")


if __name__ == "__main__":
    _torchrun_guard()
    main()
