"""Where preparation workers commit their shards before one finalize step publishes the dataset.

Layout (a hidden sibling of the output, one folder per plan so a changed input or config never mixes):
    .<output name>.parts/<plan hash[:16]>/plan.json                 what the plan is (inputs, config)
    .<output name>.parts/<plan hash[:16]>/b00003/shard-00000.parquet  bucket 3's first shard
    .<output name>.parts/<plan hash[:16]>/b00003/shard-00000.tokens   its token records
    .<output name>.parts/<plan hash[:16]>/b00003/shard-00000.json     its commit record (written last)
    .<output name>.parts/<plan hash[:16]>/b00003/done.json            bucket 3 is complete
    .<output name>.parts/<plan hash[:16]>/worker-00001-of-00002.json  worker 1's last run statistics

The output may be a local directory or an `s3://bucket/prefix`; the staging area is then the sibling
prefix `s3://bucket/.<name>.parts/...`, the same layout. Every read, write, listing and removal goes
through `vpmoe/utils/storage.py`: a write is `storage.write_bytes`, all or nothing (locally
`atomic.commit_file`: write, fsync, rename, fsync parent; on S3 one PUT, which S3 publishes only whole).

A bucket belongs to exactly one worker (bucket % num_workers == worker), so no two workers write one
folder. A shard counts as committed only once its record exists, and the record is written after the
shard and its token file (objects first, marker last), so a crash never leaves a half-written shard that
a rerun would take as done: a shard without a record is redone.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vpmoe.utils import storage
from vpmoe.utils.hashing import canonical_json, sha256_json

log = logging.getLogger(__name__)

DONE_FILE = "done.json"


class StagingError(RuntimeError):
    pass


@dataclass
class BucketState:
    """What a bucket already has committed: its shard records in order, and whether it is complete."""

    bucket: int
    records: list[dict] = field(default_factory=list)
    done: dict | None = None

    @property
    def rows_committed(self) -> int:
        """Bucket rows (in input order) already covered by committed shards: a resume skips them."""
        return self.records[-1]["rows_end"] if self.records else 0


def _parent_and_name(output: str | Path) -> tuple[str | Path, str]:
    if storage.is_remote(output):
        url = str(output).rstrip("/")
        parent, _, name = url.rpartition("/")
        if not name or parent.endswith(":/"):  # "s3://bucket": no parent to put the staging area in
            raise StagingError(f"output {output} must be a prefix inside a bucket (s3://bucket/name)")
        return parent, name
    output = Path(output)
    return output.parent, output.name


class Stage:
    """One plan's staging area; `root` is a local Path or an `s3://` URL (str)."""

    def __init__(self, output: str | Path, plan: dict) -> None:
        self.plan = plan
        self.plan_hash = sha256_json(plan)
        parent, name = _parent_and_name(output)
        self.remote = storage.is_remote(str(parent))
        if self.remote:
            self.parts: str | Path = storage.join(parent, f".{name}.parts")
            self.root: str | Path = storage.join(self.parts, self.plan_hash[:16])
        else:
            self.parts = Path(parent) / f".{name}.parts"
            self.root = self.parts / self.plan_hash[:16]

    def _path(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    def bucket_dir(self, bucket: int) -> str:
        return self._path(f"b{bucket:05d}")

    def shard_file(self, bucket: int, index: int, suffix: str) -> str:
        """A staged file of shard `index` of `bucket`: suffix ".parquet", ".tokens" or ".json" (record)."""
        return self._path(f"b{bucket:05d}", f"shard-{index:05d}{suffix}")

    def begin(self) -> None:
        # Every worker writes the same bytes here; it documents what the folder holds.
        storage.write_bytes(self._path("plan.json"), _text(json.dumps(self.plan, indent=1, sort_keys=True)))

    def load_buckets(self, buckets: Iterable[int]) -> list[BucketState]:
        """Committed records of each bucket, in shard order; a bucket's records stop at the first shard
        without one. One listing of the plan's folder and one batch of reads (a few requests on S3)."""
        buckets = list(buckets)
        listing = storage.find(self.root)  # {} when nothing is staged yet
        counts, wanted = {}, []
        for b in buckets:
            k = 0
            while f"b{b:05d}/shard-{k:05d}.json" in listing:
                wanted.append(self.shard_file(b, k, ".json"))
                k += 1
            counts[b] = k
            if f"b{b:05d}/{DONE_FILE}" in listing:
                wanted.append(self._path(f"b{b:05d}", DONE_FILE))
        got = storage.read_many(wanted)
        states = []
        for b in buckets:
            state = BucketState(b)
            for k in range(counts[b]):
                rec = _parse(self.shard_file(b, k, ".json"), got)
                if rec is None:  # deleted since the listing: the bucket's records stop here
                    break
                state.records.append(rec)
            state.done = _parse(self._path(f"b{b:05d}", DONE_FILE), got)
            if state.done is not None and state.done["shards"] != len(state.records):
                raise StagingError(
                    f"{self.bucket_dir(b)}: {DONE_FILE} says {state.done['shards']} shard(s) but "
                    f"{len(state.records)} are committed; the staging folder was edited; remove {self.root} "
                    "and rerun the workers"
                )
            states.append(state)
        return states

    def load_bucket(self, bucket: int) -> BucketState:
        (state,) = self.load_buckets([bucket])
        return state

    def commit_shard(self, bucket: int, index: int, data: bytes, tokens: bytes, record: dict) -> None:
        """The Parquet shard, its token records (vpmoe/data/token_records.py), then the record."""
        storage.write_bytes(self.shard_file(bucket, index, ".parquet"), data)
        storage.write_bytes(self.shard_file(bucket, index, ".tokens"), tokens)
        storage.write_bytes(self.shard_file(bucket, index, ".json"), _text(canonical_json(record)))  # marker

    def commit_done(self, bucket: int, record: dict) -> None:
        storage.write_bytes(self._path(f"b{bucket:05d}", DONE_FILE), _text(canonical_json(record)))

    def commit_worker_stats(self, worker: int, num_workers: int, stats: dict) -> None:
        path = self._path(f"worker-{worker:05d}-of-{num_workers:05d}.json")
        storage.write_bytes(path, _text(json.dumps(stats, sort_keys=True)))

    def worker_stats(self) -> list[dict]:
        if not storage.exists(self.root):
            return []
        names = fnmatch.filter(storage.listdir(self.root), "worker-*-of-*.json")
        got = storage.read_many([self._path(n) for n in names])
        return [json.loads(v) for v in got.values() if v is not None]

    def remove(self) -> None:
        """Delete this plan's folder, then the parts folder if nothing else (another plan) is left in it."""
        if self.remote:
            if storage.exists(self.root):
                storage.remove(self.root, recursive=True)
            if storage.exists(self.parts):  # S3 has no empty folders: nothing is left to delete otherwise
                log.info("kept %s: it holds other plans' staged work", self.parts)
            return
        shutil.rmtree(self.root, ignore_errors=True)
        try:
            os.rmdir(self.parts)
        except FileNotFoundError:
            pass
        except OSError:
            log.info("kept %s: it holds other plans' staged work", self.parts)


def _text(s: str) -> bytes:
    return (s + "\n").encode("utf-8")


def _parse(path: str, got: dict[str, bytes | None]) -> dict | None:
    raw = got.get(path)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError as e:  # writes are all or nothing: this file was edited
        raise StagingError(f"{path}: unreadable commit record ({e}); remove it and rerun its worker") from e


def missing_report(missing: list[int], buckets: int, num_workers: int) -> str:
    """Which workers (of `num_workers`) own the buckets that are not complete yet."""
    workers = sorted({b % num_workers for b in missing})
    shown = ", ".join(str(b) for b in missing[:20]) + (" ..." if len(missing) > 20 else "")
    return (
        f"worker(s) {workers} of num_workers={num_workers} have not committed all their buckets "
        f"({len(missing)} of {buckets} incomplete: {shown})"
    )
