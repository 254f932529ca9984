import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, SAMPLE, SYNTH_COLUMNS, run_module, synth_row

from vpmoe.data.harmony_render import IGNORE_INDEX, Span, TemplateConfig
from vpmoe.data.manifest import DatasetManifest, ManifestError
from vpmoe.data.prepare import PrepareConfig, PrepareError, prepare
from vpmoe.data.prepared import PreparedDataset
from vpmoe.utils.atomic import OUTPUT_MARKER, OutputExistsError

SMALL = PrepareConfig(shard_tokens=1000, max_seq_len=512)


def tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_sample_end_to_end(tmp_path):
    res = prepare(str(SAMPLE), tmp_path / "out", PrepareConfig(shard_tokens=60000))
    m = res.manifest
    ds = PreparedDataset(tmp_path / "out")
    assert ds.manifest_hash == m.manifest_hash and len(m.shards) >= 3
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    reasons = {r["reason"] for r in rejects}
    # The sample deliberately holds bad rows (data/sample/README.md) and one over-long row.
    assert {"empty_query", "empty_answer", "empty_reasoning", "duplicate_id", "too_long"} <= reasons
    assert m.totals["rows_in"] == m.totals["sequences"] + len(rejects)
    sup = dict.fromkeys(("reasoning", "final"), 0)
    ids_seen = set()
    for entry in m.shards:
        shard = ds.read_shard(entry.name)
        for i in range(len(shard)):
            ids, _, labels = shard.sequence(i)
            assert len(ids) <= 4096 and ids[-1] == 200002
            s = np.flatnonzero(labels != IGNORE_INDEX)
            assert np.array_equal(labels[s], ids[s + 1])
            ps = shard.position_spans(i)
            sup["reasoning"] += int((ps == Span.REASONING).sum())
            sup["final"] += int((ps == Span.FINAL).sum())
        ids_seen.update(shard.sample_ids)
    assert sup == m.totals["supervised_tokens"]
    assert len(ids_seen) == m.totals["sequences"]


def test_deterministic_and_location_independent(tmp_path, make_synth):
    src = make_synth([synth_row(i) for i in range(40)])
    a = prepare(str(src), tmp_path / "a", SMALL)
    b = prepare(str(src), tmp_path / "nested" / "b", SMALL)
    assert a.manifest_hash == b.manifest_hash
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "nested" / "b")
    assert len(a.manifest.shards) > 1


def test_manifest_hash_sensitivity(tmp_path, make_synth):
    rows = [synth_row(i) for i in range(10)]
    base = prepare(str(make_synth(rows, "a.parquet")), tmp_path / "a", SMALL).manifest_hash
    rows[3]["synthetic_answer"] = rows[3]["synthetic_answer"][:-1] + "!"  # one character
    one_char = prepare(str(make_synth(rows, "a.parquet")), tmp_path / "b", SMALL).manifest_hash
    other_cfg = prepare(
        str(make_synth(rows, "a.parquet")), tmp_path / "c", PrepareConfig(shard_tokens=1000, max_seq_len=513)
    ).manifest_hash
    assert len({base, one_char, other_cfg}) == 3


def test_manifest_tamper_is_detected(tmp_path, make_synth):
    prepare(str(make_synth([synth_row(0)])), tmp_path / "o", SMALL)
    path = tmp_path / "o" / "manifest.json"
    doc = json.loads(path.read_text())
    doc["totals"]["tokens"] += 1
    path.write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match="does not match its content"):
        DatasetManifest.load(tmp_path / "o")


def test_corrupt_shard_is_detected(tmp_path, make_synth):
    prepare(str(make_synth([synth_row(i) for i in range(5)])), tmp_path / "o", SMALL)
    ds = PreparedDataset(tmp_path / "o")
    p = tmp_path / "o" / ds.shard_names[0]
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="corrupt"):
        ds.read_shard(ds.shard_names[0])


