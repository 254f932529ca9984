"""The two lossless transforms that take the store's large arrays to ~144 bytes per position at k=64
(schema 2+; docs/teacher_store.md "Values and compression" has the measurements behind each choice).

Top-k ids -> codes (`IdOrder`). A token id costs ~15 bits under byte-shuffled zstd (121 bytes per
position at k=64) although its order-0 entropy over a shard is ~9.7 bits: zstd codes each byte of an id
on its own, and an id's low bytes are near uniform. Renumbering ids by how often they occur in the
shard's top-k puts the frequent ones at small codes, so the high bytes are almost always zero and the
low byte is skewed; bit-shuffled zstd then lands within ~10% of the entropy (85.9 bytes per position).
The order is counted over the shard's first `TABLE_ROWS` positions (deterministic; the writer streams,
so it cannot wait for the whole shard) and stored as the array `id_order`: the ids seen there, most
frequent first (ties by id). Every other id follows implicitly in ascending order, so every id in
[0, vocab) has a code and a later row never needs an escape.

Top-k log-probs -> fp16 bit deltas (`logprob_deltas`). Rows are in rank order, so the log-probs fall
and, for negative fp16 numbers, the bit patterns rise (sign bit, then magnitude). Column 0 keeps its
bits, column j > 0 stores bits[j] - bits[j-1] modulo 2^16: small numbers, exact for any input (even an
unsorted row; the arithmetic wraps), decoded by a prefix sum modulo 2^16. 77.5 -> 48.7 bytes per
position with the chunk stored transposed (one rank's deltas together; Zarr's `transpose` codec).
"""

from __future__ import annotations

import itertools

import numpy as np

# What a plain Zarr reader needs to decode the two coded arrays, stored as each array's Zarr attributes
# (key "vpmoe_coding") by the writer; docs/teacher_store.md "Layout" says the same. Descriptive only:
# the reader decodes with the code below and does not read them.
ZARR_CODING_ATTRIBUTES = {
    "topk_id_codes": {
        "vpmoe_coding": {
            "transform": "id_order_codes",
            "table": "id_order",
            "vocab_size": "the root group's attributes: tokenizer.padded_vocab_size",
            "decode": (
                "n = len(id_order); a code c < n is the token id id_order[c]; a code c >= n is the "
                "(c - n)-th (0-based) id of [0, vocab_size) that is not in id_order, ascending"
            ),
        }
    },
    "topk_logprob_deltas": {
        "vpmoe_coding": {
            "transform": "fp16_bit_deltas_along_k",
            "decode": (
                "log-probs = cumsum(deltas, axis=1) modulo 2**16 as uint16, viewed as IEEE float16 "
                "(numpy: np.cumsum(d, axis=1, dtype=np.uint16).view(np.float16))"
            ),
        }
    },
    "id_order": {
        "vpmoe_coding": {
            "transform": "id_order_table",
            "decode": "the token ids of codes 0..n-1 of topk_id_codes",
        }
    },
}

# Positions counted for a shard's id order: 1M ids at k=64 (16k rows vs the whole shard: +0.7 B/pos).
TABLE_ROWS = 16384


class IdOrderError(ValueError):
    pass


