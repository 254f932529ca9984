"""Stages replace only their own previous output and never delete what is not theirs (issue 17): the
report's output= pointing at a directory of someone else's files is refused and left untouched; a training
run_dir (and its checkpoints/ folder) holding foreign files keeps them through a run that prunes its own
old checkpoints. (Prepare's overwrite: tests/test_prepare.py; the scorer's debris: tests/test_atomic.py.)"""

from __future__ import annotations

import os

from conftest import RANDOM_TEACHER_REPORT, run_module

from vpmoe.train.checkpoint import complete_checkpoints


def test_report_refuses_a_foreign_output_directory(tmp_path, scored_store, small_dataset):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("not yours")
    res = run_module(
        "pipelines.report",
        f"store={scored_store}",
        f"dataset={small_dataset}",
        f"output={out}",
        RANDOM_TEACHER_REPORT,
    )
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    assert str(out) in res.stdout + res.stderr and "Traceback" not in res.stdout + res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "not yours"
    # its own previous output is replaced
    ours = tmp_path / "ours"
    for _ in range(2):
        res = run_module(
            "pipelines.report",
            f"store={scored_store}",
            f"dataset={small_dataset}",
            f"output={ours}",
            RANDOM_TEACHER_REPORT,
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (ours / "report.json").is_file()


def test_training_keeps_foreign_files_in_its_run_dir(tmp_path, scored_store, small_dataset):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "notes.txt").write_text("keep")
    (run_dir / "checkpoints" / "notes.txt").write_text("keep too")
    args = [
        f"dataset={small_dataset}",
        f"store={scored_store}",
        f"run_dir={run_dir}",
        "experiment=cpu_debug",
        "train.max_steps=2",
        "train.eval_interval=0",
        "checkpoint.interval=1",
        "checkpoint.keep_last=1",
        "data.num_workers=0",
        "data.eval_max_samples=2",
    ]
    env_keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    saved = {k: os.environ.pop(k) for k in env_keys if k in os.environ}
    try:
        res = run_module("pipelines.train", *args)
    finally:
        os.environ.update(saved)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert [s for s, _ in complete_checkpoints(run_dir / "checkpoints")] == [2]  # step 1 pruned: ours
    assert (run_dir / "notes.txt").read_text() == "keep"
    assert (run_dir / "checkpoints" / "notes.txt").read_text() == "keep too"
