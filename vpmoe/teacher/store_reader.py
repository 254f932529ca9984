"""Reading a `TeacherStore` by sample id (used by the trainer's loader and the reports).

Open with the prepared dataset and the store: the store's recorded dataset manifest hash must equal the
dataset's, and every dataset shard must be committed. Fetch returns one sample's rows.

Fork safety: zarr runs an asyncio loop in background threads; a process forked after zarr started holds
a copy of a lock no thread will release, and deadlocks. The reader therefore opens zarr lazily, in the
process that reads, and refuses to be used after a fork once it has read (use DataLoader workers with
`multiprocessing_context="spawn"`; the reader pickles without its zarr handles).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from vpmoe.data.prepared import PreparedDataset
from vpmoe.teacher.store import (
    ARRAYS,
    MARKER_SUFFIX,
    SHARDS,
    STORE_SCHEMA_VERSION,
    ShardArrays,
    StoreError,
    sample_ids_digest,
    shard_stem,
)


@dataclass(frozen=True)
class TeacherRows:
    """One sample's teacher rows: row j is the teacher's distribution for token positions[j] + 1."""

    positions: np.ndarray  # int32 [n]
    topk_ids: np.ndarray  # int64 [n, k]
    topk_logprobs: np.ndarray  # float32 [n, k]
    target_logprob: np.ndarray  # float32 [n]
    target_rank: np.ndarray  # int64 [n]


def read_store_attrs(store_root: str | Path) -> dict:
    meta = Path(store_root) / "zarr.json"
    if not meta.is_file():
        raise StoreError(f"{store_root}: not a teacher store (no zarr.json)")
    attrs = json.loads(meta.read_text()).get("attributes", {})
    if attrs.get("schema_version") != STORE_SCHEMA_VERSION:
        raise StoreError(
            f"{store_root}: store schema_version {attrs.get('schema_version')!r}, this code reads {STORE_SCHEMA_VERSION}"
        )
    return attrs


class TeacherStoreReader:
    def __init__(self, dataset_dir: str | Path, store_root: str | Path) -> None:
        self.dataset = PreparedDataset(dataset_dir)
        self.root = Path(store_root)
        self.attrs = read_store_attrs(self.root)
        if self.attrs.get("dataset_manifest_hash") != self.dataset.manifest_hash:
            raise StoreError(
                f"{self.root} was scored from dataset {self.attrs.get('dataset_manifest_hash')}, but "
                f"{dataset_dir} is dataset {self.dataset.manifest_hash}: refusing to pair them"
            )
        self.k = int(self.attrs["k"])
        self.stems: list[str] = []
        self.index: dict[str, tuple[int, int]] = {}
        incomplete = []
        for si, entry in enumerate(self.dataset.manifest.shards):
            stem = shard_stem(entry.name)
            marker = self.root / SHARDS / f"{stem}{MARKER_SUFFIX}"
            info = json.loads(marker.read_text()) if marker.is_file() else None
            if info is None or info.get("dataset_shard_sha256") != entry.sha256:
                incomplete.append(stem)
                continue
            ids = pq.read_table(self.dataset.root / entry.name, columns=["sample_id"]).column(0).to_pylist()
            if sample_ids_digest(ids) != info["sample_ids_sha256"]:
                raise StoreError(f"{marker}: sample ids differ from dataset shard {entry.name}")
            self.stems.append(stem)
            for j, sid in enumerate(ids):
                self.index[sid] = (si, j)
        if incomplete:
            raise StoreError(
                f"{self.root}: {len(incomplete)} of {len(self.dataset.manifest.shards)} shard(s) not committed "
                f"({', '.join(incomplete[:5])}{'...' if len(incomplete) > 5 else ''}); rerun pipelines.score to finish"
            )
        self._pid = os.getpid()
        self._arrays: dict[int, dict] | None = None
        self._offsets: dict[int, np.ndarray] = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_arrays"] = None
        state["_pid"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._pid = os.getpid()

    def _open(self, si: int) -> dict:
        if self._arrays is not None and self._pid != os.getpid():
            raise StoreError(
                "TeacherStoreReader used in a forked child after reading in the parent: zarr's threads "
                "deadlock under fork. Use spawned workers (multiprocessing_context='spawn')."
            )
        if self._arrays is None:
            self._arrays, self._pid = {}, os.getpid()
        if si not in self._arrays:
            import zarr

            group = zarr.open_group(str(self.root / SHARDS / self.stems_by_dataset_index(si)), mode="r")
            self._arrays[si] = {name: group[name] for name in ARRAYS}
            self._offsets[si] = self._arrays[si]["seq_offsets"][:]
        return self._arrays[si]

    def stems_by_dataset_index(self, si: int) -> str:
        return shard_stem(self.dataset.manifest.shards[si].name)

    def __len__(self) -> int:
        return len(self.index)

    def fetch(self, sample_id: str) -> TeacherRows:
        try:
            si, j = self.index[sample_id]
        except KeyError:
            raise KeyError(f"sample id {sample_id!r} is not in dataset {self.dataset.root}") from None
        arrays = self._open(si)
        a, b = (int(x) for x in self._offsets[si][j : j + 2])
        return TeacherRows(
            positions=arrays["positions"][a:b],
            topk_ids=arrays["topk_ids"][a:b].astype(np.int64),
            topk_logprobs=arrays["topk_logprobs"][a:b].astype(np.float32),
            target_logprob=arrays["target_logprob"][a:b],
            target_rank=arrays["target_rank"][a:b].astype(np.int64),
        )

    def read_shard(self, stem: str) -> ShardArrays:
        si = next(i for i, e in enumerate(self.dataset.manifest.shards) if shard_stem(e.name) == stem)
        arrays = self._open(si)
        return ShardArrays(**{name: arrays[name][:] for name in ARRAYS})
