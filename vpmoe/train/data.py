"""The training data path: prepared shards joined with the teacher store by sample id.

Order and sharding (deterministic from (seed, epoch), independent of how a step is split):
  1. The held-out split is fixed by sample id: a sample is held out iff sha256(sample_id) falls below
     `eval_fraction` (disjoint by construction, stable when the dataset grows).
  2. Each epoch permutes the training samples (numpy PCG64 seeded by (seed, epoch)), cuts the permutation
     into windows of `bucket_steps` global batches, sorts each window by length and cuts it into global
     batches of `global_batch_size` sequences, then shuffles the order of the global batches. Sorting
     inside windows keeps similar lengths together (little padding) while the step order stays random.
  3. A step's sequences are sorted by length and dealt into dp x M micro-batches of `micro_batch_size`
     consecutive sequences (M = global / (micro x dp)); micro-batch j belongs to data-parallel rank j % dp.
     The set of sequences in a step therefore does not depend on dp or on the micro-batch size, which is
     what makes the span-normalized loss invariant to them.
The loader position saved in checkpoints is (epoch, step of the next batch); resuming rebuilds the same
plan and starts there, so a resumed run sees exactly the batches an uninterrupted one would have seen.

Micro-batches are built in spawned DataLoader workers (zarr deadlocks under fork) and prefetched.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vpmoe.data.harmony_render import IGNORE_INDEX, position_spans
from vpmoe.data.token_records import read_sequence
from vpmoe.teacher.quarantine import kept_rows
from vpmoe.teacher.store_reader import TRAINING_FIELDS, TeacherStoreReader

_log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class DataConfig:
    global_batch_size: int = 32  # sequences per optimizer step, over all data-parallel ranks
    micro_batch_size: int = 4  # sequences per forward/backward
    eval_fraction: float = 0.05  # held-out share, chosen by sample-id hash
    eval_max_samples: int = 256
    bucket_steps: int = 8  # global batches per length-sorting window
    num_workers: int = 2  # spawned DataLoader workers (0 = in-process, for debugging)
    prefetch_factor: int = 4
    seed: int = 1234
    # Per process (the trainer and each worker): cached teacher-store shard indexes, mostly id-code tables
    # of up to ~0.8 MB per shard. Below what the shards need, a fetch from an evicted shard rereads its index.
    index_cache_mib: int = 512

    def __post_init__(self) -> None:
        if self.global_batch_size < 1 or self.micro_batch_size < 1:
            raise ValueError("data.global_batch_size and data.micro_batch_size must be >= 1")
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"data.global_batch_size ({self.global_batch_size}) must be a multiple of data.micro_batch_size ({self.micro_batch_size})"
            )
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"data.eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.index_cache_mib < 1:
            raise ValueError(f"data.index_cache_mib must be >= 1, got {self.index_cache_mib}")
        if self.bucket_steps < 1 or self.num_workers < 0 or self.prefetch_factor < 1:
            raise ValueError("data.bucket_steps >= 1, data.num_workers >= 0, data.prefetch_factor >= 1")

    @property
    def index_cache_bytes(self) -> int:
        return self.index_cache_mib << 20

    def micro_batches_per_rank(self, dp: int) -> int:
        per_rank, rem = divmod(self.global_batch_size, self.micro_batch_size * dp)
        if rem or per_rank < 1:
            raise ValueError(
                f"data.global_batch_size ({self.global_batch_size}) must be a multiple of micro_batch_size x "
                f"data-parallel size ({self.micro_batch_size} x {dp})"
            )
        return per_rank


# Concurrent shard reads while the sample index is built (`SampleIndex.build`).
INDEX_READ_THREADS = 16


def is_held_out(sample_id: str, fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha256(sample_id.encode()).digest()[:8], "big")
    return h < fraction * 2**64


@dataclass(frozen=True)
class SampleIndex:
    """Every sequence of the dataset that has teacher rows, addressed by integers: per sample its length,
    dataset shard, row in that shard, sequence in the stored shard, first token in the shard's token
    records, the records' crc32c and whether it is held out. Compact numpy arrays only (29 bytes per
    sample, docs/training.md "Data at scale"): this is pickled into every spawned loader worker, so nothing
    per sample is a Python object. Samples the scorer quarantined (no teacher rows,
    vpmoe/teacher/quarantine.py) are left out, so no step ever holds a sequence without its teacher."""

    lengths: np.ndarray  # int32, tokens
    shard: np.ndarray  # int32, index into the manifest's shards
    row: np.ndarray  # int32, row within the dataset shard
    store_seq: np.ndarray  # int32, sequence within the stored shard (rows minus quarantined before it)
    start: np.ndarray  # int64, first token within the shard's token records
    crc: np.ndarray  # uint32, crc32c of the sample's token record
    held_out: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in self.__dataclass_fields__)

    @classmethod
    def build(cls, reader: TeacherStoreReader, eval_fraction: float) -> SampleIndex:
        """One pass over the shards' id, length and crc columns. Checks each shard's stored sample ids
        against the store's marker (the one place sample ids are needed), then keeps integers only."""
        from concurrent.futures import ThreadPoolExecutor

        ds = reader.dataset
        parts: dict[str, list[np.ndarray]] = {f: [] for f in cls.__dataclass_fields__}
        columns = ["sample_id", "num_tokens", "tokens_crc32c"]
        # Shards read concurrently, consumed in order: on object storage each shard is ~4 requests of
        # ~10-25 ms, so thousands one after another would take minutes (pyarrow and the HTTP client release
        # the GIL). Windows of `INDEX_READ_THREADS` x 4 shards bound the columns held at once.
        shards = ds.manifest.shards
        window = INDEX_READ_THREADS * 4
        with ThreadPoolExecutor(INDEX_READ_THREADS) as pool:
            for a in range(0, len(shards), window):
                tables = pool.map(lambda e: ds.read_columns(e.name, columns), shards[a : a + window])
                for si, t in enumerate(tables, start=a):
                    cls._add_shard(parts, reader, si, t, eval_fraction)
        return cls(**{f: np.concatenate(v) for f, v in parts.items()})

    @staticmethod
    def _add_shard(parts: dict, reader: TeacherStoreReader, si: int, t, eval_fraction: float) -> None:
        """Append shard `si`'s kept samples (its columns `t`) to `parts`, after the store's id check."""
        sids = t.column("sample_id").to_pylist()
        keep = kept_rows(sids, reader.shard_quarantine[si], reader.dataset.manifest.shards[si].name)
        kept_ids = [sids[j] for j in keep]
        reader.check_sample_ids(si, kept_ids)
        lengths = t.column("num_tokens").to_numpy().astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        parts["lengths"].append(lengths[keep].astype(np.int32))
        parts["shard"].append(np.full(len(keep), si, np.int32))
        parts["row"].append(keep.astype(np.int32))
        parts["store_seq"].append(np.arange(len(keep), dtype=np.int32))
        parts["start"].append(starts[keep].astype(np.int64))
        parts["crc"].append(t.column("tokens_crc32c").to_numpy().astype(np.uint32)[keep])
        parts["held_out"].append(np.array([is_held_out(s, eval_fraction) for s in kept_ids], dtype=bool))


