"""Reading a `TeacherStore` by sample id (used by the trainer's loader and the reports).

Open with the prepared dataset and the store: the store's recorded dataset manifest hash must equal the
dataset's, and every dataset shard must be committed. Fetch returns one sample's rows.

Fast path: a fetch needs a few hundred rows of five arrays; zarr's generic indexing costs ~0.7 ms per
call in overhead alone (measured: 5.4 ms per fetch, ~60k positions/s). The reader therefore decodes the
chunks of the layout `TeacherStore` writes with the writer's own `ChunkCodec` (store.py) -- verify the
crc32c, blosc-decompress, view as the array's dtype -- and keeps the most recent chunks per array in an
LRU cache, then undoes the row coding (row_coding.py): log-prob bit deltas by a prefix sum over each
decoded chunk (cached decoded), id codes through the shard's `id_order` on the fetched rows only.
Anything but that exact layout is refused, never guessed at. At most `OPEN_SHARDS` shards stay open
(their chunk caches and code tables), so memory is bounded however many shards a dataset has.

Fork safety: zarr runs an asyncio loop in background threads; a process forked after zarr started holds
a copy of a lock no thread will release, and deadlocks. The reader never starts zarr (metadata is read
as JSON, chunks with numcodecs), holds no thread or file handle between calls, and pickles without its
caches, so it is safe in forked and spawned DataLoader workers alike.
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
from vpmoe.teacher.row_coding import IdOrder, IdOrderError, fp16_to_fp32, logprobs_from_deltas
from vpmoe.teacher.store import (
    ARRAYS,
    MARKER_SUFFIX,
    SHARDS,
    STORE_SCHEMA_VERSION,
    ChunkCodec,
    ShardArrays,
    StoreError,
    sample_ids_digest,
    shard_stem,
)
from vpmoe.tokenizer import PADDED_VOCAB_SIZE

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherRows:
    """One sample's teacher rows: row j is the teacher's distribution for token positions[j] + 1."""

    positions: np.ndarray  # int32 [n]
    topk_ids: np.ndarray  # int64 [n, k]
    topk_logprobs: np.ndarray  # float32 [n, k]
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
                self._open_shards.popitem(last=False)
        else:
            self._open_shards.move_to_end(si)
        return shard

    def __len__(self) -> int:
        return len(self.index)

    def fetch(self, sample_id: str) -> TeacherRows:
        try:
            si, j = self.index[sample_id]
        except KeyError:
            raise KeyError(f"sample id {sample_id!r} is not in dataset {self.dataset.root}") from None
        shard = self._open(si)
        a, b = (int(x) for x in shard.offsets[j : j + 2])
        return TeacherRows(
            positions=shard.arrays["positions"].read(a, b),
            topk_ids=shard.topk_ids(a, b, np.int64),
            topk_logprobs=fp16_to_fp32(shard.arrays["topk_logprob_deltas"].view_or_copy(a, b)),
            target_logprob=shard.arrays["target_logprob"].read(a, b),
            target_rank=shard.arrays["target_rank"].read(a, b, np.int64),
        )

    def read_shard(self, stem: str) -> ShardArrays:
        """One shard's rows, decoded (ids uint32, log-probs fp16, as the writer took them)."""
        shard = self._open(self.stems.index(stem))
        n = shard.arrays["positions"].shape[0]
        return ShardArrays(
            positions=shard.arrays["positions"].read(0, n),
            topk_ids=shard.topk_ids(0, n),
            topk_logprobs=shard.topk_logprobs(0, n),
            target_logprob=shard.arrays["target_logprob"].read(0, n),
            target_rank=shard.arrays["target_rank"].read(0, n),
            seq_offsets=shard.offsets.copy(),
        )


