import dataclasses
import io
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, SAMPLE, SYNTH_COLUMNS, cli_env, run_module, synth_row

from vpmoe.data.harmony_render import IGNORE_INDEX, Span, TemplateConfig
from vpmoe.data.manifest import DatasetManifest, ManifestError
from vpmoe.data.prepare import PrepareConfig, PrepareError, prepare, summary_lines
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


def test_reads_through_a_python_file_finish_on_the_calling_thread(tmp_path, make_synth, monkeypatch):
    """Pages read through a Python file object (every S3 read) are read on the caller's thread and all
    released before `read_columns` returns, so no Arrow thread is left holding one while the interpreter
    finalizes (which aborts the process: vpmoe.utils.storage.PYTHON_SOURCE_READ)."""
    import threading
    import weakref

    from vpmoe.utils import storage

    prepare(str(make_synth([synth_row(i) for i in range(12)])), tmp_path / "o", SMALL)
    ds = PreparedDataset(tmp_path / "o")
    reader_threads, pages = set(), []

    class Page(bytearray):  # a bytearray subclass can be weakly referenced
        pass

    class TrackedFile(io.FileIO):
        def read(self, size=-1):
            reader_threads.add(threading.get_ident())
            page = Page(super().read(size))
            pages.append(weakref.ref(page))
            return page

    monkeypatch.setattr(storage, "open_input", lambda url: TrackedFile(url, "rb"))
    table = ds.read_columns(ds.manifest.shards[0].name, ["sample_id", "num_tokens"])
    assert table.num_rows == ds.manifest.shards[0].sequences
    assert len(pages) >= 2  # the footer and the column chunks went through the tracked file
    assert reader_threads == {threading.get_ident()}
    assert [r for r in pages if r() is not None] == []


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
    res = prepare(str(tmp_path / "*.parquet"), tmp_path / "o", SMALL)  # one bucket: the input order
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
    with pytest.raises(ValueError, match="worker < num_workers"):
        PrepareConfig(buckets=4, worker=2, num_workers=2)
    with pytest.raises(ValueError, match=r"num_workers \(3\) > buckets \(2\)"):
        PrepareConfig(buckets=2, num_workers=3)
    with pytest.raises(ValueError, match="buckets"):
        PrepareConfig(buckets=0)
    assert "worker" not in PrepareConfig().to_dict()  # how work is split never enters the manifest


# --- parallel workers, resume, finalize ----------------------------------------------------------------


def split(cfg: PrepareConfig, **kw) -> PrepareConfig:
    return dataclasses.replace(cfg, **kw)


BUCKETED = PrepareConfig(shard_tokens=1000, max_seq_len=512, buckets=4, max_reject_fraction=0.2)


def two_files_with_duplicates(make_synth):
    """Two files; ids 3 and 7 of a.parquet come back in b.parquet, so they must meet across files."""
    make_synth([synth_row(i) for i in range(30)], "a.parquet")
    make_synth([synth_row(i) for i in (3, 40, 41, 7, *range(42, 60))], "b.parquet")


def test_two_workers_and_finalize_equal_one_process(tmp_path, make_synth):
    two_files_with_duplicates(make_synth)
    inputs = str(tmp_path / "*.parquet")
    one = prepare(inputs, tmp_path / "one", BUCKETED)
    w0 = prepare(inputs, tmp_path / "two", split(BUCKETED, worker=0, num_workers=2))
    w1 = prepare(inputs, tmp_path / "two", split(BUCKETED, worker=1, num_workers=2))
    assert w0.manifest is None and w1.manifest is None and not (tmp_path / "two").exists()
    # Every row was routed to exactly one worker.
    assert w0.workers[0]["rows"] + w1.workers[0]["rows"] == one.manifest.totals["rows_in"]
    fin = prepare(inputs, tmp_path / "two", split(BUCKETED, finalize=True, num_workers=2))
    assert fin.manifest_hash == one.manifest_hash
    assert tree_bytes(tmp_path / "two") == tree_bytes(tmp_path / "one")
    assert len(one.manifest.shards) > 4  # several buckets, several shards each
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".two.")] == []  # staging removed
    lines = "\n".join(summary_lines(fin))
    assert "workers            2:" in lines and f"manifest hash      {fin.manifest_hash}" in lines

    # Duplicates across files met in one bucket: the first occurrence (a.parquet) won.
    rejects = [json.loads(x) for x in (tmp_path / "two" / "rejects.jsonl").read_text().splitlines()]
    dup = [(r["source"], r["row"], r["sample_id"]) for r in rejects if r["reason"] == "duplicate_id"]
    assert dup == [("b.parquet", 0, "synth_t00003"), ("b.parquet", 3, "synth_t00007")]
    ds = PreparedDataset(tmp_path / "two")
    ids = [i for e in ds.manifest.shards for i in ds.read_shard(e.name).sample_ids]
    assert len(ids) == len(set(ids)) == one.manifest.totals["sequences"] == 50


