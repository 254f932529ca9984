"""Every training config composes into its dataclasses (tiny builds; small/base only compose: too large
for CPU tests), the LR schedule, the sweep summary, and a real Hydra multirun of the CLI with its summary."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from pipelines.train import build_spec
from vpmoe.train.optim import OptimConfig
from vpmoe.train.sweep import collect, write_summary

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
MODELS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))


def compose_train(*overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=["dataset=/d", "store=/s", *overrides])


@pytest.mark.parametrize("experiment", [None, *EXPERIMENTS])
@pytest.mark.parametrize("model", MODELS)
def test_every_config_composes_into_the_dataclasses(experiment, model):
    overrides = [f"experiment={experiment}"] if experiment else []
    spec = build_spec(compose_train(*overrides, f"model={model}"), "/tmp/run")
    assert spec.model.vocab_size == 201088
    assert spec.data.global_batch_size % spec.data.micro_batch_size == 0
    assert spec.config["loss"]["weights"] == {
        "reasoning": spec.loss.weights.reasoning,
        "final": spec.loss.weights.final,
    }
    json.dumps(spec.config)  # provenance must serialize


def test_cpu_debug_builds_the_tiny_student_with_ddp_and_optimizer(monkeypatch):
    import socket

    import torch

    from vpmoe.model.build import build_student, init_parallel, teardown_parallel
    from vpmoe.train.optim import build_ddp_and_optimizer

    spec = build_spec(compose_train("experiment=cpu_debug"), "/tmp/run")
    assert spec.model.num_layers == 2 and spec.train.device == "cpu" and spec.loss.impl == "torch"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in dict(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)).items():
        monkeypatch.setenv(k, v)
    init_parallel(spec.parallel, device=torch.device("cpu"))
    try:
        model = build_student(spec.model, device=torch.device("cpu"), seed=spec.train.seed)
        _, opt = build_ddp_and_optimizer(model, spec.optim, device=torch.device("cpu"))
        assert opt.param_groups
    finally:
        teardown_parallel()


def test_invalid_values_are_refused_naming_the_key():
    with pytest.raises(SystemExit, match=r"loss\.impl"):
        build_spec(compose_train("loss.impl=cuda"), "/tmp/run")
    with pytest.raises(SystemExit, match="optim"):
        build_spec(compose_train("optim.min_lr=1.0"), "/tmp/run")


def test_lr_schedule():
    cfg = OptimConfig(lr=1.0, min_lr=0.1, warmup_steps=10, decay_steps=110)
    assert cfg.lr_at(1) == pytest.approx(0.1) and cfg.lr_at(10) == pytest.approx(1.0)
    assert cfg.lr_at(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert cfg.lr_at(110) == pytest.approx(0.1) and cfg.lr_at(500) == pytest.approx(0.1)
    assert all(cfg.lr_at(s + 1) <= cfg.lr_at(s) for s in range(10, 200))


def test_sweep_summary_table_and_plot(tmp_path):
    for i, (r, f) in enumerate([(0.5, 1.0), (1.0, 1.0), (0.5, 2.0)]):
        job = tmp_path / f"{i}-job"
        (job / ".hydra").mkdir(parents=True)
        overrides = ["dataset=/d", f"loss.weights.reasoning={r}", f"loss.weights.final={f}"]
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        ev = {
            "step": 3,
            "loss": r + f,
            **{f"{m}_{s}": i + 0.1 for m in ("kl", "ce", "top1") for s in ("reasoning", "final")},
        }
        (job / "eval.json").write_text(json.dumps(ev))
    (tmp_path / "3-failed").mkdir()  # a job that died before its final eval: left out
    rows = collect(tmp_path)
    assert [r["setting"] for r in rows] == [
        "loss.weights.final=1.0,loss.weights.reasoning=0.5",
        "loss.weights.final=1.0,loss.weights.reasoning=1.0",
        "loss.weights.final=2.0,loss.weights.reasoning=0.5",
    ]
    paths = write_summary(tmp_path)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert "loss.weights.reasoning=1.0" in (tmp_path / "summary.md").read_text()


def test_multirun_sweep_one_dir_per_job_and_summary(tmp_path, small_dataset, scored_store):
    sweep = tmp_path / "sweep"
    args = [
        sys.executable, "-m", "pipelines.train", "-m", f"dataset={small_dataset}", f"store={scored_store}",
        "experiment=cpu_debug", "train.max_steps=1", "data.global_batch_size=1", "data.micro_batch_size=1",
        "data.num_workers=0", "data.eval_fraction=0.2", "data.eval_max_samples=1", "checkpoint.interval=0", "train.eval_interval=0",
        f"hydra.sweep.dir={sweep}", "loss.weights.reasoning=0.5,1.0",
    ]  # fmt: skip
    env = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT", "LOCAL_RANK")
    }
    res = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2 and all(
        (j / "eval.json").is_file() and (j / "metrics.jsonl").is_file() for j in jobs
    )
    assert all((j / "checkpoints" / "step_00000001" / "complete.json").is_file() for j in jobs)
    table = (sweep / "summary.md").read_text()
    assert "loss.weights.reasoning=0.5" in table and "loss.weights.reasoning=1.0" in table
    assert (sweep / "summary.png").stat().st_size > 0


def test_foreach_optimizer_helpers_match_megatrons_and_accept_empty_lists():
    """The foreach drop-ins for megatron's local norm / scale helpers (vpmoe/train/optim.py): the same
    values as the per-tensor loops, and nothing to do for empty lists, as megatron's helpers (torch's
    foreach ops refuse them)."""
    import torch

    from vpmoe.train.optim import _foreach_l2_norm, _foreach_scale

    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(5, generator=g), torch.randn(3, 2, generator=g)]
    norm, _ = _foreach_l2_norm(0, None, [xs], False)
    expected = torch.norm(torch.stack([torch.norm(x) for x in xs]))
    torch.testing.assert_close(norm, expected.reshape(1))
    dst = [torch.zeros_like(x, dtype=torch.bfloat16) for x in xs]
    _foreach_scale(0, None, [xs, dst], 1.0)  # the main -> model param copy: a casting copy
    for a, b in zip(xs, dst, strict=True):
        assert torch.equal(b, a.to(torch.bfloat16))
    clipped = [x.clone() for x in xs]
    _foreach_scale(0, None, [clipped, clipped], 0.5)  # the clip: in place
    for a, b in zip(xs, clipped, strict=True):
        torch.testing.assert_close(b, a * 0.5)
    assert float(_foreach_l2_norm(0, None, [[]], False)[0]) == 0.0
    _foreach_scale(0, None, [[], []], 0.5)
