"""Issue 17: a sample whose teacher output fails validation is quarantined, not fatal to its shard; and the
scorer and the report share one definition of a valid row (vpmoe/teacher/row_checks.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import run_module, score_args

from vpmoe.teacher.quarantine import TEST_REJECT_ENV
from vpmoe.teacher.store import MARKER_SUFFIX, SHARDS, sample_ids_digest


def _first_shard_ids(dataset: Path) -> list[str]:
    from vpmoe.data.prepared import PreparedDataset

    ds = PreparedDataset(dataset)
    return pq.read_table(ds.root / ds.manifest.shards[0].name, columns=["sample_id"]).column(0).to_pylist()


@pytest.fixture(scope="module")
def quarantined_store(tmp_path_factory, small_dataset, tiny_teacher):
    """A real scoring run in which one sample's real vLLM output is made invalid (the test-only hook)."""
    ids = _first_shard_ids(small_dataset)
    bad = ids[1]
    out = tmp_path_factory.mktemp("quarantine")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TEST_REJECT_ENV, bad)  # run_module hands the test's environment to the CLI
        res = run_module(
            "pipelines.score",
            *score_args(small_dataset, tiny_teacher, out, "score.max_quarantine_fraction=0.1"),
        )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    store = Path([x for x in res.stdout.splitlines() if x.startswith("store=")][-1].removeprefix("store="))
    return store, bad, ids, res.stdout


def test_bad_sample_is_quarantined_and_its_shard_committed(quarantined_store):
    from vpmoe.teacher.quarantine import store_quarantine

    store, bad, ids, stdout = quarantined_store
    marker = json.loads((store / SHARDS / f"shard-00000{MARKER_SUFFIX}").read_text())
    (entry,) = marker["quarantined"]
    # Every row of the reversed output rises: all of the sample's positions are rejected as unsorted.
    assert entry["sample_id"] == bad and entry["positions"] > 0
    assert entry["reasons"] == {"unsorted": entry["positions"]}
    assert bad in entry["first"] and "top-k not in descending order" in entry["first"]
    kept = [s for s in ids if s != bad]
    assert marker["sequences"] == len(kept) and marker["sample_ids_sha256"] == sample_ids_digest(kept)
    assert list(store_quarantine(store)) == [bad]
    assert f"quarantined        1 of 12 samples ({bad})" in stdout, stdout[-3000:]
    assert f"{entry['positions']} rejected {{'unsorted': {entry['positions']}}}" in stdout


def test_reader_report_and_trainer_skip_the_quarantined_sample(quarantined_store, small_dataset):
    from vpmoe.report.run import ReportConfig, run_report
    from vpmoe.report.writers import markdown
    from vpmoe.teacher.store_reader import TeacherStoreReader
    from vpmoe.train.data import MicroBatchBuilder, SampleIndex

    store, bad, _, _ = quarantined_store
    reader = TeacherStoreReader(small_dataset, store)
    assert len(reader) == 11 and list(reader.quarantined) == [bad]
    with pytest.raises(KeyError, match="quarantined"):
        reader.fetch(bad)
    shard = reader.dataset.read_shard(reader.dataset.manifest.shards[0].name)
    for j, sid in enumerate(shard.sample_ids):
        if sid != bad:
            np.testing.assert_array_equal(reader.fetch(sid).positions, shard.supervised_positions(j))

    report = run_report(small_dataset, store, ReportConfig(max_target_nll_ratio=None))
    assert report.passed, report.verdict_line()
    d = report.to_dict()
    assert d["summary"]["samples_quarantined"] == 1 and list(d["quarantined"]) == [bad]
    assert "1 sample(s) quarantined" in report.verdict_line()
    assert f"| `{bad}` | `shard-00000` |" in markdown(d, [])

    index = SampleIndex.build(reader, 0.0)
    bad_row = shard.sample_ids.index(bad)
    in0 = index.shard == 0
    assert len(index) == 11 and bad_row not in index.row[in0].tolist()
    # The stored sequence of each kept row of shard 0 skips the quarantined one.
    np.testing.assert_array_equal(index.store_seq[in0], np.arange(len(shard) - 1))
    np.testing.assert_array_equal(index.row[in0], [j for j in range(len(shard)) if j != bad_row])
    samples = np.flatnonzero(in0)
    batch = MicroBatchBuilder(small_dataset, store, index, reader.k).build(samples)
    for r, i in enumerate(index.row[samples].tolist()):
        ids, _, labels = shard.sequence(i)
        assert int(batch["lengths"][r]) == len(ids)
        assert np.array_equal(batch["input_ids"][r, : len(ids)].numpy(), ids)
        assert np.array_equal(batch["labels"][r, : len(ids)].numpy(), labels)


