"""Reading a `TeacherStore` by sample id (used by the trainer's loader and the reports).

Open with the prepared dataset and the store: the store's recorded dataset manifest hash must equal the
dataset's, and every dataset shard must be committed. Fetch returns one sample's rows. Samples the scorer
quarantined (vpmoe/teacher/quarantine.py) have no rows: they are in `quarantined`, not in the index.

Fast path: a fetch needs a few hundred rows of five arrays; zarr's generic indexing costs ~0.7 ms per
call in overhead alone (measured: 5.4 ms per fetch, ~60k positions/s). The reader therefore decodes the
layout `TeacherStore` writes with the writer's own `ArrayFile` (store.py): each array is one file of
small inner chunks (256 rows for the top-k arrays) and an index (Zarr's sharding codec), so a fetch reads
one byte range per array (`os.pread`) and decodes only the inner chunks its rows lie in (crc32c, size,
blosc). There is no chunk cache: a ~500-row fetch decodes ~1.5x its own rows, and random fetches over a
real store would miss any affordable cache anyway. Then it undoes the row coding (row_coding.py): a
prefix sum of the log-prob bit deltas on the fetched rows, ids through the shard's `id_order`. Anything
but that exact layout is refused, never guessed at. At most `OPEN_SHARDS` shards stay open (their
indices, offsets and code tables), so memory is bounded however many shards a dataset has.

Fork safety: zarr runs an asyncio loop in background threads; a process forked after zarr started holds
a copy of a lock no thread will release, and deadlocks. The reader never starts zarr (metadata is read
as JSON, chunks with numcodecs) and holds no thread. It keeps the array files of its open shards open, but
reads them only with `os.pread`, which never moves the file offset a forked copy shares, and pickles
without its open shards, so it is safe in forked and spawned DataLoader workers alike.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from vpmoe.data.prepared import PreparedDataset
from vpmoe.teacher.quarantine import kept_rows, marker_quarantine
from vpmoe.teacher.row_coding import IdOrder, IdOrderError, logprobs_from_deltas, undo_deltas
from vpmoe.teacher.store import (
    ARRAYS,
    MARKER_SUFFIX,
    ROW_ARRAYS,
    SHARDS,
    STORE_SCHEMA_VERSION,
    ArrayFile,
    ShardArrays,
    StoreError,
    sample_ids_digest,
    shard_stem,
)
from vpmoe.tokenizer import PADDED_VOCAB_SIZE

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherRows:
    """One sample's teacher rows: row j is the teacher's distribution for token positions[j] + 1.

    The top-k arrays come in the narrowest exact types (the stored fp16 values, ids < 2^31): the trainer
    batches them as they are and widens them on its device, where that costs nothing, instead of the
    host spending ~150 ns per row on an fp32 lookup and copying twice the bytes to the device."""

    positions: np.ndarray  # int32 [n]
    topk_ids: np.ndarray  # int32 [n, k]
    topk_logprobs: np.ndarray  # float16 [n, k]
    target_logprob: np.ndarray  # float32 [n]
    target_rank: np.ndarray  # int64 [n]


def resolve_store(path: str | Path, manifest_hash: str) -> Path:
    """The teacher store itself (has zarr.json), or a scoring output root: then the one teacher store
    scored from this dataset, `<root>/<manifest hash>/<teacher id>`; zero or several is an error."""
    path = Path(path)
    if (path / "zarr.json").is_file():
        return path
    keyed = path / manifest_hash
    found = sorted(d for d in keyed.iterdir() if (d / "zarr.json").is_file()) if keyed.is_dir() else []
    if len(found) == 1:
        _log.info("store: %s is a scoring output; using its store for this dataset, %s", path, found[0])
        return found[0]
    if found:
        raise StoreError(
            f"{path}: {len(found)} teacher stores for this dataset ({', '.join(d.name for d in found)}); "
            "pass one of them as store="
        )
    others = sorted(p.parent for p in path.glob("*/*/zarr.json")) if path.is_dir() else []
    hint = f"; stores under it (other datasets): {', '.join(map(str, others[:5]))}" if others else ""
    raise StoreError(
        f"{path}: not a teacher store (no zarr.json) and no store for dataset {manifest_hash} under it. "
        f"Pass the directory pipelines.score prints as store=<output>/<manifest hash>/<teacher id>, or its "
        f"output{hint}"
    )


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
        # A store directory, or the scoring output root it lives under (resolved by manifest hash).
        self.root = resolve_store(store_root, self.dataset.manifest_hash)
        self.attrs = read_store_attrs(self.root)
        if self.attrs.get("dataset_manifest_hash") != self.dataset.manifest_hash:
            raise StoreError(
                f"{self.root} was scored from dataset {self.attrs.get('dataset_manifest_hash')}, but "
                f"{dataset_dir} is dataset {self.dataset.manifest_hash}: refusing to pair them"
            )
        self.k = int(self.attrs["k"])
        self.stems: list[str] = []  # one per dataset shard, in manifest order (incomplete ones raise below)
        self.index: dict[str, tuple[int, int]] = {}  # sample id -> (shard, sequence within the stored shard)
        # Samples left out of the store by the scorer (vpmoe/teacher/quarantine.py): id -> marker entry.
        self.quarantined: dict[str, dict] = {}
        incomplete = []
        for si, entry in enumerate(self.dataset.manifest.shards):
            stem = shard_stem(entry.name)
            marker = self.root / SHARDS / f"{stem}{MARKER_SUFFIX}"
            info = json.loads(marker.read_text()) if marker.is_file() else None
            if info is None or info.get("dataset_shard_sha256") != entry.sha256:
                incomplete.append(stem)
                continue
            ids = pq.read_table(self.dataset.root / entry.name, columns=["sample_id"]).column(0).to_pylist()
            quarantined = marker_quarantine(info)
            ids = [ids[i] for i in kept_rows(ids, quarantined, str(marker))]
            if sample_ids_digest(ids) != info["sample_ids_sha256"]:
                raise StoreError(f"{marker}: sample ids differ from dataset shard {entry.name}")
            self.quarantined.update(quarantined)
            self.stems.append(stem)
            for j, sid in enumerate(ids):
                self.index[sid] = (si, j)
        if incomplete:
            raise StoreError(
                f"{self.root}: {len(incomplete)} of {len(self.dataset.manifest.shards)} shard(s) not committed "
                f"({', '.join(incomplete[:5])}{'...' if len(incomplete) > 5 else ''}); rerun pipelines.score to finish"
            )
        self._open_shards: OrderedDict[int, _OpenShard] = OrderedDict()

    OPEN_SHARDS = 8

    def __getstate__(self):
        return {**self.__dict__, "_open_shards": OrderedDict()}

    def _open(self, si: int) -> _OpenShard:
        shard = self._open_shards.get(si)
        if shard is None:
            shard = _OpenShard(self.root / SHARDS / self.stems[si])
            self._open_shards[si] = shard
            if len(self._open_shards) > self.OPEN_SHARDS:
                self._open_shards.popitem(last=False)[1].close()
        else:
            self._open_shards.move_to_end(si)
        return shard

    def __len__(self) -> int:
        return len(self.index)

    def fetch(self, sample_id: str) -> TeacherRows:
        try:
            si, j = self.index[sample_id]
        except KeyError:
            if sample_id in self.quarantined:
                raise KeyError(
                    f"sample id {sample_id!r} is quarantined (no teacher rows: "
                    f"{self.quarantined[sample_id].get('reasons')}); skip it (train/data.py SampleIndex)"
                ) from None
            raise KeyError(f"sample id {sample_id!r} is not in dataset {self.dataset.root}") from None
        shard = self._open(si)
        a, b = (int(x) for x in shard.offsets[j : j + 2])
        return TeacherRows(
            positions=shard.read("positions", a, b).astype(np.int32),
            topk_ids=shard.topk_ids(a, b, np.int32),
            topk_logprobs=shard.topk_logprobs(a, b),
            target_logprob=shard.read("target_logprob", a, b).astype(np.float32),
            target_rank=shard.read("target_rank", a, b).astype(np.int64),
        )

    def read_shard(self, stem: str) -> ShardArrays:
        """One shard's rows, decoded (ids uint32, log-probs fp16, as the writer took them)."""
        shard = self._open(self.stems.index(stem))
        n = shard.num_rows()
        return ShardArrays(
            positions=shard.read("positions", 0, n).astype(np.int32),
            topk_ids=shard.topk_ids(0, n),
            topk_logprobs=np.ascontiguousarray(logprobs_from_deltas(shard.read("topk_logprob_deltas", 0, n))),
            target_logprob=shard.read("target_logprob", 0, n).astype(np.float32),
            target_rank=shard.read("target_rank", 0, n).astype(np.uint32),
            seq_offsets=shard.offsets.copy(),
        )


