"""Shard-health report of a teacher store: complete, aligned with its dataset, numerically sane, and what
the teacher's distribution looks like per span, language and exercise.

    python -m pipelines.report store=<teacher store or scoring output> dataset=<prepared dir> [output=<dir>]

Writes report.md, report.json and PNG histograms to `output` (default <store>/report), prints a one-line
verdict, and exits 0 when every check passes, 1 otherwise (or when the report cannot run), so it can
gate a training launch. Contract: docs/teacher_store.md, "Shard-health report".
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from pipelines._console import route_console, stage_log_file
from pipelines._hydra import apply_storage, require, to_container
from vpmoe.data.manifest import ManifestError
from vpmoe.report import ReportConfig, ReportError, run_report, write_report
from vpmoe.utils.storage import join

log = logging.getLogger("vpmoe.report")


@hydra.main(config_path="../conf", config_name="report", version_base="1.3")
def main(cfg: DictConfig) -> None:
    store, dataset = require(cfg, "store"), require(cfg, "dataset")
    try:
        report_cfg = ReportConfig(**to_container(cfg, "report"))
    except (TypeError, ValueError) as e:
        raise SystemExit(f"invalid config: {e}") from e
    apply_storage(cfg)
    route_console(stage_log_file("report", store), verbose=cfg.verbose)
    try:
        report = run_report(dataset, store, report_cfg)
        out = write_report(report, cfg.output if cfg.output is not None else join(report.store, "report"))
    except (ManifestError, ReportError) as e:
        log.error("%s", e)
        sys.exit(1)
    except OSError as e:  # e.g. a read-only store and the default output inside it
        log.error(
            "cannot read the store or write the report (%s); for a read-only store pass output=<dir>", e
        )
        sys.exit(1)
    for name in report.checks.failed():
        findings = report.checks.findings[name]
        shard, f = next(iter(findings.items()))
        where = "".join(
            f" {key} {f.first[key]}" for key in ("row", "sample_id", "position") if f.first[key] is not None
        )
        log.error(
            "%s failed in %d shard(s); first %s%s: %s", name, len(findings), shard, where, f.first["detail"]
        )
    log.info("report written to %s", out)
    print(report.verdict_line())
    sys.exit(report.exit_code)


if __name__ == "__main__":
    main()
