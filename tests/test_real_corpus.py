"""The real-text quality benchmark's tools: tools/build_real_corpus.py and benchmarks/quality/train_teacher.py.

The corpus test needs Debian's text packages (skipped without them, naming the apt-get command); the
teacher test trains a tiny GPT-OSS on CPU for a few steps on the `small_dataset` fixture and checks what
it saved: transformers loads it, `lm_head.weight` is stored (vLLM's GPT-OSS does not tie), the sha256s
in teacher_info.json are the files', and the held-out rule is the trainer's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vpmoe.train.data import is_held_out

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "tools" / "build_real_corpus.py"
TRAIN = REPO / "benchmarks" / "quality" / "train_teacher.py"


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def corpus_tool():
    return load(BUILD, "build_real_corpus")


@pytest.fixture(scope="module")
def teacher_tool():
    return load(TRAIN, "train_teacher")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_held_out_rule_matches_trainer(teacher_tool, corpus_tool):
    ids = [f"real_kjv_{i:06d}" for i in range(2000)] + ["synth_00000001", "", "é"]
    for fraction in (0.0, 0.05, 0.2, 0.5, 0.999):
        want = [is_held_out(s, fraction) for s in ids]
        assert [teacher_tool.is_held_out(s, fraction) for s in ids] == want
        assert [corpus_tool.is_held_out(s, fraction) for s in ids] == want


def test_train_subset_keeps_every_held_out_row(corpus_tool):
    rows = [{"synth_id": f"real_kjv_{i:06d}"} for i in range(4000)]
    held = [r for r in rows if is_held_out(r["synth_id"], corpus_tool.EVAL_FRACTION)]
    sub = corpus_tool.train_subset(rows, 0.4)
    assert all(r in sub for r in held)  # the teacher's held-out rows stay the student's
    others = len(sub) - len(held)
    assert 0.35 < others / (len(rows) - len(held)) < 0.45  # an independent hash: ~the share asked for
    assert sub == [r for r in rows if r in sub]  # order kept
    assert corpus_tool.train_subset(rows, 1.0) == rows


def test_size_plan_refuses_what_cannot_come_back(teacher_tool):
    from transformers import GptOssConfig

    def cfg(hidden, intermediate=256):
        return GptOssConfig(
            vocab_size=teacher_tool.PADDED_VOCAB_SIZE, hidden_size=hidden, intermediate_size=intermediate
        )

    teacher_tool.check_size_plan(cfg(64))
    with pytest.raises(teacher_tool.TeacherTrainError, match="smaller --hidden"):
        teacher_tool.check_size_plan(cfg(96))  # 2 x 201088 x 96 x 2 bytes = 73.6 MiB
    with pytest.raises(teacher_tool.TeacherTrainError, match="divisible by 32"):
        teacher_tool.check_size_plan(cfg(32, intermediate=200))


def test_train_teacher_cpu_smoke(small_dataset, tmp_path, teacher_tool):
    from transformers import GptOssForCausalLM

    from vpmoe.tokenizer import PADDED_VOCAB_SIZE

    assert teacher_tool.PADDED_VOCAB_SIZE == PADDED_VOCAB_SIZE
    out = tmp_path / "teacher"
    args = [
        "--dataset", str(small_dataset), "--out", str(out), "--device", "cpu", "--eval-fraction", "0.3",
        "--hidden", "32", "--layers", "2", "--intermediate", "32", "--heads", "2", "--kv-heads", "1",
        "--head-dim", "8", "--block", "64", "--batch", "4", "--tokens", "1024", "--eval-interval", "2",
        "--eval-batch-tokens", "2048", "--eval-chunk", "512",
    ]  # fmt: skip
    # Run as a script, then list what it imported: on the GPU machine vpmoe's dependencies (openai_harmony,
    # zarr, hydra) are absent, so it must import nothing of vpmoe.
    code = (
        f"import runpy, sys; sys.argv = [{str(TRAIN)!r}, *{args!r}]\n"
        f"try:\n    runpy.run_path({str(TRAIN)!r}, run_name='__main__'); rc = 0\n"
        "except SystemExit as e:\n    rc = e.code\n"
        "print('IMPORTED', sorted({m.split('.')[0] for m in sys.modules} & {'vpmoe', 'openai_harmony', 'zarr', 'hydra'}))\n"
        "sys.exit(rc)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == "IMPORTED []"

    info = json.loads((out / "teacher_info.json").read_text())
    on_disk = sorted(p.name for p in out.iterdir() if p.name != "teacher_info.json")
    assert sorted(info["files"]) == on_disk
    for name, f in info["files"].items():
        assert sha256(out / name) == f["sha256"]
        assert (out / name).stat().st_size == f["bytes"] <= 16 * 2**20
    assert len(on_disk) + 1 <= 8
    assert info["training"]["steps"] == 4 and info["training"]["tokens"] == 1024
    assert [c["step"] for c in info["curve"]] == [0, 2, 4]
    best = info["heldout_best"]
    assert best["supervised_positions"] > 0 and 0 < best["top8_mass"] <= best["top64_mass"] <= 1
    assert info["dataset"]["heldout_sequences"] > 0 and info["dataset"]["train_sequences"] > 0

    weights = sorted(out.glob("*.safetensors"))
    from vpmoe.teacher.engine import check_untied_output_layer, safetensors_tensor_names

    assert "lm_head.weight" in set().union(*(safetensors_tensor_names(w) for w in weights))
    config = json.loads((out / "config.json").read_text())
    check_untied_output_layer(out / "config.json", config, weights)  # what the scorer checks
    assert config["vocab_size"] == PADDED_VOCAB_SIZE and config["model_type"] == "gpt_oss"
    model = GptOssForCausalLM.from_pretrained(out)
    assert not model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()

    # the held-out split is the trainer's: the smoke run reports exactly the sequences is_held_out picks
    ids = [s for f in sorted((small_dataset / "shards").glob("*.parquet"))
           for s in pq.read_table(f, columns=["sample_id"]).column("sample_id").to_pylist()]  # fmt: skip
    n_held = sum(is_held_out(s, 0.3) for s in ids)
    assert info["dataset"]["heldout_sequences"] == n_held


@pytest.mark.skipif(shutil.which("bible") is None, reason="needs Debian's text packages: sudo apt-get install -y "
                    "bible-kjv fortunes fortunes-de fortunes-es fortunes-it python3-doc")  # fmt: skip
def test_build_real_corpus_small(tmp_path, corpus_tool):
    if corpus_tool.missing_sources():
        pytest.skip(f"missing: {corpus_tool.missing_sources()}; run: sudo {corpus_tool.APT_COMMAND}")
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for out in (a, b):
        res = subprocess.run(
            [sys.executable, str(BUILD), "--output", str(out), "--max-rows", "40"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
    assert a.read_bytes() == b.read_bytes()  # deterministic
    table = pq.read_table(a)
    assert table.schema == corpus_tool.SCHEMA
    rows = table.to_pylist()
    assert len(rows) == 40
    assert len({r["synth_id"] for r in rows}) == 40
    sources = {r["synth_id"].rsplit("_", 1)[0] for r in rows}
    assert {"real_kjv", "real_pydoc"} <= sources and any(s.startswith("real_fortunes_") for s in sources)
    for r in rows:
        for c in ("query", "query_seed_text", "synthetic_reasoning", "synthetic_answer", "language"):
            assert isinstance(r[c], str) and r[c].strip(), (r["synth_id"], c)
        assert r["exercise"] == "memorization"
        assert (
            r["synthetic_reasoning"] in r["query_seed_text"] and r["synthetic_answer"] in r["query_seed_text"]
        )

    from vpmoe.data.prepare import PrepareConfig, prepare

    prepare(str(a), tmp_path / "prepared", PrepareConfig(max_seq_len=1024, length_policy="fail"))
    manifest = json.loads((tmp_path / "prepared" / "manifest.json").read_text())
    assert manifest["totals"]["sequences"] == 40 and not manifest["totals"]["rejected"]