class IdOrder:
    """The bijection token id <-> code of one shard. `order` is the stored `id_order` array: code c < n is
    id order[c]; code n + j is the j-th id (ascending) not in `order`. Decoding holds O(n) memory and
    builds nothing vocab-sized: codes >= n are rare (ids outside the shard's first rows) and are decoded
    by a binary search, so opening a shard stays cheap (a reader may open one per fetch)."""

    def __init__(self, order: np.ndarray, vocab: int) -> None:
        order = np.asarray(order)
        if order.ndim != 1 or not np.issubdtype(order.dtype, np.integer):
            raise IdOrderError(f"id_order must be a 1-d integer array, got {order.dtype} {order.shape}")
        if len(order) and (int(order.min()) < 0 or int(order.max()) >= vocab):
            raise IdOrderError(f"id_order holds ids outside [0, {vocab})")
        seen = np.sort(order.astype(np.int64))
        if (np.diff(seen) == 0).any():
            raise IdOrderError("id_order holds a duplicate id")
        self.order = order.astype(np.int32)  # ids < 2^31: the trainer's dtype, so a decode is one gather
        self.vocab = vocab
        # A reader caches one IdOrder per shard for the whole run (thousands of shards), so it keeps 4 bytes
        # per id (`order`) and builds the unseen-id table only when a code >= n first occurs (rare).
        self._unseen_below: np.ndarray | None = None
        self._codes: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        """Memory held for decoding (what a reader's cache budget counts)."""
        return self.order.nbytes + (0 if self._unseen_below is None else self._unseen_below.nbytes)

    @classmethod
    def count(cls, topk_ids: np.ndarray, vocab: int) -> IdOrder:
        """The order of the ids in `topk_ids` (a shard's first rows): by count, descending, ties by id."""
        counts = np.bincount(np.asarray(topk_ids, np.int64).ravel(), minlength=vocab)
        seen = np.flatnonzero(counts)
        return cls(seen[np.argsort(-counts[seen], kind="stable")], vocab)

    def unseen_ids(self, j: np.ndarray) -> np.ndarray:
        """The ids of codes n + j (j >= 0): the j-th ids in ascending order that are not in `order`."""
        if self._unseen_below is None:
            # _unseen_below[i] = how many ids not in `order` lie below the i-th smallest seen id
            # (non-decreasing, < vocab: int32), so the j-th unseen id is j + (number of seen ids below it)
            # = j + searchsorted(_unseen_below, j, "right").
            seen = np.sort(self.order)
            self._unseen_below = (seen - np.arange(len(seen), dtype=np.int32)).astype(np.int32)
        j = np.asarray(j, np.int64)
        return j + np.searchsorted(self._unseen_below, j, side="right")

    def encode(self, topk_ids: np.ndarray) -> np.ndarray:
        """ids (in [0, vocab), checked by the scorer's validation) -> uint32 codes, same shape."""
        if self._codes is None:  # the writer's side: one vocab-sized table per shard
            n = len(self.order)
            ids = np.concatenate([self.order, self.unseen_ids(np.arange(self.vocab - n))])
            self._codes = np.empty(self.vocab, np.uint32)
            self._codes[ids] = np.arange(self.vocab, dtype=np.uint32)
        return self._codes[topk_ids]

    def decode(self, codes: np.ndarray, dtype=np.uint32, *, strict: bool = False) -> np.ndarray:
        """codes -> ids of `dtype` (any integer type); a code >= vocab (never written: a bad store) raises
        `IdOrderError` if `strict`, else decodes to `vocab` (the report counts those)."""
        top = int(codes.max()) if codes.size else -1
        if strict and top >= self.vocab:
            raise IdOrderError("a code outside the vocabulary")
        # np.take from `order` (~2x faster than fancy indexing); "clip" sends every code >= n to the last
        # entry, and those (ids first seen after the table's rows: few per fetch) are fixed below.
        n = len(self.order)
        if n == 0:
            ids = np.full(codes.shape, self.vocab, dtype)
        else:
            ids = np.take(self.order, codes, mode="clip").astype(dtype, copy=False)
        if top >= n:
            rare = codes >= n
            j = codes[rare].astype(np.int64) - n
            ids[rare] = np.where(j < self.vocab - n, self.unseen_ids(j), self.vocab)
        return ids


def logprob_deltas(topk_logprobs: np.ndarray) -> np.ndarray:
    """fp16 [n, k] log-probs -> uint16 [n, k]: column 0 their bits, column j the bit difference to j-1."""
    bits = np.ascontiguousarray(topk_logprobs, np.float16).view(np.uint16)
    out = np.empty_like(bits)
    out[:, :1] = bits[:, :1]
    np.subtract(bits[:, 1:], bits[:, :-1], out=out[:, 1:])  # uint16: wraps modulo 2^16
    return out


def undo_deltas(bits: np.ndarray, axis: int) -> None:
    """In place: uint16 deltas along `axis` (the k axis) -> fp16 bit patterns, by a prefix sum modulo 2^16
    (k - 1 vector adds, each over every other axis at once: ~6x faster than np.cumsum along contiguous
    rows, which numpy runs row by row)."""
    if bits.shape[1 - axis] < 256 and bits.flags.c_contiguous:
        # Few rows (a short sample's fetch): one cumsum call beats k - 1 tiny adds (measured 10 vs 57 us at 31
        # rows, k=64); from ~256 rows on the adds win. The same bits (uint16 arithmetic wraps modulo 2^16).
        np.cumsum(bits, axis=axis, dtype=np.uint16, out=bits)
        return
    # Row views made once: indexing a 2-d array per add costs ~2x more.
    rows = list(bits if axis == 0 else np.moveaxis(bits, axis, 0))
    for prev, cur in itertools.pairwise(rows):
        np.add(cur, prev, out=cur)  # uint16: wraps modulo 2^16


def logprobs_from_deltas(deltas: np.ndarray) -> np.ndarray:
    """Inverse of `logprob_deltas`: fp16 [n, k] (Fortran order), bit for bit; the input is not modified."""
    bits = np.array(deltas, dtype=np.uint16, order="F")
    undo_deltas(bits, axis=1)
    return bits.view(np.float16)