def epoch_steps(index: SampleIndex, cfg: DataConfig, epoch: int) -> list[np.ndarray]:
    """Global batches (arrays of sample indices) of one epoch, in step order."""
    train = np.flatnonzero(~index.held_out)
    rng = np.random.default_rng([cfg.seed, epoch])
    perm = train[rng.permutation(len(train))]
    g = cfg.global_batch_size
    usable = len(perm) // g * g  # the remainder (< one global batch) waits for the next epoch's permutation
    steps = []
    window = g * cfg.bucket_steps
    for a in range(0, usable, window):
        w = perm[a : min(a + window, usable)]
        w = w[np.argsort(index.lengths[w], kind="stable")]
        steps += [w[i : i + g] for i in range(0, len(w), g)]
    order = rng.permutation(len(steps))
    return [steps[i] for i in order]


def split_step(index: SampleIndex, step: np.ndarray, cfg: DataConfig, dp: int, rank: int) -> list[np.ndarray]:
    """This rank's micro-batches of one global batch (see module docstring, point 3)."""
    m = cfg.micro_batches_per_rank(dp)
    s = step[np.argsort(index.lengths[step], kind="stable")]
    micro = [s[i : i + cfg.micro_batch_size] for i in range(0, len(s), cfg.micro_batch_size)]
    return [micro[j] for j in range(rank, dp * m, dp)]


