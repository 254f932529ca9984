"""The loss ablations of the quality study (benchmarks/quality/): `loss.teacher_k` trains on the first k'
of the stored top-k, `loss.target=labels` on a one-hot teacher (KL = CE); held-out evaluation measures the
same KL whatever the run trained on (`LossConfig.measured`)."""

from types import SimpleNamespace

import pytest
import torch

from vpmoe.train.loss import LossConfig, head_loss

S, B, H, V, K = 7, 3, 16, 97, 12


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(S, B, H, generator=g, dtype=torch.float64)
    weight = torch.randn(V, H, generator=g, dtype=torch.float64) * 0.5
    head = SimpleNamespace(
        hidden=hidden,
        weight=weight,
        vocab_start=0,
        tp_group=None,
        sequence_parallel=False,
        weight_shared=False,
    )
    labels = torch.randint(0, V, (B, S), generator=g, dtype=torch.int32)
    labels[0, :3] = -100  # a prompt
    teacher = torch.log_softmax(torch.randn(B, S, V, generator=g, dtype=torch.float64) * 3, -1)
    lps, ids = teacher.topk(K, dim=-1)  # descending, as stored
    return head, labels, ids.to(torch.int32), lps.to(torch.float16), torch.ones(B, S)


def test_labels_target_is_the_cross_entropy_on_the_next_token():
    head, labels, ids, lps, w = _inputs()
    res = head_loss(head, labels, ids, lps, w, LossConfig(impl="torch", target="labels"))
    logits = head.hidden @ head.weight.T  # [S, B, V]
    lab = labels.transpose(0, 1).long()
    keep = lab != -100
    ce = -torch.log_softmax(logits, -1).gather(-1, lab.clamp_min(0)[..., None])[..., 0]
    torch.testing.assert_close(res.kl.reshape(S, B)[keep].double(), ce[keep], rtol=1e-5, atol=1e-5)
    assert (res.kl.reshape(S, B)[~keep] == 0).all()
    torch.testing.assert_close(res.loss.double(), ce[keep].sum(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tail", ["bucket", "renorm"])
def test_teacher_k_trains_on_the_stored_top_k_prefix(tail):
    head, labels, ids, lps, w = _inputs(1)
    cut = head_loss(head, labels, ids, lps, w, LossConfig(impl="torch", tail=tail, teacher_k=5))
    ref = head_loss(head, labels, ids[..., :5], lps[..., :5], w, LossConfig(impl="torch", tail=tail))
    whole = head_loss(head, labels, ids, lps, w, LossConfig(impl="torch", tail=tail))
    torch.testing.assert_close(cut.kl, ref.kl)
    assert not torch.allclose(cut.kl, whole.kl)
    with pytest.raises(ValueError, match="teacher_k=13 > the batch's teacher k=12"):
        head_loss(head, labels, ids, lps, w, LossConfig(impl="torch", teacher_k=K + 1))


def test_config_checks_and_the_measured_config():
    with pytest.raises(ValueError, match=r"loss\.teacher_k"):
        LossConfig(teacher_k=-1)
    with pytest.raises(ValueError, match=r"loss\.target"):
        LossConfig(target="student")
    with pytest.raises(ValueError, match="teacher_k=65 > the teacher store's k=64"):
        LossConfig(teacher_k=65).check_store(64)
    # Renormalized over one id, teacher and student both put mass 1 on it: a loss of 0, refused.
    for one_id in ({"target": "labels"}, {"teacher_k": 1}):
        with pytest.raises(ValueError, match="a loss of 0"):
            LossConfig(tail="renorm", **one_id)
    # The one-hot target is the CE only at temperature 1, and ce_weight would count it twice.
    for bad in ({"temperature": 2.0}, {"ce_weight": 0.5}):
        with pytest.raises(ValueError, match="is the CE itself"):
            LossConfig(target="labels", **bad)
    m = LossConfig(teacher_k=8, tail="renorm", ce_weight=0.5).measured()
    assert (m.teacher_k, m.tail, m.target, m.ce_weight) == (0, "bucket", "teacher", 0.5)


def test_a_checkpoint_from_before_the_ablation_keys_resumes():
    """Runs checkpointed before loss.teacher_k, loss.target and data.index_cache_mib existed resume under the
    defaults (provenance.config_differences); a non-default value is still a difference."""
    from vpmoe.train.provenance import config_differences

    old = {"loss": {"tail": "bucket"}, "data": {"num_workers": 2}}
    now = {
        "loss": {"tail": "bucket", "teacher_k": 0, "target": "teacher"},
        "data": {"num_workers": 2, "index_cache_mib": 64},
    }
    assert config_differences(old, now) == []
    now["loss"]["teacher_k"] = 8
    assert config_differences(old, now) == ["loss.teacher_k: checkpoint 0 vs now 8"]
