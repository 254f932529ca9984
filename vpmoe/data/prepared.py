"""Reading a prepared dataset: the manifest plus its token shards (used by scoring and training).

Shard layout (Parquet, one row per sequence, written by `vpmoe.data.prepare`):
    sample_id     string     SYNTH `synth_id`, unique across the dataset
    language      string     passed through from the source row
    exercise      string     passed through from the source row
    input_ids     list<int32>  the full Harmony sequence
    token_spans   list<int8>   `Span` of each token (system/user/reasoning/final)
    labels        list<int32>  input_ids shifted left; -100 where the position is unsupervised
    num_tokens    int32
    num_supervised int32
    tokens_crc32c  uint32      crc32c of the sequence's token record (vpmoe/data/token_records.py)
    + any `passthrough_columns` from the config, unchanged
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vpmoe.data.harmony_render import IGNORE_INDEX, position_spans
from vpmoe.data.manifest import DatasetManifest, ManifestError, ShardEntry
from vpmoe.data.token_records import tokens_name

SHARD_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("language", pa.string()),
        ("exercise", pa.string()),
        ("input_ids", pa.list_(pa.int32())),
        ("token_spans", pa.list_(pa.int8())),
        ("labels", pa.list_(pa.int32())),
        ("num_tokens", pa.int32()),
        ("num_supervised", pa.int32()),
        ("tokens_crc32c", pa.uint32()),
    ]
)


@dataclass(frozen=True)
class PreparedShard:
    """One shard as flat arrays: sequence i is `input_ids[offsets[i]:offsets[i+1]]`."""

    name: str
    sample_ids: list[str]
    languages: list[str | None]
    exercises: list[str | None]
    offsets: np.ndarray  # int64 [N+1]
    input_ids: np.ndarray  # int32 [sum T]
    token_spans: np.ndarray  # int8 [sum T]
    labels: np.ndarray  # int32 [sum T]

    def __len__(self) -> int:
        return len(self.sample_ids)

    def sequence(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.input_ids[a:b], self.token_spans[a:b], self.labels[a:b]

    def supervised_positions(self, i: int) -> np.ndarray:
        """Positions t (within sequence i) whose target token t+1 the student is trained on."""
        _, _, labels = self.sequence(i)
        return np.flatnonzero(labels != IGNORE_INDEX)

    def position_spans(self, i: int) -> np.ndarray:
        _, spans, labels = self.sequence(i)
        return position_spans(spans, labels)


class PreparedDataset:
    """A `pipelines.prepare` output directory (local or `s3://`), opened and verified against its manifest."""

    def __init__(self, root: str | Path) -> None:
        from vpmoe.utils import storage

        self.root = str(root).rstrip("/") if storage.is_remote(str(root)) else Path(root)
        self.manifest = DatasetManifest.load(self.root)

    @property
    def manifest_hash(self) -> str:
        return self.manifest.manifest_hash

    @property
    def shard_names(self) -> list[str]:
        return [s.name for s in self.manifest.shards]

    def url(self, name: str) -> str:
        """A file of the dataset (a manifest name), as a local path or URL for vpmoe/utils/storage.py."""
        from vpmoe.utils import storage

        return storage.join(str(self.root), name)

    def tokens_url(self, shard: int) -> str:
        """The token-record file of manifest shard `shard` (vpmoe/data/token_records.py)."""
        return self.url(tokens_name(self.manifest.shards[shard].name))

    def _entry(self, name: str) -> ShardEntry:
        entry = next((s for s in self.manifest.shards if s.name == name), None)
        if entry is None:
            raise ManifestError(f"{self.root}: shard {name!r} is not in the manifest")
        return entry

    def read_columns(self, name: str, columns: list[str]) -> pa.Table:
        """Some columns of one shard (only those are read: Parquet column chunks)."""
        from vpmoe.utils import storage

        self._entry(name)
        url = self.url(name)
        try:
            with storage.open_input(url) as f, pq.ParquetFile(f, **storage.PYTHON_SOURCE_READ) as pf:
                return pf.read(columns=columns, use_threads=False)
        except storage.StorageError as e:
            raise ManifestError(
                f"{url}: shard listed in the manifest is missing or unreadable ({e})"
            ) from None

    def sample_ids(self, name: str) -> list[str]:
        return self.read_columns(name, ["sample_id"]).column(0).to_pylist()

    def read_shard(self, name: str, *, verify: bool = True) -> PreparedShard:
        from vpmoe.utils import storage

        entry = self._entry(name)
        url = self.url(name)
        try:
            data = storage.read_bytes(url)
        except storage.StorageError as e:
            raise ManifestError(f"{url}: shard listed in the manifest is missing ({e})") from None
        if verify and (digest := hashlib.sha256(data).hexdigest()) != entry.sha256:
            raise ManifestError(f"{url}: sha256 {digest} != manifest's {entry.sha256}; the shard is corrupt")
        with pq.ParquetFile(pa.BufferReader(data), **storage.PYTHON_SOURCE_READ) as pf:
            table = pf.read(use_threads=False)
        ids_col = table.column("input_ids").combine_chunks()
        offsets = ids_col.offsets.to_numpy().astype(np.int64)
        offsets -= offsets[0]

        def flat(col: str, dtype) -> np.ndarray:
            arr = table.column(col).combine_chunks()
            return arr.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False)

        shard = PreparedShard(
            name=name,
            sample_ids=table.column("sample_id").to_pylist(),
            languages=table.column("language").to_pylist(),
            exercises=table.column("exercise").to_pylist(),
            offsets=offsets,
            input_ids=flat("input_ids", np.int32),
            token_spans=flat("token_spans", np.int8),
            labels=flat("labels", np.int32),
        )
        if len(shard) != entry.sequences or int(offsets[-1]) != entry.tokens:
            raise ManifestError(
                f"{url}: {len(shard)} sequences / {int(offsets[-1])} tokens, manifest says "
                f"{entry.sequences} / {entry.tokens}"
            )
        return shard