class MicroBatchBuilder:
    """Builds padded micro-batch tensors from sample indices. Picklable; opens the reader lazily per
    process. Per sample: one ranged read of its token record, one per teacher array the loss needs."""

    def __init__(
        self,
        dataset_dir: str | Path,
        store_dir: str | Path,
        index: SampleIndex,
        k: int,
        *,
        index_cache_bytes: int | None = None,
    ) -> None:
        self.dataset_dir, self.store_dir, self.index, self.k = str(dataset_dir), str(store_dir), index, k
        self.index_cache_bytes = index_cache_bytes  # the reader's shard-index budget (None: its default)
        self._reader: TeacherStoreReader | None = None

    def __getstate__(self):
        return {**self.__dict__, "_reader": None}

    def build(self, samples: np.ndarray) -> dict[str, torch.Tensor]:
        """The micro-batch of these samples as the trainer reads it (`unpack_micro_batch`)."""
        return unpack_micro_batch(self.build_packed(samples))

    def build_packed(self, samples: np.ndarray) -> dict:
        """The micro-batch as one byte buffer: what a loader worker returns. Every tensor a worker returns
        is a shared-memory segment whose descriptor crosses an authenticated socket, ~0.4 ms of CPU per
        tensor over both processes (benchmarks/results/loader_cpu.md), so every field travels in one
        buffer (`PACKED_FIELDS` segments, each contiguous and aligned for its dtype), with the shape and
        the token counts as plain ints."""
        if self._reader is None:
            self._reader = TeacherStoreReader(
                self.dataset_dir, self.store_dir, index_cache_bytes=self.index_cache_bytes
            )
        ix, reader, k = self.index, self._reader, self.k
        b = len(samples)
        s = int(ix.lengths[samples].max())
        buf = np.zeros(_packed_bytes(b, s, k), np.uint8)
        # The teacher's top-k as stored (int32 ids, fp16 log-probs: exact); the loss widens them on the
        # device (vpmoe/train/loss.py), which halves this, the largest field's, host-to-device bytes.
        t_ids, input_ids, labels, spans, lengths, t_lps = _packed_views(buf, b, s, k)
        labels[:] = IGNORE_INDEX
        spans[:] = -1
        for r, i in enumerate(samples):
            si, n = int(ix.shard[i]), int(ix.lengths[i])
            ids, tok_spans, lab = read_sequence(
                reader.dataset.tokens_url(si), int(ix.start[i]), n, int(ix.crc[i])
            )
            input_ids[r, :n], labels[r, :n] = ids, lab
            spans[r, :n] = position_spans(tok_spans, lab)
            rows = reader.fetch_rows(si, int(ix.store_seq[i]), TRAINING_FIELDS)
            pos = np.flatnonzero(lab != IGNORE_INDEX)
            if rows.num_rows != len(pos):  # the store's rows are the supervised positions, in order
                raise RuntimeError(
                    f"teacher rows of shard {reader.stems[si]} sequence {int(ix.store_seq[i])} (dataset row "
                    f"{int(ix.row[i])}): {rows.num_rows} rows for {len(pos)} supervised positions"
                )
            t_ids[r, pos] = rows.topk_ids
            t_lps[r, pos] = rows.topk_logprobs
        lengths[:] = ix.lengths[samples]
        return {
            "buffer": torch.from_numpy(buf),
            "shape": (b, s, k),
            "tokens": int(ix.lengths[samples].sum()),
            "padded_tokens": b * s,
        }


# The byte buffer of a packed micro-batch ([b, s] sequences x positions, k teacher ids per position): these
# fields in this order, each one contiguous segment. The int32 segments come first, so the fp16 one starts
# at a multiple of 4 bytes and every segment is aligned for its dtype.
PACKED_FIELDS = (
    "teacher_ids int32 [b, s, k]",
    "input_ids int32 [b, s]",
    "labels int32 [b, s]",
    "position_spans int32 [b, s]",
    "lengths int32 [b]",
    "teacher_logprobs float16 [b, s, k]",
)


def _int32_ends(b: int, s: int, k: int) -> np.ndarray:
    """End offsets, in int32 elements, of the int32 segments of `PACKED_FIELDS`."""
    bs = b * s
    return np.cumsum([bs * k, bs, bs, bs, b])


def _packed_bytes(b: int, s: int, k: int) -> int:
    return 4 * int(_int32_ends(b, s, k)[-1]) + 2 * b * s * k  # the int32 segments, then fp16 [b, s, k]


def _packed_views(buf: np.ndarray | torch.Tensor, b: int, s: int, k: int):
    """Views of the `PACKED_FIELDS` segments of the uint8 buffer `buf` (numpy or torch; nothing copied)."""
    if len(buf) != _packed_bytes(b, s, k):
        raise ValueError(
            f"packed micro-batch of {len(buf)} bytes, expected {_packed_bytes(b, s, k)} for "
            f"[b={b}, s={s}, k={k}]"
        )
    int32, fp16 = (np.int32, np.float16) if isinstance(buf, np.ndarray) else (torch.int32, torch.float16)
    ends = _int32_ends(b, s, k)
    ints, t_lps = buf[: 4 * ends[-1]].view(int32), buf[4 * ends[-1] :].view(fp16)
    t_ids, input_ids, labels, spans, lengths = (ints[a:e] for a, e in zip([0, *ends[:-1]], ends, strict=True))
    return (
        t_ids.reshape(b, s, k),
        input_ids.reshape(b, s),
        labels.reshape(b, s),
        spans.reshape(b, s),
        lengths,
        t_lps.reshape(b, s, k),
    )


