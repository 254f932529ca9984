"""The training loop end to end on the tiny student and the real tiny teacher store (CPU):
the loss falls; a run stopped at max_steps and resumed, and a run SIGKILLed and rerun, reproduce the
uninterrupted run's metrics step for step; the standalone eval of a checkpoint matches the run's own;
the checkpoint layout (marker, keep-last, provenance) and the resume guard (config change refused); the
standalone eval against a teacher reference (the KL to the teacher's full distribution)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli_env, run_module
from hydra import compose, initialize_config_dir

from pipelines.train import build_spec
from vpmoe.train.checkpoint import MARKER, CheckpointError, complete_checkpoints, read_meta
from vpmoe.train.evaluate import evaluate_checkpoint
from vpmoe.train.metrics import read_metrics
from vpmoe.train.trainer import run_training

REPO = Path(__file__).resolve().parents[1]
STEPS = 4
# Two sequences per step (one per micro-batch), a high LR: the tiny student moves visibly in 4 steps.
OVERRIDES = [
    "experiment=cpu_debug",
    f"train.max_steps={STEPS}",
    "train.eval_interval=2",
    "data.global_batch_size=2",
    "data.micro_batch_size=1",
    "data.num_workers=0",
    "data.eval_fraction=0.2",
    "data.eval_max_samples=2",
    "optim.warmup_steps=1",
    f"optim.decay_steps={STEPS}",
    "optim.lr=1e-2",
    "optim.min_lr=1e-3",
    "checkpoint.interval=2",
    "checkpoint.keep_last=1",
]


def _free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def compose_train(dataset, store, *overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"dataset={dataset}", f"store={store}", *OVERRIDES, *overrides])


def train(run_dir: Path, dataset, store, *overrides) -> dict:
    cfg = compose_train(dataset, store, *overrides)
    os.environ.update(
        RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=_free_port()
    )
    return run_training(build_spec(cfg, str(run_dir)))


def curve(run_dir: Path) -> list[tuple]:
    keys = ("step", "loss", "kl", "ce", "grad_norm", "lr", "top1", "aux_loss")
    return [tuple(r[k] for k in keys) for r in read_metrics(run_dir / "metrics.jsonl", "train")]


def evals(run_dir: Path) -> list[tuple]:
    return [(r["step"], r["kl"], r["ce"], r["top1"]) for r in read_metrics(run_dir / "metrics.jsonl", "eval")]


def tensorboard_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one scalar as TensorBoard's own reader sees the run dir (purged steps dropped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def assert_same_curve(a: list[tuple], b: list[tuple]) -> None:
    assert [x[0] for x in a] == [x[0] for x in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra == pytest.approx(rb, rel=1e-6, abs=1e-9), (ra, rb)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, small_dataset, scored_store):
    run_dir = tmp_path_factory.mktemp("reference")
    result = train(run_dir, small_dataset, scored_store)
    return run_dir, result


def test_loss_falls_and_outputs(reference_run):
    run_dir, result = reference_run
    rows = read_metrics(run_dir / "metrics.jsonl", "train")
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert rows[-1]["kl"] < rows[0]["kl"] - 0.3, [r["kl"] for r in rows]
    ev = evals(run_dir)
    assert [e[0] for e in ev] == [0, 2, 4] and ev[2][1] < ev[1][1] < ev[0][1], ev
    for r in rows:  # every figure of the contract is there and sane
        assert 0 < r["teacher_mass"] <= 1 and 0 <= r["student_mass"] <= 1 and 0 <= r["top1"] <= 1
        assert 0 <= r["padding_fraction"] < 1 and 0 <= r["data_wait_fraction"] < 1
        assert r["tokens_reasoning"] > 0 and r["tokens_final"] > 0 and r["aux_loss"] > 0
        assert r["loss"] == pytest.approx(r["loss_reasoning"] + r["loss_final"] + r["aux_loss"], rel=1e-6)
    assert result["eval"]["step"] == STEPS
    assert json.loads((run_dir / "eval.json").read_text())["kl"] == result["eval"]["kl"]
    # TensorBoard event files beside metrics.jsonl carry the same scalars
    for kind, tag in (("train", "kl"), ("train", "loss"), ("eval", "kl"), ("eval", "top1")):
        want = [(r["step"], r[tag]) for r in read_metrics(run_dir / "metrics.jsonl", kind)]
        got = tensorboard_scalars(run_dir, f"{kind}/{tag}")
        assert [g[0] for g in got] == [w[0] for w in want], (kind, tag)
        assert [g[1] for g in got] == pytest.approx([w[1] for w in want], rel=1e-6), (
            kind,
            tag,
        )  # fp32 events
    # checkpoints: keep_last=1 leaves only the newest, complete, with provenance
    done = complete_checkpoints(run_dir / "checkpoints")
    assert [s for s, _ in done] == [STEPS]
    meta = read_meta(done[0][1])
    prov = meta["provenance"]
    assert meta["loader"] == {"epoch": meta["loader"]["epoch"], "step": meta["loader"]["step"], "seed": 1234}
    assert len(prov["git"]["sha"]) == 40 and len(prov["config_hash"]) == 64
    assert prov["dataset"]["manifest_hash"] and prov["teacher_store"]["teacher_id"]
    assert prov["tokenizer"] and prov["config"]["loss"]["weights"] == {"reasoning": 1.0, "final": 1.0}
    assert (done[0][1] / "rng" / "rank_00000.pt").is_file()


def test_stop_and_resume_reproduces_the_curve(reference_run, tmp_path, small_dataset, scored_store):
    ref_dir, _ = reference_run
    train(tmp_path, small_dataset, scored_store, "train.max_steps=2")
    assert [s for s, _ in complete_checkpoints(tmp_path / "checkpoints")] == [2]
    train(tmp_path, small_dataset, scored_store)  # resumes from step 2
    assert_same_curve(curve(tmp_path), curve(ref_dir))
    assert evals(tmp_path) == pytest.approx(evals(ref_dir), rel=1e-6)
    # The standalone eval of the final checkpoint is the run's own final eval.
    ev = evaluate_checkpoint(str(tmp_path))
    ref = read_metrics(ref_dir / "metrics.jsonl", "eval")[-1]
    for key in ("kl_reasoning", "kl_final", "ce_reasoning", "ce_final", "top1_reasoning", "top1_final"):
        assert ev[key] == pytest.approx(ref[key], rel=1e-6), key
    # A changed config is refused on resume (naming the key); max_steps may change.
    with pytest.raises(CheckpointError, match=r"loss\.weights\.final"):
        train(tmp_path, small_dataset, scored_store, "loss.weights.final=2.0")


def test_sigkill_and_rerun_reproduces_the_curve(reference_run, tmp_path, small_dataset, scored_store):
    ref_dir, _ = reference_run
    args = [sys.executable, "-m", "pipelines.train", f"dataset={small_dataset}", f"store={scored_store}"]
    args += [f"run_dir={tmp_path}", *OVERRIDES]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = tmp_path / "checkpoints" / "step_00000002" / MARKER
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "the first checkpoint never appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(r["step"] for r in read_metrics(tmp_path / "metrics.jsonl", "train"))
    assert killed_at < STEPS, "killed too late to test anything"
    res = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    console = res.stdout + res.stderr
    assert "resumed from" in console
    assert_same_curve(curve(tmp_path), curve(ref_dir))
    # TensorBoard drops what the killed run wrote past its checkpoint: each step once, the resumed values
    tb = tensorboard_scalars(tmp_path, "train/kl")
    assert [t[0] for t in tb] == [c[0] for c in curve(ref_dir)]
    assert [t[1] for t in tb] == pytest.approx([c[2] for c in curve(ref_dir)], rel=1e-6)
    # The console is ours: step lines, not megatron's or torch's warnings (those are in the run's log file)
    assert f"step {STEPS}/{STEPS} | loss" in console
    for noise in ("UserWarning", "FutureWarning", "DeprecationWarning", "Traceback"):
        assert noise not in console, (noise, console[-3000:])
    assert (tmp_path / "logs" / "train.log").is_file()


def test_non_finite_step_stops_the_run_before_the_update(tmp_path, small_dataset, scored_store, monkeypatch):
    from vpmoe.train import data
    from vpmoe.train.trainer import NonFiniteError

    unpack = data.unpack_micro_batch

    def poisoned(packed):
        batch = unpack(packed)
        batch["teacher_logprobs"][batch["labels"] != -100] = float("nan")
        return batch

    # TrainLoader unpacks every training micro-batch through this module-level function, in this process.
    monkeypatch.setattr(data, "unpack_micro_batch", poisoned)
    # The loss head rejects non-finite teacher log-probs itself (tests/test_sparse_kl.py); switch that
    # off here so the NaN reaches the gradients and the trainer's own guard is what is tested.
    import kernels.sparse_kl_head as head

    monkeypatch.setattr(head, "_validate_ids", lambda *a, **k: None)
    with pytest.raises(NonFiniteError, match=r"step 1: .*non-finite gradients: True"):
        train(tmp_path, small_dataset, scored_store, "train.max_steps=1")
    assert complete_checkpoints(tmp_path / "checkpoints") == []
    assert read_metrics(tmp_path / "metrics.jsonl", "train") == []  # only the step-0 eval


def test_standalone_eval_against_a_teacher_reference(
    reference_run, tmp_path, small_dataset, scored_store, tiny_teacher
):
    """The study's reference builder runs the teacher's whole softmax with transformers, checked against the
    store vLLM wrote (its log-probs at the stored top-k ids); pipelines.evaluate then adds the KL to the
    teacher's full distribution, at least the KL to the store's top-k with the bucket (data processing)."""
    ref = tmp_path / "ref.npz"
    cmd = [
        sys.executable, "benchmarks/quality/teacher_reference.py", "--teacher", str(tiny_teacher),
        "--dataset", str(small_dataset), "--store", str(scored_store), "--out", str(ref),
        "--eval-fraction", "0.2", "--draws", "32",
    ]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    summary = json.loads(res.stdout[res.stdout.index("{") :])
    assert 0 <= summary["store_logprob_abs_diff_max"] < 0.05 and summary["positions"] > 0

    run_dir, _ = reference_run
    out = tmp_path / "eval.json"
    res = run_module("pipelines.evaluate", f"checkpoint={run_dir}", f"reference={ref}", f"output={out}")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "full-distribution kl" in res.stdout and "ece" in res.stdout
    ev = json.loads(out.read_text())
    assert ev["reference_positions"] == ev["tokens"] > 0  # every evaluated position found its reference row
    assert ev["kl_full_se"] > 0 and ev["kl_full"] + 4 * ev["kl_full_se"] >= ev["kl"], ev
    assert 0 <= ev["ece"] <= 1 and 0 <= ev["top1_full"] <= 1
    assert sum(b[0] for b in ev["calibration_bins"]) == ev["tokens"]

    # A reference of another dataset is refused before the model is built, naming the file.
    from vpmoe.train.teacher_reference import ReferenceError, TeacherReference, write_reference

    other = tmp_path / "other.npz"
    r = TeacherReference.load(str(ref))
    arrays = {a: getattr(r, a) for a in ("shard", "row", "crc", "offsets", "positions", "draws")}
    arrays.update(draw_logprobs=r.draw_logprobs, entropy=r.entropy, argmax=r.argmax)
    write_reference(other, manifest_hash="0" * 64, seed=0, **arrays)
    with pytest.raises(ReferenceError, match=re.escape(f"{other}: built for dataset 0000")):
        evaluate_checkpoint(str(run_dir), reference=str(other))
