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
`crc32c` codec), checked on every read, so a corrupted file is an error, never silent garbage. zarr renders
the metadata (`ShardWriter._create` writes it as rendered); the data is encoded by `ArrayFile` (the same
bytes zarr would write, read back by both zarr and our reader).

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

from vpmoe.teacher.array_file import (  # noqa: F401 -- re-exported: the store's names
    ARRAYS,
    LAYOUT,
    ROW_ARRAYS,
    TOPK_CHUNK_ROWS,
    ArrayFile,
    ArrayLayout,
    StoreError,
    zarr_codecs,
)
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
# Sampled stores (RS-KD, scoring_config.storage = "sampled": vpmoe/teacher/sampled_store.py): ragged rows of
# drawn ids and counts instead of top-k rows; the root, provenance, markers and commit protocol are shared.
SAMPLED_STORE_SCHEMA_VERSION = 4
STORE_SCHEMAS = {"topk": STORE_SCHEMA_VERSION, "sampled": SAMPLED_STORE_SCHEMA_VERSION}
SHARDS = "shards"
MARKER_SUFFIX = ".complete.json"


def _zarr():
    import zarr

    return zarr


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


def storage_of(attrs: dict) -> str:
    """A store's kind from its root attributes as written: scoring_config.storage, "topk" when absent
    (top-k stores keep the scoring config they had before sampled stores existed). Not validated."""
    cfg = attrs.get("scoring_config")
    return cfg.get("storage", "topk") if isinstance(cfg, dict) else "topk"


def store_rows(attrs: dict) -> tuple[str, int]:
    """(storage, row width) of a store from its root attributes: "topk" rows of k ids, or "sampled" rows
    of at most min(samples, k) drawn ids (padded to that width when read). A schema_version that is not
    the storage's is an error (a store written by other code)."""
    cfg = attrs.get("scoring_config") or {}
    storage = storage_of(attrs)
    if storage not in STORE_SCHEMAS:
        raise StoreError(f"scoring_config.storage {storage!r} is not one of {sorted(STORE_SCHEMAS)}")
    if attrs.get("schema_version") != STORE_SCHEMAS[storage]:
        raise StoreError(
            f"store schema_version {attrs.get('schema_version')!r}, this code reads {STORE_SCHEMAS[storage]} "
            f"for {storage} stores"
        )
    k = int(attrs["k"])
    return storage, (min(int(cfg["samples"]), k) if storage == "sampled" else k)


