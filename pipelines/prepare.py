"""Prepare SYNTH-schema Parquet into Harmony token shards and a dataset manifest.

    python -m pipelines.prepare input=<parquet file or glob> output=<dir> [prepare=debug] [overwrite=true]
        [prepare.worker=i prepare.num_workers=n]   then, once all n have committed: [prepare.finalize=true]

Contract: docs/synth_preprocess.md. Prints the manifest hash and the output path (a worker of several
prints what it staged instead).

`input=` and `output=` may be `s3://bucket/prefix` URLs (a glob too: `input='s3://b/raw/*.parquet'`); the
store and credentials come from the standard AWS variables (vpmoe/utils/storage.py). The console's log
file goes beside the output (`<output parent>/logs/prepare.log`); for an S3 output, which cannot take an
appended local file, it goes under the current working directory instead: `./logs/prepare.log`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipelines._console import route_console, stage_log_file
from pipelines._hydra import apply_storage, require, to_container
from vpmoe.data.prepare import PrepareConfig, PrepareError, prepare, summary_lines
from vpmoe.utils import storage
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
    apply_storage(cfg)  # storage.endpoint_url / storage.region for s3:// paths
    try:
        remote = storage.is_remote(str(output))
    except storage.StorageError as e:
        raise SystemExit(f"invalid output: {e}") from None
    # Beside the output, not in it: the output directory is replaced whole when it commits. An S3 output
    # has no local folder beside it: the log goes to ./logs/ (module docstring).
    route_console(
        stage_log_file("prepare", Path.cwd() if remote else Path(output).parent), verbose=cfg.verbose
    )
    try:
        result = prepare(
            list(inputs) if not isinstance(inputs, str) else inputs, output, prep_cfg, overwrite=cfg.overwrite
        )
    except (PrepareError, OutputExistsError, PermissionError, storage.StorageError) as e:
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
