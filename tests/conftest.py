from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest_plugins = ["s3_server"]  # the moto S3 test server fixtures (tests/s3_server.py)
REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "synth_sample.parquet"
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _cuda_present() -> bool:
    import torch  # importing torch does not import triton

    return torch.cuda.is_available()


# Without a GPU, Triton kernels can only run in its CPU interpreter, and TRITON_INTERPRET=1 must be set
# before triton is first imported in the process: triton.language's own helpers (tl.max, tl.sum, ...) are
# @jit functions bound to the mode at import, and transformers, megatron and vLLM all import triton early.
# CLI subprocesses (run_module) get the environment without it.
if not _cuda_present():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run with -m gpu on the GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


SYNTH_COLUMNS = (
    "synth_id",
    "language",
    "exercise",
    "query",
    "query_seed_text",
    "synthetic_reasoning",
    "synthetic_answer",
)


def synth_row(i: int, **overrides) -> dict:
    row = {
        "synth_id": f"synth_t{i:05d}",
        "language": "en",
        "exercise": "memorization",
        "query": f"Question {i}: why is the sky blue?",
        "query_seed_text": "Rayleigh scattering of sunlight by air molecules.",
        "synthetic_reasoning": f"Row {i}. Shorter wavelengths scatter more strongly (about 1/lambda^4).",
        "synthetic_answer": f"Because of Rayleigh scattering ({i}).",
    }
    row.update(overrides)
    return row


def write_synth(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> Path:
    cols = list(rows[0].keys())
    if schema is None:
        schema = pa.schema([(c, pa.string()) for c in cols])
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path)
    return path


@pytest.fixture
def make_synth(tmp_path):
    def make(rows: list[dict], name: str = "in.parquet", schema=None) -> Path:
        return write_synth(tmp_path / name, rows, schema)

    return make


@pytest.fixture(scope="session")
def renderer():
    from vpmoe.data.harmony_render import HarmonyRenderer, TemplateConfig

    return HarmonyRenderer(TemplateConfig())


# Set in this process by tests that run megatron in-process (a world of one); a pipeline started from a
# shell has none of them, and with them it would join that world's rendezvous (EADDRINUSE on its port).
TEST_ONLY_ENV = ("TRITON_INTERPRET", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def cli_env() -> dict[str, str]:
    """The environment a user's shell would give a pipeline (none of TEST_ONLY_ENV)."""
    env = {k: v for k, v in os.environ.items() if k not in TEST_ONLY_ENV}
    env.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", PYTHONUNBUFFERED="1")
    return env


def run_module(module: str, *args: str, timeout: int = 900, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` from the repo root (or `cwd`), as a user would."""
    env = cli_env()
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=env,
    )


def scoring_rows(n: int = 12) -> list[dict]:
    """Rows for scoring tests: the first good rows of the bundled sample, reasoning cut to ~120 words so
    a CPU scoring run of the whole set takes seconds."""
    table = pq.read_table(SAMPLE, columns=list(SYNTH_COLUMNS))
    rows = []
    for r in table.to_pylist():
        if all(
            isinstance(r[c], str) and r[c].strip()
            for c in ("synth_id", "query", "synthetic_reasoning", "synthetic_answer")
        ):
            r["synthetic_reasoning"] = " ".join(r["synthetic_reasoning"].split(" ")[:120])
            r["synthetic_answer"] = " ".join(r["synthetic_answer"].split(" ")[:60])
            rows.append(r)
        if len(rows) == n:
            break
    return rows


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "tiny"
    res = run_module("pipelines.tiny_teacher", f"output={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    from vpmoe.data.prepare import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("small")
    src = write_synth(root / "rows.parquet", scoring_rows())
    prepare(str(src), root / "prepared", PrepareConfig(shard_tokens=1200, max_seq_len=1024))
    return root / "prepared"


# The tiny test teacher is random weights (pipelines.tiny_teacher): its NLL on the sample's text is ~2.1 x
# ln(vocab), which the scorer and the report refuse by default (max_target_nll_ratio); tests that score or
# report on it say so, as `make demo` does (tools/demo.sh). test_score.py checks the refusal itself.
RANDOM_TEACHER_SCORE = "score.max_target_nll_ratio=null"
RANDOM_TEACHER_REPORT = "report.max_target_nll_ratio=null"


def score_args(dataset: Path, teacher: Path, output: Path, *extra: str, judge_nll: bool = False) -> list[str]:
    nll = [] if judge_nll else [RANDOM_TEACHER_SCORE]
    return [f"dataset={dataset}", "teacher=cpu", f"teacher.model={teacher}", f"output={output}", *nll, *extra]


@pytest.fixture(scope="session")
def scored_store(tmp_path_factory, small_dataset, tiny_teacher) -> Path:
    out = tmp_path_factory.mktemp("store")
    res = run_module("pipelines.score", *score_args(small_dataset, tiny_teacher, out))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (out / "console.txt").write_text(res.stdout + res.stderr)  # what a user saw (tests/test_score.py)
    line = [x for x in res.stdout.splitlines() if x.startswith("store=")][-1]
    return Path(line.removeprefix("store="))


@pytest.fixture(scope="module")
def triton_interpreter():
    """TRITON_INTERPRET=1 while one module's tests run (other modules and the libraries they use see the
    environment unchanged); it must be set when kernels.sparse_kl_triton is first imported (lazily, on the
    first impl="triton" call), because @triton.jit picks the interpreter at decoration time. With CUDA the
    kernels run compiled and nothing is set. Use: pytestmark = pytest.mark.usefixtures("triton_interpreter")."""
    import torch

    if torch.cuda.is_available():
        yield
        return
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    yield
    if old is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = old
