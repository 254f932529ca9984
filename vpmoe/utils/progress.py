"""Progress bars for long CPU-side work: shown on rank 0 when stderr is a terminal, silent otherwise."""

from __future__ import annotations

import os
import sys

from tqdm import tqdm


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def progress(total: int | None = None, desc: str = "", unit: str = "it"):
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        dynamic_ncols=True,
        disable=not (is_rank_zero() and sys.stderr.isatty()),
    )
