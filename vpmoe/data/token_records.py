"""Per-sequence token records: the training loader's random-access copy of a prepared shard (schema 2).

Why a second file beside the Parquet shard: training draws samples uniformly from thousands of shards,
and Parquet decodes whole column chunks (a ~2M-token row group per shard), so one ~2k-token sample read
the whole shard (~1000x read amplification). Here sequence i of a shard is one contiguous byte range,
`[5 * starts[i], 5 * (starts[i] + lengths[i]))` of `shard-NNNNN.tokens`, read with one ranged read
(vpmoe/utils/storage.py) and decoded in place:

    record(i) = input_ids int32 little-endian [n] || flags uint8 [n]
    flags[t]  = token_spans[t] (bits 0-6, a `Span`) | 0x80 if position t is supervised (labels[t] != -100)

Labels are not stored: a supervised position's label is the next token (docs/distillation_mechanics.md,
"position t predicts token t+1"), so `labels[t] = input_ids[t + 1]` where the bit is set, else -100;
`encode` refuses a sequence for which that does not hold. Each record's crc32c is in the Parquet shard's
`tokens_crc32c` column, so every read is checked without reading anything else. The Parquet shard stays
the complete, self-describing copy (scoring and reports read it whole); the manifest holds both files'
sha256 (docs/synth_preprocess.md, "Shard files").
"""

from __future__ import annotations

import numpy as np

from vpmoe.data.harmony_render import IGNORE_INDEX
from vpmoe.data.manifest import ManifestError

TOKEN_RECORD_BYTES = 5  # per token: int32 id + uint8 flags
SUPERVISED_BIT = 0x80
TOKENS_SUFFIX = ".tokens"


class TokenRecordError(ManifestError):
    """A token record that cannot be read or does not check: the dataset is damaged (rerun prepare)."""


def tokens_name(parquet_name: str) -> str:
    """'shards/shard-00000.parquet' -> 'shards/shard-00000.tokens'."""
    return parquet_name.removesuffix(".parquet") + TOKENS_SUFFIX


def crc32c(data: bytes | memoryview) -> int:
    import google_crc32c

    return google_crc32c.value(bytes(data))


def encode(input_ids: np.ndarray, token_spans: np.ndarray, labels: np.ndarray) -> bytes:
    """One sequence's record. Raises if the labels are not the shifted input ids (or -100)."""
    n = len(input_ids)
    sup = labels != IGNORE_INDEX
    if len(token_spans) != n or len(labels) != n:
        raise TokenRecordError(f"lengths differ: {n} ids, {len(token_spans)} spans, {len(labels)} labels")
    if n and (sup[-1] or not np.array_equal(labels[:-1][sup[:-1]], input_ids[1:][sup[:-1]])):
        raise TokenRecordError("labels are not the next input ids at supervised positions")
    if n and (token_spans.min() < 0 or token_spans.max() >= SUPERVISED_BIT):
        raise TokenRecordError(f"token span out of range 0..127: {token_spans.min()}..{token_spans.max()}")
    flags = token_spans.astype(np.uint8) | (sup.astype(np.uint8) * SUPERVISED_BIT)
    return input_ids.astype("<i4").tobytes() + flags.tobytes()


def decode(record: bytes, n: int, *, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input_ids int32, token_spans int8, labels int32) of one record of `n` tokens."""
    if len(record) != TOKEN_RECORD_BYTES * n:
        raise TokenRecordError(
            f"{where}: {len(record)} bytes, a {n}-token record has {TOKEN_RECORD_BYTES * n}"
        )
    ids = np.frombuffer(record, "<i4", count=n).astype(np.int32)
    flags = np.frombuffer(record, np.uint8, offset=4 * n, count=n)
    spans = (flags & (SUPERVISED_BIT - 1)).astype(np.int8)
    labels = np.full(n, IGNORE_INDEX, np.int32)
    sup = np.flatnonzero(flags[:-1] & SUPERVISED_BIT)
    labels[sup] = ids[sup + 1]
    return ids, spans, labels


def read_sequence(url: str, start: int, n: int, crc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sequence of `n` tokens starting at token `start` of a shard's token file: one ranged read, checked
    against the crc32c the Parquet shard records for it."""
    from vpmoe.utils import storage

    a = TOKEN_RECORD_BYTES * start
    where = f"{url} bytes {a}-{a + TOKEN_RECORD_BYTES * n - 1}"
    try:
        record = storage.read_range(url, a, a + TOKEN_RECORD_BYTES * n)
    except storage.StorageError as e:
        raise TokenRecordError(
            f"{where}: token file missing or truncated ({e}); rerun pipelines.prepare"
        ) from None
    if crc32c(record) != crc:
        raise TokenRecordError(
            f"{where}: crc32c mismatch; the token file is corrupt (rerun pipelines.prepare)"
        )
    return decode(record, n, where=where)