def store_dir(output: str | Path, manifest_hash: str, teacher_id: str) -> str | Path:
    from vpmoe.utils import storage

    if storage.is_remote(str(output)):
        return storage.join(str(output), manifest_hash, teacher_id)
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
    """Writer side: creates the store root (or checks it agrees) and commits shards atomically.

    `root` is a local directory or an `s3://` prefix (vpmoe/utils/storage.py). On object storage there is
    no rename and no lock: a shard is written into a local temporary (`work_dir`), its objects are
    uploaded under `shards/<name>/`, and its marker is PUT last. A shard without a marker is incomplete
    whatever objects it has; a rerun rewrites all of them (same keys), then the marker. Two workers must
    not be given one shard there (the scheduler's disjoint assignment is what prevents it)."""

    def __init__(
        self, root: str | Path, provenance: StoreProvenance, *, work_dir: str | Path | None = None
    ) -> None:
        from vpmoe.utils import storage

        self.remote = storage.is_remote(str(root))
        self.root = str(root).rstrip("/") if self.remote else Path(root)
        self.provenance = provenance
        # The top-k arrays' inner chunk rows (array_file.topk_chunk_rows): the scorer derives it from the
        # dataset and records it in scoring_config; stores without it use the layout's 256.
        self.topk_rows = int(provenance.scoring_config.get("topk_chunk_rows", LAYOUT["topk_id_codes"].rows))
        if self.topk_rows not in TOPK_CHUNK_ROWS:
            raise StoreError(
                f"scoring_config.topk_chunk_rows {self.topk_rows} is not one of {TOPK_CHUNK_ROWS}"
            )
        self.storage, self.row_width = store_rows(provenance.to_dict())
        if self.remote:
            import tempfile

            self.shards_dir = storage.join(self.root, SHARDS)
            self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="vpmoe-store-"))
            self.work_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.shards_dir = self.root / SHARDS
            self.work_dir = self.shards_dir  # temporaries beside their final place: a rename commits them
        self._open_or_create()

    def _open_or_create(self) -> None:
        from vpmoe.utils import storage

        zarr = _zarr()
        meta = storage.join(str(self.root), "zarr.json")
        want = self.provenance.to_dict()
        if storage.exists(meta):
            have = json.loads(storage.read_bytes(meta)).get("attributes", {})
            diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
            if diff:
                raise StoreError(
                    f"{self.root}: existing store was made with different settings ({', '.join(diff)}); "
                    "use another output or remove it"
                )
        else:
            if not self.remote:
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
            try:
                storage.write_bytes(meta, rendered["zarr.json"].to_bytes())
            except storage.StorageError as e:
                raise StoreError(f"cannot create the store at {self.root}: {e}") from e
        if not self.remote:
            self.shards_dir.mkdir(exist_ok=True)

    def marker_path(self, stem: str) -> str | Path:
        from vpmoe.utils import storage

        return (
            storage.join(self.shards_dir, f"{stem}{MARKER_SUFFIX}")
            if self.remote
            else self.shards_dir / f"{stem}{MARKER_SUFFIX}"
        )

    def read_marker(self, stem: str) -> dict | None:
        from vpmoe.utils import storage

        marker = str(self.marker_path(stem))
        return json.loads(storage.read_bytes(marker)) if storage.exists(marker) else None

    def is_complete(self, stem: str, dataset_shard_sha256: str) -> bool:
        info = self.read_marker(stem)
        return (
            info is not None
            and info.get("dataset_shard_sha256") == dataset_shard_sha256
            and info.get("k") == self.provenance.k
        )

    def clear_debris(self, stem: str) -> None:
        """Remove a marker-less shard directory and this shard's temporaries left by a crashed writer.

        Only what no live process holds locked is removed (`remove_if_stale`); a live writer of the same
        shard (overlapping worker assignments) is an error, and nothing of it is touched."""
        if self.remote or self.marker_path(stem).exists():
            return  # object storage: a rerun's PUTs replace an incomplete shard's objects (same keys)
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
        owned = make_owned_dir(self.work_dir, f".tmp-{stem}-")
        if self.storage == "sampled":
            from vpmoe.teacher.sampled_store import SampledShardWriter

            return SampledShardWriter(
                self, stem, owned, num_positions=num_positions, num_sequences=num_sequences
            )
        return ShardWriter(self, stem, owned, num_positions=num_positions, num_sequences=num_sequences)


