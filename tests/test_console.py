"""What a stage shows: our records and warnings on the console, third-party chatter in the run's log file
(pipelines/_console.py). Each case runs in a child process, as a stage would: the routing replaces file
descriptor 2 and global logging state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import logging, os, sys, warnings
sys.path.insert(0, {repo!r})
from pipelines._console import route_console
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
route_console({log!r}, verbose={verbose})
logging.getLogger("vpmoe.stage").info("our progress line")
logging.getLogger("vllm.engine").info("third-party info line")
logging.getLogger("megatron.core").warning("third-party warning line")
logging.getLogger("torch.thing").error("third-party error line")
exec(compile("import warnings; warnings.warn('library deprecation', FutureWarning)", "/usr/lib/site-packages/lib.py", "exec"))
exec(compile("import warnings; warnings.warn('our own warning')", {ours!r}, "exec"))
os.write(2, b"native notice on fd 2\n")
print("our summary", flush=True)
"""


def _run(tmp_path: Path, verbose: bool) -> tuple[str, str]:
    log = tmp_path / "logs" / "stage.log"
    code = _CHILD.format(
        repo=str(REPO), log=str(log), verbose=verbose, ours=str(REPO / "vpmoe" / "some_module.py")
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout + res.stderr, log.read_text()


def test_third_party_chatter_goes_to_the_log_file(tmp_path):
    console, logfile = _run(tmp_path, verbose=False)
    for ours in ("our progress line", "our own warning", "our summary", "third-party error line"):
        assert ours in console, (ours, console)
    for theirs in (
        "third-party info line",
        "third-party warning line",
        "library deprecation",
        "native notice",
    ):
        assert theirs not in console, (theirs, console)
        assert theirs in logfile, (theirs, logfile)
    # the closing line names the file and counts the warnings held back (the logger's and the library's)
    assert f"third-party messages: {tmp_path / 'logs' / 'stage.log'} (2 warning(s))" in console


def test_verbose_shows_everything(tmp_path):
    console, logfile = _run(tmp_path, verbose=True)
    for line in (
        "our progress line",
        "third-party info line",
        "third-party warning line",
        "library deprecation",
    ):
        assert line in console, (line, console)
        assert line in logfile, (line, logfile)
    assert "native notice" in console


_TWO_ROUTES = r"""
import logging, os, sys
sys.path.insert(0, {repo!r})
from pipelines._console import route_console
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
for job in (1, 2):  # a Hydra multirun: one process, one route per job
    route_console({logs!r} + f"/job{{job}}.log", verbose=False)
    logging.getLogger("vpmoe.stage").info(f"job {{job}} progress")
    logging.getLogger("megatron.core").warning(f"job {{job}} library warning")
    os.write(2, f"job {{job}} native notice\n".encode())
    print(f"job {{job}} traceback-like line", file=sys.stderr, flush=True)
"""


def test_each_route_of_one_process_has_its_own_file_and_keeps_the_terminal(tmp_path):
    """A second route (the next job of a multirun) starts from the terminal, not the first job's file."""
    code = _TWO_ROUTES.format(repo=str(REPO), logs=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    console = res.stdout + res.stderr
    job1, job2 = ((tmp_path / f"job{j}.log").read_text() for j in (1, 2))
    for j, (mine, other) in ((1, (job1, job2)), (2, (job2, job1))):
        assert f"job {j} progress" in console and f"job {j} traceback-like line" in console
        for theirs in (f"job {j} library warning", f"job {j} native notice"):
            assert theirs in mine and theirs not in other and theirs not in console, (theirs, console)
        assert f"job {j} traceback-like line" not in job1 + job2
        assert f"third-party messages: {tmp_path / f'job{j}.log'} (1 warning(s))" in console
