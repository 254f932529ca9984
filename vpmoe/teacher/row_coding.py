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
# Ids per block of the seen-id bitmap (IdOrder.unseen_ids): 12.6 KB of counts at vocab 201088, 0.25 us per
# code decoded; 512-id blocks would save 11 KB per shard at 1.4 us per code (measured).
_BLOCK = 64
_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
_BYTE_POPCOUNT = _BYTE_BITS.sum(axis=1).astype(np.int64)  # set bits per byte value
# _BYTE_ZERO_SELECT[v, r]: the bit position of the r-th zero bit of byte value v (8: none)
_BYTE_ZERO_SELECT = np.full((256, 8), 8, np.int64)
for _v in range(256):
    _zeros = np.flatnonzero(_BYTE_BITS[_v] == 0)
    _BYTE_ZERO_SELECT[_v, : len(_zeros)] = _zeros


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
        # per id (`order`) and, once a code >= n first occurs (rare), a bitmap of the seen ids with unseen
        # counts per block (~38 KB at vocab 201088, whatever n is; an n-sized rank table doubled a
        # shard's index in the loader benchmark).
        # uint8 [blocks, _BLOCK // 8]: bit i (little-endian) of block b is id b * _BLOCK + i
        self._seen_bits: np.ndarray | None = None
        self._unseen_before: np.ndarray | None = None  # int32 [blocks]: unseen ids below each block
        self._codes: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        """Memory held for decoding (what a reader's cache budget counts)."""
        extra = 0 if self._seen_bits is None else self._seen_bits.nbytes + self._unseen_before.nbytes
        return self.order.nbytes + extra

    @classmethod
    def count(cls, topk_ids: np.ndarray, vocab: int) -> IdOrder:
        """The order of the ids in `topk_ids` (a shard's first rows): by count, descending, ties by id."""
        counts = np.bincount(np.asarray(topk_ids, np.int64).ravel(), minlength=vocab)
        seen = np.flatnonzero(counts)
        return cls(seen[np.argsort(-counts[seen], kind="stable")], vocab)

    def _seen_mask(self) -> np.ndarray:
        """bool [blocks x _BLOCK]: ids in `order`, and the padding past the vocabulary (never unseen)."""
        blocks = -(-self.vocab // _BLOCK)
        seen = np.zeros(blocks * _BLOCK, bool)
        seen[self.order] = True
        seen[self.vocab :] = True
        return seen

    def unseen_ids(self, j: np.ndarray) -> np.ndarray:
        """The ids of codes n + j (0 <= j < vocab - n): the j-th ids in ascending order that are not in
        `order`. A rank/select over the seen-id bitmap: the per-block unseen counts give the block, byte
        popcounts the byte, and a [byte value, rank] table the bit (a few vector ops per code)."""
        if self._seen_bits is None:
            seen = self._seen_mask().reshape(-1, _BLOCK)
            self._seen_bits = np.packbits(seen, axis=1, bitorder="little")
            unseen = _BLOCK - seen.sum(axis=1)
            self._unseen_before = (np.cumsum(unseen) - unseen).astype(np.int32)
        shape = np.shape(j)
        j = np.asarray(j, np.int64).ravel()
        block = np.searchsorted(self._unseen_before, j, side="right") - 1
        rank = j - self._unseen_before[block]  # among the block's unseen ids, 0-based
        byte_values = self._seen_bits[block]  # [q, _BLOCK // 8]
        unseen = 8 - _BYTE_POPCOUNT[byte_values]
        through = np.cumsum(unseen, axis=1)
        byte = np.argmax(through > rank[:, None], axis=1)
        q = np.arange(len(j))
        in_byte = rank - (through[q, byte] - unseen[q, byte])
        bit = _BYTE_ZERO_SELECT[byte_values[q, byte], np.minimum(in_byte, 7)]
        return (block * _BLOCK + byte * 8 + bit).reshape(shape)

    def encode(self, topk_ids: np.ndarray) -> np.ndarray:
        """ids (in [0, vocab), checked by the scorer's validation) -> uint32 codes, same shape."""
        if self._codes is None:  # the writer's side: one vocab-sized table per shard
            ids = np.concatenate([self.order, np.flatnonzero(~self._seen_mask())])
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
