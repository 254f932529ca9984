"""Prepare SYNTH-schema Parquet into Harmony token shards and a dataset manifest.

    python -m pipelines.prepare input=<parquet file or glob> output=<dir> [prepare=debug] [overwrite=true]
        [prepare.worker=i prepare.num_workers=n]   then, once all n have committed: [prepare.finalize=true]

Contract: docs/synth_preprocess.md. Prints the manifest hash and the output path (a worker of several
prints what it staged instead).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipelines._console import route_console, stage_log_file
from pipelines._hydra import require, to_container
from vpmoe.data.prepare import PrepareConfig, PrepareError, prepare, summary_lines
from vpmoe.utils.atomic import OutputExistsError

log = logging.getLogger("vpmoe.prepare")


@hydra.main(config_path="../conf", config_name="prepare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    inputs = require(cfg, "input")
    output = require(cfg, "output")
    try:
        prep_cfg = PrepareConfig(**to_container(cfg, "prepare"))
    except (TypeError, ValueError) as e:
        raise SystemExit(f"invalid prepare config: {e}") from e
    # Beside the output, not in it: the output directory is replaced whole when it commits.
    route_console(stage_log_file("prepare", Path(output).parent), verbose=cfg.verbose)
    try:
        result = prepare(
            list(inputs) if not isinstance(inputs, str) else inputs, output, prep_cfg, overwrite=cfg.overwrite
        )
    except (PrepareError, OutputExistsError, PermissionError) as e:
        log.error("%s", e)
        sys.exit(1)
    for line in summary_lines(result):
        log.info(line)
    if result.manifest is None:
        w = result.workers[0]
        print(f"worker={w['worker']}/{w['num_workers']} staged={result.staging}")
    else:
        print(f"manifest_hash={result.manifest_hash} output={result.output}")


if __name__ == "__main__":
    main()