def test_rerun_keeps_the_quarantine_and_the_default_fraction_fails_naming_it(
    quarantined_store, small_dataset, tiny_teacher
):
    store, bad, _, _ = quarantined_store
    out = store.parents[1]
    # Nothing left to score (no engine start): the committed markers still count.
    res = run_module(
        "pipelines.score", *score_args(small_dataset, tiny_teacher, out, "score.max_quarantine_fraction=0.1")
    )
    assert res.returncode == 0 and f"quarantined        1 of 12 samples ({bad})" in res.stdout
    res = run_module("pipelines.score", *score_args(small_dataset, tiny_teacher, out))
    assert res.returncode == 1, res.stdout[-3000:]
    assert "1 of 12 samples of worker 0/1's" in res.stdout and bad in res.stdout, res.stdout[-3000:]
    assert "max_quarantine_fraction=0.001" in res.stdout


def test_fraction_above_max_fails_before_the_shard_is_committed(
    tmp_path, monkeypatch, small_dataset, tiny_teacher
):
    from vpmoe.teacher.score import ScoreConfig

    bad = _first_shard_ids(small_dataset)[0]
    monkeypatch.setenv(TEST_REJECT_ENV, bad)
    out = tmp_path / "store"
    res = run_module("pipelines.score", *score_args(small_dataset, tiny_teacher, out))
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    assert bad in res.stdout and "score.max_quarantine_fraction=0.001" in res.stdout, res.stdout[-3000:]
    assert not list(out.rglob(f"shard-00000{MARKER_SUFFIX}"))  # the store stays incomplete: unusable
    for wrong in (-0.1, 0.6):
        with pytest.raises(ValueError, match="max_quarantine_fraction"):
            ScoreConfig(max_quarantine_fraction=wrong)


def test_scorer_and_report_agree_on_which_rows_are_valid():
    """The same rows through the scorer's validation and the report's checks: the log-prob checks flag
    exactly the same rows, including a rise smaller than the scorer's old 1e-4 tolerance."""
    from vpmoe.report.checks import RowBlock, decode, value_failures
    from vpmoe.teacher.convert import PromptLogprobArrays, Validity, prompt_logprobs_to_rows

    rng = np.random.default_rng(0)
    n, k, vocab = 64, 8, 201088
    lp = -np.sort(rng.exponential(2.0, (n, k)), axis=1).astype(np.float16)  # fp16: both see the same values
    ids = np.stack([rng.choice(vocab, k, replace=False) for _ in range(n)]).astype(np.int32)
    tlp = lp[:, 0].astype(np.float32)
    up = np.float16(0)  # nextafter toward 0: the smallest rise fp16 can hold at that value
    lp[3, 4] = np.nextafter(lp[3, 3], up)  # far below the scorer's old 1e-4 tolerance at |lp| < 0.1
    lp[5, 1:3] = lp[5, 2:0:-1]  # swapped neighbours
    lp[9, 2] = np.nextafter(lp[9, 1], up)
    lp[15, :3] = [-1e-5, -3e-5, -2e-5]  # a 1e-5 rise: the scorer used to store it, the report failed it
    for r in (3, 9, 15):  # the rest of these rows stays below the change
        lp[r, 5 if r == 3 else 3 :] = np.minimum(lp[r, 5 if r == 3 else 3 :], lp[r, 4 if r == 3 else 2] - 1)
    lp[11, 0] = np.float16(0.01)  # positive top-1
    tlp[13] = 0.5  # positive actual-token log-prob

    # The scorer: row t of the arrays is position t; column 0 the actual token (= the top-1 here).
    input_ids = np.concatenate([[0], ids[:, 0]]).astype(np.int64)
    arrays = PromptLogprobArrays(
        np.concatenate([ids[:, :1], ids], axis=1),
        np.concatenate([tlp[:, None], lp.astype(np.float32)], axis=1),
        np.ones(n, np.int64),
    )
    scorer = {}
    for t in range(n):
        v = Validity()
        prompt_logprobs_to_rows(arrays, input_ids, np.array([t]), k, vocab, v, "s")
        for reason in v.rejected:
            scorer.setdefault(reason, set()).add(t)

    block = RowBlock(0, ids.astype(np.uint32), lp, tlp, np.ones(n, np.uint32), None)
    report = {
        check: set(np.flatnonzero(bad).tolist())
        for check, (bad, _) in value_failures(
            block, decode(block), vocab=vocab, logprob_tolerance=1e-4, mass_tolerance=1e-3
        ).items()
    }
    assert scorer.get("unsorted") == report.get("rank_order") == {3, 5, 9, 15}
    assert scorer.get("positive_logprob") == report.get("nonpositive") == {11, 13}
