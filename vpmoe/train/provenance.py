"""What a checkpoint records about where it came from (contracts.md: "Checkpoints record provenance").

Enough to rerun it months later from config + artifacts: the code (git sha, dirty flag), the resolved
config and its hash, the tokenizer identity (from the dataset manifest), the dataset manifest hash, and
the teacher store's identity (its id, path, and the attributes that define it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from vpmoe.data.prepared import PreparedDataset
from vpmoe.teacher.store_reader import read_store_attrs
from vpmoe.utils.hashing import sha256_json

REPO = Path(__file__).resolve().parents[2]

# Keys that may differ between a checkpoint's config and the run that resumes it: they change how far or
# how verbosely a run goes, or how its data is fetched, never what a step computes.
RESUMABLE_KEYS = (
    "train.max_steps",
    "train.log_interval",
    "train.eval_interval",
    "data.num_workers",
    "data.prefetch_factor",
    "data.index_cache_mib",
    "checkpoint.",
    "run_dir",
    "dataset",
    "store",
)


def git_state() -> dict:
    """{"sha", "dirty"}; "unavailable: <why>" when this is not a git checkout (an installed copy)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return {"sha": sha, "dirty": bool(dirty)}
    except (OSError, subprocess.CalledProcessError) as e:
        return {"sha": f"unavailable: {e}", "dirty": None}


def config_hash(config: dict) -> str:
    """Hash of the resolved config without the keys that only say where things are (paths)."""
    return sha256_json({k: v for k, v in config.items() if k not in ("run_dir", "dataset", "store")})


def _location(path: str | Path) -> str:
    """An absolute local path, or the `s3://` URL as given."""
    from vpmoe.utils.storage import is_remote

    return str(path) if is_remote(str(path)) else str(Path(path).resolve())


def provenance(config: dict, dataset_dir: str | Path, store_dir: str | Path) -> dict:
    ds = PreparedDataset(dataset_dir)
    attrs = read_store_attrs(store_dir)
    try:
        import megatron.core

        mcore = megatron.core.__version__
    except (ImportError, AttributeError):
        mcore = "unknown"
    return {
        "git": git_state(),
        "config": config,
        "config_hash": config_hash(config),
        "tokenizer": ds.manifest.tokenizer,
        "dataset": {"path": _location(dataset_dir), "manifest_hash": ds.manifest_hash},
        "teacher_store": {
            "path": _location(store_dir),
            "teacher_id": attrs.get("teacher_id"),
            "teacher_weights_sha256": attrs.get("teacher_weights_sha256"),
            "k": attrs.get("k"),
            "dtype": attrs.get("dtype"),
            "engine": f"{attrs.get('engine')} {attrs.get('engine_version')}",
            "scoring_config_hash": attrs.get("scoring_config_hash"),
        },
        "versions": {"torch": torch.__version__, "megatron_core": mcore},
    }


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# Keys added after runs were checkpointed, with the value an older config meant by leaving them out: a
# checkpoint without the key resumes under a config that has it at this value.
ADDED_KEY_DEFAULTS = {"loss.teacher_k": 0, "loss.target": "teacher"}


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys (dotted) whose values differ, other than RESUMABLE_KEYS."""
    a, b = _flatten(saved), _flatten(current)
    for key, value in ADDED_KEY_DEFAULTS.items():
        a.setdefault(key, value)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE_KEYS):
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            diffs.append(f"{key}: checkpoint {a.get(key, '<absent>')!r} vs now {b.get(key, '<absent>')!r}")
    return diffs
