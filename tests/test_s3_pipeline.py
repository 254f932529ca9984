"""The pipeline on object storage, against a real S3-compatible HTTP server (moto's server mode,
tests/s3_server.py): scoring writes a store to S3 that is byte-identical to the local one; training,
evaluation and the report read dataset and store from S3 with results identical to the local run; the
loader reads about one ranged GET per array per sample; a missing or partial object is an error naming
its key."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import run_module, score_args
from hydra import compose, initialize_config_dir

from vpmoe.data.manifest import ManifestError
from vpmoe.data.token_records import TOKEN_RECORD_BYTES
from vpmoe.teacher.store import StoreError
from vpmoe.utils import storage

REPO = Path(__file__).resolve().parents[1]


def local_files(root: Path, *subdirs: str) -> dict[str, bytes]:
    out = {}
    for sub in subdirs:
        base = root / sub
        paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        out.update({p.relative_to(root).as_posix(): p.read_bytes() for p in paths})
    return out


@pytest.fixture(scope="module")
def s3_data(s3_server, small_dataset, scored_store):
    """The session's local dataset and store, uploaded as they are: (dataset URL, store URL)."""
    import boto3

    bucket = "pipeline-data"
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).create_bucket(Bucket=bucket)
    ds = f"s3://{bucket}/prepared"
    store = f"s3://{bucket}/scores/{scored_store.parent.name}/{scored_store.name}"
    storage.put_tree(small_dataset, ds)
    for key, data in local_files(scored_store, "zarr.json", "shards").items():
        storage.write_bytes(storage.join(store, key), data)
    return ds, store


def test_score_to_s3_is_byte_identical_to_local(tmp_path, s3_bucket, s3_data, tiny_teacher, scored_store):
    ds, _ = s3_data
    out = f"{s3_bucket}/scores"
    # An s3:// output's console log goes to ./logs/ of the working directory (pipelines/_console.py).
    res = run_module("pipelines.score", *score_args(ds, tiny_teacher, out), cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    store = [x for x in res.stdout.splitlines() if x.startswith("store=")][-1].removeprefix("store=")
    assert store == f"{out}/{scored_store.parent.name}/{scored_store.name}"
    want = local_files(scored_store, "zarr.json", "shards")
    got = storage.find(store)
    assert sorted(got) == sorted(want), "every object of the local store, and nothing else"
    for key, data in want.items():
        assert storage.read_bytes(storage.join(store, key)) == data, key
    # A rerun finds every shard committed (its marker) and scores nothing.
    again = run_module("pipelines.score", *score_args(ds, tiny_teacher, out), cwd=tmp_path)
    assert again.returncode == 0 and "0 to score" in again.stdout + again.stderr
    assert (tmp_path / "logs" / "score-worker0.log").stat().st_size > 0


STEPS = 2
TRAIN = [
    "experiment=cpu_debug",
    f"train.max_steps={STEPS}",
    "train.eval_interval=2",
    "data.global_batch_size=2",
    "data.micro_batch_size=1",
    "data.eval_fraction=0.2",
    "data.eval_max_samples=2",
    "optim.warmup_steps=1",
    f"optim.decay_steps={STEPS}",
    "checkpoint.interval=2",
]


def train(run_dir: Path, dataset: str, store: str, workers: int) -> None:
    from pipelines.train import build_spec
    from vpmoe.train.trainer import run_training

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train", overrides=[f"dataset={dataset}", f"store={store}", *TRAIN, f"data.num_workers={workers}"]
        )
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
    os.environ["MASTER_PORT"] = str(29500 + os.getpid() % 1000 + workers)
    run_training(build_spec(cfg, str(run_dir)))


