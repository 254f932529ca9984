"""Shared by the GPU benchmarks: how busy was the GPU over a profiled region, and where were its gaps."""

from __future__ import annotations

import json
from pathlib import Path


def kernel_timeline(prof, scratch: Path) -> tuple[list[dict], list[dict]]:
    """(CUDA kernel events, CPU op events) of a finished torch.profiler run, each sorted by start time."""
    trace = scratch / "trace.json"
    prof.export_chrome_trace(str(trace))
    ev = json.loads(trace.read_text())["traceEvents"]
    trace.unlink()
    kern = sorted((e for e in ev if e.get("cat") == "kernel"), key=lambda e: e["ts"])
    cpu = sorted((e for e in ev if e.get("cat") == "cpu_op"), key=lambda e: e["ts"])
    return kern, cpu


def busy_and_span_ms(kern: list[dict]) -> tuple[float, float]:
    """Sum of kernel durations and first-start-to-last-end, in ms."""
    busy = sum(e["dur"] for e in kern)
    span = kern[-1]["ts"] + kern[-1]["dur"] - kern[0]["ts"]
    return busy / 1e3, span / 1e3
