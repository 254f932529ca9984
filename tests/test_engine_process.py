"""The teacher engine in vLLM's own process (V1 multiprocessing, the GPU default) gives the same prompt
log-probs as the in-process engine (the CPU default): the capture wraps the front end, which runs in the
scorer's process in both modes (vpmoe/teacher/engine.py engine_process_mode)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from conftest import REPO, cli_env

_CHILD = """
import sys, numpy as np
from vpmoe.teacher.engine import TeacherConfig, VllmTeacher
cfg = TeacherConfig(model=sys.argv[1], dtype="float32", max_model_len=4096, kv_cache_sequences=4, enforce_eager=True)
engine = VllmTeacher(cfg, 201088)
prompts = [list(range(1000, 1040)), list(range(5000, 5700))]  # the second is chunked (512 tokens a step)
outs = engine.score(prompts)
engine.close()  # as the scorer does: the engine stops before exit, so the exit status is the run's
engine.close()  # idempotent
np.savez(sys.argv[2], mode=engine.engine_process, **{f"{n}_{i}": getattr(o, n) for i, o in enumerate(outs)
         for n in ("token_ids", "logprobs", "ranks")})
"""


def test_own_process_engine_scores_like_the_in_process_one(tmp_path, tiny_teacher):
    results = {}
    for mode in ("0", "1"):
        out = tmp_path / f"mp{mode}.npz"
        env = {**cli_env(), "VLLM_ENABLE_V1_MULTIPROCESSING": mode}
        res = subprocess.run(
            [sys.executable, "-c", _CHILD, str(tiny_teacher), str(out)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert res.returncode == 0, res.stderr[-4000:]
        results[mode] = dict(np.load(out))
        assert str(results[mode]["mode"]) == mode
    a, b = results["0"], results["1"]
    for key in a:
        if key == "mode":
            continue
        assert a[key].shape == b[key].shape, key
        assert np.array_equal(a[key], b[key]), key
    assert a["token_ids_1"].shape == (699, 65)  # every position of the chunked prompt but the first