def test_missing_column_names_column_and_file(tmp_path, make_synth):
    rows = [{k: v for k, v in synth_row(0).items() if k != "synthetic_answer"}]
    src = make_synth(rows, "nocol.parquet")
    with pytest.raises(PrepareError, match=r"nocol\.parquet.*synthetic_answer"):
        prepare(str(src), tmp_path / "o", SMALL)
    assert not (tmp_path / "o").exists()


def test_wrong_column_type_is_rejected(tmp_path, make_synth):
    schema = pa.schema([(c, pa.int64() if c == "query" else pa.string()) for c in SYNTH_COLUMNS])
    src = make_synth([synth_row(0, query=7)], "types.parquet", schema=schema)
    with pytest.raises(PrepareError, match=r"types\.parquet: column 'query' has type int64"):
        prepare(str(src), tmp_path / "o", SMALL)


def test_bad_rows_go_to_rejects_with_reasons(tmp_path, make_synth):
    rows = [synth_row(i) for i in range(40)]
    rows[1]["query"] = None
    rows[2]["query"] = "   "
    rows[3]["synthetic_answer"] = None
    rows[4]["synthetic_reasoning"] = ""
    rows[5]["synth_id"] = rows[0]["synth_id"]
    rows[6]["synth_id"] = None
    rows[7]["synthetic_reasoning"] = "long " * 600
    src = make_synth(rows)
    res = prepare(
        str(src), tmp_path / "o", PrepareConfig(shard_tokens=1000, max_seq_len=512, max_reject_fraction=0.2)
    )
    rejects = [json.loads(x) for x in (tmp_path / "o" / "rejects.jsonl").read_text().splitlines()]
    got = {(r["row"], r["reason"]) for r in rejects}
    assert got == {
        (1, "empty_query"),
        (2, "empty_query"),
        (3, "empty_answer"),
        (4, "empty_reasoning"),
        (5, "duplicate_id"),
        (6, "missing_id"),
        (7, "too_long"),
    }
    assert all(r["source"] == "in.parquet" for r in rejects)
    assert res.manifest.totals["sequences"] == 33
    assert res.manifest.totals["rejected"]["empty_query"] == 2


def test_reject_fraction_exceeded_fails_and_keeps_existing_output(tmp_path, make_synth):
    good = prepare(str(make_synth([synth_row(i) for i in range(10)], "good.parquet")), tmp_path / "o", SMALL)
    before = tree_bytes(tmp_path / "o")
    rows = [synth_row(i) for i in range(10)]
    for r in rows[:3]:
        r["synthetic_answer"] = None
    with pytest.raises(PrepareError, match=r"3 of 10 rows rejected"):
        prepare(str(make_synth(rows, "bad.parquet")), tmp_path / "o", SMALL, overwrite=True)
    assert tree_bytes(tmp_path / "o") == before
    assert DatasetManifest.load(tmp_path / "o").manifest_hash == good.manifest_hash
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".o.")] == []  # no temp leftovers


def test_existing_output_needs_overwrite(tmp_path, make_synth):
    src = make_synth([synth_row(0)])
    prepare(str(src), tmp_path / "o", SMALL)
    with pytest.raises(OutputExistsError, match="overwrite=true"):
        prepare(str(src), tmp_path / "o", SMALL)
    prepare(str(src), tmp_path / "o", SMALL, overwrite=True)


def test_length_policy_fail_names_the_row(tmp_path, make_synth):
    rows = [synth_row(0), synth_row(1, synthetic_reasoning="long " * 600)]
    cfg = PrepareConfig(shard_tokens=1000, max_seq_len=512, length_policy="fail")
    with pytest.raises(
        PrepareError, match=r"in\.parquet row 1 \(synth_t00001\): \d+ tokens > max_seq_len 512"
    ):
        prepare(str(make_synth(rows)), tmp_path / "o", cfg)
    assert not (tmp_path / "o").exists()