class ShardWriter:
    """Streams rows of one shard into its array files (`ArrayFile`), then commits.

    Takes decoded rows (`ShardArrays` fields but seq_offsets) and codes them (row_coding.py). The id
    order is counted over the shard's first `TABLE_ROWS` positions, so nothing is encoded until that many
    are buffered (~6.5 MB at k=64) or the shard ends. zarr renders the metadata (create_array) and nothing
    else: its write path costs ~4.5 us per position over the encoding itself
    (benchmarks/results/store_cpu.md), so inner chunks are encoded here and appended to each array's file
    as they fill; the shard index goes at the end on commit.

    The buffering, the code table, the array metadata and the commit serve both store kinds: the writer of
    a sampled store (`SampledShardWriter`) sets the class attributes below and overrides the hooks
    `_shapes`, `_check_sequence`, `_table_ids` and `_code_rows`, and extends `_flush` and `_close_arrays`
    with its entry arrays."""

    FIELDS: ClassVar[tuple[str, ...]] = ShardArrays.ROW_FIELDS  # add_sequence's keywords, all buffered
    # The buffered fields with an item per row (taken `rows` at a time) and the arrays they are coded into.
    PER_ROW_FIELDS: ClassVar[tuple[str, ...]] = ShardArrays.ROW_FIELDS
    PER_ROW_ARRAYS: ClassVar[tuple[str, ...]] = ROW_ARRAYS
    CODING_ATTRIBUTES: ClassVar[dict] = ZARR_CODING_ATTRIBUTES  # an array's Zarr attributes, by name
    # Inner chunk rows of the arrays whose layout offers a choice (`rows_choices`), per row of the top-k
    # chunk size the store chose (`topk_rows`): the top-k arrays use that size itself.
    CHOSEN_ROWS_PER_TOPK_ROW: ClassVar[int] = 1

    def __init__(
        self, store: TeacherStore, stem: str, owned: Owned, *, num_positions: int, num_sequences: int
    ):
        zarr = _zarr()
        tmp = owned.path
        self.store, self.stem, self.tmp, self.owned = store, stem, tmp, owned
        self.num_positions, self.num_sequences = num_positions, num_sequences
        self.group = zarr.create_group(str(tmp), zarr_format=3)
        self.chosen_rows = self.CHOSEN_ROWS_PER_TOPK_ROW * store.topk_rows
        self.arrays = {name: self._create(name, shape) for name, shape in self._shapes().items()}
        # rows encoded per flush: whole chunks of each per-row array
        self.rows = max(self.arrays[n].rows for n in self.PER_ROW_ARRAYS)
        # One open file per array while rows stream in (closed by commit or abort); sizes of the inner
        # chunks written, for the index.
        self.files = {n: open(a.file_for_write(), "wb") for n, a in self.arrays.items() if a.n_chunks}  # noqa: SIM115
        self.sizes: dict[str, list[int]] = {n: [] for n in self.files}
        self.id_order: IdOrder | None = None  # counted from the first TABLE_ROWS rows
        self.written = 0  # rows encoded (a multiple of `rows` until the final flush)
        self.buffer: dict[str, list[np.ndarray]] = {n: [] for n in self.FIELDS}
        self.buffered = 0
        self.seq_lengths: list[int] = []

    def _shapes(self) -> dict[str, tuple]:
        """Hook: the arrays streamed as rows come, by name, at their shapes when the shard begins."""
        p, k = self.num_positions, self.store.provenance.k
        return {
            name: (p, k) if name in ("topk_id_codes", "topk_logprob_deltas") else (p,) for name in ROW_ARRAYS
        }

    def _create(self, name: str, shape: tuple) -> ArrayFile:
        """Declare the array and open it for encoding: its zarr.json, inner chunks of the layout's rows (the
        writer's `chosen_rows` where the layout offers a choice; at most the array's length), one shard
        (file) covering the array. zarr renders the metadata in memory and it is written here, so that
        re-declaring an array (a sampled store's entry arrays, at their final length) leaves its data file
        alone; the bytes are those zarr's own store would write."""
        zarr = _zarr()
        layout = LAYOUT[name]
        rows = max(1, min((self.chosen_rows if layout.rows_choices else layout.rows) or shape[0], shape[0]))
        rendered: dict = {}
        group = zarr.create_group(zarr.storage.MemoryStore(store_dict=rendered), zarr_format=3)
        group.create_array(
            name,
            shape=shape,
            chunks=(rows, *shape[1:]),
            shards=(max(1, -(-shape[0] // rows)) * rows, *shape[1:]),
            dtype=layout.dtype,
            attributes=self.CODING_ATTRIBUTES.get(name, {}),  # how a plain Zarr reader decodes it
            **zarr_codecs(layout),
        )
        (self.tmp / name).mkdir(exist_ok=True)
        (self.tmp / name / "zarr.json").write_bytes(rendered[f"{name}/zarr.json"].to_bytes())
        return ArrayFile(self.tmp / name)

    def add_sequence(self, **rows: np.ndarray) -> None:
        """Buffer one sequence's rows (exactly the `FIELDS`, decoded); encode the whole chunks they fill."""
        if set(rows) != set(self.FIELDS):
            raise StoreError(
                f"{self.stem}: {self.store.storage} rows must have exactly {self.FIELDS}, got {sorted(rows)}"
            )
        self._check_sequence(rows)
        n = len(rows["positions"])
        for name, arr in rows.items():
            self.buffer[name].append(arr)
        self.seq_lengths.append(n)
        self.buffered += n
        if self.written + self.buffered > self.num_positions:
            raise StoreError(
                f"{self.stem}: more rows than the {self.num_positions} supervised positions expected"
            )
        # Nothing is encoded before the code table is counted (over TABLE_ROWS rows, or all at commit);
        # after it any sequence may fill a chunk (of rows, or of a sampled store's entries): `_flush`
        # encodes whole chunks only, so a flush that finds none costs nothing.
        if self.id_order is not None or self.buffered >= TABLE_ROWS:
            self._flush(final=False)

    def _check_sequence(self, rows: dict[str, np.ndarray]) -> None:
        """Hook: check (and count) a sequence's rows beyond their fields, before any is buffered."""

    def _flush(self, *, final: bool) -> None:
        """Encode the buffered rows' whole chunks (all of them when `final`) onto the array files. The first
        call counts the shard's code table (`_table_ids`) before taking anything from the buffer: the
        shard's first TABLE_ROWS rows (or all its rows) are all in it then."""
        if self.id_order is None:
            self.id_order = IdOrder.count(self._table_ids(), PADDED_VOCAB_SIZE)
            n = len(self.id_order.order)
            order = self._create("id_order", (n,))
            if n:
                order.write(self.id_order.order)
        take = self._encode(self.PER_ROW_FIELDS, self.buffered, self.rows, final, self._code_rows)
        self.written += take
        self.buffered -= take

    def _table_ids(self) -> np.ndarray:
        """Hook: the ids the shard's code table is counted over: the top-k ids of its first TABLE_ROWS rows."""
        ids = self._peek("topk_ids")
        return ids[:TABLE_ROWS] if ids is not None else np.zeros(0, np.uint32)

    def _code_rows(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Hook: taken `PER_ROW_FIELDS` rows -> the `PER_ROW_ARRAYS` rows as stored (row_coding.py)."""
        return {
            "positions": rows["positions"],
            "topk_id_codes": self.id_order.encode(rows["topk_ids"]),
            "topk_logprob_deltas": logprob_deltas(rows["topk_logprobs"]),
            "target_logprob": rows["target_logprob"],
            "target_rank": rows["target_rank"],
        }

    def _encode(self, fields: tuple[str, ...], buffered: int, rows: int, final: bool, code) -> int:
        """Take the whole chunks of `rows` items among the `buffered` ones of `fields` (all of them when
        `final`), code them (`code`: fields -> arrays) and append them to the arrays' files; returns how
        many items were taken. Only whole chunks are taken before the end, so the bytes do not depend on
        when a flush comes."""
        take = buffered if final else (buffered // rows) * rows
        if take:
            for name, arr in code(self._take(fields, take)).items():
                self.sizes[name] += self.arrays[name].append(self.files[name], arr)
        return take

    def _peek(self, name: str) -> np.ndarray | None:
        """All the buffered items of field `name` (None if none), concatenated. The buffer keeps the
        concatenation, so a `_take` that follows does not concatenate again."""
        parts = self.buffer[name]
        if len(parts) > 1:
            parts[:] = [np.concatenate(parts)]
        return parts[0] if parts else None

    def _take(self, names: tuple[str, ...], take: int) -> dict[str, np.ndarray]:
        """The first `take` (> 0, at most those buffered) items of each named field; the rest stays buffered."""
        out = {}
        for name in names:
            arr = self._peek(name)
            out[name] = arr[:take]
            self.buffer[name] = [arr[take:]] if take < len(arr) else []
        return out

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
        self._close_arrays()
        if self.store.remote:  # objects first (the marker, below, last)
            from vpmoe.utils import storage

            final = self.tmp
            storage.put_tree(self.tmp, storage.join(self.store.shards_dir, self.stem))
        else:
            final = self.store.shards_dir / self.stem
            try:  # our lock follows the directory: it stays held until the marker is committed
                commit_directory(self.tmp, final)
            except OutputExistsError as e:
                raise StoreError(
                    f"{final} appeared while this worker wrote it: another worker committed the same shard "
                    "(overlapping assignments); nothing was overwritten"
                ) from e
        files = _tree_sha256(final)
        sizes = {f: (final / f).stat().st_size for f in files}
        info = {
            "shard": self.stem,
            "dataset_shard_sha256": dataset_shard_sha256,
            "sample_ids_sha256": sample_ids_digest(sample_ids),
            "sequences": self.num_sequences,
            "positions": self.num_positions,
            "k": self.store.provenance.k,
            "bytes": sum(sizes.values()),
            "files": files,
            "sizes": sizes,  # lets a reader find each array's index (at the file's end) without a request
            "quarantined": list(quarantined),
        }
        if self.store.remote:
            from vpmoe.utils import storage

            storage.write_bytes(
                str(self.store.marker_path(self.stem)), json.dumps(info, indent=1, sort_keys=True).encode()
            )
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            commit_file(self.store.marker_path(self.stem), json.dumps(info, indent=1, sort_keys=True))
        self.owned.close()
        return info

    def _close_arrays(self) -> None:
        """Each streamed array's index after its chunks; the sequence offsets."""
        for name, f in self.files.items():
            f.write(self.arrays[name].encode_index(self.sizes[name]))
            f.close()
        self._write_offsets("seq_offsets", self.seq_lengths)

    def _write_offsets(self, name: str, counts: list[int]) -> None:
        """The offsets array `name` (int64 [S+1]: sequence i's items are offsets[i]:offsets[i+1]), whole."""
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._create(name, offsets.shape).write(offsets)

    def abort(self) -> None:
        for f in self.files.values():
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)  # ours (locked); gone already if commit renamed it
        self.owned.close()
