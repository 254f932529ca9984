"""Evaluate a training checkpoint on the held-out split: KL to the teacher, CE, top-1 agreement per span.

    python -m pipelines.evaluate checkpoint=<run dir | step dir> [dataset=<dir>] [store=<dir>]
        [device=cpu|cuda] [reference=<teacher reference .npz>] [output=<json>] [verbose=true]

The checkpoint's provenance supplies the model, data (held-out split) and loss configs; dataset and store
default to the ones it was trained on. Every evaluation reports the student's calibration (ECE); a teacher
reference (vpmoe/train/teacher_reference.py) adds the KL to the teacher's full distribution. Prints the
metrics line and writes them as JSON (default: <checkpoint>/eval.json). Third-party messages go to
<checkpoint>/logs/evaluate.log unless verbose=true. docs/training.md.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path

from pipelines._console import route_console, stage_log_file
from vpmoe.utils.atomic import commit_file

KEYS = ("checkpoint", "dataset", "store", "device", "reference", "output", "verbose")


def parse(argv: list[str]) -> dict:
    args = {}
    for a in argv:
        key, sep, value = a.partition("=")
        if not sep or key not in KEYS:
            raise SystemExit(f"unknown argument {a!r}; expected key=value with key in {KEYS}\n\n{__doc__}")
        args[key] = value
    if "checkpoint" not in args:
        raise SystemExit(f"missing checkpoint=<run dir | step dir>\n\n{__doc__}")
    if args.get("verbose", "false") not in ("true", "false"):
        raise SystemExit(f"verbose must be true or false, got {args['verbose']!r}")
    return args


def main(argv: list[str]) -> int:
    # The Hydra stages' console format (hydra/job_logging: stdout): plain messages on stdout.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    args = parse(argv)
    route_console(stage_log_file("evaluate", args["checkpoint"]), verbose=args.get("verbose") == "true")
    # After the routing: megatron and Triton warn at import.
    from vpmoe.data.manifest import ManifestError
    from vpmoe.teacher.store import StoreError
    from vpmoe.train.checkpoint import CheckpointError
    from vpmoe.train.evaluate import evaluate_checkpoint
    from vpmoe.train.metrics import format_eval_line
    from vpmoe.train.teacher_reference import ReferenceError

    if "WORLD_SIZE" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        result = evaluate_checkpoint(
            args["checkpoint"],
            dataset=args.get("dataset"),
            store=args.get("store"),
            device=args.get("device"),
            reference=args.get("reference"),
        )
    except (CheckpointError, ManifestError, StoreError, ReferenceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.get("output") or Path(result["checkpoint"]) / "eval.json")
    commit_file(out, json.dumps(result, indent=2) + "\n")
    print(format_eval_line(result))
    print(f"eval={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
