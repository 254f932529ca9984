"""Summarize a training sweep: a table (md, csv) and a plot of every job's final held-out eval.

    python -m pipelines.sweep_summary <sweep dir>

Also runs by itself at the end of `python -m pipelines.train -m ...` (SweepSummaryCallback, registered in
conf/train.yaml under hydra.callbacks). vpmoe/train/sweep.py has the format.
"""

from __future__ import annotations

import logging
import sys

from hydra.experimental.callback import Callback

from vpmoe.train.sweep import write_summary

log = logging.getLogger("vpmoe.sweep")


class SweepSummaryCallback(Callback):
    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = config.hydra.sweep.dir
        try:
            paths = write_summary(sweep_dir)
        except FileNotFoundError as e:  # a sweep whose jobs all failed: say so, do not mask their errors
            log.error("sweep summary: %s", e)
            return
        for p in paths:
            print(f"sweep summary: {p}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        paths = write_summary(argv[0])
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
