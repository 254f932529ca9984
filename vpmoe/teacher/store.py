"""`TeacherStore`: sparse teacher log-probabilities in Zarr v3, keyed by the dataset manifest.

Layout (docs/teacher_store.md is the contract; schema 3):

    <output>/<manifest_hash>/<teacher_id>/
        zarr.json                          root group; attributes = provenance (StoreProvenance)
        shards/shard-00000/                one Zarr group per dataset shard, same name stem; each array one
                                           file (a Zarr shard of 256-row inner chunks, `ArrayFile`)
            positions            [P] int32      position t within its sequence (student position; predicts t+1)
            topk_id_codes        [P, k] uint32  teacher's top-k token ids for token t+1, rank order, as codes
            id_order             [n] uint32     the shard's code table (row_coding.IdOrder): id of code c < n
            topk_logprob_deltas  [P, k] uint16  their fp16 log-probabilities as bit deltas along k
                                                (row_coding.logprob_deltas; chunks stored transposed)
            target_logprob       [P] float32    log-probability of the actual token t+1
            target_rank          [P] uint32     its rank in the full vocabulary (1 = argmax)
            seq_offsets          [N+1] int64    rows of sequence i: seq_offsets[i]:seq_offsets[i+1]
        shards/shard-00000.complete.json   commit marker: counts + sha256 of every file in the shard group

The writer takes and the reader returns the decoded rows (`ShardArrays`: ids uint32, log-probs fp16);
the codes and deltas are lossless transforms (row_coding.py) that exist only on disk.

Rows are the supervised positions only (labels != -100), in sequence order then position order, and
sequences in the prepared shard's order. Every inner chunk and every shard index carries a crc32c (Zarr's
`crc32c` codec), checked on every read, so a corrupted file is an error, never silent garbage. zarr writes
the metadata; the data is encoded by `ArrayFile` (the same bytes zarr would write, read back by both zarr
and our reader).

Commit protocol (vpmoe/utils/atomic.py): a shard is written into `shards/.tmp-<name>-<owner token>/`, which
its writer holds locked (flock) until the marker is written; the tree is fsynced and renamed to
`shards/<name>/`, and only then is its marker committed (temporary, fsync, rename, fsync of `shards/`). A
shard is complete iff its marker exists and matches; a shard directory without a marker, or a temporary, is
debris from a crash and is deleted and redone, unless its lock shows a live writer (another worker with an
overlapping assignment): then `begin_shard` fails with a clear error and deletes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from vpmoe.teacher.row_coding import TABLE_ROWS, ZARR_CODING_ATTRIBUTES, IdOrder, logprob_deltas
from vpmoe.tokenizer import PADDED_VOCAB_SIZE
from vpmoe.utils.atomic import (
    OutputExistsError,
    Owned,
    commit_directory,
    commit_file,
    make_owned_dir,
    remove_if_stale,
)
from vpmoe.utils.hashing import sha256_file

# 3: each array one Zarr shard file of 256-row inner chunks; 2: id codes + log-prob deltas (row_coding.py)
# in 2048-row chunk files; 1: raw ids and fp16.
STORE_SCHEMA_VERSION = 3
SHARDS = "shards"
MARKER_SUFFIX = ".complete.json"


class StoreError(RuntimeError):
    pass


def _zarr():
    import zarr

    return zarr


# --- Array layout: the one piece of code that encodes (ShardWriter) and decodes (the reader) arrays. ---
# Each array of a shard group is ONE file, a Zarr v3 shard (the `sharding_indexed` codec) covering the whole
# array: inner chunks of `ArrayLayout.rows` rows, then an index of (offset, nbytes) per inner chunk. A
# sample fetch (a few hundred rows) reads one contiguous byte range per array and decodes ~its own rows;
# with one 2048-row chunk per file (schema 2) it decoded ~5x the rows it returned (reader 183k positions
# per CPU-second). Chosen by measurement (benchmarks/results/store_cpu.md, docs/teacher_store.md):
# - top-k arrays (~99% of the bytes): blosc-zstd level 1 (levels 3-5 save ~1-4% at 2-3x the CPU, which the
#   scorer's per-core budget cannot afford), bit shuffle, 256-row inner chunks (a ~500-row fetch decodes
#   ~1.5x its rows; 128 rows is slower, each blosc-zstd call costing ~8 us before any data);
# - per-row scalars: blosc-lz4, 1024-row inner chunks: smaller than zstd at 256 rows and ~3 us per call;
# - the log-prob deltas stored transposed ([k, rows]: one rank's deltas together, ~1.2 bytes/position less).
# Every inner chunk and the index end with a crc32c, so corruption is detected on read.
@dataclass(frozen=True)
class ArrayLayout:
    dtype: type
    shuffle: str = "bitshuffle"  # blosc shuffle: "shuffle" (bytes) or "bitshuffle"
    transpose: bool = False  # inner chunks stored as [k, rows] (Zarr's transpose codec, order [1, 0])
    cname: str = "zstd"
    clevel: int = 1
    rows: int | None = 256  # per inner chunk (capped at the array's length); None: one chunk, the whole array
    # blosc block in bytes (0: blosc picks, 32 KiB here). 1 MiB = one block per 256-row top-k chunk (blosc
    # caps it at the chunk): one zstd frame per chunk, measured 0.5 bytes/position smaller for the id
    # codes and no slower; blocks of 8-16 KiB decoded 30-60% slower.
    blocksize: int = 1 << 20

    def blosc(self) -> dict:
        return {"cname": self.cname, "clevel": self.clevel, "shuffle": self.shuffle, "blocksize": self.blocksize,
                "typesize": np.dtype(self.dtype).itemsize}  # fmt: skip


_SCALARS = {"shuffle": "shuffle", "cname": "lz4", "clevel": 9, "rows": 1024, "blocksize": 0}
_WHOLE = {"shuffle": "shuffle", "rows": None, "blocksize": 0}
LAYOUT = {
    "positions": ArrayLayout(dtype=np.int32, **_SCALARS),
    "topk_id_codes": ArrayLayout(dtype=np.uint32),
    "id_order": ArrayLayout(dtype=np.uint32, **_WHOLE),
    "topk_logprob_deltas": ArrayLayout(dtype=np.uint16, transpose=True),
    "target_logprob": ArrayLayout(dtype=np.float32, **_SCALARS),
    "target_rank": ArrayLayout(dtype=np.uint32, **_SCALARS),
    "seq_offsets": ArrayLayout(dtype=np.int64, **_WHOLE),
}
ARRAYS = tuple(LAYOUT)  # the arrays of a shard group, as stored
# The arrays with a row per position (the rest, id_order and seq_offsets, are read whole on open).
ROW_ARRAYS = ("positions", "topk_id_codes", "topk_logprob_deltas", "target_logprob", "target_rank")
_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}  # numcodecs' ids for zarr's names


def zarr_codecs(layout: ArrayLayout) -> dict:
    """`create_array` keywords declaring `layout`'s inner chunks (Zarr v3: [transpose ->] bytes little-endian
    -> blosc -> crc32c); the caller gives `chunks` (inner) and `shards` (the whole array, one file)."""
    from zarr.codecs import BloscCodec, Crc32cCodec, TransposeCodec

    return {
        "filters": [TransposeCodec(order=(1, 0))] if layout.transpose else [],
        "compressors": [BloscCodec(**layout.blosc()), Crc32cCodec()],
    }


_BLOSC = None


def _blosc():
    global _BLOSC
    if _BLOSC is None:  # once: an import per chunk cost ~3 us, at ~15 chunks per sample fetch
        from numcodecs import blosc

        # One thread, no global blosc context (what zarr itself sets at import): measured no CPU-time
        # gain from blosc threads, and the contextual path is fork-safe.
        blosc.use_threads = False
        _BLOSC = blosc
    return _BLOSC


def _codecs_json(codecs: list) -> list:
    """zarr.json codec entries without empty configurations (zarr writes crc32c without one)."""
    return [{"name": c.get("name"), **({"configuration": c["configuration"]} if c.get("configuration") else {})}
            for c in codecs]  # fmt: skip


class ArrayFile:
    """One array of a shard group as Zarr v3 lays it out for `zarr_codecs(LAYOUT[name])` with
    `chunks=(rows, ...)` and `shards` covering the whole array: the single file `<array>/c/0[/0]` holds inner
    chunks 0..n-1 back to back, each blosc (zstd 1, the layout's shuffle, typesize = itemsize) of the
    chunk's little-endian bytes (whole rows; the last chunk padded with the fill value 0; transposed when
    the layout says so) followed by its crc32c (4 bytes little-endian, zarr's `crc32c` codec); then the
    index, n (offset, nbytes) uint64 pairs little-endian and their crc32c. Opening checks that the array's
    zarr.json declares exactly that, so the bytes written here are what any Zarr v3 reader expects, and
    the reader never guesses at another layout. An empty array has no file."""

    _fd: int | None = None  # kept open between reads after `open()` (pread: no shared offset)

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            meta = json.loads((path / "zarr.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise StoreError(f"{path}: unreadable array metadata ({e})") from e
        self.layout = layout = LAYOUT.get(path.name)
        if layout is None:
            raise StoreError(f"{path}: not an array of a TeacherStore shard (those are {', '.join(ARRAYS)})")
        inner = [{"name": "transpose", "configuration": {"order": [1, 0]}}] if layout.transpose else []
        inner += [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "blosc", "configuration": layout.blosc()},
            {"name": "crc32c"},
        ]
        codecs = _codecs_json(meta.get("codecs", []))
        sharding = codecs[0].get("configuration", {}) if len(codecs) == 1 else {}
        shape = tuple(meta.get("shape", ()))
        rows = sharding.get("chunk_shape", [0])[0]
        self.n_chunks = -(-shape[0] // rows) if shape and isinstance(rows, int) and rows > 0 else 0
        layout_ok = (
            codecs[0]["name"] == "sharding_indexed"
            and _codecs_json(sharding.get("codecs", [])) == inner
            and _codecs_json(sharding.get("index_codecs", []))
            == [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]
            and sharding.get("index_location") == "end"
            and list(sharding["chunk_shape"][1:]) == list(shape[1:])
            and rows == max(1, min(layout.rows or shape[0], shape[0]))
            and meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape")
            == [max(self.n_chunks, 1) * rows, *shape[1:]]  # one shard (file) covers the array
            and meta.get("data_type") == np.dtype(layout.dtype).name
            and meta.get("chunk_key_encoding") == {"name": "default", "configuration": {"separator": "/"}}
            and meta.get("chunk_grid", {}).get("name") == "regular"
            and meta.get("fill_value") == 0
        ) if sharding else False  # fmt: skip
        if not layout_ok:
            raise StoreError(
                f"{path}: not the layout TeacherStore writes for {path.name} ({np.dtype(layout.dtype).name}, "
                f"one shard of {'transpose, ' if layout.transpose else ''}bytes/blosc {layout.cname} "
                f"{layout.shuffle}/crc32c inner chunks of {layout.rows or 'all'} rows, index at the end, default keys)"
            )
        self.shape = shape
        self.rows = rows  # per inner chunk
        self.dtype = np.dtype(layout.dtype).newbyteorder("<")
        self.file = path / "c" / "/".join(["0"] * len(shape))
        self._stored_shape = (*shape[1:], rows) if layout.transpose else (rows, *shape[1:])
        self.index_bytes = 16 * self.n_chunks + 4
        self._chunk_bytes = int(np.prod(self._stored_shape)) * self.dtype.itemsize
        self._bounds: list[int] | None = None

    def open(self) -> None:
        """Keep the file open for reads until `close()` (a reader's open shards: two system calls less
        per read). Safe across fork: `os.pread` never moves a shared file offset."""
        if self._fd is None and self.n_chunks:
            self._fd = os.open(self.file, os.O_RDONLY)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

    def __getstate__(self):
        return {**self.__dict__, "_fd": None}  # a descriptor means nothing in another process

    @property
    def bounds(self) -> list[int]:
        """The inner chunks' byte offsets (`read_index`), read on first use and kept."""
        if self._bounds is None:
            self._bounds = self.read_index()
        return self._bounds

    @property
    def chunks(self) -> tuple[int, ...]:
        """The inner chunk shape (what zarr's `Array.chunks` says of a sharded array)."""
        return (self.rows, *self.shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, rows: slice) -> np.ndarray:
        """`array[a:b]` (row slices only), as a zarr array reads: decoded rows, checks included."""
        a, b, step = rows.indices(self.shape[0])
        if step != 1:
            raise IndexError(f"{self.path}: only contiguous row slices are read")
        return self.read(a, b)

    # --- writing ---
    def encode(self, rows: np.ndarray) -> bytes:
        """Rows of one inner chunk (a whole chunk, or the last one's rows) -> its bytes in the file."""
        import google_crc32c

        chunk = np.ascontiguousarray(rows, dtype=self.dtype)
        if chunk.shape[1:] != self.shape[1:] or not 0 < len(chunk) <= self.rows:
            raise StoreError(
                f"{self.path}: an inner chunk got rows of shape {rows.shape}, chunks are {self.rows} rows"
            )
        if len(chunk) < self.rows:
            padded = np.zeros((self.rows, *self.shape[1:]), self.dtype)
            padded[: len(chunk)] = chunk
            chunk = padded
        if self.layout.transpose:
            chunk = np.ascontiguousarray(chunk.T)
        cfg = self.layout.blosc()
        frame = _blosc().compress(
            chunk,
            cfg["cname"].encode(),
            cfg["clevel"],
            _SHUFFLE[cfg["shuffle"]],
            cfg["blocksize"],
            cfg["typesize"],
        )
        return frame + google_crc32c.value(frame).to_bytes(4, "little")

    def encode_index(self, nbytes: list[int]) -> bytes:
        """The index of chunks written back to back from offset 0 with these sizes."""
        import google_crc32c

        if len(nbytes) != self.n_chunks:
            raise StoreError(
                f"{self.path}: {len(nbytes)} inner chunks written, the array has {self.n_chunks}"
            )
        ends = np.cumsum(nbytes, dtype=np.uint64)
        index = np.stack([ends - np.asarray(nbytes, np.uint64), np.asarray(nbytes, np.uint64)], axis=1)
        raw = index.astype("<u8").tobytes()
        return raw + google_crc32c.value(raw).to_bytes(4, "little")

    def append(self, f, rows: np.ndarray) -> list[int]:
        """Encode rows (whole inner chunks, the last one possibly short) onto the open file `f`; the sizes
        of the chunks written, for `encode_index`."""
        return [f.write(self.encode(rows[a : a + self.rows])) for a in range(0, len(rows), self.rows)]

    def write(self, rows: np.ndarray) -> None:
        """The whole array in one call (small arrays: id_order, seq_offsets)."""
        with open(self.file_for_write(), "wb") as f:
            f.write(self.encode_index(self.append(f, rows)))

    def file_for_write(self) -> Path:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        return self.file

    # --- reading ---
    def _pread(self, n: int, offset: int | None = None) -> tuple[bytes, int]:
        """Up to n bytes at `offset` (None: the file's last n bytes) and the offset read from, through the
        kept descriptor if `open()` was called, else one opened for this read."""
        fd = self._fd
        try:
            if fd is None:
                fd = os.open(self.file, os.O_RDONLY)
            if offset is None:
                offset = max(os.fstat(fd).st_size - n, 0)
            return os.pread(fd, n, offset), offset
        except FileNotFoundError:
            raise StoreError(
                f"{self.file}: array file missing (every array of a committed shard is written)"
            ) from None
        finally:
            if fd is not None and fd != self._fd:
                os.close(fd)

    def read_index(self) -> list[int]:
        """Byte offsets of the inner chunks, n + 1 of them (chunk i is bytes [o[i], o[i + 1]) of the file),
        after checking the index's crc32c and that the chunks lie back to back as the writer puts them.
        A list: fetches index it a few times per chunk, and numpy scalars cost ~10x more there."""
        import google_crc32c

        if not self.n_chunks:
            return [0]
        raw, start = self._pread(self.index_bytes)  # the index ends the file
        body = raw[:-4]
        if len(raw) < self.index_bytes or google_crc32c.value(body) != int.from_bytes(raw[-4:], "little"):
            raise StoreError(f"{self.file}: shard index crc32c mismatch: the file is truncated or corrupted")
        index = np.frombuffer(body, "<u8").reshape(self.n_chunks, 2).astype(np.int64)
        # Zarr marks a chunk it left out (all fill value) with 2^64 - 1 (here -1); TeacherStore writes all.
        bounds = np.concatenate([[0], np.cumsum(index[:, 1])])
        if (index[:, 1] < 0).any() or (index[:, 0] != bounds[:-1]).any() or bounds[-1] != start:
            raise StoreError(f"{self.file}: the shard index does not describe chunks written back to back")
        return bounds.tolist()

    def read_chunks(self, a: int, b: int) -> tuple[list[np.ndarray], int]:
        """The inner chunks holding rows [a, b), decoded as stored (read-only
        arrays of the stored chunk shape: [k, rows] for a transposed layout), and the offset of row a in
        the first. One read of their byte range; each chunk's crc32c and size are checked."""
        import google_crc32c

        c0, c1 = a // self.rows, -(-b // self.rows)
        if c1 <= c0:
            return [], 0
        bounds = self.bounds
        lo = bounds[c0]
        data, _ = self._pread(bounds[c1] - lo, lo)
        if len(data) != bounds[c1] - lo:
            raise StoreError(
                f"{self.file}: truncated (inner chunks {c0}-{c1 - 1} end past the end of the file)"
            )
        blosc, chunks = _blosc(), []
        for c in range(c0, c1):
            s, e = bounds[c] - lo, bounds[c + 1] - lo - 4
            frame = data[s:e]
            if e - s < 16 or google_crc32c.value(frame) != int.from_bytes(data[e : e + 4], "little"):
                raise StoreError(
                    f"{self.file}: crc32c mismatch in inner chunk {c} (rows {c * self.rows}-"
                    f"{(c + 1) * self.rows - 1}): the file is corrupted"
                )
            raw = blosc.decompress(frame)  # to bytes: ~5 us less per call than into a given buffer
            if len(raw) != self._chunk_bytes:
                raise StoreError(
                    f"{self.file}: inner chunk {c} holds {len(raw)} bytes, expected {self._chunk_bytes}"
                )
            chunks.append(np.frombuffer(raw, self.dtype).reshape(self._stored_shape))
        return chunks, a - c0 * self.rows

    def read(self, a: int, b: int) -> np.ndarray:
        """Rows [a, b): a read-only view when they lie in one chunk (Fortran order for a transposed
        layout), else a new array."""
        chunks, off = self.read_chunks(a, b)
        if self.layout.transpose:
            chunks = [c.T for c in chunks]
        if len(chunks) == 1:
            return chunks[0][off : off + b - a]
        if not chunks:
            return np.empty((0, *self.shape[1:]), self.dtype)
        rows = np.concatenate(chunks)
        return rows[off : off + b - a]


@dataclass(frozen=True, kw_only=True)
class StoreProvenance:
    """Root attributes. Two workers writing one store must agree on all of it."""

    schema_version: int = STORE_SCHEMA_VERSION
    dataset_manifest_hash: str
    tokenizer: dict
    teacher_id: str
    teacher_path: str
    teacher_weights_sha256: str
    teacher_config: dict
    engine: str
    engine_version: str
    dtype: str
    k: int
    scoring_config: dict
    scoring_config_hash: str

    def to_dict(self) -> dict:
        return asdict(self)


def store_dir(output: str | Path, manifest_hash: str, teacher_id: str) -> Path:
    return Path(output) / manifest_hash / teacher_id


def shard_stem(dataset_shard_name: str) -> str:
    """'shards/shard-00000.parquet' -> 'shard-00000'."""
    return Path(dataset_shard_name).name.removesuffix(".parquet")


def _tree_sha256(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def sample_ids_digest(sample_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sample_ids).encode()).hexdigest()


@dataclass
class ShardArrays:
    """One shard's decoded rows, in memory (the writer's input and the reader's full-shard output)."""

    ROW_FIELDS: ClassVar[tuple[str, ...]] = (
        "positions",
        "topk_ids",
        "topk_logprobs",
        "target_logprob",
        "target_rank",
    )

    positions: np.ndarray  # int32 [P]
    topk_ids: np.ndarray  # uint32 [P, k]
    topk_logprobs: np.ndarray  # float16 [P, k]
    target_logprob: np.ndarray
    target_rank: np.ndarray
    seq_offsets: np.ndarray


class TeacherStore:
    """Writer side: creates the store root (or checks it agrees) and commits shards atomically."""

    def __init__(self, root: str | Path, provenance: StoreProvenance) -> None:
        self.root = Path(root)
        self.provenance = provenance
        self.shards_dir = self.root / SHARDS
        self._open_or_create()

    def _open_or_create(self) -> None:
        zarr = _zarr()
        meta = self.root / "zarr.json"
        want = self.provenance.to_dict()
        if meta.exists():
            have = dict(zarr.open_group(str(self.root), mode="r").attrs)
            diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
            if diff:
                raise StoreError(
                    f"{self.root}: existing store was made with different settings ({', '.join(diff)}); "
                    "use another output or remove it"
                )
        else:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create store directory {self.root}: {e}") from e
            if not os.access(self.root, os.W_OK):
                raise StoreError(f"store directory {self.root} is not writable")
            # zarr renders the root group metadata in memory; it is committed like every file: concurrent
            # workers race benignly (identical content), a crash never leaves a half-written zarr.json.
            rendered: dict = {}
            zarr.create_group(zarr.storage.MemoryStore(store_dict=rendered), attributes=want, zarr_format=3)
            commit_file(meta, rendered["zarr.json"].to_bytes())
        self.shards_dir.mkdir(exist_ok=True)

    def marker_path(self, stem: str) -> Path:
        return self.shards_dir / f"{stem}{MARKER_SUFFIX}"

    def is_complete(self, stem: str, dataset_shard_sha256: str) -> bool:
        marker = self.marker_path(stem)
        if not marker.exists():
            return False
        info = json.loads(marker.read_text())
        return info.get("dataset_shard_sha256") == dataset_shard_sha256 and info.get("k") == self.provenance.k

    def clear_debris(self, stem: str) -> None:
        """Remove a marker-less shard directory and this shard's temporaries left by a crashed writer.

        Only what no live process holds locked is removed (`remove_if_stale`); a live writer of the same
        shard (overlapping worker assignments) is an error, and nothing of it is touched."""
        if self.marker_path(stem).exists():
            return
        # In commit order, stopping at the first live one: a writer that holds its renamed shard locked
        # is never raced for its marker's temporary.
        for pattern in (stem, f".tmp-{stem}-*", f".{stem}{MARKER_SUFFIX}.tmp-*"):
            for p in self.shards_dir.glob(pattern):
                if not remove_if_stale(p):
                    raise StoreError(
                        f"{self.shards_dir}: shard {stem} is being written by another live process (it "
                        f"holds {p.name} locked); two workers were given overlapping shards (a changed "
                        "num_workers while the old workers still run?). Let it finish, then rerun this worker"
                    )

    def begin_shard(self, stem: str, *, num_positions: int, num_sequences: int) -> ShardWriter:
        self.clear_debris(stem)
        owned = make_owned_dir(self.shards_dir, f".tmp-{stem}-")
        return ShardWriter(self, stem, owned, num_positions=num_positions, num_sequences=num_sequences)


class ShardWriter:
    """Streams rows of one shard into its array files (`ArrayFile`), then commits.

    Takes decoded rows (`ShardArrays` fields but seq_offsets) and codes them (row_coding.py). The id
    order is counted over the shard's first `TABLE_ROWS` positions, so nothing is encoded until that many
    are buffered (~6.5 MB at k=64) or the shard ends. zarr writes the metadata (create_array) and nothing
    else: its write path costs ~4.5 us per position over the encoding itself
    (benchmarks/results/store_cpu.md), so inner chunks are encoded here and appended to each array's file
    as they fill; the shard index goes at the end on commit."""

    def __init__(
        self, store: TeacherStore, stem: str, owned: Owned, *, num_positions: int, num_sequences: int
    ):
        zarr = _zarr()
        tmp = owned.path
        self.store, self.stem, self.tmp, self.owned = store, stem, tmp, owned
        self.num_positions, self.num_sequences = num_positions, num_sequences
        self.group = zarr.create_group(str(tmp), zarr_format=3)
        k = store.provenance.k
        self.arrays = {
            name: self._create(name, (num_positions, k) if name in ("topk_id_codes", "topk_logprob_deltas") else (num_positions,))
            for name in ROW_ARRAYS
        }  # fmt: skip
        self.rows = max(a.rows for a in self.arrays.values())  # rows encoded per flush: whole chunks of each
        # One open file per array while rows stream in (closed by commit or abort); sizes of the inner
        # chunks written, for the index.
        self.files = {n: open(a.file_for_write(), "wb") for n, a in self.arrays.items() if a.n_chunks}  # noqa: SIM115
        self.sizes: dict[str, list[int]] = {n: [] for n in self.files}
        self.id_order: IdOrder | None = None  # counted from the first TABLE_ROWS rows
        self.written = 0  # rows encoded (a multiple of `rows` until the final flush)
        self.buffer: dict[str, list[np.ndarray]] = {n: [] for n in ShardArrays.ROW_FIELDS}
        self.buffered = 0
        self.seq_lengths: list[int] = []

    def _create(self, name: str, shape: tuple) -> ArrayFile:
        """The array's zarr.json: inner chunks of the layout's rows (at most the array's), one shard (file)
        covering the array."""
        layout = LAYOUT[name]
        rows = max(1, min(layout.rows or shape[0], shape[0]))
        chunks = (rows, *shape[1:])
        shards = (max(1, -(-shape[0] // rows)) * rows, *shape[1:])
        self.group.create_array(
            name,
            shape=shape,
            chunks=chunks,
            shards=shards,
            dtype=layout.dtype,
            attributes=ZARR_CODING_ATTRIBUTES.get(name, {}),  # how a plain Zarr reader decodes it
            **zarr_codecs(layout),
        )
        return ArrayFile(self.tmp / name)

    def add_sequence(self, **rows: np.ndarray) -> None:
        if set(rows) != set(ShardArrays.ROW_FIELDS):
            raise StoreError(
                f"{self.stem}: rows must have exactly {ShardArrays.ROW_FIELDS}, got {sorted(rows)}"
            )
        n = len(rows["positions"])
        for name, arr in rows.items():
            self.buffer[name].append(arr)
        self.seq_lengths.append(n)
        self.buffered += n
        if self.written + self.buffered > self.num_positions:
            raise StoreError(
                f"{self.stem}: more rows than the {self.num_positions} supervised positions expected"
            )
        if self.buffered >= self.rows and (self.id_order is not None or self.buffered >= TABLE_ROWS):
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        if not self.buffered and self.id_order is not None:
            return
        take = self.buffered if final else (self.buffered // self.rows) * self.rows
        arrays = {}
        for name, parts in self.buffer.items():
            arr = np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else None
            arrays[name] = arr
            self.buffer[name] = [arr[take:]] if arr is not None and take < len(arr) else []
        if self.id_order is None:  # the first flush: the shard's first min(TABLE_ROWS, P) rows are here
            ids = arrays["topk_ids"]
            self.id_order = IdOrder.count(ids[:TABLE_ROWS] if ids is not None else [], PADDED_VOCAB_SIZE)
            n = len(self.id_order.order)
            order = self._create("id_order", (n,))
            if n:
                order.write(self.id_order.order)
        if take:
            coded = {
                "positions": arrays["positions"][:take],
                "topk_id_codes": self.id_order.encode(arrays["topk_ids"][:take]),
                "topk_logprob_deltas": logprob_deltas(arrays["topk_logprobs"][:take]),
                "target_logprob": arrays["target_logprob"][:take],
                "target_rank": arrays["target_rank"][:take],
            }
            for name, rows in coded.items():
                self.sizes[name] += self.arrays[name].append(self.files[name], rows)
        self.written += take
        self.buffered -= take

    def commit(
        self, *, dataset_shard_sha256: str, sample_ids: list[str], quarantined: list[dict] = ()
    ) -> dict:
        """`sample_ids`: the samples stored (the dataset shard's minus `quarantined`, vpmoe/teacher/quarantine.py)."""
        self._flush(final=True)
        if self.written != self.num_positions or len(self.seq_lengths) != self.num_sequences:
            raise StoreError(
                f"{self.stem}: wrote {self.written} rows / {len(self.seq_lengths)} sequences, expected "
                f"{self.num_positions} / {self.num_sequences}"
            )
        for name, f in self.files.items():
            f.write(self.arrays[name].encode_index(self.sizes[name]))
            f.close()
        offsets = np.concatenate([[0], np.cumsum(self.seq_lengths)]).astype(np.int64)
        self._create("seq_offsets", offsets.shape).write(offsets)
        final = self.store.shards_dir / self.stem
        try:  # our lock follows the directory: it stays held until the marker is committed
            commit_directory(self.tmp, final)
        except OutputExistsError as e:
            raise StoreError(
                f"{final} appeared while this worker wrote it: another worker committed the same shard "
                "(overlapping assignments); nothing was overwritten"
            ) from e
        files = _tree_sha256(final)
        info = {
            "shard": self.stem,
            "dataset_shard_sha256": dataset_shard_sha256,
            "sample_ids_sha256": sample_ids_digest(sample_ids),
            "sequences": self.num_sequences,
            "positions": self.num_positions,
            "k": self.store.provenance.k,
            "bytes": sum((final / f).stat().st_size for f in files),
            "files": files,
            "quarantined": list(quarantined),
        }
        commit_file(self.store.marker_path(self.stem), json.dumps(info, indent=1, sort_keys=True))
        self.owned.close()
        return info

    def abort(self) -> None:
        for f in self.files.values():
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)  # ours (locked); gone already if commit renamed it
        self.owned.close()