def test_seed_text_template_and_passthrough(tmp_path, make_synth):
    rows = [synth_row(i, query_seed_text=None if i == 2 else "Seed.") for i in range(4)]
    for i, r in enumerate(rows):
        r["words"] = str(i)
    cfg = PrepareConfig(
        shard_tokens=1000,
        max_seq_len=512,
        max_reject_fraction=0.5,
        passthrough_columns=["words"],
        template=TemplateConfig(user_template="{query_seed_text}\n\n{query}"),
    )
    res = prepare(str(make_synth(rows)), tmp_path / "o", cfg)
    assert res.manifest.totals["rejected"] == {"missing_seed_text": 1}
    table = pq.read_table(tmp_path / "o" / res.manifest.shards[0].name)
    assert table.column("words").to_pylist() == ["0", "1", "3"]


def test_glob_of_several_files_in_sorted_order(tmp_path, make_synth):
    make_synth([synth_row(i) for i in range(3)], "b.parquet")
    make_synth([synth_row(i) for i in range(3, 6)], "a.parquet")
    res = prepare(str(tmp_path / "*.parquet"), tmp_path / "o", SMALL)
    assert [s["name"] for s in res.manifest.sources] == ["a.parquet", "b.parquet"]
    first = PreparedDataset(tmp_path / "o").read_shard(res.manifest.shards[0].name)
    assert first.sample_ids[0] == "synth_t00003"


def test_config_range_checks():
    with pytest.raises(ValueError, match="length_policy"):
        PrepareConfig(length_policy="truncate")
    with pytest.raises(ValueError, match="shard_tokens"):
        PrepareConfig(shard_tokens=10, max_seq_len=4096)
    with pytest.raises(ValueError, match="max_reject_fraction"):
        PrepareConfig(max_reject_fraction=1.5)


def run_cli(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "pipelines.prepare", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_prints_hash_and_output(tmp_path, make_synth):
    src = make_synth([synth_row(i) for i in range(5)])
    out = run_cli(
        f"input={src}", f"output={tmp_path / 'o'}", "prepare.shard_tokens=1000", "prepare.max_seq_len=512"
    )
    assert out.returncode == 0, out.stderr
    manifest = DatasetManifest.load(tmp_path / "o")
    assert f"manifest_hash={manifest.manifest_hash} output={tmp_path / 'o'}" in out.stdout
    assert "sequences out      5" in out.stdout + out.stderr


def test_cli_errors_are_clear(tmp_path, make_synth):
    out = run_cli(f"output={tmp_path / 'o'}")
    assert out.returncode != 0 and "input" in out.stderr
    out = run_cli(f"input={tmp_path / 'nope.parquet'}", f"output={tmp_path / 'o'}")
    assert out.returncode == 1 and "nope.parquet does not exist" in out.stdout + out.stderr
    out = run_cli(f"input={tmp_path / 'x'}", f"output={tmp_path / 'o'}", "prepare.length_policy=cut")
    assert out.returncode != 0 and "length_policy" in out.stderr


def test_cli_overwrite_never_destroys_what_is_not_ours(tmp_path, make_synth):
    """A typo in output= with overwrite=true must not wipe a user's directory; a previous prepare output
    is still replaced."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("my notes")
    out = run_module(
        "pipelines.prepare", f"input={SAMPLE}", f"output={notes}", "prepare=debug", "overwrite=true"
    )
    assert out.returncode == 1
    assert (
        f"refusing to overwrite {notes}" in out.stdout + out.stderr and "notes.txt" in out.stdout + out.stderr
    )
    assert [p.name for p in notes.iterdir()] == ["notes.txt"] and (
        notes / "notes.txt"
    ).read_text() == "my notes"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".notes.")] == []

    prev = tmp_path / "prev"
    first = prepare(str(make_synth([synth_row(i) for i in range(5)])), prev, SMALL)
    out = run_module(
        "pipelines.prepare", f"input={SAMPLE}", f"output={prev}", "prepare=debug", "overwrite=true"
    )
    assert out.returncode == 0, out.stdout + out.stderr
    replaced = DatasetManifest.load(prev)
    assert (
        replaced.manifest_hash != first.manifest_hash
        and f"manifest_hash={replaced.manifest_hash}" in out.stdout
    )
    assert json.loads((prev / OUTPUT_MARKER).read_text())["kind"] == "prepare"
