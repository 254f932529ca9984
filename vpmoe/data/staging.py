"""Where preparation workers commit their shards before one finalize step publishes the dataset.

Layout (a hidden sibling of the output, one folder per plan so a changed input or config never mixes):
    .<output name>.parts/<plan hash[:16]>/plan.json                 what the plan is (inputs, config)
    .<output name>.parts/<plan hash[:16]>/b00003/shard-00000.parquet  bucket 3's first shard
    .<output name>.parts/<plan hash[:16]>/b00003/shard-00000.json     its commit record (written last)
    .<output name>.parts/<plan hash[:16]>/b00003/done.json            bucket 3 is complete
    .<output name>.parts/<plan hash[:16]>/worker-00001-of-00002.json  worker 1's last run statistics

A bucket belongs to exactly one worker (bucket % num_workers == worker), so no two workers write one
folder. Every file goes through `commit_file` (write, fsync, rename, fsync parent); a shard counts as
committed only once its record exists, and the record is written after the shard (objects first, marker
last), so a crash never leaves a half-written shard that a rerun would take as done.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from vpmoe.utils.atomic import commit_file
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


class Stage:
    def __init__(self, output: Path, plan: dict) -> None:
        self.plan = plan
        self.plan_hash = sha256_json(plan)
        self.parts = output.parent / f".{output.name}.parts"
        self.root = self.parts / self.plan_hash[:16]

    def bucket_dir(self, bucket: int) -> Path:
        return self.root / f"b{bucket:05d}"

    def begin(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # Every worker writes the same bytes here; it documents what the folder holds.
        commit_file(self.root / "plan.json", json.dumps(self.plan, indent=1, sort_keys=True) + "\n")

    def load_bucket(self, bucket: int) -> BucketState:
        """Committed records of `bucket`, in shard order; stops at the first shard without a record."""
        d = self.bucket_dir(bucket)
        state = BucketState(bucket)
        while (rec := _read(d / f"shard-{len(state.records):05d}.json")) is not None:
            state.records.append(rec)
        state.done = _read(d / DONE_FILE)
        if state.done is not None and state.done["shards"] != len(state.records):
            raise StagingError(
                f"{d}: {DONE_FILE} says {state.done['shards']} shard(s) but {len(state.records)} are committed; "
                f"the staging folder was edited; remove {self.root} and rerun the workers"
            )
        return state

    def commit_shard(self, bucket: int, index: int, data: bytes, record: dict) -> None:
        d = self.bucket_dir(bucket)
        d.mkdir(exist_ok=True)
        commit_file(d / f"shard-{index:05d}.parquet", data)
        commit_file(d / f"shard-{index:05d}.json", canonical_json(record) + "\n")  # the commit marker

    def commit_done(self, bucket: int, record: dict) -> None:
        d = self.bucket_dir(bucket)
        d.mkdir(exist_ok=True)
        commit_file(d / DONE_FILE, canonical_json(record) + "\n")

    def shard_path(self, bucket: int, index: int) -> Path:
        return self.bucket_dir(bucket) / f"shard-{index:05d}.parquet"

    def commit_worker_stats(self, worker: int, num_workers: int, stats: dict) -> None:
        path = self.root / f"worker-{worker:05d}-of-{num_workers:05d}.json"
        commit_file(path, json.dumps(stats, sort_keys=True) + "\n")

    def worker_stats(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.root.glob("worker-*-of-*.json"))]

    def remove(self) -> None:
        """Delete this plan's folder, then the parts folder if nothing else (another plan) is left in it."""
        shutil.rmtree(self.root, ignore_errors=True)
        try:
            os.rmdir(self.parts)
        except FileNotFoundError:
            pass
        except OSError:
            log.info("kept %s: it holds other plans' staged work", self.parts)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:  # commit_file never publishes a partial file: this one was edited
        raise StagingError(f"{path}: unreadable commit record ({e}); remove it and rerun its worker") from e


def missing_report(missing: list[int], buckets: int, num_workers: int) -> str:
    """Which workers (of `num_workers`) own the buckets that are not complete yet."""
    workers = sorted({b % num_workers for b in missing})
    shown = ", ".join(str(b) for b in missing[:20]) + (" ..." if len(missing) > 20 else "")
    return (
        f"worker(s) {workers} of num_workers={num_workers} have not committed all their buckets "
        f"({len(missing)} of {buckets} incomplete: {shown})"
    )
