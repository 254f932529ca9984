"""Held-out metrics over the student's whole softmax (vpmoe/train/full_softmax.py) and the teacher
reference they are measured against (vpmoe/train/teacher_reference.py). The vocabulary-parallel path is
tested in tests/test_tensor_parallel.py (two gloo processes against one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vpmoe.train import full_softmax
from vpmoe.train.full_softmax import (
    ECE_BINS,
    FullSoftmaxRows,
    calibration_sums,
    full_softmax_metrics,
    full_softmax_rows,
    reference_sums,
)
from vpmoe.train.teacher_reference import ReferenceError, TeacherReference, write_reference


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rows_match_fp64_log_softmax_in_chunks(monkeypatch, dtype):
    g = torch.Generator().manual_seed(0)
    r, h, v, m = 37, 13, 1009, 5
    hidden = (torch.randn(r, h, generator=g) * 2).to(dtype)
    weight = torch.randn(v, h, generator=g).to(dtype)
    hidden[3] *= 40  # a peaked row: confidence near 1
    ids = torch.randint(0, v, (r, m), generator=g)
    monkeypatch.setattr(full_softmax, "CHUNK_BYTES", 4 * v * 8)  # 8 rows a chunk: 5 chunks, a partial last
    got = full_softmax_rows(hidden, weight, ids=ids)
    logp = torch.log_softmax(hidden.double() @ weight.double().t(), dim=-1)
    torch.testing.assert_close(got.confidence.double(), logp.max(-1).values.exp(), rtol=1e-5, atol=1e-6)
    assert torch.equal(got.argmax, logp.argmax(-1))
    assert got.confidence[3] > 0.99
    torch.testing.assert_close(got.logq.double(), logp.gather(1, ids), rtol=1e-5, atol=1e-4)
    assert full_softmax_rows(hidden, weight).logq is None


def test_ece_is_the_binned_gap_between_confidence_and_accuracy():
    # Hand-made rows: 10 at confidence 0.95 with 7 right, 4 at 0.31 with 2 right, 1 at exactly 1.0 (right).
    conf = torch.tensor([0.95] * 10 + [0.31] * 4 + [1.0])
    labels = torch.tensor([5] * 15)
    argmax = torch.tensor([5] * 7 + [6] * 3 + [5, 5, 6, 6] + [5])
    calib = calibration_sums(FullSoftmaxRows(conf, argmax, None), labels)
    assert calib.shape == (ECE_BINS, 3) and calib[:, 0].sum() == 15
    assert calib[-1, 0] == 11  # 0.95 and 1.0 share the top bin ([14/15, 1])
    m = full_softmax_metrics(calib, None)
    top = abs((7 + 1) - (0.95 * 10 + 1.0))
    low = abs(2 - 0.31 * 4)
    assert m["ece"] == pytest.approx((top + low) / 15)
    assert m["accuracy"] == pytest.approx(10 / 15)
    assert m["confidence"] == pytest.approx((9.5 + 1.24 + 1.0) / 15)
    assert "kl_full" not in m


def test_draw_estimate_of_the_full_kl_is_unbiased():
    """mean over draws x ~ p of log p(x) - log q(x) estimates KL(p || q) per position; over many positions
    the mean lands within its reported standard error of the exact KL (fixed seed)."""
    g = torch.Generator().manual_seed(1)
    positions, vocab, draws = 4000, 50, 4
    logp = torch.log_softmax(2 * torch.randn(positions, vocab, generator=g, dtype=torch.float64), -1)
    logq = torch.log_softmax(2 * torch.randn(positions, vocab, generator=g, dtype=torch.float64), -1)
    exact = (logp.exp() * (logp - logq)).sum(-1).mean().item()
    x = torch.multinomial(logp.exp(), draws, replacement=True, generator=g)
    rows = FullSoftmaxRows(torch.zeros(positions), logq.argmax(-1), logq.gather(1, x).float())
    ref = {
        "draw_logprobs": logp.gather(1, x).float(),
        "entropy": -(logp.exp() * logp).sum(-1).float(),
        "argmax": logp.argmax(-1),
    }
    m = full_softmax_metrics(torch.ones(ECE_BINS, 3, dtype=torch.float64), reference_sums(rows, ref))
    assert m["reference_positions"] == positions
    assert 0 < m["kl_full_se"] < 0.05 * exact
    assert abs(m["kl_full"] - exact) < 4 * m["kl_full_se"], (m["kl_full"], exact, m["kl_full_se"])
    agree = (logq.argmax(-1) == logp.argmax(-1)).double().mean().item()
    assert m["top1_full"] == pytest.approx(agree)


def _arrays(samples=3, m=4):
    lens = [5, 0, 7][:samples]
    p = sum(lens)
    rng = np.random.default_rng(0)
    return {
        "shard": np.array([0, 0, 1][:samples]),
        "row": np.array([2, 5, 0][:samples]),
        "crc": np.array([11, 12, 13][:samples], np.uint32),
        "offsets": np.concatenate([[0], np.cumsum(lens)]),
        "positions": np.concatenate([np.arange(3, 3 + n) for n in lens]),
        "draws": rng.integers(0, 100, (p, m)),
        "draw_logprobs": -rng.random((p, m)),
        "entropy": rng.random(p),
        "argmax": rng.integers(0, 100, p),
    }


def test_reference_round_trip_and_batch_rows_in_head_order(tmp_path):
    path = tmp_path / "ref.npz"
    a = _arrays()
    write_reference(path, manifest_hash="abc", seed=7, **a)
    ref = TeacherReference.load(str(path))
    assert ref.seed == 7 and ref.draws_per_position == 4
    ref.check_dataset("abc")
    with pytest.raises(ReferenceError, match="built for dataset abc"):
        ref.check_dataset("other")
    # a batch of samples (shard 1 row 0) and (shard 0 row 2), padded to [2, 12]
    slots = ref.slots(np.array([1, 0]), np.array([0, 2]), np.array([13, 11], np.uint32), ["s10", "s02"])
    assert slots.tolist() == [2, 0]
    labels = torch.full((2, 12), -100)
    labels[0, 3:10] = 1
    labels[1, 3:8] = 1
    rows = ref.batch_rows(slots, labels, ["s10", "s02"])
    # sequence-first: row t * b + i, over the supervised (t, i) in that order
    want = []
    for t in range(12):
        for i, first in enumerate([5, 0]):
            if labels[i, t] != -100:
                want.append(first + t - 3)
    assert torch.equal(rows["draws"], torch.from_numpy(a["draws"][want]))
    assert torch.equal(rows["argmax"], torch.from_numpy(a["argmax"][want]))

    with pytest.raises(ReferenceError, match="no reference for held-out sample s99"):
        ref.slots(np.array([0, 3]), np.array([2, 0]), np.array([11, 0], np.uint32), ["s02", "s99"])
    with pytest.raises(ReferenceError, match="sample s02's tokens differ"):
        ref.slots(np.array([0]), np.array([2]), np.array([99], np.uint32), ["s02"])
    labels[1, 8] = 1  # one more supervised token than the reference scored
    with pytest.raises(
        ReferenceError, match="sample s02: the reference has 5 supervised positions, the batch 6"
    ):
        ref.batch_rows(slots, labels, ["s10", "s02"])


def test_bad_reference_files_are_refused_naming_the_file(tmp_path):
    a = _arrays()
    with pytest.raises(ReferenceError, match=r"draw_logprobs .* is not draws' shape"):
        write_reference(tmp_path / "x.npz", manifest_hash="h", seed=0, **{**a, "draw_logprobs": a["entropy"]})
    with pytest.raises(ReferenceError, match="log-probabilities"):
        write_reference(
            tmp_path / "x.npz", manifest_hash="h", seed=0, **{**a, "draw_logprobs": -a["draw_logprobs"]}
        )
    with pytest.raises(ReferenceError, match="offsets"):
        write_reference(tmp_path / "x.npz", manifest_hash="h", seed=0, **{**a, "offsets": a["offsets"][::-1]})
    assert not (tmp_path / "x.npz").exists()
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ReferenceError, match=r"junk\.npz: not a teacher reference"):
        TeacherReference.load(str(tmp_path / "junk.npz"))
    np.savez(tmp_path / "old.npz", format=np.array("vpmoe-teacher-reference/0"))
    with pytest.raises(ReferenceError, match=r"old\.npz: format 'vpmoe-teacher-reference/0'"):
        TeacherReference.load(str(tmp_path / "old.npz"))
