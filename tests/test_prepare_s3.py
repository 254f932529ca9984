"""pipelines.prepare with s3:// inputs and outputs, against a real S3-compatible server (moto, server mode):
the same files give the same dataset, byte for byte, as a local run; workers share an S3 staging area;
publishing writes manifest.json last; overwrite and error rules match the local ones."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import uuid

import pytest
from conftest import REPO, SAMPLE, cli_env, synth_row, write_synth

from vpmoe.data.manifest import DatasetManifest, ManifestError
from vpmoe.data.prepare import PrepareConfig, PrepareError, prepare
from vpmoe.data.prepared import PreparedDataset
from vpmoe.utils import storage
from vpmoe.utils.atomic import OUTPUT_MARKER, OutputExistsError

# What `prepare=debug` resolves to (conf/prepare/debug.yaml): the CLI run below must give the same hash.
DEBUG = PrepareConfig(shard_tokens=60000, buckets=2)
SMALL = PrepareConfig(shard_tokens=1000, max_seq_len=512)


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def s3_tree_bytes(url):
    return {key: storage.read_bytes(storage.join(url, key)) for key in sorted(storage.find(url))}


@pytest.fixture(scope="module")
def bucket(s3_server):
    """A module's own bucket (the `s3_bucket` fixture is per test): the sample prepare runs once."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1").create_bucket(
        Bucket=name
    )
    url = f"s3://{name}"
    storage.put_file(SAMPLE, storage.join(url, "raw", SAMPLE.name))
    return url


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    res = prepare(str(SAMPLE), out, DEBUG)
    return res, tree_bytes(out)


@pytest.fixture(scope="module")
def s3_run(bucket):
    return prepare(storage.join(bucket, "raw", SAMPLE.name), storage.join(bucket, "out"), DEBUG)


def test_s3_input_and_output_equal_the_local_run(bucket, local_run, s3_run):
    local, files = local_run
    out = storage.join(bucket, "out")
    assert s3_run.output == out and s3_run.manifest_hash == local.manifest_hash
    assert len(local.manifest.shards) >= 3
    # Every object (shards, token files, rejects.jsonl, manifest.json, the marker) equals the local file.
    assert s3_tree_bytes(out) == files
    assert storage.find(storage.join(bucket, ".out.parts")) == {}  # staging removed
    ds = PreparedDataset(out)
    assert ds.manifest_hash == local.manifest_hash
    shard = ds.read_shard(ds.shard_names[0])
    assert len(shard) == ds.manifest.shards[0].sequences


def test_glob_of_several_s3_objects_gives_the_local_names_and_hash(s3_bucket, tmp_path):
    """Source names are relative to the inputs' common folder or prefix: the same files give the same
    manifest wherever they are."""
    (tmp_path / "in" / "sub").mkdir(parents=True)
    write_synth(tmp_path / "in" / "b.parquet", [synth_row(i) for i in range(3)])
    write_synth(tmp_path / "in" / "sub" / "a.parquet", [synth_row(i) for i in range(3, 6)])
    for rel in ("b.parquet", "sub/a.parquet"):
        storage.put_file(tmp_path / "in" / rel, storage.join(s3_bucket, "data", "in", rel))
    local = prepare(
        [str(tmp_path / "in" / "b.parquet"), str(tmp_path / "in" / "sub" / "*.parquet")],
        tmp_path / "o",
        SMALL,
    )
    remote = prepare(
        [storage.join(s3_bucket, "data/in/*.parquet"), storage.join(s3_bucket, "data/in/sub/a.parquet")],
        storage.join(s3_bucket, "o"),
        SMALL,
    )
    assert [s["name"] for s in remote.manifest.sources] == ["b.parquet", "sub/a.parquet"]
    assert remote.manifest_hash == local.manifest_hash
    assert s3_tree_bytes(storage.join(s3_bucket, "o")) == tree_bytes(tmp_path / "o")


def test_two_workers_with_a_crash_and_finalize_equal_one_process(bucket, local_run):
    """Workers and finalize share the S3 staging area; a staged shard without its record is redone."""
    _, files = local_run
    src, out = storage.join(bucket, "raw", "*.parquet"), storage.join(bucket, "two")
    w0cfg = dataclasses.replace(DEBUG, worker=0, num_workers=2)
    first = prepare(src, out, w0cfg)
    assert first.manifest is None and str(first.staging).startswith(storage.join(bucket, ".two.parts") + "/")
    assert not storage.exists(out)
    staged = storage.find(first.staging)
    last = max(int(k[len("b00000/shard-") :][:5]) for k in staged if k.startswith("b00000/shard-"))
    assert last >= 1, staged
    # A crash after the last shard's objects, before its record (and the bucket's done.json).
    for name in (f"shard-{last:05d}.json", "done.json"):
        storage.remove(storage.join(first.staging, "b00000", name))
    assert f"b00000/shard-{last:05d}.parquet" in storage.find(first.staging)
    again = prepare(src, out, w0cfg).workers[0]
    written = first.workers[0]["shards_written"]
    assert (again["shards_written"], again["shards_skipped"]) == (1, written - 1)
    prepare(src, out, dataclasses.replace(DEBUG, worker=1, num_workers=2))
    fin = prepare(src, out, dataclasses.replace(DEBUG, finalize=True, num_workers=2))
    assert fin.manifest_hash == local_run[0].manifest_hash and len(fin.workers) == 2
    assert s3_tree_bytes(out) == files
    assert storage.find(storage.join(bucket, ".two.parts")) == {}


