"""What a stage shows on the console: our progress, step lines and summaries; third-party chatter to a file.

vLLM, megatron-core, torch, Triton and transformers log INFO lines, deprecation and "not installed"
warnings, and C++ notices (NUMA binding) that bury a stage's own output. `route_console(log_file,
verbose=False)` keeps on the console:
- records of our loggers (`vpmoe.*`, `pipelines.*`, `kernels.*`), at their level;
- Python warnings raised from our code (`warnings.warn` in vpmoe/, pipelines/, kernels/);
- any logger's ERROR and above (a third-party failure is about our run);
and sends everything else, plus whatever C/C++ code writes to file descriptor 2, to `log_file`. The
stage's closing line names that file and how many third-party warnings it holds. `verbose=true` shows
everything on the console as well (the file still gets it).

Edge code only: the library never imports it. Must run before vLLM is imported (VLLM_CONFIGURE_LOGGING).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUR_LOGGERS = ("vpmoe", "pipelines", "kernels", "__main__")
OUR_CODE = tuple(str(REPO / d) + os.sep for d in ("vpmoe", "pipelines", "kernels"))
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _ours(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in OUR_LOGGERS)


class _ConsoleFilter(logging.Filter):
    """Passes our records and anyone's errors; counts the third-party warnings it holds back."""

    def __init__(self) -> None:
        super().__init__()
        self.held_warnings = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if _ours(record.name) or record.levelno >= logging.ERROR:
            return True
        if record.levelno >= logging.WARNING:
            self.held_warnings += 1
        return False


def stage_log_file(stage: str, run_dir: str | Path) -> Path:
    """`<run_dir>/logs/<stage>[-rank<r>].log`: one file per stage and rank, appended across reruns. A log
    is appended line by line, which object storage cannot do: for an `s3://` run_dir it is
    `./logs/<stage>.log` in the working directory."""
    from vpmoe.utils.storage import is_remote

    rank = os.environ.get("RANK")
    several = rank is not None and os.environ.get("WORLD_SIZE", "1") != "1"
    name = f"{stage}-rank{rank}.log" if several else f"{stage}.log"
    return (Path("logs") if is_remote(str(run_dir)) else Path(run_dir) / "logs") / name


# The process's one active route. A Hydra multirun runs its jobs in one process and routes once per job:
# each new route first undoes the previous one (its closing line printed, handlers removed, file
# descriptor 2 and sys.stderr back to the terminal), so job 2's output never goes to job 1's file.
_ROUTE: dict = {}


def route_console(log_file: str | Path, *, verbose: bool) -> Path:
    """Route third-party output to `log_file` (module docstring). Returns the file's path."""
    log_file = Path(log_file)
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. the output path runs through a file: say so before any work
        raise SystemExit(f"cannot create the log directory {log_file.parent}: {e.strerror}") from None
    _close_route()
    # vLLM installs its own stdout handler unless told not to; then its records reach ours through root.
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
    stream = open(log_file, "a", buffering=1)  # noqa: SIM115 (closed by _close_route)
    stream.write(f"==== {' '.join(sys.argv)} (pid {os.getpid()})\n")
    root = logging.getLogger()
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    file_handler = logging.StreamHandler(stream)
    file_handler.setFormatter(logging.Formatter(FILE_FORMAT))
    root.addHandler(file_handler)
    _ROUTE.update(
        log_file=log_file, stream=stream, start=stream.tell(), file_handler=file_handler, filter=None
    )
    if verbose:
        logging.captureWarnings(True)  # warnings as records: console (Hydra's handler) and the file
        return log_file

    console_filter = _ConsoleFilter()
    for handler in root.handlers:
        if handler is not file_handler:
            handler.addFilter(console_filter)
    # C/C++ writes to fd 2 (c10's NUMA notice, native libraries) go to the file; Python's own stderr
    # (tracebacks, our progress bars) keeps the terminal through a duplicate of the original descriptor.
    terminal = os.dup(2)
    console_err = os.fdopen(os.dup(terminal), "w", buffering=1)
    sys.stderr.flush()
    os.dup2(stream.fileno(), 2)
    sys.stderr = console_err
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is sys.__stderr__:
            handler.setStream(console_err)
    our_warnings = logging.getLogger("vpmoe.warnings")
    held = [0]  # third-party warnings written to the file (a closure: the hook may outlive the route)

    def showwarning(message, category, filename, lineno, file=None, line=None):
        text = f"{filename}:{lineno}: {category.__name__}: {message}"
        if str(filename).startswith(OUR_CODE):
            our_warnings.warning("%s", text)
        else:
            held[0] += 1
            stream.write(f"WARNING {text}\n")

    _ROUTE.update(filter=console_filter, held=held, terminal=terminal, console_err=console_err)
    _ROUTE["showwarning"], warnings.showwarning = warnings.showwarning, showwarning
    return log_file


def _close_route(*, restore: bool = True) -> None:
    """Print the active route's closing line. `restore` (a new route follows): also undo the route, so the
    terminal, the handlers and the warnings hook are as before it. At exit the route stays in place: what
    libraries print while the interpreter shuts down still goes to the file."""
    if not _ROUTE:
        return
    r = dict(_ROUTE)
    _ROUTE.clear()
    r["stream"].flush()
    quiet = r["filter"] is not None  # verbose routes showed everything already: no closing line
    if quiet and os.environ.get("RANK", "0") == "0" and os.path.getsize(r["log_file"]) > r["start"]:
        n = r["held"][0] + r["filter"].held_warnings
        print(f"third-party messages: {r['log_file']} ({n} warning(s)); verbose=true shows them here")
    if not restore:
        return
    root = logging.getLogger()
    root.removeHandler(r["file_handler"])
    if quiet:  # the console was filtered and fd 2 redirected
        for handler in root.handlers:
            handler.removeFilter(r["filter"])
            if isinstance(handler, logging.StreamHandler) and handler.stream is r["console_err"]:
                handler.setStream(sys.__stderr__)
        warnings.showwarning = r["showwarning"]
        r["console_err"].flush()
        os.dup2(r["terminal"], 2)
        os.close(r["terminal"])
        sys.stderr = sys.__stderr__
        r["console_err"].close()
    r["stream"].close()


atexit.register(_close_route, restore=False)
