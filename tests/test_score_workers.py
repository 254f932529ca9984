"""Two scoring workers, one killed mid-shard and rerun (the scheduler's retry): the store is byte-identical,
file for file, to the one-worker run's (issue 17)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, cli_env, run_module, score_args

from vpmoe.teacher.store import MARKER_SUFFIX, SHARDS


def store_files(store: Path) -> dict[str, bytes]:
    """Every file of a teacher store by relative path; the shard-health report's folder and the stages' log
    files (a report run on the store logs into <store>/logs) are not the store's data."""
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.relative_to(store).parts[0] not in ("report", "logs")
    }


def test_killed_worker_rerun_gives_the_one_worker_store(tmp_path, small_dataset, tiny_teacher, scored_store):
    out = tmp_path / "store"
    store = out / scored_store.relative_to(scored_store.parents[1])

    def args(w: int) -> list[str]:
        return score_args(small_dataset, tiny_teacher, out, f"score.worker={w}", "score.num_workers=2")

    res = run_module("pipelines.score", *args(1))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    mine = sorted(p.name for p in (store / SHARDS).glob(f"*{MARKER_SUFFIX}"))
    # Worker 0, killed once its first shard is committed and its next one is being written.
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.score", *args(0)], cwd=REPO, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 600
    while time.time() < deadline:
        markers = {p.name for p in (store / SHARDS).glob(f"*{MARKER_SUFFIX}")} - set(mine)
        tmps = [p for p in (store / SHARDS).glob(".*tmp*")]
        if markers and tmps:
            break
        assert proc.poll() is None, "worker 0 finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    res = run_module("pipelines.score", *args(0))  # the retry
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "1 already committed" in res.stdout
    ours, reference = store_files(store), store_files(scored_store)
    assert ours.keys() == reference.keys(), sorted(ours.keys() ^ reference.keys())
    for name in reference:
        assert ours[name] == reference[name], name
