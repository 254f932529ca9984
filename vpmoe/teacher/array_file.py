"""`ArrayFile`: one array of a teacher-store shard group, encoded and decoded by our own code in exactly the
layout Zarr v3 describes for it (the sharding codec: inner chunks + an index), local or on S3.

Split from store.py (the writer) because both the writer and every reader (store_reader.py, the report)
use it: it is the one piece of code that encodes and decodes the arrays.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class StoreError(RuntimeError):
    pass


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
    # Other inner-chunk sizes a store may choose for this array (`topk_chunk_rows`); () = only `rows`.
    rows_choices: tuple[int, ...] = ()
    # blosc block in bytes (0: blosc picks, 32 KiB here). 1 MiB = one block per 256-row top-k chunk (blosc
    # caps it at the chunk): one zstd frame per chunk, measured 0.5 bytes/position smaller for the id
    # codes and no slower; blocks of 8-16 KiB decoded 30-60% slower.
    blocksize: int = 1 << 20

    def blosc(self) -> dict:
        return {"cname": self.cname, "clevel": self.clevel, "shuffle": self.shuffle, "blocksize": self.blocksize,
                "typesize": np.dtype(self.dtype).itemsize}  # fmt: skip


# A fetch reads every inner chunk its rows touch, about (n + rows - 1) / n of its own n rows: 256-row chunks
# suit samples of hundreds of supervised positions (the user's ~2k-token sequences), but a dataset of short
# ones (31 positions: 9x; benchmarks/results/loader_cpu.md) needs smaller chunks. Each store picks one size
# for its top-k arrays from its dataset (`topk_chunk_rows`, recorded in `scoring_config`); all divide the
# scalars' 1024 rows, so the writer's flushes stay whole chunks of every array.
TOPK_CHUNK_ROWS = (16, 32, 64, 128, 256)


def topk_chunk_rows(mean_positions_per_sequence: float) -> int:
    """The top-k inner chunk size for a dataset: the largest of `TOPK_CHUNK_ROWS` not above its mean
    supervised positions per sequence (so a fetch reads < 2x its rows, ~1 + rows / n), at least 16."""
    fit = [r for r in TOPK_CHUNK_ROWS if r <= mean_positions_per_sequence]
    return fit[-1] if fit else TOPK_CHUNK_ROWS[0]


# Sampled stores (vpmoe/teacher/sampling.py) keep ragged rows as flat arrays of (id, count) entries,
# ~12 per position at N = 50: their inner chunks hold ENTRY_ROWS_PER_ROW x the store's top-k chunk rows
# entries, about as many positions' worth as a top-k chunk.
ENTRY_ROWS_PER_ROW = 16
ENTRY_CHUNK_ROWS = tuple(ENTRY_ROWS_PER_ROW * r for r in TOPK_CHUNK_ROWS)

_SCALARS = {"shuffle": "shuffle", "cname": "lz4", "clevel": 9, "rows": 1024, "blocksize": 0}
_WHOLE = {"shuffle": "shuffle", "rows": None, "blocksize": 0}
_ENTRIES = {"rows": ENTRY_CHUNK_ROWS[-1], "rows_choices": ENTRY_CHUNK_ROWS}
LAYOUT = {
    "positions": ArrayLayout(dtype=np.int32, **_SCALARS),
    "topk_id_codes": ArrayLayout(dtype=np.uint32, rows_choices=TOPK_CHUNK_ROWS),
    "id_order": ArrayLayout(dtype=np.uint32, **_WHOLE),
    "topk_logprob_deltas": ArrayLayout(dtype=np.uint16, transpose=True, rows_choices=TOPK_CHUNK_ROWS),
    "target_logprob": ArrayLayout(dtype=np.float32, **_SCALARS),
    "target_rank": ArrayLayout(dtype=np.uint32, **_SCALARS),
    "seq_offsets": ArrayLayout(dtype=np.int64, **_WHOLE),
    # sampled stores only (their shard groups have no topk_* arrays)
    "row_unique": ArrayLayout(dtype=np.uint8, **_SCALARS),
    "tail_count": ArrayLayout(dtype=np.uint8, **_SCALARS),
    "sampled_id_codes": ArrayLayout(dtype=np.uint32, **_ENTRIES),
    "sampled_counts": ArrayLayout(dtype=np.uint8, **_ENTRIES),
    "seq_entry_offsets": ArrayLayout(dtype=np.int64, **_WHOLE),
}
# The arrays of a top-k store's shard group, as stored.
ARRAYS = ("positions", "topk_id_codes", "id_order", "topk_logprob_deltas", "target_logprob", "target_rank", "seq_offsets")  # fmt: skip
SAMPLED_ARRAYS = ("positions", "row_unique", "sampled_id_codes", "id_order", "sampled_counts", "tail_count", "target_logprob", "target_rank", "seq_offsets", "seq_entry_offsets")  # fmt: skip
# The arrays with a row per position (the rest, id_order and seq_offsets, are read whole on open).
ROW_ARRAYS = ("positions", "topk_id_codes", "topk_logprob_deltas", "target_logprob", "target_rank")
SAMPLED_ROW_ARRAYS = ("positions", "row_unique", "tail_count", "target_logprob", "target_rank")
ENTRY_ARRAYS = ("sampled_id_codes", "sampled_counts")  # a row per drawn (id, count) entry
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
    the reader never guesses at another layout. An empty array has no file.

    `path` is local or `s3://` (vpmoe/utils/storage.py): every read is one ranged read, and no file stays
    open, so an instance is safe in forked and spawned processes alike. `sizes`: the shard group's file
    sizes by relative path (its commit marker records them), which saves a metadata request before the
    index read on object storage."""

    def __init__(self, path: str | Path, *, sizes: dict[str, int] | None = None) -> None:
        from vpmoe.utils import storage

        self.path = str(path)
        self.name = posixpath.basename(self.path.rstrip("/"))
        meta_url = storage.join(self.path, "zarr.json")
        try:
            meta = json.loads(storage.read_bytes(meta_url))
        except (storage.StorageError, json.JSONDecodeError) as e:
            raise StoreError(f"{meta_url}: unreadable array metadata ({e})") from e
        self.layout = layout = LAYOUT.get(self.name)
        if layout is None:
            raise StoreError(f"{path}: not an array of a TeacherStore shard (those are {', '.join(LAYOUT)})")
        inner = [{"name": "transpose", "configuration": {"order": [1, 0]}}] if layout.transpose else []
        # zarr writes no endianness for one-byte types (the uint8 arrays of sampled stores)
        endian = {"configuration": {"endian": "little"}} if np.dtype(layout.dtype).itemsize > 1 else {}
        inner += [
            {"name": "bytes", **endian},
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
            and rows in {max(1, min(r or shape[0], shape[0])) for r in (layout.rows, *layout.rows_choices)}
            and meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape")
            == [max(self.n_chunks, 1) * rows, *shape[1:]]  # one shard (file) covers the array
            and meta.get("data_type") == np.dtype(layout.dtype).name
            and meta.get("chunk_key_encoding") == {"name": "default", "configuration": {"separator": "/"}}
            and meta.get("chunk_grid", {}).get("name") == "regular"
            and meta.get("fill_value") == 0
        ) if sharding else False  # fmt: skip
        if not layout_ok:
            raise StoreError(
                f"{path}: not the layout TeacherStore writes for {self.name} ({np.dtype(layout.dtype).name}, "
                f"one shard of {'transpose, ' if layout.transpose else ''}bytes/blosc {layout.cname} "
                f"{layout.shuffle}/crc32c inner chunks of "
                f"{'/'.join(map(str, layout.rows_choices)) if layout.rows_choices else layout.rows or 'all'} rows, "
                "index at the end, default keys)"
            )
        self.shape = shape
        self.rows = rows  # per inner chunk
        self.dtype = np.dtype(layout.dtype).newbyteorder("<")
        self.file = storage.join(self.path, "c", *(["0"] * len(shape)))
        self.size = (sizes or {}).get("/".join([self.name, "c", *(["0"] * len(shape))]))
        self._stored_shape = (*shape[1:], rows) if layout.transpose else (rows, *shape[1:])
        self.index_bytes = 16 * self.n_chunks + 4
        self._chunk_bytes = int(np.prod(self._stored_shape)) * self.dtype.itemsize
        self._bounds: np.ndarray | None = None

    @property
    def bounds(self) -> np.ndarray:
        """The inner chunks' byte offsets (`read_index`), read on first use and kept."""
        if self._bounds is None:
            self._bounds = self.read_index()
        return self._bounds

    @property
    def nbytes_cached(self) -> int:
        """Memory this instance keeps (its chunk bounds), for the reader's cache budget."""
        return 0 if self._bounds is None else self._bounds.nbytes

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
        """The data file, for the writer (local files only: object stores get whole shards uploaded)."""
        file = Path(self.file)
        file.parent.mkdir(parents=True, exist_ok=True)
        return file

    # --- reading ---
    def _read(self, start: int, end: int) -> bytes:
        from vpmoe.utils import storage

        try:
            return storage.read_range(self.file, start, end)
        except storage.StorageError as e:
            raise StoreError(
                f"{self.file}: array file missing or truncated (every array of a committed shard is "
                f"written whole): {e}"
            ) from None

    def read_index(self) -> np.ndarray:
        """Byte offsets of the inner chunks, n + 1 of them (chunk i is bytes [o[i], o[i + 1]) of the file),
        after checking the index's crc32c and that the chunks lie back to back as the writer puts them."""
        import google_crc32c

        from vpmoe.utils import storage

        if not self.n_chunks:
            return np.zeros(1, np.int64)
        if self.size is None:
            try:
                self.size = storage.size(self.file)
            except storage.StorageError as e:
                raise StoreError(f"{self.file}: array file missing ({e})") from None
        start = self.size - self.index_bytes
        if start < 0:
            raise StoreError(
                f"{self.file}: {self.size} bytes, shorter than its {self.index_bytes}-byte index"
            )
        raw = self._read(start, self.size)  # the index ends the file
        body = raw[:-4]
        if google_crc32c.value(body) != int.from_bytes(raw[-4:], "little"):
            raise StoreError(f"{self.file}: shard index crc32c mismatch: the file is truncated or corrupted")
        index = np.frombuffer(body, "<u8").reshape(self.n_chunks, 2).astype(np.int64)
        # Zarr marks a chunk it left out (all fill value) with 2^64 - 1 (here -1); TeacherStore writes all.
        bounds = np.concatenate([[0], np.cumsum(index[:, 1])])
        if (index[:, 1] < 0).any() or (index[:, 0] != bounds[:-1]).any() or bounds[-1] != start:
            raise StoreError(f"{self.file}: the shard index does not describe chunks written back to back")
        # kept per cached shard for the whole run: 4 bytes per inner chunk where the file allows (< 4 GiB)
        return bounds.astype(np.uint32) if bounds[-1] < 2**32 else bounds

    def read_chunks(self, a: int, b: int) -> tuple[list[np.ndarray], int]:
        """The inner chunks holding rows [a, b), decoded as stored (read-only
        arrays of the stored chunk shape: [k, rows] for a transposed layout), and the offset of row a in
        the first. One read of their byte range; each chunk's crc32c and size are checked."""
        import google_crc32c

        c0, c1 = a // self.rows, -(-b // self.rows)
        if c1 <= c0:
            return [], 0
        # A list: a few lookups per chunk, and numpy scalars cost ~10x more there.
        bounds = self.bounds[c0 : c1 + 1].tolist()
        lo = bounds[0]
        data = self._read(lo, bounds[-1])
        blosc, chunks = _blosc(), []
        for c in range(c0, c1):
            s, e = bounds[c - c0] - lo, bounds[c - c0 + 1] - lo - 4
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
