"""The training data path (vpmoe/train/data.py): plan determinism and layout independence, the loader's
resume position and spawned workers, mask/shift/teacher alignment of built batches, and the refusals
(manifest mismatch, missing or incomplete store)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vpmoe.data.harmony_render import IGNORE_INDEX, Span
from vpmoe.teacher.store import StoreError
from vpmoe.teacher.store_reader import TeacherStoreReader
from vpmoe.train.data import (
    DataConfig,
    MicroBatchBuilder,
    SampleIndex,
    TrainLoader,
    epoch_steps,
    eval_batches,
    split_step,
    unpack_micro_batch,
)

START_ASSISTANT = 200006  # <|start|>
RETURN = 200002


def synthetic_index(n: int = 64, held_every: int = 10) -> SampleIndex:
    rng = np.random.default_rng(0)
    return SampleIndex(
        lengths=rng.integers(10, 200, n).astype(np.int32),
        shard=np.zeros(n, np.int32),
        row=np.arange(n, dtype=np.int32),
        store_seq=np.arange(n, dtype=np.int32),
        start=np.zeros(n, np.int64),
        crc=np.zeros(n, np.uint32),
        held_out=np.arange(n) % held_every == 0,
    )


def test_plan_is_deterministic_and_covers_training_samples_once_per_epoch():
    idx = synthetic_index()
    cfg = DataConfig(global_batch_size=8, micro_batch_size=2, bucket_steps=2)
    a, b = epoch_steps(idx, cfg, 0), epoch_steps(idx, cfg, 0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    seen = np.concatenate(a)
    assert len(seen) == len(set(seen.tolist())) == (~idx.held_out).sum() // 8 * 8
    assert not idx.held_out[seen].any(), "held-out samples leaked into training"
    other = epoch_steps(idx, cfg, 1)
    assert not all(np.array_equal(x, y) for x, y in zip(a, other, strict=True)), "epochs must reshuffle"
    reseeded = epoch_steps(
        idx, DataConfig(global_batch_size=8, micro_batch_size=2, bucket_steps=2, seed=7), 0
    )
    assert not all(np.array_equal(x, y) for x, y in zip(a, reseeded, strict=True))


@pytest.mark.parametrize("micro, dp", [(1, 1), (2, 1), (4, 1), (1, 2), (2, 2), (1, 4)])
def test_a_steps_sequences_do_not_depend_on_micro_batch_or_dp(micro, dp):
    idx = synthetic_index()
    ref_cfg = DataConfig(global_batch_size=8, micro_batch_size=8)
    cfg = DataConfig(global_batch_size=8, micro_batch_size=micro)
    assert all(
        np.array_equal(x, y)
        for x, y in zip(epoch_steps(idx, ref_cfg, 0), epoch_steps(idx, cfg, 0), strict=True)
    ), "the plan must not depend on micro_batch_size"
    for step in epoch_steps(idx, cfg, 0):
        parts = [mb for r in range(dp) for mb in split_step(idx, step, cfg, dp, r)]
        assert sorted(np.concatenate(parts).tolist()) == sorted(step.tolist())
        assert {len(p) for p in parts} == {micro}
        counts = {len(split_step(idx, step, cfg, dp, r)) for r in range(dp)}
        assert counts == {8 // (micro * dp)}


def test_eval_batches_are_the_held_out_samples():
    idx = synthetic_index()
    cfg = DataConfig(global_batch_size=8, micro_batch_size=2, eval_max_samples=5)
    micro = eval_batches(idx, cfg)
    flat = np.concatenate(micro)
    assert idx.held_out[flat].all() and len(flat) == 5


def test_data_config_rejects():
    with pytest.raises(ValueError, match=r"multiple of data\.micro_batch_size"):
        DataConfig(global_batch_size=6, micro_batch_size=4)
    with pytest.raises(ValueError, match="micro_batch_size x data-parallel size"):
        DataConfig(global_batch_size=4, micro_batch_size=2).micro_batches_per_rank(4)
    with pytest.raises(ValueError, match="eval_fraction"):
        DataConfig(eval_fraction=1.0)
    with pytest.raises(ValueError, match="index_cache_mib"):
        DataConfig(index_cache_mib=0)


# --- on the real tiny store -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index(small_dataset, scored_store):
    reader = TeacherStoreReader(small_dataset, scored_store)
    return SampleIndex.build(reader, 0.2), reader.k


def cfg_for_tests(**kw) -> DataConfig:
    return DataConfig(
        **{"global_batch_size": 4, "micro_batch_size": 2, "num_workers": 0, "eval_fraction": 0.2, **kw}
    )


def test_split_is_disjoint_and_nonempty(index):
    idx, _ = index
    assert 0 < idx.held_out.sum() < len(idx)


def test_batches_mask_shift_and_teacher_alignment(small_dataset, scored_store, index):
    idx, k = index
    builder = MicroBatchBuilder(small_dataset, scored_store, idx, k)
    reader = TeacherStoreReader(small_dataset, scored_store)
    samples = np.arange(3)
    b = builder.build(samples)
    ids, labels, spans = b["input_ids"], b["labels"], b["position_spans"]
    for r, i in enumerate(samples):
        n = int(idx.lengths[i])
        assert int(b["lengths"][r]) == n
        sup = labels[r] != IGNORE_INDEX
        # shift: labels[t] = input_ids[t + 1] wherever supervised; nothing supervised in the padding
        t = torch.nonzero(sup).flatten()
        assert torch.equal(labels[r, t], ids[r, t + 1])
        assert not sup[n - 1 :].any()
        # mask: supervised exactly after the last <|start|> of the assistant turn, through <|return|>
        assert ids[r, int(t[-1]) + 1] == RETURN
        starts = torch.nonzero(ids[r, :n] == START_ASSISTANT).flatten()
        first = int(t[0])
        assert (starts < first + 1).any(), "supervision must begin after an assistant <|start|>"
        assert set(spans[r, sup].tolist()) <= {int(Span.REASONING), int(Span.FINAL)}
        assert (spans[r, ~sup] == -1).all()
        # teacher row t is the distribution of token t + 1: the stored rows, placed at their positions
        rows = reader.fetch_rows(int(idx.shard[i]), int(idx.store_seq[i]))
        assert torch.equal(torch.nonzero(sup).flatten(), torch.from_numpy(rows.positions.astype(np.int64)))
        assert torch.equal(b["teacher_ids"][r, rows.positions], torch.from_numpy(rows.topk_ids))
        assert (b["teacher_ids"][r, ~sup] == 0).all() and (b["teacher_logprobs"][r, ~sup] == 0).all()
        # alignment check against the labels: the teacher's rank of token t+1 agrees with its top-k
        in_topk = rows.target_rank <= k
        hit = (rows.topk_ids == labels[r, rows.positions].numpy()[:, None]).any(1)
        assert np.array_equal(hit, in_topk)
    assert int(b["tokens"]) == int(idx.lengths[samples].sum())
    assert int(b["padded_tokens"]) == ids.numel()


def test_a_one_byte_index_cache_evicts_and_builds_the_same_batches(small_dataset, scored_store, index):
    """`data.index_cache_mib` below what the shards need: every fetch from another shard rereads its index
    (one shard stays cached), and the micro-batches are the same; the packed form a worker returns is one
    byte tensor that unpacks to the same dict, every field a view of it (what the loader pinned stays so)."""
    idx, k = index
    samples = np.flatnonzero(idx.shard != idx.shard[0])[:2]
    samples = np.concatenate([[0], samples, [1]])  # shard 0, other shard(s), back to shard 0
    default = MicroBatchBuilder(small_dataset, scored_store, idx, k)
    tiny = MicroBatchBuilder(small_dataset, scored_store, idx, k, index_cache_bytes=1)
    packed = tiny.build_packed(samples)
    assert [key for key, v in packed.items() if torch.is_tensor(v)] == ["buffer"]
    unpacked = unpack_micro_batch(packed)
    _same([[unpacked]], [[default.build(samples)]])
    storage = packed["buffer"].untyped_storage().data_ptr()
    for key in ("input_ids", "labels", "position_spans", "teacher_ids", "teacher_logprobs"):
        assert unpacked[key].untyped_storage().data_ptr() == storage, key
    assert len(tiny._reader._open_shards) == 1 and len(default._reader._open_shards) > 1


def _take(loader, n):
    it = iter(loader)
    out = [next(it) for _ in range(n)]
    state = loader.state()
    loader.close()
    return out, state


def _same(a, b):
    assert len(a) == len(b)
    for sa, sb in zip(a, b, strict=True):
        for ma, mb in zip(sa, sb, strict=True):
            for key in ma:
                same = torch.equal(ma[key], mb[key]) if torch.is_tensor(ma[key]) else ma[key] == mb[key]
                assert same, key


def test_loader_resume_position_and_spawned_workers_match(small_dataset, scored_store, index):
    idx, k = index
    cfg = cfg_for_tests()
    builder = MicroBatchBuilder(small_dataset, scored_store, idx, k)
    loader = TrainLoader(builder, cfg, dp=1, rank=0)
    n = loader.n_steps + 1  # roll over into the second epoch
    ref, state = _take(loader, n)
    assert state == {"epoch": 1, "step": 1, "seed": cfg.seed}
    # Resume from the saved position after 2 steps: the rest of the stream is identical.
    first, mid = _take(TrainLoader(builder, cfg, dp=1, rank=0), 2)
    rest, _ = _take(TrainLoader(builder, cfg, dp=1, rank=0, epoch=mid["epoch"], step=mid["step"]), n - 2)
    _same(first + rest, ref)
    # Spawned workers (zarr under spawn) build exactly what the main process builds.
    workers, _ = _take(TrainLoader(builder, cfg_for_tests(num_workers=1, prefetch_factor=2), dp=1, rank=0), n)
    _same(workers, ref)


def test_store_refusals(small_dataset, scored_store, tmp_path):
    with pytest.raises(StoreError, match="not a teacher store"):
        TeacherStoreReader(small_dataset, tmp_path / "nowhere")
    # The scoring output root (what pipelines.score was given as output=) resolves to this dataset's store.
    assert TeacherStoreReader(small_dataset, scored_store.parent.parent).root == scored_store
    # Two teacher stores of this dataset under one output root: ambiguous, refused by name.
    twin = tmp_path / "out" / scored_store.parent.name
    shutil.copytree(scored_store, twin / "teacher-a")
    shutil.copytree(scored_store, twin / "teacher-b")
    with pytest.raises(StoreError, match="2 teacher stores for this dataset"):
        TeacherStoreReader(small_dataset, tmp_path / "out")
    # A store scored from another dataset (its recorded manifest hash differs): refused.
    other = tmp_path / "other_store"
    shutil.copytree(scored_store, other)
    meta = json.loads((other / "zarr.json").read_text())
    meta["attributes"]["dataset_manifest_hash"] = "0" * 64
    (other / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="refusing to pair them"):
        TeacherStoreReader(small_dataset, other)
    # A store with an uncommitted shard: refused, naming it.
    incomplete = tmp_path / "incomplete"
    shutil.copytree(scored_store, incomplete)
    marker = sorted((incomplete / "shards").glob("*.complete.json"))[0]
    marker.unlink()
    with pytest.raises(StoreError, match="not committed"):
        TeacherStoreReader(small_dataset, incomplete)


def test_missing_dataset_is_refused(scored_store, tmp_path):
    from vpmoe.data.manifest import ManifestError

    with pytest.raises(ManifestError, match="no dataset manifest"):
        TeacherStoreReader(Path(tmp_path), scored_store)


def test_pad_batch_only_adds_masked_padding(small_dataset, scored_store, index):
    from vpmoe.train.data import pad_batch

    idx, k = index
    b = MicroBatchBuilder(small_dataset, scored_store, idx, k).build(np.array([0]))
    s = b["input_ids"].shape[1]
    p = pad_batch(b, 2, s + 5)
    assert p["input_ids"].shape == (2, s + 5) and p["teacher_ids"].shape == (2, s + 5, k)
    for key in ("input_ids", "labels", "position_spans", "teacher_ids", "teacher_logprobs"):
        assert torch.equal(p[key][:1, :s], b[key]), key
    assert (p["labels"][:, s:] == IGNORE_INDEX).all() and (p["labels"][1] == IGNORE_INDEX).all()
    assert (p["position_spans"][1] == -1).all() and p["lengths"].tolist() == [b["lengths"].item(), 0]
    assert int(p["tokens"]) == int(b["tokens"]) and int(p["padded_tokens"]) == 2 * (s + 5)
    with pytest.raises(ValueError, match="cannot pad"):
        pad_batch(b, 1, s - 1)


def test_close_takes_the_workers_last_batches_and_they_exit_cleanly(small_dataset, scored_store, index):
    """`TrainLoader.close` empties the workers' queues before stopping them: nothing is left in flight
    (a worker stopped mid-batch can abort in its interpreter shutdown), and every worker exits with 0."""
    idx, k = index
    loader = TrainLoader(
        MicroBatchBuilder(small_dataset, scored_store, idx, k), cfg_for_tests(num_workers=2), dp=1, rank=0
    )
    it = iter(loader)
    next(it)
    torch_it, workers = loader._it, list(loader._it._workers)
    assert torch_it._tasks_outstanding > 0  # prefetched batches are in flight
    loader.close()
    assert torch_it._tasks_outstanding == 0
    assert [w.exitcode for w in workers] == [0, 0]
