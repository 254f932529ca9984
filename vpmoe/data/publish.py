"""Finalizing a prepared dataset: the staged buckets (`vpmoe.data.staging`) published as one output.

`finalize` gathers every bucket's committed shards and rejects, applies `max_reject_fraction`, builds the
`DatasetManifest`, and hands the files to `publish`. Errors are `PublishError` (`prepare` reraises them as
`PrepareError`).

A dataset exists exactly when its `manifest.json` does: readers (`DatasetManifest.load`,
`PreparedDataset`) open nothing without it, and check every file against it. So every publish writes the
manifest after all the files it lists.

Local output (a directory): the tree is built in a locked temporary sibling (each staged file hard-linked
in, after its sha256 is checked against its commit record), then committed by `atomic.atomic_directory`:
a rename, or one renameat2(RENAME_EXCHANGE) with a previous output, so the output never goes missing.

S3 output (`s3://bucket/prefix`): there is no rename, so the order of the writes is the protocol:
 1. every staged object is checked against its record's sha256 (nothing is touched if one does not match);
 2. the output is checked again (`check_output`): existing objects need `overwrite=true`, and only a
    previous prepare output may be replaced;
 3. replacing: `manifest.json` is deleted first (from then on the old dataset is no longer complete, and
    no reader opens it), then every other old object but the output marker, which the next step replaces;
 4. the output marker (`.vpmoe-output.json`: kind "prepare" and every entry about to be written) is
    written before the data, so a publish that crashes half way leaves a prefix that is recognizably
    ours: `overwrite=true` replaces it, and without `manifest.json` it is not a dataset;
 5. each staged object is copied to its final key (`storage.copy`: a server-side copy, no bytes through
    this process), then `rejects.jsonl` is written;
 6. `manifest.json` is written last: a reader sees the whole new dataset or none.
A reader that opened the old dataset before step 3 fails on a missing (or, once replaced, mismatching)
shard instead of reading a mix: every shard is checked against the manifest it opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from vpmoe import tokenizer as tok
from vpmoe.data.harmony_render import LOSS_SPANS
from vpmoe.data.manifest import MANIFEST_FILE, REJECTS_FILE, SHARD_DIR, DatasetManifest, ShardEntry
from vpmoe.data.staging import missing_report
from vpmoe.data.token_records import tokens_name
from vpmoe.utils import storage
from vpmoe.utils.atomic import (
    OUTPUT_MARKER,
    OutputExistsError,
    atomic_directory,
    check_output_dir,
    marker_bytes,
    marker_reason,
)
from vpmoe.utils.hashing import sha256_json

if TYPE_CHECKING:  # prepare imports this module
    from vpmoe.data.prepare import PrepareConfig, _Inputs
    from vpmoe.data.staging import Stage


# The kind recorded in the output marker: overwrite=true replaces only a previous prepare output.
OUTPUT_KIND = "prepare"
# Reasons a row is rejected as bad input (counted against max_reject_fraction). Over-long rows are a
# length-policy drop ("too_long"), recorded in the same file but not counted as bad input.
BAD_INPUT_REASONS = (
    "missing_id",
    "duplicate_id",
    "empty_query",
    "empty_reasoning",
    "empty_answer",
    "missing_seed_text",
    "wrong_type",
    "encode_error",
)
REJECT_KEYS = ("source", "row", "sample_id", "reason", "detail")  # one line of rejects.jsonl
# Concurrent requests for checking and copying staged objects on S3 (each one is I/O bound).
S3_THREADS = 8


class PublishError(RuntimeError):
    pass


# --- finalize ---------------------------------------------------------------------------------------------


def finalize(
    ins: _Inputs, output: Path | str, cfg: PrepareConfig, stage: Stage, *, overwrite: bool
) -> DatasetManifest:
    """Publish every bucket's committed shards, in bucket order, as one dataset with its manifest
    (`publish`: locally one directory commit; on S3 the objects, then manifest.json last). Checks that
    every bucket is complete and applies `max_reject_fraction` first: a failure writes nothing."""
    states = stage.load_buckets(range(cfg.buckets))
    missing = [s.bucket for s in states if s.done is None]
    if missing:
        raise PublishError(
            f"cannot finalize {output}: {missing_report(missing, cfg.buckets, cfg.num_workers)}. Run those "
            f"workers first (same input=, output= and config; staged in {stage.root})"
        )
    reasons: Counter[str] = Counter()
    rejects: list[dict] = []
    files: list[tuple[str, str, str]] = []  # (staged file, name in the dataset, sha256)
    entries: list[ShardEntry] = []
    for s in states:
        for k, rec in enumerate(s.records):
            rejects += rec["rejects"]
            e = ShardEntry(**rec["entry"])
            e.name = f"{SHARD_DIR}/shard-{len(entries):05d}.parquet"  # dataset order: bucket, then shard
            entries.append(e)
            files.append((stage.shard_file(s.bucket, k, ".parquet"), e.name, e.sha256))
            files.append((stage.shard_file(s.bucket, k, ".tokens"), tokens_name(e.name), e.tokens_sha256))
        rejects += s.done["rejects"]
    for r in rejects:
        reasons[r["reason"]] += 1
    # Input order, whatever the buckets: (file, row) is unique per input row.
    order = {n: i for i, n in enumerate(ins.names)}
    rejects.sort(key=lambda r: (order[r["source"]], r["row"]))
    total_rows = ins.rows
    bad = sum(n for r, n in reasons.items() if r in BAD_INPUT_REASONS)
    if total_rows and bad / total_rows > cfg.max_reject_fraction:
        raise PublishError(
            f"{bad} of {total_rows} rows rejected as bad input ({bad / total_rows:.1%} > "
            f"max_reject_fraction {cfg.max_reject_fraction:.1%}): {dict(reasons)}; see the reasons above "
            "(no output written)"
        )
    if not entries:
        raise PublishError(f"no sequence survived preparation ({dict(reasons)}); no output written")
    # Fixed key order (commit records store them key-sorted).
    rejects_file = "".join(
        json.dumps({k: r[k] for k in REJECT_KEYS}, ensure_ascii=False) + "\n" for r in rejects
    ).encode("utf-8")
    supervised = {
        s.name.lower(): sum(e.supervised_tokens[s.name.lower()] for e in entries) for s in LOSS_SPANS
    }
    manifest = DatasetManifest(
        tokenizer=tok.tokenizer_identity().to_dict(),
        prepare_config=cfg.to_dict(),
        prepare_config_hash=sha256_json(cfg.to_dict()),
        sources=[
            {"name": n, "sha256": storage.sha256(p), "rows": pf.metadata.num_rows}
            for n, p, pf in zip(ins.names, ins.paths, ins.files, strict=True)
        ],
        shards=entries,
        totals={
            "rows_in": total_rows,
            "sequences": sum(e.sequences for e in entries),
            "tokens": sum(e.tokens for e in entries),
            "supervised_tokens": supervised,
            "rejected": dict(sorted(reasons.items())),
        },
        rejects_file={
            "name": REJECTS_FILE,
            "sha256": hashlib.sha256(rejects_file).hexdigest(),
            "count": len(rejects),
        },
    ).finalize()
    publish(output, files, rejects_file, manifest, overwrite=overwrite, kind=OUTPUT_KIND)
    return manifest


# --- the output check ------------------------------------------------------------------------------------


def check_output(output: str | Path, *, overwrite: bool, kind: str) -> None:
    """Fail before any work if `output` exists and may not be replaced (a local directory or an S3
    prefix: any object under it counts). The S3 twin of `atomic.check_output_dir`."""
    if not storage.is_remote(output):
        check_output_dir(Path(output), overwrite=overwrite, kind=kind)
        return
    url = str(output).rstrip("/")
    keys = storage.find(url)
    if not keys:
        if storage.exists(url):
            raise OutputExistsError(f"output {url} is an object, not a prefix; choose another output")
        return
    if not overwrite:
        raise OutputExistsError(
            f"output {url} already exists ({len(keys)} object(s) under it); pass overwrite=true to replace it"
        )
    reason = remote_foreign_reason(url, keys, kind)
    if reason is not None:
        raise OutputExistsError(
            f"refusing to overwrite {url}: {reason}. overwrite=true only replaces a previous {kind} "
            "output; choose another output or remove it yourself"
        )


def remote_foreign_reason(url: str, keys: dict[str, int], kind: str) -> str | None:
    """None when the objects `keys` (relative to `url`) may be replaced as a `kind` output; otherwise
    what makes them not ours (`atomic.marker_reason`, as for a local directory; S3 has no directories,
    so only objects are compared with the marker's entries)."""
    raw: bytes | Exception | None = None
    if OUTPUT_MARKER in keys:
        try:
            raw = storage.read_bytes(storage.join(url, OUTPUT_MARKER))
        except storage.StorageError as e:
            raw = e
    return marker_reason(raw, set(keys) - {OUTPUT_MARKER}, kind)


# --- publishing ------------------------------------------------------------------------------------------


def publish(
    output: str | Path,
    files: list[tuple[str, str, str]],
    rejects: bytes,
    manifest: DatasetManifest,
    *,
    overwrite: bool,
    kind: str,
) -> None:
    """Publish `files` ((staged path or URL, name in the dataset, sha256)), `rejects.jsonl` and the
    manifest, last, as the dataset `output` (module docstring: the local and the S3 protocol)."""
    if storage.is_remote(output):
        _publish_remote(str(output).rstrip("/"), files, rejects, manifest, overwrite=overwrite, kind=kind)
    else:
        _publish_local(Path(output), files, rejects, manifest, overwrite=overwrite, kind=kind)


def _corrupt(src: str, err: Exception | None = None) -> PublishError:
    why = f" ({err})" if err is not None else ""
    return PublishError(f"{src}: staged shard does not match its commit record (corrupt){why}; remove it")


def _verify(src: str, digest: str) -> None:
    try:
        ok = storage.sha256(src) == digest
    except storage.StorageError as e:
        raise _corrupt(src, e) from None
    if not ok:
        raise _corrupt(src)


def _publish_local(
    output: Path, files: list, rejects: bytes, manifest: DatasetManifest, *, overwrite: bool, kind: str
) -> None:
    with atomic_directory(output, overwrite=overwrite, kind=kind) as tmp:
        (tmp / SHARD_DIR).mkdir()
        for src, name, digest in files:
            _verify(src, digest)
            try:
                os.link(src, tmp / name)  # same file system (a sibling): no copy; staging is removed after
            except OSError as err:
                raise PublishError(
                    f"finalize links each staged shard into the output; {src} -> {tmp / name} failed "
                    f"({err.strerror}): the output's file system must support hard links"
                ) from None
        (tmp / REJECTS_FILE).write_bytes(rejects)
        manifest.write(tmp)


def _publish_remote(
    url: str, files: list, rejects: bytes, manifest: DatasetManifest, *, overwrite: bool, kind: str
) -> None:
    with ThreadPoolExecutor(S3_THREADS) as pool:
        list(pool.map(lambda f: _verify(f[0], f[2]), files))  # 1: raises the first mismatch
        check_output(url, overwrite=overwrite, kind=kind)  # 2: again: it may have changed meanwhile
        old = storage.find(url)
        if old:  # 3: overwrite=true and a previous prepare output (checked just above)
            _remove_old(url, old)
        names = [name for _, name, _ in files]
        entries = sorted({SHARD_DIR, *names, REJECTS_FILE, MANIFEST_FILE})  # as atomic_directory lists them
        storage.write_bytes(storage.join(url, OUTPUT_MARKER), marker_bytes(kind, entries))  # 4
        list(pool.map(lambda f: storage.copy(f[0], storage.join(url, f[1])), files))  # 5
    storage.write_bytes(storage.join(url, REJECTS_FILE), rejects)
    with tempfile.TemporaryDirectory() as tmp:  # the one manifest serializer, DatasetManifest.write
        storage.put_file(manifest.write(Path(tmp)), storage.join(url, MANIFEST_FILE))  # 6: last


def _remove_old(url: str, old: dict[str, int]) -> None:
    """Delete a previous output: manifest.json first, then every other object but the marker (the
    caller overwrites it next), so that at every moment the prefix is recognizably ours or empty."""
    if MANIFEST_FILE in old:
        storage.remove(storage.join(url, MANIFEST_FILE))
    tops = sorted({k.split("/", 1)[0] for k in old} - {MANIFEST_FILE, OUTPUT_MARKER})
    for top in tops:
        prefix = any(k.startswith(top + "/") for k in old)  # "shards/...": one batched delete
        storage.remove(storage.join(url, top), recursive=prefix)
