"""Atomic publication of output directories: build beside the target, then rename.

A reader sees either the old complete directory or the new complete one, never a half-written mix,
and a crash leaves only a `.tmp-*` sibling that the next run removes or ignores.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


class OutputExistsError(FileExistsError):
    pass


def check_output_dir(target: Path, *, overwrite: bool) -> None:
    """Fail before any work if `target` exists and may not be replaced, or its parent is not writable."""
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"output {target} already exists; pass overwrite=true to replace it atomically"
        )
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write into {parent} (needed for output {target})")


@contextlib.contextmanager
def atomic_directory(target: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory next to `target`; on success it replaces `target`.

    On an exception the temporary directory is deleted and `target` is untouched.
    """
    target = Path(target)
    check_output_dir(target, overwrite=overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
