"""`DatasetManifest`: what a prepared dataset is, and the hash that names it.

The manifest hash is the sha256 of the canonical JSON of every field but the hash itself. Nothing
location- or time-dependent goes in (no absolute paths, no timestamps), so the same inputs and config
give the same hash on any machine, and one changed input byte changes it (sources carry their sha256).
Later artifacts (teacher stores, checkpoints) key themselves by this hash.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vpmoe.utils.hashing import sha256_json

# 2: every shard has a token-record file beside it (vpmoe/data/token_records.py); 1: Parquet only.
SCHEMA_VERSION = 2
MANIFEST_FILE = "manifest.json"
SHARD_DIR = "shards"
REJECTS_FILE = "rejects.jsonl"


class ManifestError(ValueError):
    pass


@dataclass(kw_only=True)
class ShardEntry:
    name: str  # relative to the dataset root, e.g. "shards/shard-00000.parquet"
    sha256: str
    tokens_sha256: str  # of its token-record file, `token_records.tokens_name(name)`
    sequences: int
    tokens: int
    supervised_tokens: dict[str, int]  # per loss span: {"reasoning": n, "final": n}
    first_sample_id: str
    last_sample_id: str


@dataclass(kw_only=True)
class DatasetManifest:
    schema_version: int = SCHEMA_VERSION
    tokenizer: dict
    prepare_config: dict
    prepare_config_hash: str
    sources: list[dict]  # {"name", "sha256", "rows"}
    shards: list[ShardEntry]
    totals: dict  # rows_in, sequences, tokens, supervised_tokens{span: n}, rejected{reason: n}
    rejects_file: dict  # {"name", "sha256", "count"}
    manifest_hash: str = field(default="")

    def body(self) -> dict:
        d = asdict(self)
        d.pop("manifest_hash")
        return d

    def compute_hash(self) -> str:
        return sha256_json(self.body())

    def finalize(self) -> DatasetManifest:
        self.manifest_hash = self.compute_hash()
        return self

    def write(self, root: Path) -> Path:
        if self.manifest_hash != self.compute_hash():
            raise ManifestError("manifest was modified after finalize(); call finalize() again")
        path = Path(root) / MANIFEST_FILE
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, root: str | Path) -> DatasetManifest:
        """The manifest of a prepared dataset, local or `s3://` (vpmoe/utils/storage.py)."""
        from vpmoe.utils import storage

        path = storage.join(str(root), MANIFEST_FILE)
        if not storage.exists(path):
            raise ManifestError(f"{path}: no dataset manifest (is {root} a `pipelines.prepare` output?)")
        try:
            raw = json.loads(storage.read_bytes(path))
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}: not valid JSON ({e})") from e
        if raw.get("schema_version") != SCHEMA_VERSION:
            old = (
                "; version 1 was prepared before per-sequence token records existed: rerun pipelines.prepare "
                "on the same input and config to get version 2 (then rescore: the manifest hash changes)"
                if raw.get("schema_version") == 1
                else ""
            )
            raise ManifestError(
                f"{path}: schema_version {raw.get('schema_version')!r}, this code reads {SCHEMA_VERSION}{old}"
            )
        try:
            raw["shards"] = [ShardEntry(**s) for s in raw["shards"]]
            manifest = cls(**raw)
        except (KeyError, TypeError) as e:
            raise ManifestError(f"{path}: malformed manifest ({e})") from e
        if manifest.manifest_hash != manifest.compute_hash():
            raise ManifestError(
                f"{path}: manifest_hash {manifest.manifest_hash} does not match its content "
                f"({manifest.compute_hash()}); the manifest was edited or corrupted"
            )
        return manifest