def test_cli_s3_to_s3(bucket, local_run, tmp_path):
    """The CLI with a glob of S3 inputs and an S3 output; its console log goes to ./logs/."""
    out = storage.join(bucket, "cli")
    env = {**cli_env(), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.prepare",
            f"input={bucket}/raw/*.parquet",
            f"output={out}",
            "prepare=debug",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    h = local_run[0].manifest_hash
    assert f"manifest_hash={h} output={out}" in res.stdout
    assert DatasetManifest.load(out).manifest_hash == h
    assert (tmp_path / "logs" / "prepare.log").is_file()


def test_published_output_without_manifest_is_not_a_dataset(s3_bucket, tmp_path):
    src = write_synth(tmp_path / "in.parquet", [synth_row(i) for i in range(5)])
    out = storage.join(s3_bucket, "ds")
    prepare(str(src), out, SMALL)
    storage.remove(storage.join(out, "manifest.json"))  # a publish that stopped before its last write
    with pytest.raises(ManifestError, match=rf"{re.escape(out)}/manifest\.json: no dataset manifest"):
        PreparedDataset(out)
    # Still recognizably ours: overwrite=true replaces it (and without it, it is refused).
    with pytest.raises(OutputExistsError, match=f"output {re.escape(out)} already exists"):
        prepare(str(src), out, SMALL)
    assert prepare(str(src), out, SMALL, overwrite=True).manifest_hash == PreparedDataset(out).manifest_hash


def test_overwrite_rules(s3_server, s3_bucket, tmp_path):
    out = storage.join(s3_bucket, "prev")
    big = write_synth(tmp_path / "big.parquet", [synth_row(i) for i in range(40)])
    first = prepare(str(big), out, SMALL)
    assert len(first.manifest.shards) > 1
    with pytest.raises(OutputExistsError, match=f"output {re.escape(out)} already exists.*overwrite=true"):
        prepare(str(big), out, SMALL)
    small = write_synth(tmp_path / "small.parquet", [synth_row(i) for i in range(3)])
    with s3_server.count_requests() as got:
        second = prepare(str(small), out, SMALL, overwrite=True)
    # The replace protocol (vpmoe/data/publish.py), as the server saw it: the old manifest.json goes
    # first, then the old objects; the new marker comes before the data, manifest.json after it.
    bucket_path = "/" + s3_bucket.removeprefix("s3://")
    writes = [
        (r.method, r.path.removeprefix(f"{bucket_path}/prev/"))
        for r in got
        if r.method != "GET" and r.method != "HEAD" and not r.path.startswith(f"{bucket_path}/.prev.parts/")
    ]
    marker_at = writes.index(("PUT", OUTPUT_MARKER))
    assert writes[0] == ("DELETE", "manifest.json")
    assert {m for m, _ in writes[1:marker_at]} <= {"DELETE", "POST"}  # POST: a batched delete
    assert sorted(writes[marker_at + 1 : -3]) == [
        ("PUT", "shards/shard-00000.parquet"),  # server-side copies of the staged objects
        ("PUT", "shards/shard-00000.tokens"),
    ]
    assert writes[-3:] == [
        ("PUT", "rejects.jsonl"),
        ("PUT", "manifest.json"),
        ("POST", f"{bucket_path}?delete"),
    ]
    assert second.manifest_hash != first.manifest_hash and len(second.manifest.shards) == 1
    assert PreparedDataset(out).manifest_hash == second.manifest_hash
    marker = json.loads(storage.read_bytes(storage.join(out, OUTPUT_MARKER)))
    assert marker["kind"] == "prepare"
    # No object of the old dataset is left: exactly what the new marker lists.
    assert set(storage.find(out)) == {OUTPUT_MARKER, *marker["entries"]} - {"shards"}

    # A prefix vpmoe did not write is never replaced, and nothing is staged for it.
    notes = storage.join(s3_bucket, "notes")
    storage.write_bytes(storage.join(notes, "notes.txt"), b"my notes")
    with pytest.raises(OutputExistsError, match=rf"refusing to overwrite {re.escape(notes)}: .*notes\.txt"):
        prepare(str(small), notes, SMALL, overwrite=True)
    assert storage.read_bytes(storage.join(notes, "notes.txt")) == b"my notes"
    assert storage.find(storage.join(s3_bucket, ".notes.parts")) == {}
    # Nor a prepare output someone added an object to.
    storage.write_bytes(storage.join(out, "extra.txt"), b"x")
    with pytest.raises(OutputExistsError, match=r"entries vpmoe did not write: extra\.txt"):
        prepare(str(small), out, SMALL, overwrite=True)
    assert PreparedDataset(out).manifest_hash == second.manifest_hash


def test_input_errors_name_the_url(s3_bucket, tmp_path):
    out = storage.join(s3_bucket, "o")
    missing = storage.join(s3_bucket, "raw", "nope.parquet")
    with pytest.raises(PrepareError, match=f"input {re.escape(missing)} does not exist"):
        prepare(missing, out, SMALL)
    pattern = storage.join(s3_bucket, "raw", "*.parquet")
    with pytest.raises(PrepareError, match=f"input {re.escape(pattern)} matches no object"):
        prepare(pattern, out, SMALL)
    junk = storage.join(s3_bucket, "raw", "junk.parquet")
    storage.write_bytes(junk, b"not parquet at all")
    with pytest.raises(PrepareError, match=f"{re.escape(junk)}: not a readable Parquet file"):
        prepare(junk, out, SMALL)
    good = write_synth(tmp_path / "in.parquet", [synth_row(0)])
    with pytest.raises(PrepareError, match="all local or all on S3"):
        prepare([str(good), junk], out, SMALL)
    with pytest.raises(PrepareError, match="must be a prefix inside a bucket"):
        prepare(str(good), s3_bucket, SMALL)
    assert storage.find(s3_bucket) == {"raw/junk.parquet": len(b"not parquet at all")}  # nothing written