def test_finalize_before_every_worker_committed_is_an_error(tmp_path, make_synth):
    two_files_with_duplicates(make_synth)
    inputs = str(tmp_path / "*.parquet")
    prepare(inputs, tmp_path / "o", split(BUCKETED, worker=0, num_workers=2))
    with pytest.raises(
        PrepareError, match=r"worker\(s\) \[1\] of num_workers=2 .*\(2 of 4 incomplete: 1, 3\)"
    ):
        prepare(inputs, tmp_path / "o", split(BUCKETED, finalize=True, num_workers=2))
    assert not (tmp_path / "o").exists()
    prepare(inputs, tmp_path / "o", split(BUCKETED, worker=1, num_workers=2))
    prepare(inputs, tmp_path / "o", split(BUCKETED, finalize=True, num_workers=2))
    assert DatasetManifest.load(tmp_path / "o").totals["sequences"] == 50


def test_worker_rerun_skips_committed_shards(tmp_path, make_synth):
    two_files_with_duplicates(make_synth)
    inputs = str(tmp_path / "*.parquet")
    one = prepare(inputs, tmp_path / "one", BUCKETED)
    cfg = split(BUCKETED, worker=0, num_workers=2)
    first = prepare(inputs, tmp_path / "o", cfg).workers[0]
    staged = {p: p.stat().st_ino for p in first_staging(tmp_path, "o").rglob("shard-*")}
    again = prepare(inputs, tmp_path / "o", cfg).workers[0]
    assert (again["shards_written"], again["shards_skipped"]) == (0, first["shards_written"])
    assert {p: p.stat().st_ino for p in staged} == staged  # nothing rewritten

    # A crash after a bucket's second-to-last shard: only the rest of that bucket is redone.
    bucket = first_staging(tmp_path, "o") / "b00000"
    last = max(int(p.stem[6:]) for p in bucket.glob("shard-*.json"))
    assert last >= 1
    for name in ("done.json", f"shard-{last:05d}.json", f"shard-{last:05d}.parquet"):
        (bucket / name).unlink()
    resumed = prepare(inputs, tmp_path / "o", cfg).workers[0]
    assert (resumed["shards_written"], resumed["shards_skipped"]) == (1, first["shards_written"] - 1)
    prepare(inputs, tmp_path / "o", split(BUCKETED, worker=1, num_workers=2))
    fin = prepare(inputs, tmp_path / "o", split(BUCKETED, finalize=True, num_workers=2))
    assert fin.manifest_hash == one.manifest_hash
    assert tree_bytes(tmp_path / "o") == tree_bytes(tmp_path / "one")


def first_staging(tmp_path, name):
    (plan,) = (tmp_path / f".{name}.parts").iterdir()
    return plan


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


def test_cli_two_worker_processes_then_finalize(tmp_path):
    """Two concurrent worker processes plus finalize give the one-process dataset, byte for byte."""
    single = run_module("pipelines.prepare", f"input={SAMPLE}", f"output={tmp_path / 'one'}", "prepare=debug")
    assert single.returncode == 0, single.stdout + single.stderr
    args = ["pipelines.prepare", f"input={SAMPLE}", f"output={tmp_path / 'two'}", "prepare=debug"]
    env = cli_env()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", *args, f"prepare.worker={i}", "prepare.num_workers=2"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    for i, p in enumerate(procs):
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out
        assert f"worker={i}/2 staged=" in out
    fin = run_module(*args, "prepare.finalize=true", "prepare.num_workers=2")
    assert fin.returncode == 0, fin.stdout + fin.stderr
    h = DatasetManifest.load(tmp_path / "one").manifest_hash
    assert f"manifest_hash={h} output={tmp_path / 'two'}" in fin.stdout
    assert tree_bytes(tmp_path / "two") == tree_bytes(tmp_path / "one")
    again = run_module(*args, "prepare.finalize=true")  # the output exists now: overwrite rules apply
    assert again.returncode == 1 and "overwrite=true" in again.stdout + again.stderr
