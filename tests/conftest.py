from __future__ import annotations

import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "synth_sample.parquet"
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
