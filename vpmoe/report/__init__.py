"""Shard-health report of a teacher store (docs/teacher_store.md, "Shard-health report")."""

from vpmoe.report.run import Report, ReportConfig, ReportError, run_report
from vpmoe.report.writers import write_report

__all__ = ["Report", "ReportConfig", "ReportError", "run_report", "write_report"]
