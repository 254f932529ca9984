"""Build the tiny random GPT-OSS teacher used by the tests and the demo.

python -m pipelines.tiny_teacher output=<dir> [teacher.dtype=bfloat16] [teacher.seed=1] [teacher.tie_word_embeddings=true]
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipelines._console import route_console, stage_log_file
from pipelines._hydra import require, to_container
from vpmoe.teacher.tiny import TinyTeacherConfig, save_tiny_teacher

log = logging.getLogger("vpmoe.tiny_teacher")


@hydra.main(config_path="../conf", config_name="tiny_teacher", version_base="1.3")
def main(cfg: DictConfig) -> None:
    output = require(cfg, "output")
    try:
        teacher_cfg = TinyTeacherConfig(**to_container(cfg, "teacher"))
    except (TypeError, ValueError) as e:
        raise SystemExit(f"invalid teacher config: {e}") from e
    route_console(stage_log_file("tiny_teacher", Path(output).parent), verbose=cfg.verbose)
    path = save_tiny_teacher(teacher_cfg, output)
    log.info("tiny GPT-OSS teacher (%s, seed %d) written to %s", teacher_cfg.dtype, teacher_cfg.seed, path)
    print(f"teacher={path}")


if __name__ == "__main__":
    main()