def new_packed_micro_batch(b: int, s: int, k: int) -> tuple[dict, tuple]:
    """A zeroed packed micro-batch (what `MicroBatchBuilder.build_packed` returns, as a torch buffer) and the
    views of its `PACKED_FIELDS`, to fill in: synthetic batches shaped exactly like the loader's
    (benchmarks/bench_train.py)."""
    buf = torch.zeros(_packed_bytes(b, s, k), dtype=torch.uint8)
    packed = {"buffer": buf, "shape": (b, s, k), "tokens": b * s, "padded_tokens": b * s}
    return packed, _packed_views(buf, b, s, k)


def unpack_micro_batch(packed: dict) -> dict[str, torch.Tensor]:
    """A packed micro-batch (`MicroBatchBuilder.build_packed`) as the trainer's dict of views into its
    buffer (only the b lengths are copied, to int64): a batch the loader pinned stays page-locked for its
    asynchronous host-to-device copies. Token ids and labels are widened on the device where an int64
    index is needed (vpmoe/train/schedule.py, vpmoe/train/loss.py)."""
    b, s, k = packed["shape"]
    t_ids, input_ids, labels, spans, lengths, t_lps = _packed_views(packed["buffer"], b, s, k)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_spans": spans,
        "teacher_ids": t_ids,
        "teacher_logprobs": t_lps,
        "lengths": lengths.long(),
        "tokens": packed["tokens"],
        "padded_tokens": packed["padded_tokens"],
    }


def pad_batch(batch: dict[str, torch.Tensor], b: int, s: int) -> dict[str, torch.Tensor]:
    """Right-pad a built micro-batch to [b, s] rows x positions (padding: token 0, label -100, span -1,
    teacher zeros; `lengths` unchanged, so the padding mask covers it). Used where every rank of a group
    needs the same shape (the allgather MoE dispatcher under expert parallelism)."""
    b0, s0 = batch["input_ids"].shape
    if (b0, s0) == (b, s):
        return batch
    if b < b0 or s < s0:
        raise ValueError(f"cannot pad a [{b0}, {s0}] micro-batch to [{b}, {s}]")
    fill = {"labels": IGNORE_INDEX, "position_spans": -1}
    out = dict(batch)
    for key in ("input_ids", "labels", "position_spans", "teacher_ids", "teacher_logprobs"):
        x = batch[key]
        padded = torch.full((b, s, *x.shape[2:]), fill.get(key, 0), dtype=x.dtype)
        padded[:b0, :s0] = x
        out[key] = padded
    out["lengths"] = torch.cat([batch["lengths"], torch.zeros(b - b0, dtype=batch["lengths"].dtype)])
    out["padded_tokens"] = b * s
    return out


def steps_per_epoch(index: SampleIndex, cfg: DataConfig) -> int:
    """Optimizer steps in one epoch (the same for every epoch: the remainder is dropped each time)."""
    return int((~index.held_out).sum()) // cfg.global_batch_size


class _PlanSampler(torch.utils.data.Sampler):
    """(epoch, step, j) keys of this rank's micro-batches from a start position, forever."""

    def __init__(self, epoch: int, step: int, n_steps: int, m: int) -> None:
        self.epoch, self.step, self.n_steps, self.m = epoch, step, n_steps, m

    def __iter__(self):
        epoch, step = self.epoch, self.step
        while True:
            for j in range(self.m):
                yield (epoch, step, j)
            step += 1
            if step == self.n_steps:
                epoch, step = epoch + 1, 0


class _PlanDataset(torch.utils.data.Dataset):
    """Key (epoch, step, j) -> this rank's j-th micro-batch of that step, built in the worker."""

    def __init__(self, builder: MicroBatchBuilder, cfg: DataConfig, dp: int, rank: int) -> None:
        self.builder, self.cfg, self.dp, self.rank = builder, cfg, dp, rank
        self._plan: tuple[int, list[np.ndarray]] | None = None

    def __getitem__(self, key: tuple[int, int, int]):
        epoch, step, j = key
        if self._plan is None or self._plan[0] != epoch:  # each worker caches the current epoch's plan
            self._plan = (epoch, epoch_steps(self.builder.index, self.cfg, epoch))
        micro = split_step(self.builder.index, self._plan[1][step], self.cfg, self.dp, self.rank)
        return self.builder.build_packed(micro[j])  # unpacked by TrainLoader in the trainer's process


