"""Score a prepared dataset with the GPT-OSS teacher (vLLM prompt logprobs) into a Zarr teacher store.

    python -m pipelines.score dataset=<prepared dir> teacher.model=<teacher dir> output=<store root>
        [teacher=cpu] [teacher.k=64] [teacher.storage=sampled teacher.samples=50] [score.worker=i score.num_workers=n]

Contract: docs/teacher_store.md. Resumable shard by shard; prints the store path.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from pipelines._console import route_console, stage_log_file
from pipelines._hydra import apply_storage, require, to_container
from vpmoe.data.manifest import ManifestError
from vpmoe.teacher.convert import FormatError
from vpmoe.teacher.engine import TeacherConfig, TeacherError
from vpmoe.teacher.memory import TeacherMemoryError
from vpmoe.teacher.score import ScoreConfig, score, summary_lines
from vpmoe.teacher.store import StoreError

log = logging.getLogger("vpmoe.score")


@hydra.main(config_path="../conf", config_name="score", version_base="1.3")
def main(cfg: DictConfig) -> None:
    dataset, output = require(cfg, "dataset"), require(cfg, "output")
    require(cfg, "teacher.model")
    try:
        teacher = TeacherConfig(**to_container(cfg, "teacher"))
        score_cfg = ScoreConfig(**to_container(cfg, "score"))
    except (TypeError, ValueError) as e:
        raise SystemExit(f"invalid config: {e}") from e
    apply_storage(cfg)
    # vLLM's INFO lines, notices and C++ messages go to <output>/logs/ (pipelines/_console.py).
    route_console(stage_log_file(f"score-worker{score_cfg.worker}", output), verbose=cfg.verbose)
    try:
        result = score(dataset, output, teacher, score_cfg)
    except (ManifestError, TeacherError, TeacherMemoryError, StoreError, FormatError) as e:
        log.error("%s", e)
        sys.exit(1)
    for line in summary_lines(result):
        log.info(line)
    print(f"store={result.store}")


if __name__ == "__main__":
    main()