def test_train_evaluate_and_report_read_from_s3_as_from_local(tmp_path, s3_data, small_dataset, scored_store):
    from vpmoe.report import ReportConfig, run_report, write_report
    from vpmoe.train.evaluate import evaluate_checkpoint
    from vpmoe.train.metrics import read_metrics

    ds, store = s3_data
    train(tmp_path / "local", str(small_dataset), str(scored_store), workers=0)
    # Spawned loader workers: they reach the server through the inherited environment.
    train(tmp_path / "s3", ds, store, workers=1)
    keys = ("step", "loss", "kl", "ce", "grad_norm", "top1")
    for kind in ("train", "eval"):
        a, b = (read_metrics(tmp_path / r / "metrics.jsonl", kind) for r in ("local", "s3"))
        assert [[r[k] for k in keys if k in r] for r in a] == [[r[k] for k in keys if k in r] for r in b]
    ev_local = evaluate_checkpoint(tmp_path / "local", device="cpu")
    ev_s3 = evaluate_checkpoint(tmp_path / "s3", dataset=ds, store=store, device="cpu")
    assert {k: ev_s3[k] for k in ("kl", "ce", "top1")} == {k: ev_local[k] for k in ("kl", "ce", "top1")}

    def comparable(report) -> dict:
        d = report.to_dict()
        d["summary"].pop("seconds"), d["summary"].pop("positions_per_second")
        d.pop("store"), d.pop("dataset")
        return d

    remote = run_report(ds, store, ReportConfig(max_target_nll_ratio=None))
    assert remote.passed, remote.verdict_line()
    assert comparable(remote) == comparable(
        run_report(small_dataset, scored_store, ReportConfig(max_target_nll_ratio=None))
    )
    out = write_report(remote, f"{store}/report")
    assert {"report.json", "report.md"} <= set(storage.find(out))
    write_report(remote, out)  # a previous report is replaced
    storage.write_bytes(f"{ds}/foreign/x.txt", b"not a report")
    with pytest.raises(Exception, match="not a previous report"):
        write_report(remote, f"{ds}/foreign")


def test_loader_reads_one_ranged_get_per_array_per_sample(s3_server, s3_data):
    from vpmoe.teacher.store_reader import TeacherStoreReader
    from vpmoe.train.data import MicroBatchBuilder, SampleIndex

    ds, store = s3_data
    reader = TeacherStoreReader(ds, store)
    index = SampleIndex.build(reader, 0.0)
    builder = MicroBatchBuilder(ds, store, index, reader.k)
    everything = np.arange(len(index))
    first = builder.build(everything)  # opens the reader, loads (and caches) every shard's index
    samples = everything[::2]
    with s3_server.count_requests() as requests:
        again = builder.build(samples)
    for key in ("input_ids", "labels", "teacher_ids", "teacher_logprobs"):
        n = again[key].shape[1]
        assert np.array_equal(again[key].numpy(), first[key][samples, :n].numpy()), key
    assert all(r.method == "GET" and r.range for r in requests), requests
    by_kind = {}
    for r in requests:
        kind = r.path.rsplit("/", 1)[-1] if r.path.endswith(".tokens") else r.path.split("/")[-4]
        by_kind.setdefault("tokens" if kind.endswith(".tokens") else kind, []).append(r)
    assert {k: len(v) for k, v in by_kind.items()} == {
        "tokens": len(samples),
        "topk_id_codes": len(samples),
        "topk_logprob_deltas": len(samples),
    }
    # A token record read is exactly the sample's bytes.
    assert sum(r.range_length for r in by_kind["tokens"]) == TOKEN_RECORD_BYTES * int(
        index.lengths[samples].sum()
    )


def test_missing_or_partial_objects_are_errors_naming_the_key(s3_bucket, s3_data):
    from vpmoe.data.prepared import PreparedDataset
    from vpmoe.data.token_records import TokenRecordError
    from vpmoe.teacher.store_reader import TeacherStoreReader
    from vpmoe.train.data import MicroBatchBuilder, SampleIndex

    ds, store = s3_data
    ds2, store2 = f"{s3_bucket}/prepared", f"{s3_bucket}/store"
    for src, dst in ((ds, ds2), (store, store2)):
        for key in storage.find(src):
            storage.copy(storage.join(src, key), storage.join(dst, key))
    reader = TeacherStoreReader(ds2, store2)
    index = SampleIndex.build(reader, 0.0)
    codes = f"{store2}/shards/shard-00000/topk_id_codes/c/0/0"
    storage.remove(codes)
    with pytest.raises(StoreError, match=codes):
        reader.fetch_rows(0, 0)
    tokens = PreparedDataset(ds2).tokens_url(0)
    storage.write_bytes(tokens, storage.read_bytes(tokens)[:-7])  # a partial object
    last = int(np.flatnonzero(index.shard == 0)[-1])
    with pytest.raises(TokenRecordError, match=tokens):
        MicroBatchBuilder(ds2, store2, index, reader.k).build(np.array([last]))
    storage.remove(f"{store2}/shards/shard-00001.complete.json")
    with pytest.raises(StoreError, match=r"not committed \(shard-00001\)"):
        TeacherStoreReader(ds2, store2)
    storage.remove(f"{ds2}/manifest.json")
    with pytest.raises(ManifestError, match=f"{ds2}/manifest.json"):
        PreparedDataset(ds2)
