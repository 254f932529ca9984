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
