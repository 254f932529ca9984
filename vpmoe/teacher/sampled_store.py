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
from typing import ClassVar

import numpy as np

from vpmoe.teacher.array_file import ENTRY_ARRAYS, ENTRY_ROWS_PER_ROW, SAMPLED_ROW_ARRAYS
from vpmoe.teacher.row_coding import TABLE_ROWS, ZARR_CODING_ATTRIBUTES
from vpmoe.teacher.store import ShardWriter, StoreError, TeacherStore
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
ENTRY_FIELDS = ("sampled_ids", "sampled_counts")  # buffered with an item per entry, coded into ENTRY_ARRAYS


class SampledShardWriter(ShardWriter):
    """Streams sampled rows (`sampling.sampled_rows` plus positions and the actual token's log-prob and
    rank) into a shard group, then commits it (`ShardWriter.commit`: objects first, marker last).

    `ShardWriter` buffers, counts the code table, declares the arrays and encodes the per-row arrays
    (stored as given); this class adds the entries, a second stream with its own chunks and counts."""

    FIELDS: ClassVar[tuple[str, ...]] = SAMPLED_FIELDS
    PER_ROW_FIELDS: ClassVar[tuple[str, ...]] = SAMPLED_ROW_ARRAYS  # stored as given (`_code_rows`)
    PER_ROW_ARRAYS: ClassVar[tuple[str, ...]] = SAMPLED_ROW_ARRAYS
    CODING_ATTRIBUTES: ClassVar[dict] = {**ZARR_CODING_ATTRIBUTES, **SAMPLED_CODING_ATTRIBUTES}
    # Entry chunks hold about as many positions' worth of entries as a top-k chunk (array_file.py).
    CHOSEN_ROWS_PER_TOPK_ROW: ClassVar[int] = ENTRY_ROWS_PER_ROW

    def __init__(
        self, store: TeacherStore, stem: str, owned: Owned, *, num_positions: int, num_sequences: int
    ):
        super().__init__(store, stem, owned, num_positions=num_positions, num_sequences=num_sequences)
        self.entry_rows = self.chosen_rows  # entries encoded per flush: whole chunks of the entry arrays
        self.entries_written = self.entries_buffered = 0
        self.seq_entries: list[int] = []

    def _shapes(self) -> dict[str, tuple]:
        # The entry arrays' length is unknown until the shard ends: declared at an upper bound (every row
        # holding min(N, k) ids) so that their chunks are encoded as they fill; re-declared at their
        # length before the last chunk (`_flush`).
        upper = self.num_positions * self.store.row_width
        return {
            **{name: (self.num_positions,) for name in SAMPLED_ROW_ARRAYS},
            **{name: (upper,) for name in ENTRY_ARRAYS},
        }

    def _check_sequence(self, rows: dict[str, np.ndarray]) -> None:
        e = len(rows["sampled_ids"])
        if int(rows["row_unique"].astype(np.int64).sum()) != e or len(rows["sampled_counts"]) != e:
            raise StoreError(f"{self.stem}: row_unique does not add up to the sequence's {e} entries")
        self.seq_entries.append(e)
        self.entries_buffered += e

    def _table_ids(self) -> np.ndarray:
        """The ids drawn in the shard's first TABLE_ROWS rows."""
        lengths = self._peek("row_unique")
        first = int(lengths[:TABLE_ROWS].astype(np.int64).sum()) if lengths is not None else 0
        return self._peek("sampled_ids")[:first] if first else np.zeros(0, np.uint32)

    def _code_rows(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return rows

    def _code_entries(self, entries: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Taken `ENTRY_FIELDS` -> the `ENTRY_ARRAYS` as stored (ids as codes of the shard's id order)."""
        return {"sampled_id_codes": self.id_order.encode(entries["sampled_ids"]), "sampled_counts": entries["sampled_counts"]}  # fmt: skip

    def _flush(self, *, final: bool) -> None:
        super()._flush(final=final)  # the code table (first call), then the rows
        if final:  # the entry arrays' real length is known now: declared so before their last chunk
            d = self.entries_written + self.entries_buffered
            self.arrays.update({name: self._create(name, (d,)) for name in ENTRY_ARRAYS})
        take = self._encode(ENTRY_FIELDS, self.entries_buffered, self.entry_rows, final, self._code_entries)
        self.entries_written += take
        self.entries_buffered -= take

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
        self._write_offsets("seq_entry_offsets", self.seq_entries)
