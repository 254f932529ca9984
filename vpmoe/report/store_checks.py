"""Store-level checks: root attributes (provenance), the contents of shards/ (committed, extra, stale),
and the file checksums recorded in each commit marker. Read straight from the files: nothing here trusts
the store to be complete."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from vpmoe.data.manifest import ShardEntry
from vpmoe.data.prepared import PreparedDataset
from vpmoe.report.checks import ROOT, CheckLog
from vpmoe.teacher.store import MARKER_SUFFIX, STORE_SCHEMAS, StoreProvenance, storage_of
from vpmoe.utils import storage
from vpmoe.utils.hashing import sha256_json


def root_attrs(store: str | Path, checks: CheckLog) -> dict:
    try:
        meta = json.loads(storage.read_bytes(storage.join(store, "zarr.json")))
    except (storage.StorageError, json.JSONDecodeError) as e:
        checks.fail("provenance", ROOT, f"zarr.json unreadable: {e}")
        return {}
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    if not isinstance(attrs, dict):
        checks.fail("provenance", ROOT, "zarr.json has no attributes")
        return {}
    return attrs


def check_provenance(attrs: dict, ds: PreparedDataset, vocab: int, checks: CheckLog) -> None:
    if not attrs:
        return
    problems = []
    missing = [f.name for f in dataclasses.fields(StoreProvenance) if f.name not in attrs]
    if missing:
        problems.append(f"attributes missing: {', '.join(missing)}")
    sc = attrs.get("scoring_config")
    storage_kind = storage_of(attrs)
    schema = STORE_SCHEMAS.get(storage_kind)
    if schema is None:
        problems.append(f"scoring_config.storage {storage_kind!r} is not one of {sorted(STORE_SCHEMAS)}")
    elif attrs.get("schema_version") != schema:
        problems.append(
            f"schema_version {attrs.get('schema_version')!r}, expected {schema} ({storage_kind} store)"
        )
    if storage_kind == "sampled" and not (isinstance(sc.get("samples"), int) and 1 <= sc["samples"] <= 255):
        problems.append(f"scoring_config.samples {sc.get('samples')!r} is not in [1, 255]")
    if "dataset_manifest_hash" in attrs and attrs["dataset_manifest_hash"] != ds.manifest_hash:
        problems.append(
            f"store was scored from dataset {attrs['dataset_manifest_hash']}, the dataset is {ds.manifest_hash}"
        )
    if "tokenizer" in attrs and attrs["tokenizer"] != ds.manifest.tokenizer:
        problems.append(f"tokenizer {attrs['tokenizer']} differs from the dataset's {ds.manifest.tokenizer}")
    k, dtype = attrs.get("k"), attrs.get("dtype")
    if "k" in attrs and not (isinstance(k, int) and k >= 1):
        problems.append(f"k {k!r} is not a positive integer")
    if isinstance(sc, dict):
        if "scoring_config_hash" in attrs and sha256_json(sc) != attrs["scoring_config_hash"]:
            problems.append("scoring_config_hash does not match scoring_config")
        for key, want in (("k", k), ("dtype", dtype)):
            if key in sc and sc[key] != want:
                problems.append(f"scoring_config.{key} {sc[key]!r} != root {key} {want!r}")
    tc = attrs.get("teacher_config")
    if isinstance(tc, dict) and tc.get("vocab_size") != vocab:
        problems.append(f"teacher vocab_size {tc.get('vocab_size')!r} != dataset padded vocab {vocab}")
    tid, wsha = attrs.get("teacher_id"), attrs.get("teacher_weights_sha256")
    suffix = f"-{wsha[:12] if isinstance(wsha, str) else ''}-{dtype}-k{k}"
    if storage_kind == "sampled" and isinstance(sc, dict):
        suffix += f"-s{sc.get('samples')}"
    if isinstance(tid, str) and isinstance(wsha, str) and not tid.endswith(suffix):
        problems.append(f"teacher_id {tid!r} does not end in -<weights sha[:12]>-<dtype>-k<k>[-s<samples>]")
    if problems:
        checks.fail("provenance", ROOT, "; ".join(problems), count=len(problems))


def list_shards_dir(shards_dir: str | Path) -> tuple[dict[str, int], dict[str, dict[str, int]]] | None:
    """One listing of `shards/` (local or `s3://`): its top-level files {name: size} and its groups
    {name: {key relative to the group: size}}; None when it does not exist."""
    if not storage.exists(shards_dir):
        return None
    files: dict[str, int] = {}
    groups: dict[str, dict[str, int]] = {}
    for key, size in storage.find(shards_dir).items():
        top, sep, rest = key.partition("/")
        if sep:
            groups.setdefault(top, {})[rest] = size
        else:
            files[top] = size
    return files, groups


def check_shard_dir(
    shards_dir: str | Path, listing, entries: dict[str, ShardEntry], checks: CheckLog
) -> dict[str, dict]:
    """Markers of the manifest's shards (parsed); everything else in shards/ is a finding. `listing`:
    `list_shards_dir(shards_dir)`."""
    markers: dict[str, dict] = {}
    if listing is None:
        checks.fail("shards_committed", ROOT, f"{shards_dir} does not exist", count=len(entries))
        return markers
    files, groups = listing
    wanted = [
        n for n in sorted(files) if n.endswith(MARKER_SUFFIX) and n.removesuffix(MARKER_SUFFIX) in entries
    ]
    contents = storage.read_many([storage.join(shards_dir, n) for n in wanted])
    raw_markers = dict(zip(wanted, contents.values(), strict=True))
    for name in sorted(files):
        if name.endswith(MARKER_SUFFIX):
            stem = name.removesuffix(MARKER_SUFFIX)
            if stem not in entries:
                checks.fail("no_extra_shards", stem, "commit marker for a shard not in the dataset manifest")
                continue
            try:
                info = json.loads(raw_markers[name])
                if not isinstance(info, dict):
                    raise ValueError("not a JSON object")
            except (TypeError, ValueError) as e:
                checks.fail("shards_committed", stem, f"commit marker unreadable: {e}")
                continue
            if info.get("dataset_shard_sha256") != entries[stem].sha256:
                checks.fail(
                    "no_extra_shards",
                    stem,
                    f"stale marker: dataset shard sha256 {str(info.get('dataset_shard_sha256'))[:16]}..., "
                    f"the manifest's is {entries[stem].sha256[:16]}...",
                )
            markers[stem] = info
        else:
            checks.fail("no_extra_shards", name, "unexpected file in shards/")
    for name in sorted(groups):
        if name.startswith(".tmp-"):
            checks.fail(
                "no_extra_shards", name, "uncommitted temp directory (a scorer is running or crashed)"
            )
        elif name not in entries:
            checks.fail("no_extra_shards", name, "shard group not in the dataset manifest")
    return markers


def check_checksums(
    shard_dir: str, have_files: dict[str, int], info: dict, stem: str, checks: CheckLog
) -> None:
    want = info.get("files")
    if not isinstance(want, dict) or not have_files:
        checks.fail("checksums", stem, "marker has no file list" if have_files else "shard directory missing")
        return
    have = set(have_files)
    bad = []
    for rel in sorted(set(want) | have):
        if rel not in have:
            bad.append(f"{rel}: missing")
        elif rel not in want:
            bad.append(f"{rel}: not in the marker")
        elif storage.sha256(storage.join(shard_dir, rel)) != want[rel]:
            bad.append(f"{rel}: sha256 differs from the marker")
    if bad:
        checks.fail(
            "checksums", stem, bad[0] + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""), count=len(bad)
        )
