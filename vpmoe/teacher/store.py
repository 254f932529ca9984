"""`TeacherStore`: sparse teacher log-probabilities in Zarr v3, keyed by the dataset manifest.

Layout (docs/teacher_store.md is the contract; schema 2):

    <output>/<manifest_hash>/<teacher_id>/
        zarr.json                          root group; attributes = provenance (StoreProvenance)
        shards/shard-00000/                one Zarr group per dataset shard, same name stem
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
sequences in the prepared shard's order. Every chunk carries a crc32c (Zarr's `crc32c` codec), checked on
every read, so a corrupted chunk is an error, never silent garbage. zarr writes the metadata; the chunks
are encoded by `ChunkCodec` (the same bytes zarr would write, read back by both zarr and our reader).

Commit protocol: a shard is written into `shards/.tmp-<name>-<random>/`, renamed to `shards/<name>/`, and
only then is its marker written (write-to-temp, rename). A shard is complete iff its marker exists and
matches; a shard directory without a marker is debris from a crash and is deleted and redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from vpmoe.teacher.row_coding import TABLE_ROWS, IdOrder, logprob_deltas
from vpmoe.tokenizer import PADDED_VOCAB_SIZE
from vpmoe.utils.hashing import sha256_file

STORE_SCHEMA_VERSION = 2  # 2: id codes + log-prob deltas (row_coding.py); 1 stored raw ids and fp16
SHARDS = "shards"
MARKER_SUFFIX = ".complete.json"
CHUNK_ROWS = 2048  # positions per chunk: ~1-2 chunks per sample fetch; measured in benchmarks/bench_store.py


class StoreError(RuntimeError):
    pass


def _zarr():
    import zarr

    return zarr


# --- Chunk layout: the one piece of code that encodes (ShardWriter) and decodes (the reader) chunks. ---
# Compression chosen by measurement (benchmarks/results/store_cpu.md): blosc-zstd level 1 (levels 3-5 save
# ~1-4% of bytes at 2-3x the CPU, which the scorer's per-core budget cannot afford), byte shuffle, or bit
# shuffle for the id codes (85.9 vs 88.7 bytes/position, and faster), then a crc32c per chunk so
# corruption is detected on read. The log-prob deltas are stored transposed (48.7 vs 53.1 bytes/position).
@dataclass(frozen=True)
class ArrayLayout:
    dtype: type
    shuffle: str = "shuffle"  # blosc shuffle: "shuffle" (bytes) or "bitshuffle"
    transpose: bool = False  # chunk stored as [k, rows] (Zarr's transpose codec, order [1, 0])

    def blosc(self) -> dict:
        return {"cname": "zstd", "clevel": 1, "shuffle": self.shuffle, "blocksize": 0,
                "typesize": np.dtype(self.dtype).itemsize}  # fmt: skip


LAYOUT = {
    "positions": ArrayLayout(dtype=np.int32),
    "topk_id_codes": ArrayLayout(dtype=np.uint32, shuffle="bitshuffle"),
    "id_order": ArrayLayout(dtype=np.uint32),
    "topk_logprob_deltas": ArrayLayout(dtype=np.uint16, transpose=True),
    "target_logprob": ArrayLayout(dtype=np.float32),
    "target_rank": ArrayLayout(dtype=np.uint32),
    "seq_offsets": ArrayLayout(dtype=np.int64),
}
ARRAYS = tuple(LAYOUT)  # the arrays of a shard group, as stored
_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}  # numcodecs' ids for zarr's names


def zarr_codecs(layout: ArrayLayout) -> dict:
    """`create_array` keywords declaring `layout` (Zarr v3: [transpose ->] bytes little-endian -> blosc ->
    crc32c)."""
    from zarr.codecs import BloscCodec, Crc32cCodec, TransposeCodec

    return {
        "filters": [TransposeCodec(order=(1, 0))] if layout.transpose else [],
        "compressors": [BloscCodec(**layout.blosc()), Crc32cCodec()],
    }


def _blosc():
    from numcodecs import blosc

    # One thread, no global blosc context (what zarr itself sets at import): measured no CPU-time gain
    # from blosc threads on 1 MiB chunks, and the contextual path is fork-safe.
    blosc.use_threads = False
    return blosc


class ChunkCodec:
    """The chunks of one store array as Zarr v3 lays them out for `zarr_codecs(LAYOUT[name])`: chunk i of
    a regular grid (whole rows; the last chunk padded with the fill value 0 to the full chunk shape;
    transposed when the layout says so) is the file `<array>/c/<i>/0...` holding blosc (zstd 1, the
    layout's shuffle, typesize = itemsize) of its little-endian bytes, followed by the crc32c of that frame
    as 4 bytes little-endian (zarr's `crc32c` codec). Opening checks that the array's zarr.json declares
    exactly the layout `LAYOUT` gives its name, so the bytes written here are what any Zarr v3 reader
    expects, and the reader never guesses at another layout."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            meta = json.loads((path / "zarr.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise StoreError(f"{path}: unreadable array metadata ({e})") from e
        self.layout = layout = LAYOUT.get(path.name)
        if layout is None:
            raise StoreError(f"{path}: not an array of a TeacherStore shard (those are {', '.join(ARRAYS)})")
        want = [{"name": "transpose", "configuration": {"order": [1, 0]}}] if layout.transpose else []
        want += [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "blosc", "configuration": layout.blosc()},
            {"name": "crc32c"},
        ]
        layout_ok = (
            [{"name": c.get("name"), **({"configuration": c["configuration"]} if c.get("configuration") else {})}
             for c in meta.get("codecs", [])] == want
            and meta.get("data_type") == np.dtype(layout.dtype).name
            and meta.get("chunk_key_encoding") == {"name": "default", "configuration": {"separator": "/"}}
            and meta.get("chunk_grid", {}).get("name") == "regular"
            and meta.get("fill_value") == 0
        )  # fmt: skip
        if not layout_ok:
            raise StoreError(
                f"{path}: not the layout TeacherStore writes for {path.name} ({np.dtype(layout.dtype).name}, "
                f"{'transpose, ' if layout.transpose else ''}bytes/blosc {layout.shuffle}/crc32c, default keys)"
            )
        self.shape = tuple(meta["shape"])
        self.chunk_shape = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
        self.dtype = np.dtype(layout.dtype).newbyteorder("<")
        self._stored_shape = self.chunk_shape[::-1] if layout.transpose else self.chunk_shape

    def key(self, i: int) -> Path:
        return self.path / "c" / "/".join([str(i)] + ["0"] * (len(self.shape) - 1))

    def write(self, i: int, rows: np.ndarray) -> None:
        """Encode rows [i * chunk_rows, ...) (a whole chunk, or the last one's rows) into chunk file i."""
        import google_crc32c

        chunk = np.ascontiguousarray(rows, dtype=self.dtype)
        if chunk.shape[1:] != self.chunk_shape[1:] or not 0 < len(chunk) <= self.chunk_shape[0]:
            raise StoreError(
                f"{self.path}: chunk {i} got rows of shape {rows.shape}, chunks are {self.chunk_shape}"
            )
        if chunk.shape != self.chunk_shape:
            padded = np.zeros(self.chunk_shape, self.dtype)
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
        key = self.key(i)
        key.parent.mkdir(parents=True, exist_ok=True)
        with open(key, "wb") as f:
            f.write(frame)
            f.write(google_crc32c.value(frame).to_bytes(4, "little"))

    def read(self, i: int) -> np.ndarray:
        """Chunk i, rows first (a transposed layout's chunk comes back as a Fortran-order view), crc32c
        verified (a missing or corrupted chunk raises `StoreError` naming the file)."""
        import google_crc32c

        key = self.key(i)
        try:
            raw = key.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{key}: chunk missing (every chunk of a committed shard is written)") from None
        frame = raw[:-4]
        if len(raw) < 4 or google_crc32c.value(frame) != int.from_bytes(raw[-4:], "little"):
            raise StoreError(f"{key}: crc32c checksum mismatch: the chunk is corrupted")
        chunk = np.frombuffer(_blosc().decompress(frame), dtype=self.dtype).reshape(self._stored_shape)
        return chunk.T if self.layout.transpose else chunk


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


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
            # Build the root group metadata in a temp dir and rename the file in: concurrent workers
            # race benignly (identical content), a crash never leaves a half-written zarr.json.
            tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".root-"))
            try:
                zarr.create_group(str(tmp), attributes=want, zarr_format=3)
                os.replace(tmp / "zarr.json", meta)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
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
        """Remove a marker-less shard directory and this shard's temp dirs (a crashed earlier writer)."""
        if self.marker_path(stem).exists():
            return
        shutil.rmtree(self.shards_dir / stem, ignore_errors=True)
        for tmp in self.shards_dir.glob(f".tmp-{stem}-*"):
            shutil.rmtree(tmp, ignore_errors=True)

    def begin_shard(self, stem: str, *, num_positions: int, num_sequences: int) -> ShardWriter:
        self.clear_debris(stem)
        tmp = Path(tempfile.mkdtemp(dir=self.shards_dir, prefix=f".tmp-{stem}-"))
        return ShardWriter(self, stem, tmp, num_positions=num_positions, num_sequences=num_sequences)