class _OpenShard:
    """One shard group's array files (their shard indices), offsets and id code table."""

    def __init__(self, group: Path) -> None:
        self.group = group
        self.files = {name: ArrayFile(group / name) for name in ARRAYS}
        for name in ROW_ARRAYS:  # kept open for the fetches; opened first, so the index reads use them too
            self.files[name].open()
        for f in self.files.values():
            f.bounds  # noqa: B018 -- every index read and checked now: a bad shard fails on open
        self.offsets = self.read("seq_offsets", 0, self.files["seq_offsets"].shape[0]).astype(np.int64)
        try:
            self.id_order = IdOrder(
                self.read("id_order", 0, self.files["id_order"].shape[0]), PADDED_VOCAB_SIZE
            )
        except IdOrderError as e:
            raise StoreError(f"{group / 'id_order'}: {e}") from None

    def close(self) -> None:
        for f in self.files.values():
            f.close()

    def read(self, name: str, a: int, b: int) -> np.ndarray:
        """Rows [a, b) of one array as stored (may be a read-only view)."""
        return self.files[name].read(a, b)

    def num_rows(self) -> int:
        return self.files["positions"].shape[0]

    def topk_ids(self, a: int, b: int, dtype=np.uint32) -> np.ndarray:
        try:
            return self.id_order.decode(self.read("topk_id_codes", a, b), dtype, strict=True)
        except IdOrderError as e:
            raise StoreError(f"{self.group / 'topk_id_codes'}: {e} in rows {a}-{b - 1}") from None

    def topk_logprobs(self, a: int, b: int) -> np.ndarray:
        """fp16 [b - a, k], C order. The fetched rows' deltas are gathered from the decoded inner chunks
        ([k, rows] each) into one [k, b - a] block, so the prefix sum is k - 1 adds of contiguous vectors
        (measured ~2x faster than adding across the chunks in place), then transposed once."""
        name = "topk_logprob_deltas"
        chunks, off = self.files[name].read_chunks(a, b)
        n = max(b - a, 0)
        bits = np.empty((self.files[name].shape[1], n), np.uint16)
        at = 0
        for chunk in chunks:
            part = chunk[:, off : off + n - at]
            bits[:, at : at + part.shape[1]] = part
            at, off = at + part.shape[1], 0
        undo_deltas(bits, axis=0)
        return np.ascontiguousarray(bits.T).view(np.float16)
