"""Shard-health report: the scored tiny store passes; every corruption kind fails the named check and
names the shard. Corruptions are made on copies of the session store; value corruptions are rewritten
through zarr and the marker's checksums refreshed, so the value check (not only `checksums`) must fire."""

import json
import re
import shutil

import numpy as np
import pytest
import zarr
from conftest import RANDOM_TEACHER_REPORT, run_module, scoring_rows, write_synth

from vpmoe.report import ReportConfig, ReportError, run_report
from vpmoe.report.checks import CHECKS, ROOT
from vpmoe.teacher.row_coding import IdOrder, logprob_deltas, logprobs_from_deltas
from vpmoe.teacher.store import MARKER_SUFFIX, SHARDS
from vpmoe.utils.hashing import sha256_file


def report_args(store, dataset, out):
    return f"store={store}", f"dataset={dataset}", f"output={out}", RANDOM_TEACHER_REPORT


def verdict_line(stdout: str) -> str:
    """The console's verdict line (the console may end with the note naming the third-party log file)."""
    lines = [x for x in stdout.splitlines() if x.startswith("report ")]
    assert lines, stdout[-3000:]
    return lines[-1]


@pytest.fixture(scope="module")
def clean_run(scored_store, small_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "clean"
    return run_module("pipelines.report", *report_args(scored_store, small_dataset, out)), out


def test_scored_store_passes(clean_run, small_dataset):
    res, out = clean_run
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    verdict = verdict_line(res.stdout)
    assert verdict.startswith(f"report PASS: {len(CHECKS)}/{len(CHECKS)} checks passed"), verdict
    data = json.loads((out / "report.json").read_text())
    assert data["verdict"] == "PASS" and all(c["passed"] for c in data["checks"].values())
    assert data["summary"]["samples_quarantined"] == 0 and data["quarantined"] == {}
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    supervised = manifest["totals"]["supervised_tokens"]
    spans = data["statistics"]["span"]
    assert spans["all"]["positions"] == data["summary"]["positions_scanned"] == sum(supervised.values())
    assert spans["reasoning"]["positions"] == supervised["reasoning"]
    assert spans["final"]["positions"] == supervised["final"]
    assert sum(g["positions"] for g in data["statistics"]["language"].values()) == sum(supervised.values())
    top1 = spans["all"]["metrics"]["top1_prob"]
    assert 0 < top1["p5"] <= top1["p50"] <= top1["p95"] <= 1
    assert data["storage"]["compression_ratio"] > 1 and data["storage"]["bytes_per_position"] > 0
    md = (out / "report.md").read_text()
    assert "PASS" in md and "## Checks" in md and "hist_entropy.png" in md
    assert all((out / f"hist_{m}.png").stat().st_size > 0 for m in ("top1_prob", "entropy", "target_rank"))


def copy_store(scored_store, tmp_path):
    dst = tmp_path / "store"
    shutil.copytree(scored_store, dst)
    return dst


def stems(store):
    return sorted(p.name.removesuffix(MARKER_SUFFIX) for p in (store / SHARDS).glob(f"*{MARKER_SUFFIX}"))


def refresh_marker(store, stem):
    """Rewrite the marker's file checksums after a deliberate value edit (as if the scorer wrote it)."""
    marker = store / SHARDS / f"{stem}{MARKER_SUFFIX}"
    info = json.loads(marker.read_text())
    root = store / SHARDS / stem
    info["files"] = {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}
    marker.write_text(json.dumps(info, indent=1, sort_keys=True))


def edit_array(store, stem, name, edit):
    """Edit one array of a committed shard through zarr. `topk_ids` and `topk_logprobs` are edited as the
    decoded rows and coded again (row_coding), as the scorer would have written them."""
    group = zarr.open_group(str(store / SHARDS / stem), mode="r+")
    if name == "topk_ids":
        order = IdOrder(group["id_order"][:], 201088)
        data = order.decode(group["topk_id_codes"][:])
        edit(data)
        group["topk_id_codes"][:] = order.encode(data)
    elif name == "topk_logprobs":
        data = logprobs_from_deltas(group["topk_logprob_deltas"][:])
        edit(data)
        group["topk_logprob_deltas"][:] = logprob_deltas(data)
    else:
        data = group[name][:]
        edit(data)
        group[name][:] = data
    refresh_marker(store, stem)


def drop_row(store, stem, seq):
    """Delete the last stored row of sequence `seq` (a wrong position count), through zarr."""
    group = zarr.open_group(str(store / SHARDS / stem), mode="r+")
    offsets = group["seq_offsets"][:]
    row = int(offsets[seq + 1]) - 1
    for name in ("positions", "topk_id_codes", "topk_logprob_deltas", "target_logprob", "target_rank"):
        arr = group[name]
        data = np.delete(arr[:], row, axis=0)
        arr.resize(data.shape)
        arr[:] = data
    offsets[seq + 1 :] -= 1
    group["seq_offsets"][:] = offsets
    refresh_marker(store, stem)


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def set_value(name, index, value):
    return lambda s, st: edit_array(s, st, name, lambda a: a.__setitem__(index, value))


def duplicate_id(store, stem):
    edit_array(store, stem, "topk_ids", lambda a: a.__setitem__((3, 1), a[3, 0]))


def missing_shard(store, stem):
    shutil.rmtree(store / SHARDS / stem)
    (store / SHARDS / f"{stem}{MARKER_SUFFIX}").unlink()


def extra_marker(store, stem):
    shutil.copy(store / SHARDS / f"{stem}{MARKER_SUFFIX}", store / SHARDS / f"shard-09999{MARKER_SUFFIX}")


def uniform_rows(store, stem):
    """Every row exactly uniform, as vLLM scores a GPT-OSS whose output layer was never loaded (issue 18):
    each log-prob -ln(vocab), the actual token tied with every id (vLLM's rank: the whole vocabulary)."""
    lp = -np.log(201088)
    edit_array(store, stem, "topk_logprobs", lambda a: a.__setitem__(slice(None), lp))
    edit_array(store, stem, "target_logprob", lambda a: a.__setitem__(slice(None), lp))
    edit_array(store, stem, "target_rank", lambda a: a.__setitem__(slice(None), 201088))


CORRUPTIONS = {
    # kind: (shard index, corruption, expected failed checks, shard the first check names)
    "missing_shard": (1, missing_shard, {"shards_committed"}, None),
    "extra_marker": (0, extra_marker, {"no_extra_shards"}, "shard-09999"),
    "corrupted_chunk": (
        0,
        lambda s, st: flip_byte(s / SHARDS / st / "topk_logprob_deltas" / "c" / "0" / "0"),
        {"readable", "checksums"},
        None,
    ),
    "truncated_chunk": (
        2,
        lambda s, st: truncate(s / SHARDS / st / "topk_id_codes" / "c" / "0" / "0"),
        {"readable", "checksums"},
        None,
    ),
    "nan": (1, set_value("topk_logprobs", (5, 3), np.nan), {"finite"}, None),
    "positive_logprob": (2, set_value("topk_logprobs", (7, 0), 0.5), {"nonpositive", "topk_mass"}, None),
    "wrong_position_count": (1, lambda s, st: drop_row(s, st, 1), {"alignment"}, None),
    "duplicated_id": (0, duplicate_id, {"unique_ids"}, None),
    "bad_id_order": (
        0,
        lambda s, st: edit_array(s, st, "id_order", lambda a: a.__setitem__(1, a[0])),
        {"readable"},
        None,
    ),
    "code_outside_vocab": (1, set_value("topk_id_codes", (4, 2), 201088), {"ids_in_range"}, None),
    "uniform_rows": (2, uniform_rows, {"teacher_not_degenerate"}, None),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corruption_is_detected(kind, scored_store, small_dataset, tmp_path):
    index, corrupt, expected, named = CORRUPTIONS[kind]
    store = copy_store(scored_store, tmp_path)
    stem = stems(store)[index]
    corrupt(store, stem)
    report = run_report(small_dataset, store, ReportConfig(max_target_nll_ratio=None))
    data = report.to_dict()
    assert report.exit_code == 1 and data["verdict"] == "FAIL"
    failed = set(data["summary"]["failed"])
    assert expected <= failed, (kind, failed)
    # Only the corruption's own checks (and those it implies) fire; the rest of the store is clean.
    allowed = expected | {"target_consistent", "topk_mass", "rank_order"}
    assert failed <= allowed, (kind, failed)
    for check in expected:
        assert list(data["checks"][check]["shards"]) == [named or stem], (check, data["checks"][check])
    first = next(iter(data["checks"][sorted(expected)[0]]["shards"].values()))["first"]
    if kind in ("nan", "positive_logprob", "duplicated_id", "wrong_position_count"):
        # The first bad row is located: row index, sample id and position.
        assert first["sample_id"] and first["position"] is not None and first["row"] is not None, first


def test_cli_exit_status_and_verdict_on_failure(scored_store, small_dataset, tmp_path):
    store = copy_store(scored_store, tmp_path)
    stem = stems(store)[1]
    set_value("topk_logprobs", (5, 3), np.nan)(store, stem)
    out = tmp_path / "report"
    res = run_module("pipelines.report", *report_args(store, small_dataset, out))
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    verdict = verdict_line(res.stdout)
    assert verdict.startswith("report FAIL") and f"finite [{stem}]" in verdict, verdict
    data = json.loads((out / "report.json").read_text())
    assert data["checks"]["finite"]["shards"][stem]["first"]["row"] == 5
    assert "**FAIL**" in (out / "report.md").read_text()


def test_cli_fails_a_store_of_uniform_rows(scored_store, small_dataset, tmp_path):
    store = copy_store(scored_store, tmp_path)
    stem = stems(store)[0]
    uniform_rows(store, stem)
    out = tmp_path / "report"
    res = run_module("pipelines.report", *report_args(store, small_dataset, out))
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    verdict = verdict_line(res.stdout)
    assert f"failed: teacher_not_degenerate [{stem}]" in verdict, verdict
    check = json.loads((out / "report.json").read_text())["checks"]["teacher_not_degenerate"]
    detail = check["shards"][stem]["first"]["detail"]
    assert "near-uniform teacher output" in detail and "min_top1_gain=2.0" in detail, detail
    assert re.search(r", -?0\.00\d+ nats above a uniform", detail), detail  # the gain: none (fp16 rounding)


def test_a_teacher_no_better_than_uniform_fails_by_default(scored_store, small_dataset):
    """The tiny test teacher is random weights: peaked rows (it passes min_top1_gain) whose actual tokens'
    NLL is about twice a uniform distribution's. The default report fails it on every shard."""
    report = run_report(small_dataset, scored_store, ReportConfig())
    assert report.checks.failed() == ["teacher_not_degenerate"]
    found = report.checks.to_dict()["teacher_not_degenerate"]["shards"]
    assert sorted(found) == stems(scored_store), found
    detail = next(iter(found.values()))["first"]["detail"]
    assert "no better than a uniform distribution" in detail, detail
    assert "max_target_nll_ratio=1.0 x ln(201088) = 12.2115" in detail, detail
    with pytest.raises(ValueError, match="max_target_nll_ratio"):
        ReportConfig(max_target_nll_ratio=0.0)


def test_store_from_another_dataset(scored_store, tmp_path):
    from vpmoe.data.harmony_render import TemplateConfig
    from vpmoe.data.prepare import PrepareConfig, prepare

    # Another system prompt: every sequence, hence every dataset shard, differs from the scored one.
    src = write_synth(tmp_path / "rows.parquet", scoring_rows()[:7])
    other = tmp_path / "other"
    template = TemplateConfig(reasoning_effort="high")
    prepare(str(src), other, PrepareConfig(template=template, shard_tokens=1200, max_seq_len=1024))
    report = run_report(other, scored_store, ReportConfig(max_target_nll_ratio=None))
    data = report.to_dict()
    assert report.exit_code == 1
    prov = data["checks"]["provenance"]
    assert not prov["passed"] and "scored from dataset" in prov["shards"][ROOT]["first"]["detail"]
    assert "shard-00000" in data["checks"]["shards_committed"]["shards"]
    assert "shard-00000" in data["checks"]["no_extra_shards"]["shards"]  # stale marker


def test_store_argument_and_config_ranges(small_dataset, scored_store, tmp_path):
    # The scoring output root resolves to its one teacher store for this dataset.
    assert (
        run_report(small_dataset, scored_store.parent.parent, ReportConfig(max_target_nll_ratio=None)).store
        == scored_store
    )
    with pytest.raises(ReportError, match="not a teacher store"):
        run_report(small_dataset, tmp_path, ReportConfig(max_target_nll_ratio=None))
    with pytest.raises(ValueError, match="hist_bins"):
        ReportConfig(hist_bins=7)
    with pytest.raises(ValueError, match="mass_tolerance"):
        ReportConfig(mass_tolerance=-1.0)
    with pytest.raises(ValueError, match="min_top1_gain"):
        ReportConfig(min_top1_gain=11.0)


def hand_block(**changes):
    """Three rows at k=4: clean; a tie (the actual token at index 0 tied with index 1, vLLM rank 2);
    the actual token outside the top-k."""
    from vpmoe.report.checks import RowBlock

    rows = {
        "topk_ids": np.array([[5, 9, 2, 7], [11, 12, 13, 14], [1, 2, 3, 4]], np.uint32),
        "topk_logprobs": np.array([[-0.5, -1.5, -3, -4], [-1, -1, -2, -3], [-0.3, -2, -3, -4]], np.float16),
        "target_logprob": np.array([-1.5, -1.0, -5.0], np.float32),
        "target_rank": np.array([2, 2, 10], np.uint32),
        "targets": np.array([9, 11, 99], np.uint32),
    }
    for key, (index, value) in changes.items():
        rows[key][index] = value
    return RowBlock(start=0, **rows)


@pytest.mark.parametrize(
    ("changes", "check", "row"),
    [
        ({}, None, None),
        ({"target_logprob": (0, -1.0)}, "target_consistent", 0),  # differs from its entry (-1.5)
        ({"target_rank": (0, 1)}, "target_consistent", 0),  # rank 1, but the entry at rank 1 is another id
        ({"target_logprob": (2, -2.0)}, "target_consistent", 2),  # outside the top-k yet above the k-th
        ({"targets": (0, 98)}, "target_consistent", 0),  # rank 2 but the token is not in the row
        ({"topk_logprobs": ((1, 3), -np.inf)}, "finite", 1),
        ({"topk_ids": ((2, 3), 201088)}, "ids_in_range", 2),
        ({"topk_logprobs": ((0, 2), -1.0)}, "rank_order", 0),
    ],
)
def test_value_checks_on_hand_made_rows(changes, check, row):
    from vpmoe.report.checks import decode, value_failures

    block = hand_block(**changes)
    failures = value_failures(block, decode(block), vocab=201088, logprob_tolerance=1e-4, mass_tolerance=1e-3)
    if check is None:
        assert failures == {}
    else:
        assert check in failures, failures
        assert np.flatnonzero(failures[check][0]).tolist()[0] == row
        assert isinstance(failures[check][1](row), str)


def test_parallel_scan_gives_the_same_report(scored_store, small_dataset, tmp_path):
    store = copy_store(scored_store, tmp_path)
    set_value("topk_logprobs", (5, 3), np.nan)(store, stems(store)[1])
    one, two = (
        run_report(small_dataset, store, ReportConfig(workers=w, max_target_nll_ratio=None)).to_dict()
        for w in (1, 2)
    )
    for key in ("verdict", "checks", "statistics", "storage", "shards"):
        assert one[key] == two[key], key
    assert list(two["checks"]["finite"]["shards"]) == [stems(store)[1]]


def test_entropy_estimate_is_the_documented_lower_bound():
    from vpmoe.report.stats import row_metrics

    rng = np.random.default_rng(0)
    V, k = 5000, 64
    logits = rng.normal(0, 3, (200, V))
    p_full = np.exp(logits - logits.max(axis=1, keepdims=True))
    p_full /= p_full.sum(axis=1, keepdims=True)
    # Exact cases: the tail is one token (row 0), or tokens of probability p_k (row 1).
    p_full[0] = np.r_[np.full(k, 0.9 / k), 0.1, np.zeros(V - k - 1)]
    p_full[1] = np.r_[np.full(k, 1 / (k + 10)), np.full(10, 1 / (k + 10)), np.zeros(V - k - 10)]
    true = -(p_full * np.log(np.where(p_full > 0, p_full, 1))).sum(axis=1)
    p = -np.sort(-p_full, axis=1)[:, :k].astype(np.float32)
    x = np.log(p)
    mass, h_topk = p.sum(axis=1), -(p * x).sum(axis=1)
    est = row_metrics(p, x, mass, h_topk, np.zeros(len(p), np.float32), np.ones(len(p)))["entropy"]
    m, pk = np.maximum(1 - mass, 0), p[:, -1]
    gap_bound = m * (np.log(V - k) - np.maximum(0, np.log(np.maximum(m, 1e-30) / pk)))
    assert (est <= true + 1e-4).all() and (true - est <= gap_bound + 1e-4).all()
    assert np.allclose(est[:2], true[:2], atol=1e-4)