class ShardWriter:
    """Streams rows of one shard into chunk files (`ChunkCodec`), then commits.

    Takes decoded rows (`ShardArrays` fields but seq_offsets) and codes them (row_coding.py). The id
    order is counted over the shard's first `TABLE_ROWS` positions, so nothing is encoded until that many
    are buffered (~6.5 MB at k=64) or the shard ends. zarr writes the metadata (create_array) and nothing
    else: its write path costs ~4.5 us per position over the encoding itself
    (benchmarks/results/store_cpu.md), so chunks are encoded here directly."""

    def __init__(self, store: TeacherStore, stem: str, tmp: Path, *, num_positions: int, num_sequences: int):
        zarr = _zarr()
        self.store, self.stem, self.tmp = store, stem, tmp
        self.num_positions, self.num_sequences = num_positions, num_sequences
        k = store.provenance.k
        self.group = zarr.create_group(str(tmp), zarr_format=3)
        rows = max(1, min(CHUNK_ROWS, num_positions))
        shapes = {
            "positions": ((num_positions,), (rows,)),
            "topk_id_codes": ((num_positions, k), (rows, k)),
            "topk_logprob_deltas": ((num_positions, k), (rows, k)),
            "target_logprob": ((num_positions,), (rows,)),
            "target_rank": ((num_positions,), (rows,)),
            "seq_offsets": ((num_sequences + 1,), (num_sequences + 1,)),
        }
        self.codecs = {name: self._create(name, shape, chunks) for name, (shape, chunks) in shapes.items()}
        self.rows = rows
        self.id_order: IdOrder | None = None  # counted from the first TABLE_ROWS rows
        self.written = 0  # rows encoded (a multiple of `rows` until the final flush)
        self.buffer: dict[str, list[np.ndarray]] = {n: [] for n in ShardArrays.ROW_FIELDS}
        self.buffered = 0
        self.seq_lengths: list[int] = []

    def _create(self, name: str, shape: tuple, chunks: tuple) -> ChunkCodec:
        layout = LAYOUT[name]
        self.group.create_array(name, shape=shape, chunks=chunks, dtype=layout.dtype, **zarr_codecs(layout))
        return ChunkCodec(self.tmp / name)

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
        first = self.written // self.rows
        arrays = {}
        for name, parts in self.buffer.items():
            arr = np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else None
            arrays[name] = arr
            self.buffer[name] = [arr[take:]] if arr is not None and take < len(arr) else []
        if self.id_order is None:  # the first flush: the shard's first min(TABLE_ROWS, P) rows are here
            ids = arrays["topk_ids"]
            self.id_order = IdOrder.count(ids[:TABLE_ROWS] if ids is not None else [], PADDED_VOCAB_SIZE)
            n = len(self.id_order.order)
            codec = self._create("id_order", (n,), (max(n, 1),))
            if n:
                codec.write(0, self.id_order.order)
        for c, lo in enumerate(range(0, take, self.rows)):
            sl = slice(lo, min(lo + self.rows, take))
            self.codecs["positions"].write(first + c, arrays["positions"][sl])
            self.codecs["topk_id_codes"].write(first + c, self.id_order.encode(arrays["topk_ids"][sl]))
            self.codecs["topk_logprob_deltas"].write(first + c, logprob_deltas(arrays["topk_logprobs"][sl]))
            self.codecs["target_logprob"].write(first + c, arrays["target_logprob"][sl])
            self.codecs["target_rank"].write(first + c, arrays["target_rank"][sl])
        self.written += take
        self.buffered -= take

    def commit(self, *, dataset_shard_sha256: str, sample_ids: list[str]) -> dict:
        self._flush(final=True)
        if self.written != self.num_positions or len(self.seq_lengths) != self.num_sequences:
            raise StoreError(
                f"{self.stem}: wrote {self.written} rows / {len(self.seq_lengths)} sequences, expected "
                f"{self.num_positions} / {self.num_sequences}"
            )
        offsets = np.concatenate([[0], np.cumsum(self.seq_lengths)]).astype(np.int64)
        self.codecs["seq_offsets"].write(0, offsets)
        final = self.store.shards_dir / self.stem
        os.replace(self.tmp, final)
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
        }
        _atomic_write_text(self.store.marker_path(self.stem), json.dumps(info, indent=1, sort_keys=True))
        return info

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
