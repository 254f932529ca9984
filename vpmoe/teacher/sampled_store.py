"""The shard writer of sampled teacher stores (`teacher.storage: sampled`, vpmoe/teacher/sampling.py).

A sampled store is a `TeacherStore` (same root, provenance, commit protocol and markers) whose shard groups
hold ragged rows instead of top-k rows (docs/teacher_store.md "Sampled stores"):

    positions          [P] int32    as in a top-k store
    row_unique         [P] uint8    ids drawn in each row (its entries), >= 0
    tail_count         [P] uint8    draws of the row that fell in the tail bucket
    sampled_id_codes   [D] uint32   the drawn ids, row after row (the teacher's rank order within a row),
                                    as codes of the shard's `id_order` (row_coding.IdOrder, counted over
                                    the drawn ids of the shard's first rows)
    sampled_counts     [D] uint8    their counts; a row's counts plus its tail count sum to N
    id_order           [n] uint32   the code table
    target_logprob     [P] float32, target_rank [P] uint32: the actual token, as in a top-k store
    seq_offsets        [S+1] int64  rows of sequence i; seq_entry_offsets [S+1] int64: its entries

D, the number of entries, is known only when the shard ends: the entry arrays' chunks are encoded as they
fill (the writer streams, like the top-k writer) and their metadata gets its final shape on commit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vpmoe.teacher.array_file import (
    ENTRY_ARRAYS,
    ENTRY_ROWS_PER_ROW,
    LAYOUT,
    SAMPLED_ROW_ARRAYS,
    ArrayFile,
    zarr_codecs,
)
from vpmoe.teacher.row_coding import TABLE_ROWS, ZARR_CODING_ATTRIBUTES, IdOrder
from vpmoe.teacher.store import ShardWriter, StoreError, TeacherStore
from vpmoe.tokenizer import PADDED_VOCAB_SIZE
from vpmoe.utils.atomic import Owned

# What a plain Zarr reader needs (the codes decode as topk_id_codes do, through id_order).
SAMPLED_CODING_ATTRIBUTES = {
    "sampled_id_codes": {
        "vpmoe_coding": {**ZARR_CODING_ATTRIBUTES["topk_id_codes"]["vpmoe_coding"], "rows": "row_unique"}
    },
    "row_unique": {
        "vpmoe_coding": {"transform": "ragged_row_lengths", "decode": "entries of row r: offsets = cumsum"}
    },
}
SAMPLED_FIELDS = ("positions", "row_unique", "sampled_ids", "sampled_counts", "tail_count", "target_logprob", "target_rank")  # fmt: skip


class SampledShardWriter(ShardWriter):
    """Streams sampled rows (`sampling.sampled_rows` plus positions and the actual token's log-prob and
    rank) into a shard group, then commits it (`ShardWriter.commit`: objects first, marker last)."""

    def __init__(
        self, store: TeacherStore, stem: str, owned: Owned, *, num_positions: int, num_sequences: int
    ):
        import zarr

        tmp = owned.path
        self.store, self.stem, self.tmp, self.owned = store, stem, tmp, owned
        self.num_positions, self.num_sequences = num_positions, num_sequences
        self.group = zarr.create_group(str(tmp), zarr_format=3)
        self.entry_rows = ENTRY_ROWS_PER_ROW * store.topk_rows
        # The entry arrays' length is unknown until the shard ends: declared at an upper bound (every row
        # holding min(N, k) ids) so that their chunks are encoded as they fill; re-declared at their length before the last chunk.
        upper = num_positions * store.row_width
        self.arrays = {name: self._create(name, (num_positions,)) for name in SAMPLED_ROW_ARRAYS}
        self.arrays.update({name: self._create(name, (upper,)) for name in ENTRY_ARRAYS})
        self.rows = max(self.arrays[n].rows for n in SAMPLED_ROW_ARRAYS)
        self.files = {n: open(a.file_for_write(), "wb") for n, a in self.arrays.items() if a.n_chunks}  # noqa: SIM115
        self.sizes: dict[str, list[int]] = {n: [] for n in self.files}
        self.id_order: IdOrder | None = None
        self.written = self.entries_written = 0  # rows, entries encoded
        self.buffer: dict[str, list[np.ndarray]] = {n: [] for n in SAMPLED_FIELDS}
        self.buffered = self.entries_buffered = 0
        self.seq_lengths: list[int] = []
        self.seq_entries: list[int] = []

    def _create(self, name: str, shape: tuple) -> ArrayFile:
        """Declare the array (its zarr.json, rendered by zarr; written directly, so that re-declaring an
        entry array at its final length leaves its data file alone) and open it for encoding."""
        import zarr

        layout = LAYOUT[name]
        rows = max(1, min((self.entry_rows if name in ENTRY_ARRAYS else layout.rows) or shape[0], shape[0]))
        rendered: dict = {}
        group = zarr.create_group(zarr.storage.MemoryStore(store_dict=rendered), zarr_format=3)
        group.create_array(
            name, shape=shape, chunks=(rows,), shards=(max(1, -(-shape[0] // rows)) * rows,), dtype=layout.dtype,
            attributes=SAMPLED_CODING_ATTRIBUTES.get(name, ZARR_CODING_ATTRIBUTES.get(name, {})),
            **zarr_codecs(layout),
        )  # fmt: skip
        (self.tmp / name).mkdir(exist_ok=True)
        (self.tmp / name / "zarr.json").write_bytes(rendered[f"{name}/zarr.json"].to_bytes())
        return ArrayFile(self.tmp / name)

    def add_sequence(self, **rows: np.ndarray) -> None:
        if set(rows) != set(SAMPLED_FIELDS):
            raise StoreError(
                f"{self.stem}: sampled rows must have exactly {SAMPLED_FIELDS}, got {sorted(rows)}"
            )
        n, e = len(rows["positions"]), len(rows["sampled_ids"])
        if int(rows["row_unique"].astype(np.int64).sum()) != e or len(rows["sampled_counts"]) != e:
            raise StoreError(f"{self.stem}: row_unique does not add up to the sequence's {e} entries")
        for name, arr in rows.items():
            self.buffer[name].append(arr)
        self.seq_lengths.append(n)
        self.seq_entries.append(e)
        self.buffered += n
        self.entries_buffered += e
        if self.written + self.buffered > self.num_positions:
            raise StoreError(
                f"{self.stem}: more rows than the {self.num_positions} supervised positions expected"
            )
        if self.id_order is not None or self.buffered >= TABLE_ROWS:
            self._flush(final=False)

    def _take(self, names: tuple[str, ...], take: int) -> dict[str, np.ndarray]:
        """The first `take` buffered items of each named field; the rest stays buffered."""
        out = {}
        for name in names:
            parts = self.buffer[name]
            arr = np.concatenate(parts) if len(parts) > 1 else parts[0]
            out[name] = arr[:take]
            self.buffer[name] = [arr[take:]] if take < len(arr) else []
        return out

    def _flush(self, *, final: bool) -> None:
        if self.id_order is None:  # the first flush: the ids drawn in the shard's first TABLE_ROWS rows
            lengths = self.buffer["row_unique"]
            first = int(np.concatenate(lengths)[:TABLE_ROWS].astype(np.int64).sum()) if lengths else 0
            ids = np.concatenate(self.buffer["sampled_ids"])[:first] if first else np.zeros(0, np.uint32)
            self.id_order = IdOrder.count(ids, PADDED_VOCAB_SIZE)
            order = self._create("id_order", (len(self.id_order.order),))
            if len(self.id_order.order):
                order.write(self.id_order.order)
        if final:  # the entry arrays' real length is known now: declared so before their last chunk
            d = self.entries_written + self.entries_buffered
            self.arrays.update({name: self._create(name, (d,)) for name in ENTRY_ARRAYS})
        take = self.buffered if final else (self.buffered // self.rows) * self.rows
        if take:
            for name, arr in self._take(SAMPLED_ROW_ARRAYS, take).items():
                self.sizes[name] += self.arrays[name].append(self.files[name], arr)
            self.written += take
            self.buffered -= take
        etake = (
            self.entries_buffered if final else (self.entries_buffered // self.entry_rows) * self.entry_rows
        )
        if etake:
            ent = self._take(("sampled_ids", "sampled_counts"), etake)
            coded = {"sampled_id_codes": self.id_order.encode(ent["sampled_ids"]), "sampled_counts": ent["sampled_counts"]}  # fmt: skip
            for name, arr in coded.items():
                self.sizes[name] += self.arrays[name].append(self.files[name], arr)
            self.entries_written += etake
            self.entries_buffered -= etake

    def _close_arrays(self) -> None:
        """The row and entry arrays' indexes (an entry array with no entry at all has no file), and both
        offsets."""
        if self.entries_written != sum(self.seq_entries):
            raise StoreError(
                f"{self.stem}: wrote {self.entries_written} entries, expected {sum(self.seq_entries)}"
            )
        if not self.entries_written:
            for name in ENTRY_ARRAYS:
                f = self.files.pop(name, None)
                self.sizes.pop(name, None)
                if f is not None:
                    f.close()
                    Path(f.name).unlink()
        super()._close_arrays()
        offsets = np.concatenate([[0], np.cumsum(self.seq_entries)]).astype(np.int64)
        self._create("seq_entry_offsets", offsets.shape).write(offsets)