class _OpenShard:
    """One shard group's arrays, offsets and id code table."""

    def __init__(self, group: Path) -> None:
        self.group = group
        self.arrays = {name: ChunkedArray(group / name) for name in ARRAYS if name != "topk_logprob_deltas"}
        # Cached decoded: the prefix sum runs once per chunk, as k - 1 vector adds over its 2048 rows.
        self.arrays["topk_logprob_deltas"] = ChunkedArray(
            group / "topk_logprob_deltas", decode=_decode_logprob_chunk, decoded_dtype=np.float16
        )
        self.offsets = self.arrays["seq_offsets"].read(0, self.arrays["seq_offsets"].shape[0])
        order = self.arrays["id_order"]
        try:
            self.id_order = IdOrder(order.read(0, order.shape[0]), PADDED_VOCAB_SIZE)
        except IdOrderError as e:
            raise StoreError(f"{group / 'id_order'}: {e}") from None

    def topk_ids(self, a: int, b: int, dtype=np.uint32) -> np.ndarray:
        codes = self.arrays["topk_id_codes"].view_or_copy(a, b)
        if codes.size and int(codes.max()) >= PADDED_VOCAB_SIZE:
            raise StoreError(
                f"{self.group / 'topk_id_codes'}: a code outside the vocabulary in rows {a}-{b - 1}"
            )
        return self.id_order.decode(codes, dtype)

    def topk_logprobs(self, a: int, b: int) -> np.ndarray:
        """fp16 [b - a, k]."""
        return self.arrays["topk_logprob_deltas"].read(a, b)


def _decode_logprob_chunk(deltas: np.ndarray) -> np.ndarray:
    """A chunk of deltas -> its fp16 log-probs in C order (fetches then slice rows without a copy)."""
    return np.ascontiguousarray(logprobs_from_deltas(deltas))


class ChunkedArray:
    """Row ranges of one store array, decoded chunk by chunk with an LRU cache (see module docstring)."""

    CACHE_CHUNKS = 16  # per array: 16 x 2048 rows x 64 x 4 bytes = 8 MiB for topk_id_codes

    def __init__(self, path: Path, *, decode=None, decoded_dtype=None) -> None:
        self.codec = ChunkCodec(path)
        self.shape, self.chunk_shape = self.codec.shape, self.codec.chunk_shape
        # `decode` maps each chunk as it is read (rows first) to what the cache holds, of `decoded_dtype`.
        self.decode = decode
        self.dtype = np.dtype(decoded_dtype) if decode is not None else self.codec.dtype
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def _chunk(self, i: int) -> np.ndarray:
        hit = self._cache.get(i)
        if hit is not None:
            self._cache.move_to_end(i)
            return hit
        chunk = self.codec.read(i)
        if self.decode is not None:
            chunk = self.decode(chunk)
        self._cache[i] = chunk
        if len(self._cache) > self.CACHE_CHUNKS:
            self._cache.popitem(last=False)
        return chunk

    def view_or_copy(self, a: int, b: int) -> np.ndarray:
        """Rows [a, b) without a copy when they lie in one chunk (a read-only view into the cache: for
        callers that only read it on the way to a new array), else `read`."""
        rows = self.chunk_shape[0]
        if b > a and a // rows == (b - 1) // rows:
            view = self._chunk(a // rows)[a % rows : a % rows + (b - a)]
            view.flags.writeable = False
            return view
        return self.read(a, b)

    def read(self, a: int, b: int, dtype=None) -> np.ndarray:
        """Rows [a, b) as a new C-order array (of `dtype`, default the cached one in native byte order)."""
        rows = self.chunk_shape[0]
        dtype = np.dtype(dtype) if dtype is not None else self.dtype.newbyteorder("=")
        if b <= a:
            return np.empty((0, *self.shape[1:]), dtype=dtype)
        parts = [
            self._chunk(c)[max(a - c * rows, 0) : min(b - c * rows, rows)]
            for c in range(a // rows, (b - 1) // rows + 1)
        ]
        if len(parts) == 1:
            return parts[0].astype(dtype, order="C", copy=True)
        out = np.empty((b - a, *self.shape[1:]), dtype=dtype)
        np.concatenate(parts, out=out, casting="unsafe")
        return out
