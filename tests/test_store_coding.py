"""The store's row coding (id codes, log-prob bit deltas) and the writer's code table, without vLLM."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from vpmoe.teacher.row_coding import TABLE_ROWS, IdOrder, IdOrderError, logprob_deltas, logprobs_from_deltas
from vpmoe.teacher.store import ShardArrays, StoreError, StoreProvenance, TeacherStore
from vpmoe.teacher.store_reader import _OpenShard

V = 201088


def test_logprob_deltas_are_lossless_for_any_fp16_bits():
    rng = np.random.default_rng(0)
    # Sorted rows (the normal case), unsorted rows, positive values, +-0, +-inf, NaN, subnormals: every
    # uint16 pattern round-trips, since the deltas wrap modulo 2^16.
    sorted_rows = -np.sort(rng.exponential(3.0, (37, 53)), axis=1).astype(np.float16)
    every_pattern = np.arange(2**16, dtype=np.uint16).reshape(-1, 64)
    rng.shuffle(every_pattern, axis=1)
    for lp in (sorted_rows, every_pattern.view(np.float16), sorted_rows[:, :1], sorted_rows[:0]):
        d = logprob_deltas(lp)
        assert d.dtype == np.uint16 and d.shape == lp.shape
        np.testing.assert_array_equal(logprobs_from_deltas(d).view(np.uint16), lp.view(np.uint16))
    # A sorted negative row's deltas are the rises of |lp|'s bit patterns (no wrap-around): small numbers.
    mags = (sorted_rows.view(np.uint16) & 0x7FFF).astype(np.int64)
    np.testing.assert_array_equal(logprob_deltas(sorted_rows)[:, 1:], np.diff(mags, axis=1))


def test_id_order_counts_and_codes_every_id():
    ids = np.array([[7, 3, 9], [3, 7, 11], [3, 5, 200000]], np.uint32)
    order = IdOrder.count(ids, V)
    # Most frequent first, ties by id.
    assert order.order.tolist() == [3, 7, 5, 9, 11, 200000]
    codes = order.encode(ids)
    assert codes.dtype == np.uint32 and codes[0].tolist() == [1, 0, 3]
    np.testing.assert_array_equal(order.decode(codes), ids)
    # Every id of the vocabulary has a code (unseen ones after the table, ascending): a bijection.
    every = np.arange(V, dtype=np.uint32)
    all_codes = order.encode(every)
    assert np.array_equal(np.sort(all_codes), every)
    assert all_codes[0] == 6 and all_codes[1] == 7  # ids 0, 1: first unseen
    np.testing.assert_array_equal(order.decode(all_codes), every)
    # A code no writer produces decodes to the out-of-vocabulary id, never out of bounds.
    assert order.decode(np.array([V, V + 5, 2**32 - 1], np.uint32)).tolist() == [V, V, V]
    assert IdOrder.count(np.zeros((0, 4), np.uint32), V).order.size == 0


@pytest.mark.parametrize(
    "vocab, n", [(V, 55_000), (V, 3), (1000, 0), (1000, 999), (1000, 1000), (777, 500), (65, 1)]
)
def test_unseen_ids_match_enumeration_and_stay_small(vocab, n):
    """Codes >= n decode through a bitmap rank/select; it must equal the plain enumeration of the ids not
    in the table, and hold O(vocab / 8) bytes whatever n is (a reader caches one per shard)."""
    order = IdOrder(np.random.default_rng(n).permutation(vocab)[:n], vocab)
    unseen = np.setdiff1d(np.arange(vocab), order.order)
    j = np.arange(len(unseen))
    np.testing.assert_array_equal(order.unseen_ids(j), unseen)
    np.testing.assert_array_equal(order.unseen_ids(j[::-1]), unseen[::-1])  # any order of queries
    assert order.nbytes - order.order.nbytes <= vocab // 8 + 8 + 4 * (vocab // 64 + 1)  # bits + counts
    codes = np.arange(vocab, dtype=np.uint32)
    np.testing.assert_array_equal(order.encode(order.decode(codes, strict=True)), codes)


@pytest.mark.parametrize(
    "table, message",
    [([3, 5, 3], "duplicate"), ([1, V], "outside"), ([[1, 2]], "1-d"), (np.array([0.5]), "integer")],
)
def test_bad_id_order_is_refused(table, message):
    with pytest.raises(IdOrderError, match=message):
        IdOrder(np.asarray(table), V)


def provenance(k, **scoring):
    return StoreProvenance(
        dataset_manifest_hash="m", tokenizer={}, teacher_id=f"t-{'0' * 12}-float32-k{k}", teacher_path="-",
        teacher_weights_sha256="0" * 64, teacher_config={}, engine="vllm", engine_version="-", dtype="float32",
        k=k, scoring_config=scoring, scoring_config_hash="-",
    )  # fmt: skip


def synthetic_rows(n, k, seed):
    """Trained-like rows: ids skewed towards a few thousand, later rows drawing ids the first
    TABLE_ROWS never saw (they must take the implicit codes after the table)."""
    rng = np.random.default_rng(seed)
    ids = np.empty((n, k), np.uint32)
    for i in range(n):
        ids[i] = rng.choice(4000 if i < TABLE_ROWS else V, k, replace=False)
    lp = -np.sort(rng.exponential(2.0, (n, k)), axis=1).astype(np.float16)
    return ShardArrays(
        positions=np.arange(n, dtype=np.int32), topk_ids=ids, topk_logprobs=lp,
        target_logprob=rng.normal(-3, 1, n).astype(np.float32), target_rank=rng.integers(1, 999, n).astype(np.uint32),
        seq_offsets=np.array([0, n]),
    )  # fmt: skip


def write_shard(root, rows: ShardArrays, cuts, **scoring):
    """Write `rows` as sequences split at `cuts`; returns the shard group and its commit info."""
    k = rows.topk_ids.shape[1]
    store = TeacherStore(root, provenance(k, **scoring))
    bounds = [0, *cuts, len(rows.positions)]
    w = store.begin_shard("shard-00000", num_positions=len(rows.positions), num_sequences=len(bounds) - 1)
    for a, b in itertools.pairwise(bounds):
        w.add_sequence(**{f: getattr(rows, f)[a:b] for f in ShardArrays.ROW_FIELDS})
    info = w.commit(dataset_shard_sha256="s", sample_ids=[str(i) for i in range(len(bounds) - 1)])
    return store.shards_dir / "shard-00000", info


def test_writer_round_trip_table_and_determinism(tmp_path):
    n, k = TABLE_ROWS + 3001, 7
    rows = synthetic_rows(n, k, seed=1)
    group, info = write_shard(tmp_path / "a", rows, cuts=[5, 2048, 9000, TABLE_ROWS + 1])
    shard = _OpenShard(group)
    np.testing.assert_array_equal(shard.topk_ids(0, n), rows.topk_ids)
    np.testing.assert_array_equal(
        shard.topk_logprobs(0, n).view(np.uint16), rows.topk_logprobs.view(np.uint16)
    )
    np.testing.assert_array_equal(shard.read("target_logprob", 0, n), rows.target_logprob)
    # Row ranges inside one inner chunk, across several, at the ends (the reader's fetches).
    rng = np.random.default_rng(5)
    ranges = [(0, 1), (255, 257), (256, 512), (n - 1, n), (n - 300, n), (0, n)]
    ranges += [tuple(sorted(rng.integers(0, n + 1, 2))) for _ in range(20)]
    for a, b in ranges:
        np.testing.assert_array_equal(shard.topk_ids(a, b, np.int32), rows.topk_ids[a:b])
        got = shard.topk_logprobs(a, b)  # bit for bit what was written
        assert got.dtype == np.float16 and got.flags.c_contiguous
        np.testing.assert_array_equal(got.view(np.uint16), rows.topk_logprobs[a:b].view(np.uint16))
        np.testing.assert_array_equal(shard.read("positions", a, b), rows.positions[a:b])
    # The table is the count over the first TABLE_ROWS rows, and later rows hold ids outside it.
    np.testing.assert_array_equal(shard.id_order.order, IdOrder.count(rows.topk_ids[:TABLE_ROWS], V).order)
    assert not np.isin(rows.topk_ids[TABLE_ROWS:], shard.id_order.order).all()
    # Another split into sequences (the scorer's batching) gives the same chunk files.
    _, info_b = write_shard(tmp_path / "b", rows, cuts=[1, TABLE_ROWS + 2000])
    assert {f: h for f, h in info["files"].items() if not f.startswith("seq_offsets/")} == {
        f: h for f, h in info_b["files"].items() if not f.startswith("seq_offsets/")
    }


def test_small_and_empty_shards(tmp_path):
    rows = synthetic_rows(10, 5, seed=2)
    group, _ = write_shard(tmp_path / "small", rows, cuts=[4])
    np.testing.assert_array_equal(_OpenShard(group).topk_ids(0, 10), rows.topk_ids)
    empty = synthetic_rows(0, 5, seed=3)
    group, info = write_shard(tmp_path / "empty", empty, cuts=[])
    assert info["positions"] == 0 and _OpenShard(group).topk_ids(0, 0).shape == (0, 5)


def test_reader_refuses_a_bad_code_table_and_bad_codes(tmp_path):
    import zarr

    rows = synthetic_rows(300, 6, seed=4)
    group, _ = write_shard(tmp_path, rows, cuts=[])
    z = zarr.open_array(str(group / "id_order"), mode="r+")
    good = z[:]
    z[1] = good[0]
    with pytest.raises(StoreError, match=r"id_order: id_order holds a duplicate id"):
        _OpenShard(group)
    z[:] = good
    codes = zarr.open_array(str(group / "topk_id_codes"), mode="r+")
    codes[7, 2] = V + 1
    with pytest.raises(StoreError, match=r"topk_id_codes: a code outside the vocabulary in rows 0-299"):
        _OpenShard(group).topk_ids(0, 300)


def test_array_files_are_zarr_shards_and_bad_ones_are_refused(tmp_path):
    """Each array is one file: inner chunks back to back, then the index. A rewritten index that still
    carries a valid crc but does not describe that, an inner chunk of the wrong size, and metadata that
    declares other inner chunks are each refused with the file named."""
    import json

    import google_crc32c

    from vpmoe.teacher.store import ARRAYS, LAYOUT, ArrayFile

    rows = synthetic_rows(1500, 6, seed=6)
    group, _ = write_shard(tmp_path / "a", rows, cuts=[700])
    files = sorted(p.relative_to(group) for p in group.rglob("*") if p.is_file())
    assert [str(p) for p in files if "/c/" in str(p)] == [f"{n}/c/0" + ("/0" if n.startswith("topk") else "")
                                                           for n in sorted(ARRAYS)]  # fmt: skip
    codes = ArrayFile(group / "topk_id_codes")
    codes_file = Path(codes.file)
    assert codes.rows == LAYOUT["topk_id_codes"].rows and codes.n_chunks == -(-1500 // codes.rows)
    bounds = codes.read_index()  # what `codes.bounds` caches
    assert bounds[0] == 0 and bounds[-1] == codes_file.stat().st_size - codes.index_bytes

    def with_index(entries):
        raw = np.asarray(entries, "<u8").tobytes()
        data = (
            codes_file.read_bytes()[: -codes.index_bytes]
            + raw
            + google_crc32c.value(raw).to_bytes(4, "little")
        )
        codes_file.write_bytes(data)

    good = codes_file.read_bytes()
    sizes = np.diff(bounds)
    with_index([[s, n] for s, n in zip(np.roll(bounds[:-1], 1), sizes, strict=True)])  # chunks out of order
    with pytest.raises(StoreError, match=r"topk_id_codes/c/0/0: the shard index does not describe"):
        _OpenShard(group)
    codes_file.write_bytes(good)
    # A valid frame (crc32c right, index consistent) of another size in place of chunk 0.
    small = ArrayFile(group / "positions").encode(rows.positions[:10])
    codes_file.write_bytes(small + good[bounds[1] :])
    new = np.concatenate([[0, len(small)], len(small) + np.cumsum(sizes[1:])])
    with_index(np.stack([new[:-1], np.diff(new)], axis=1))
    with pytest.raises(
        StoreError, match=r"topk_id_codes/c/0/0: inner chunk 0 holds 4096 bytes, expected 6144"
    ):
        _OpenShard(group).topk_ids(0, 10)
    codes_file.write_bytes(good)
    # Metadata declaring other inner chunks than the layout's.
    meta_path = group / "topk_id_codes" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"][0]["configuration"]["chunk_shape"][0] = 100  # not one of the allowed sizes
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(
        StoreError, match=r"topk_id_codes: not the layout TeacherStore writes .* 16/32/64/128/256 rows"
    ):
        _OpenShard(group)


def test_open_shard_holds_no_files_and_reads_after_a_pickle(tmp_path):
    """An open shard keeps its index in memory and no file descriptor (each read is one ranged read:
    vpmoe/utils/storage.py), so it pickles into a worker and reads the same rows there."""
    import os
    import pickle

    rows = synthetic_rows(700, 6, seed=7)
    group, _ = write_shard(tmp_path, rows, cuts=[300])
    before = set(os.listdir("/proc/self/fd"))
    shard = _OpenShard(group)
    first = shard.topk_ids(250, 520)
    assert set(os.listdir("/proc/self/fd")) == before
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(shard)).topk_ids(250, 520), first)
    np.testing.assert_array_equal(first, rows.topk_ids[250:520])


def test_small_top_k_chunks_for_short_sequences(tmp_path):
    """A store of short sequences takes small top-k inner chunks (fetches read < 2x their rows); the reader
    accepts every allowed size, and zarr reads the same rows."""
    import zarr

    from vpmoe.teacher.array_file import TOPK_CHUNK_ROWS, topk_chunk_rows

    assert [topk_chunk_rows(n) for n in (3, 31, 40, 100, 495, 5000)] == [16, 16, 32, 64, 256, 256]
    rows = synthetic_rows(1100, 6, seed=9)
    cuts = list(range(31, 1100, 31))
    group, _ = write_shard(tmp_path, rows, cuts, topk_chunk_rows=16)
    shard = _OpenShard(group)
    assert shard.files["topk_id_codes"].rows == 16 and shard.files["positions"].rows == 1024
    for a, b in ((0, 31), (310, 341), (1085, 1100)):
        np.testing.assert_array_equal(shard.topk_ids(a, b), rows.topk_ids[a:b])
        np.testing.assert_array_equal(shard.topk_logprobs(a, b), rows.topk_logprobs[a:b])
    np.testing.assert_array_equal(zarr.open_array(str(group / "topk_id_codes"), mode="r").chunks, (16, 6))
    with pytest.raises(StoreError, match="topk_chunk_rows 24"):
        TeacherStore(tmp_path / "other", provenance(6, topk_chunk_rows=24))
    assert 256 in TOPK_CHUNK_ROWS
