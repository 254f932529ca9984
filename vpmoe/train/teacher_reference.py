"""The teacher's full distribution on held-out text, as an evaluation reference (format 1).

A store keeps the teacher's top-k (or draws from its top-k and tail bucket), so the held-out KL an
evaluation measures against the store is to that truncated view: a lower bound of the KL to the teacher's
full distribution (data-processing inequality). The reference holds what the full-distribution metrics
need, per supervised held-out position, computed from the teacher's whole softmax by whoever can run it
(benchmarks/quality/teacher_reference.py runs the study's teacher with transformers):

    format        str             "vpmoe-teacher-reference/1"
    manifest_hash str             the dataset's manifest hash (the sequences the positions index)
    shard, row    [S] int32       each held-out sample: its dataset shard (manifest order) and row there
    crc           [S] uint32      crc32c of its token record (the dataset's), checked against the dataset
    offsets       [S+1] int64     sample s owns positions[offsets[s]:offsets[s+1]]
    positions     [P] int32       token positions t whose next token is supervised (labels[t] != -100)
    draws         [P, M] int32    M ids drawn with replacement from the teacher's softmax at t
    draw_logprobs [P, M] float32  the teacher's log-probability of each drawn id
    entropy       [P] float32     the teacher's exact entropy at t (nats)
    argmax        [P] int32       the teacher's top-1 id at t (first maximum)
    seed          int             the draws' seed

KL(p || q) = E_{x~p}[log p(x) - log q(x)], so mean_m (draw_logprobs - log q(draws)) is an unbiased
estimate of each position's KL to the full distribution; its standard error over positions is reported
with it (vpmoe/train/full_softmax.py).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch

from vpmoe.data.harmony_render import IGNORE_INDEX
from vpmoe.utils import storage

FORMAT = "vpmoe-teacher-reference/1"
ARRAYS = ("shard", "row", "crc", "offsets", "positions", "draws", "draw_logprobs", "entropy", "argmax")


class ReferenceError(ValueError):
    """A reference that does not fit the dataset or the batch it is asked about (names file and sample)."""


def write_reference(path, *, manifest_hash: str, seed: int, **arrays: np.ndarray) -> None:
    """Durably write a reference (compressed npz: write, fsync, rename), after checking its shapes."""
    from vpmoe.utils.atomic import commit_file

    ref = TeacherReference(str(path), manifest_hash=manifest_hash, seed=seed, **_typed(arrays))
    buf = io.BytesIO()
    np.savez_compressed(
        buf, format=np.array(FORMAT), manifest_hash=np.array(manifest_hash), seed=np.array(seed, np.int64),
        **{a: getattr(ref, a) for a in ARRAYS},
    )  # fmt: skip
    commit_file(path, buf.getvalue())


def _typed(arrays: dict) -> dict:
    missing = set(ARRAYS) - set(arrays)
    if missing:
        raise ReferenceError(f"reference arrays missing: {sorted(missing)}")
    dtypes = {"crc": np.uint32, "offsets": np.int64, "draw_logprobs": np.float32, "entropy": np.float32}
    return {a: np.ascontiguousarray(arrays[a], dtype=dtypes.get(a, np.int32)) for a in ARRAYS}


@dataclass
class TeacherReference:
    path: str
    manifest_hash: str
    seed: int
    shard: np.ndarray
    row: np.ndarray
    crc: np.ndarray
    offsets: np.ndarray
    positions: np.ndarray
    draws: np.ndarray
    draw_logprobs: np.ndarray
    entropy: np.ndarray
    argmax: np.ndarray

    def __post_init__(self) -> None:
        s, p = len(self.shard), len(self.positions)
        bad = None
        if not (len(self.row) == len(self.crc) == s and len(self.offsets) == s + 1):
            bad = "shard, row, crc and offsets disagree on the number of samples"
        elif self.offsets[0] != 0 or self.offsets[-1] != p or np.any(np.diff(self.offsets) < 0):
            bad = "offsets are not a non-decreasing 0 .. len(positions)"
        elif self.draws.ndim != 2 or self.draws.shape[0] != p or self.draws.shape[1] < 1:
            bad = f"draws must be [positions, M >= 1], got {self.draws.shape}"
        elif self.draw_logprobs.shape != self.draws.shape:
            bad = f"draw_logprobs {self.draw_logprobs.shape} is not draws' shape {self.draws.shape}"
        elif len(self.entropy) != p or len(self.argmax) != p:
            bad = "entropy and argmax need one value per position"
        elif np.any(self.draw_logprobs > 1e-4) or not np.all(np.isfinite(self.draw_logprobs)):
            bad = "draw_logprobs must be finite log-probabilities (<= 0)"
        if bad:
            raise ReferenceError(f"{self.path}: {bad}")
        self._order = np.argsort(self._keys(self.shard, self.row))

    @classmethod
    def load(cls, path: str) -> TeacherReference:
        """Read a reference (a local path or s3://...), checking its format and shapes."""
        try:
            z = np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False)
            fmt = str(z["format"])
        except (OSError, ValueError, KeyError) as e:
            raise ReferenceError(f"{path}: not a teacher reference ({e})") from None
        if fmt != FORMAT:
            raise ReferenceError(f"{path}: format {fmt!r}, this code reads {FORMAT!r}")
        return cls(
            path, manifest_hash=str(z["manifest_hash"]), seed=int(z["seed"]),
            **_typed({a: z[a] for a in ARRAYS if a in z.files}),
        )  # fmt: skip

    @property
    def draws_per_position(self) -> int:
        return int(self.draws.shape[1])

    @staticmethod
    def _keys(shard: np.ndarray, row: np.ndarray) -> np.ndarray:
        return shard.astype(np.int64) << 32 | row.astype(np.int64)

    def check_dataset(self, manifest_hash: str) -> None:
        if manifest_hash != self.manifest_hash:
            raise ReferenceError(
                f"{self.path}: built for dataset {self.manifest_hash}, evaluating on {manifest_hash}"
            )

    def slots(self, shard: np.ndarray, row: np.ndarray, crc: np.ndarray, names: list[str]) -> np.ndarray:
        """The reference's sample slot of each (shard, row); `names` label the samples in errors."""
        keys = self._keys(self.shard[self._order], self.row[self._order])
        want = self._keys(shard, row)
        at = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
        found = keys[at] == want if len(keys) else np.zeros(len(want), bool)
        if not found.all():
            raise ReferenceError(
                f"{self.path}: no reference for held-out sample {names[int(np.argmin(found))]}"
            )
        slot = self._order[at]
        moved = self.crc[slot] != crc
        if moved.any():
            i = int(np.argmax(moved))
            raise ReferenceError(
                f"{self.path}: sample {names[i]}'s tokens differ from the ones the reference scored"
            )
        return slot

    def batch_rows(
        self, slots: np.ndarray, labels: torch.Tensor, names: list[str]
    ) -> dict[str, torch.Tensor]:
        """The reference rows of a batch, in the loss head's row order: the supervised rows of `labels`
        ([b, s], sample i in row i) flattened sequence-first (r = t * b + i), as `head_loss` takes them.
        Refuses a sample whose supervised positions are not the reference's."""
        b = labels.shape[0]
        sup = (labels != IGNORE_INDEX).numpy()
        order = []  # for each sample: its reference rows, checked against its supervised positions
        for i, slot in enumerate(slots):
            a, z = int(self.offsets[slot]), int(self.offsets[slot + 1])
            pos = np.flatnonzero(sup[i])
            if len(pos) != z - a or np.any(self.positions[a:z] != pos):
                raise ReferenceError(
                    f"{self.path}: sample {names[i]}: the reference has {z - a} supervised positions, the "
                    f"batch {len(pos)} (or at other tokens)"
                )
            order.append((pos * b + i, np.arange(a, z)))
        flat = np.concatenate([r for r, _ in order]) if order else np.zeros(0, np.int64)
        src = np.concatenate([p for _, p in order]) if order else np.zeros(0, np.int64)
        src = src[np.argsort(flat, kind="stable")]  # sequence-first order of the supervised rows
        return {
            "draws": torch.from_numpy(self.draws[src].astype(np.int64)),
            "draw_logprobs": torch.from_numpy(self.draw_logprobs[src]),
            "entropy": torch.from_numpy(self.entropy[src]),
            "argmax": torch.from_numpy(self.argmax[src].astype(np.int64)),
        }


class ReferenceLookup:
    """A reference bound to the samples of one SampleIndex (vpmoe/train/data.py): the reference rows of a
    batch of sample indices. `shard_names`: the dataset manifest's shard names, for errors."""

    def __init__(self, reference: TeacherReference, index, shard_names: list[str]) -> None:
        self.reference, self.index, self.shard_names = reference, index, shard_names

    def _slots(self, samples: np.ndarray) -> tuple[np.ndarray, list[str]]:
        ix = self.index
        names = [f"{self.shard_names[ix.shard[i]]} row {ix.row[i]}" for i in samples]
        return self.reference.slots(ix.shard[samples], ix.row[samples], ix.crc[samples], names), names

    def check_samples(self, samples: np.ndarray) -> None:
        """Refuse, naming the sample, when one of `samples` has no reference or other tokens."""
        self._slots(samples)

    def batch_rows(self, samples: np.ndarray, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        slots, names = self._slots(samples)
        return self.reference.batch_rows(slots, labels, names)