class TrainLoader:
    """Yields lists of this rank's micro-batches, one list per optimizer step, forever (epochs roll over).

    One DataLoader for the whole run (its spawned workers live across epochs: spawning costs seconds);
    `state()` is the position of the next step to yield, which is what a checkpoint records.
    """

    def __init__(
        self,
        builder: MicroBatchBuilder,
        cfg: DataConfig,
        *,
        dp: int,
        rank: int,
        epoch: int = 0,
        step: int = 0,
        pin_memory: bool = False,
    ):
        self.builder, self.cfg, self.dp, self.rank = builder, cfg, dp, rank
        self.pin_memory = pin_memory  # page-locked batches for asynchronous host-to-GPU copies
        self.m = cfg.micro_batches_per_rank(dp)
        self.n_steps = steps_per_epoch(builder.index, cfg)
        if self.n_steps == 0:
            n = int((~builder.index.held_out).sum())
            raise ValueError(
                f"{n} training sequences cannot fill one global batch of data.global_batch_size="
                f"{cfg.global_batch_size}"
            )
        if not 0 <= step < self.n_steps or epoch < 0:
            raise ValueError(
                f"loader position (epoch {epoch}, step {step}) is outside an epoch of {self.n_steps}"
            )
        self.epoch, self.step = epoch, step  # position of the NEXT step to yield
        self._it = None

    def state(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "seed": self.cfg.seed}

    def __iter__(self):
        if self._it is not None:
            raise RuntimeError("TrainLoader is iterated once; build a new one to restart")
        kw = {}
        if self.cfg.num_workers > 0:
            # spawn, not fork: zarr's threads deadlock in a forked child (store_reader.py docstring).
            kw = {"num_workers": self.cfg.num_workers, "prefetch_factor": self.cfg.prefetch_factor,
                  "multiprocessing_context": "spawn", "persistent_workers": False}  # fmt: skip
        loader = torch.utils.data.DataLoader(
            _PlanDataset(self.builder, self.cfg, self.dp, self.rank),
            sampler=_PlanSampler(self.epoch, self.step, self.n_steps, self.m),
            batch_size=None,
            pin_memory=self.pin_memory,
            **kw,
        )
        self._it = iter(loader)
        while True:
            batch = [unpack_micro_batch(next(self._it)) for _ in range(self.m)]
            self.step += 1
            if self.step == self.n_steps:
                self.epoch, self.step = self.epoch + 1, 0
            yield batch

    def close(self) -> None:
        """Stop the workers now (otherwise they stop when the iterator is garbage collected).

        The batches the workers already hold are taken (and dropped) first: a worker stopped while its
        queue's feeder thread still pickles or frees a batch can abort in its interpreter shutdown (that
        thread cannot take the GIL inside a tensor's destructor: `std::terminate`; 3 of 20 closes on the
        demo). Emptied, the feeder is idle when the worker exits. Should one still exit abnormally, every
        batch was delivered by then, so that is logged, not raised: it must not fail a finished run."""
        it = self._it
        if it is not None and hasattr(it, "_shutdown_workers"):
            # torch's iterator asks its sampler for a new index after each batch: an empty one stops it.
            it._sampler_iter, it._timeout = iter(()), DRAIN_TIMEOUT_S
            try:
                for _ in it:  # at most prefetch_factor x num_workers batches; then torch stops the workers
                    pass
            except Exception as e:  # a worker died, hung or failed on a batch nobody will use: stop them all
                _log.warning("loader workers did not hand over their last batches while stopping: %s", e)
            try:
                it._shutdown_workers()
            except RuntimeError as e:
                if "DataLoader worker" not in str(e):
                    raise
                _log.warning(
                    "loader worker exited abnormally while stopping (all batches were delivered): %s", e
                )
        self._it = None


# How long `TrainLoader.close` waits for a worker's next batch before stopping the workers anyway.
DRAIN_TIMEOUT_S = 120


def eval_batches(index: SampleIndex, cfg: DataConfig) -> list[np.ndarray]:
    """All held-out micro-batches (the first `eval_max_samples` held-out ids, sorted by length so that
    micro-batches pad little). Independent of the parallel layout; `evaluate.rank_eval_batches` deals them."""
    held = np.flatnonzero(index.held_out)[: cfg.eval_max_samples]
    held = held[np.argsort(index.lengths[held], kind="stable")]
    return [held[i : i + cfg.micro_batch_size] for i in range(0, len(held), cfg.micro_batch_size)]
