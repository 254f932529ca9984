"""The scan of one committed shard: array layout and chunk decoding, alignment with the prepared shard,
then one streaming pass over the rows that runs the value checks and feeds the statistics. Samples the
marker lists as quarantined are taken out of the prepared shard first: the store holds every other one. Rows with a
failed value check are left out of the statistics; a misaligned shard gets value checks but neither
the actual-token check nor statistics (its rows cannot be tied to dataset tokens)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vpmoe.data.harmony_render import IGNORE_INDEX, Span
from vpmoe.data.manifest import ManifestError, ShardEntry
from vpmoe.data.prepared import PreparedDataset
from vpmoe.report.checks import CHECKS, CHECKS_BY_STORAGE, CheckLog, RowBlock, decode, value_failures
from vpmoe.report.stats import StatsAccumulator, row_metrics
from vpmoe.report.store_checks import check_checksums
from vpmoe.teacher.convert import degenerate_teacher
from vpmoe.teacher.quarantine import kept_rows, marker_quarantine, subset_shard
from vpmoe.teacher.row_coding import IdOrder, IdOrderError, logprobs_from_deltas
from vpmoe.teacher.store import ARRAYS, LAYOUT, ArrayFile, StoreError, sample_ids_digest
from vpmoe.utils import storage

# Rows per read (rounded to whole inner chunks): few Python calls per shard, memory bounded (~25 MB
# decoded at k=64).
READ_ROWS = 65536
# Rows per numpy pass: an fp32 [rows, k] block stays in L2, which makes the passes ~2x faster.
COMPUTE_ROWS = 4096
NONE_GROUP = "(none)"


@dataclass
class ShardInfo:
    # scanned (committed; its findings are in the checks) | missing | stale (not committed for this
    # dataset) | unreadable (committed, but its group, arrays or dataset shard could not be read)
    status: str
    sequences: int | None = None
    positions: int | None = None
    stored_bytes: int | None = None
    bytes_by_array: dict = field(default_factory=dict)
    # Samples the scorer left out (teacher output failed validation; listed in the marker): sample id ->
    # reasons. They are not misalignment: the shard is aligned against the dataset shard without them.
    quarantined: dict = field(default_factory=dict)
    # A sampled store's row statistics (sampled_scan.py): unique ids per row (counts of 0..255), draws.
    sampled: dict | None = None


@dataclass(frozen=True)
class ShardJob:
    path: str  # the shard group, a local path or an s3:// URL (vpmoe/utils/storage.py)
    stem: str
    entry: ShardEntry  # the dataset shard
    marker: dict  # its commit marker
    files: dict  # {key relative to the group: size} as listed in the store


@dataclass(frozen=True)
class ScanContext:
    """What every shard's scan shares (picklable: sent to worker processes)."""

    ds: PreparedDataset
    attrs: dict
    k: int | None
    vocab: int
    cfg: Any  # ReportConfig
    groupings: dict[str, list[str]]
    storage: str = "topk"  # or "sampled" (its rows are scanned by sampled_scan.py)


@dataclass
class ShardResult:
    stem: str
    info: ShardInfo
    checks: CheckLog  # findings of this shard only
    stats: StatsAccumulator
    scanned: int


def scan_shard(job: ShardJob, ctx: ScanContext, bar=None) -> ShardResult:
    """Checksums, then the scan, of one committed shard (module-level: runs in worker processes)."""
    sampled = ctx.storage == "sampled"
    if sampled:
        from vpmoe.report.sampled_scan import SampledShardScan
    checks = CheckLog(CHECKS_BY_STORAGE.get(ctx.storage, CHECKS))
    stats = StatsAccumulator(ctx.groupings)
    check_checksums(job.path, job.files, job.marker, job.stem, checks)
    scan = (SampledShardScan if sampled else ShardScan)(job, ctx, checks)
    info = scan.run(stats, bar)
    return ShardResult(job.stem, info, checks, stats, scan.scanned)


class ShardScan:
    """One committed shard: layout, alignment, then the streaming value/statistics pass."""

    ARRAYS = ARRAYS  # the arrays of the shard group

    def __init__(self, job: ShardJob, ctx: ScanContext, checks: CheckLog):
        self.path, self.stem, self.entry, self.marker = job.path, job.stem, job.entry, job.marker
        self.files = job.files
        self.ds, self.attrs, self.k, self.vocab, self.cfg = ctx.ds, ctx.attrs, ctx.k, ctx.vocab, ctx.cfg
        self.groupings, self.checks = ctx.groupings, checks
        self.scanned = 0
        self.sample_ids: list[str] = []
        self.locate_offsets: np.ndarray | None = None
        self.positions: np.ndarray | None = None
        self.unreadable: dict[str, list[tuple[int, int]]] = {}  # array -> row ranges of bad chunks
        self.id_order: IdOrder | None = None
        # Over the rows that passed every value check: sums of the top-1 log-prob and of the actual
        # token's NLL (teacher_not_degenerate).
        self.top1_sum = self.nll_sum = 0.0
        self.ok_rows = 0

    def fail(self, check: str, detail: str, *, count: int = 1, row: int | None = None) -> None:
        self.checks.fail(
            check, self.stem, detail, count=count, where=self.where(row) if row is not None else None
        )

    def where(self, row: int) -> dict:
        out = {"row": int(row)}
        if self.locate_offsets is not None and 0 <= row < self.locate_offsets[-1]:
            i = int(np.searchsorted(self.locate_offsets, row, side="right")) - 1
            out["sample_id"] = self.sample_ids[i]
        if self.positions is not None and 0 <= row < len(self.positions) and self.positions[row] >= 0:
            out["position"] = int(self.positions[row])
        return out

    def run(self, stats: StatsAccumulator, bar) -> ShardInfo:
        info = ShardInfo(status="unreadable")
        try:
            shard = self.ds.read_shard(self.entry.name, verify=True)
        except ManifestError as e:
            self.fail("alignment", f"dataset shard unreadable, cannot align: {e}")
            return info
        try:
            quarantined = marker_quarantine(self.marker)
            shard = subset_shard(shard, kept_rows(shard.sample_ids, quarantined, "its marker"))
        except StoreError as e:
            self.fail("alignment", f"the marker's quarantine list does not fit the dataset shard: {e}")
            return info
        info.quarantined = {sid: e.get("reasons") for sid, e in quarantined.items()}
        self.sample_ids = shard.sample_ids
        expect = _expected_rows(shard)
        info.sequences, info.stored_bytes, info.bytes_by_array = len(shard), *_sizes(self.files, self.ARRAYS)
        self._check_marker(shard, expect)
        arrays = self._open_arrays(len(shard))
        if arrays is None:
            return info
        n_rows = arrays["positions"].shape[0]
        info.positions, info.status = n_rows, "scanned"
        aligned = self._check_alignment(arrays, expect, len(shard))
        codes = _group_codes(shard, expect, self.groupings) if aligned else None
        if not aligned and "target_consistent" in self.checks.checks:  # a top-k store's check only
            self.checks.note("target_consistent", f"{self.stem}: not checked (shard misaligned)")
        self._scan_rows(arrays, expect, codes, stats, bar)
        return info

    def _check_marker(self, shard, expect) -> None:
        m, problems = self.marker, []
        if m.get("sequences") != len(shard):
            problems.append(f"marker says {m.get('sequences')} sequences, dataset shard has {len(shard)}")
        if m.get("positions") != len(expect.positions):
            problems.append(
                f"marker says {m.get('positions')} positions, dataset has {len(expect.positions)}"
            )
        if m.get("sample_ids_sha256") != sample_ids_digest(shard.sample_ids):
            problems.append("marker's sample-id digest differs from the dataset shard's sample ids")
        if problems:
            self.fail("alignment", "; ".join(problems), count=len(problems))
        if self.k is not None and m.get("k") != self.k:
            self.fail("provenance", f"marker k {m.get('k')!r} != root k {self.k}")

    def _open_files(self) -> tuple[dict, list[str]] | None:
        """Each array of the group (`self.ARRAYS`) opened and its dtype checked: (arrays, problems), or None
        (reported) when the group itself does not open."""
        if "zarr.json" not in self.files:
            self.fail("readable", f"shard group does not open: no {storage.join(self.path, 'zarr.json')}")
            return None
        arrays, problems = {}, []
        for name in self.ARRAYS:
            try:
                # Read with the store's own decoder (the layout checked, every crc verified): zarr's
                # generic path reads these sharded arrays ~3x slower (a Python task per 256-row inner
                # chunk; benchmarks/results/report_cpu.md). zarr reading them is a test of its own.
                arr = ArrayFile(storage.join(self.path, name), sizes=self.files)
            except Exception as e:
                problems.append(f"{name}: does not open ({type(e).__name__}: {e})")
                continue
            if arr.dtype != np.dtype(LAYOUT[name].dtype):
                problems.append(f"{name}: dtype {arr.dtype}, expected {np.dtype(LAYOUT[name].dtype)}")
            arrays[name] = arr
        return arrays, problems

    def _open_arrays(self, num_seqs: int) -> dict | None:
        opened = self._open_files()
        if opened is None:
            return None
        arrays, problems = opened
        k = self.k
        if not problems:
            n_rows = arrays["positions"].shape[0]
            kk = arrays["topk_id_codes"].shape[1] if arrays["topk_id_codes"].ndim == 2 else None
            k = k if k is not None else kk
            shapes = {
                "positions": (n_rows,),
                "topk_id_codes": (n_rows, k),
                "topk_logprob_deltas": (n_rows, k),
                "target_logprob": (n_rows,),
                "target_rank": (n_rows,),
            }
            for name, shape in shapes.items():
                if arrays[name].shape != shape:
                    problems.append(f"{name}: shape {arrays[name].shape}, expected {shape} (k={k})")
            if arrays["seq_offsets"].ndim != 1:
                problems.append(
                    f"seq_offsets: shape {arrays['seq_offsets'].shape}, expected ({num_seqs + 1},)"
                )
            self._load_id_order(arrays["id_order"], problems)
        if problems:
            self.fail("readable", "; ".join(problems), count=len(problems))
            return None
        self.k = k
        return arrays

    def _load_id_order(self, arr, problems: list[str]) -> None:
        """The shard's code table (`self.id_order`), or why not into `problems`."""
        try:
            self.id_order = IdOrder(arr[:], self.vocab)
        except IdOrderError as e:
            problems.append(f"id_order: {e}")
        except Exception as e:  # a chunk that does not decode
            problems.append(f"id_order: does not decode ({type(e).__name__}: {e})")

    def _check_alignment(self, arrays: dict, expect, num_seqs: int) -> bool:
        n_rows, n_expected = arrays["positions"].shape[0], len(expect.positions)
        positions, ok = _read_1d(arrays["positions"], self, "positions")
        self.positions = np.where(ok, positions, -1)
        offsets, offsets_ok = _read_1d(arrays["seq_offsets"], self, "seq_offsets")
        valid = (
            offsets_ok.all()
            and len(offsets) == num_seqs + 1
            and offsets[0] == 0
            and offsets[-1] == n_rows
            and (np.diff(offsets) >= 0).all()
        )
        aligned = True
        if not valid:
            self.fail(
                "alignment",
                f"seq_offsets invalid (length {len(offsets)} for {num_seqs} sequences, first "
                f"{offsets[0] if len(offsets) else None}, last {offsets[-1] if len(offsets) else None}, {n_rows} rows)",
            )
            aligned = False
            if n_rows != n_expected:
                # No trustworthy map from rows to samples: name rows by index only.
                return False
            offsets = expect.offsets
        self.locate_offsets = offsets
        # Each stored row against the expected position of the same row of the same sequence.
        rows = np.arange(n_rows)
        seq = np.searchsorted(offsets, rows, side="right") - 1
        j = rows - offsets[seq]
        counts_exp = np.diff(expect.offsets)
        within = j < counts_exp[seq]
        exp_pos = (
            expect.positions[np.minimum(expect.offsets[seq] + j, max(n_expected - 1, 0))]
            if n_expected
            else rows
        )
        bad_row = ok & (~within | (positions != exp_pos))
        bad_seq = np.flatnonzero(np.diff(offsets) != counts_exp)
        bad_seqs = sorted(set(np.unique(seq[bad_row]).tolist()) | set(bad_seq.tolist()))
        if bad_seqs:
            first_seq = bad_seqs[0]
            n_bad = len(bad_seqs)
            a = int(offsets[first_seq])
            stored = int(offsets[first_seq + 1] - offsets[first_seq])
            expected = int(counts_exp[first_seq])
            seq_rows = np.flatnonzero(bad_row[a : a + stored])
            detail = f"sample stores {stored} rows, the dataset has {expected} supervised positions"
            if len(seq_rows):  # a stored row holds the wrong position (or is one too many)
                r = a + int(seq_rows[0])
                want = int(exp_pos[r]) if within[r] else None
                detail += f"; row {r} holds position {int(positions[r])}, expected {want}"
                where = {**self.where(r), "sample_id": self.sample_ids[first_seq]}
            else:  # every stored row is right but some are missing: name the first missing position
                missing = int(expect.positions[expect.offsets[first_seq] + stored])
                detail += f"; position {missing} (and after) missing"
                where = {"row": a + stored, "sample_id": self.sample_ids[first_seq], "position": missing}
            self.checks.fail(
                "alignment",
                self.stem,
                f"{detail} (shard: {n_rows} rows, dataset: {n_expected})",
                count=n_bad,
                where=where,
            )
            aligned = False
        return aligned

    def _scan_rows(self, arrays, expect, codes, stats: StatsAccumulator, bar) -> None:
        names = ("topk_id_codes", "topk_logprob_deltas", "target_logprob", "target_rank")
        n_rows = arrays["positions"].shape[0]
        chunk = arrays["topk_id_codes"].chunks[0]
        step = max(chunk, READ_ROWS // chunk * chunk)
        for a in range(0, n_rows, step):
            b = min(a + step, n_rows)
            for lo, hi, got in _read_rows({n: arrays[n] for n in names}, a, b, chunk, self):
                # Metrics of a whole read block go to the histograms at once (fewer, larger bincounts).
                pieces: list[tuple[np.ndarray, dict]] = []
                for c in range(lo, hi, COMPUTE_ROWS):
                    d_ = min(c + COMPUTE_ROWS, hi)
                    sl = slice(c - lo, d_ - lo)
                    block = RowBlock(
                        start=c,
                        targets=expect.targets[c:d_] if codes is not None else None,
                        topk_ids=self.id_order.decode(got["topk_id_codes"][sl]),  # a bad code -> id = vocab
                        topk_logprobs=logprobs_from_deltas(got["topk_logprob_deltas"][sl]),
                        target_logprob=got["target_logprob"][sl],
                        target_rank=got["target_rank"][sl],
                    )
                    ok = self._check_block(block, dec := decode(block))
                    self._add_top1(dec.x[:, 0], block.target_logprob, ok)
                    if codes is not None:
                        rows = np.arange(c, d_)[ok] if not ok.all() else np.arange(c, d_)
                        sel = ok if not ok.all() else slice(None)
                        metrics = row_metrics(
                            dec.p[sel],
                            dec.x[sel],
                            dec.mass[sel],
                            dec.h_topk[sel],
                            block.target_logprob[sel],
                            block.target_rank[sel],
                        )
                        pieces.append((rows, metrics))
                    self.scanned += d_ - c
                if pieces:
                    rows = np.concatenate([r for r, _ in pieces])
                    metrics = {m: np.concatenate([p[m] for _, p in pieces]) for m in pieces[0][1]}
                    stats.add({g: v[rows] for g, v in codes.items()}, metrics, self.k)
            if bar is not None:
                bar.update(b - a)
        self._check_not_uniform()

    def _add_top1(self, top1: np.ndarray, target_logprob: np.ndarray, ok: np.ndarray) -> None:
        if not ok.all():
            top1, target_logprob = top1[ok], target_logprob[ok]
        self.top1_sum += float(top1.sum(dtype=np.float64))
        self.nll_sum -= float(target_logprob.sum(dtype=np.float64))
        self.ok_rows += len(top1)

    def _check_not_uniform(self) -> None:
        """teacher_not_degenerate: the shard's mean top-1 log-prob and actual-token NLL against a uniform
        distribution's (convert.degenerate_teacher)."""
        if not self.ok_rows:
            return
        n, cfg = self.ok_rows, self.cfg
        why = degenerate_teacher(
            self.top1_sum / n, self.nll_sum / n, n, self.vocab, cfg.min_top1_gain, cfg.max_target_nll_ratio
        )
        if why is not None:
            self.fail("teacher_not_degenerate", why, count=n)

    def _check_block(self, block: RowBlock, dec) -> np.ndarray:
        """Run the value checks on one block, record failures; returns the rows that passed all."""
        results = value_failures(
            block,
            dec,
            vocab=self.vocab,
            logprob_tolerance=self.cfg.logprob_tolerance,
            mass_tolerance=self.cfg.mass_tolerance,
        )
        ok = np.ones(len(block.target_rank), bool)
        for check, (bad, detail) in results.items():
            i = int(np.flatnonzero(bad)[0])
            # Blocks come in row order: the shard's first finding keeps its first bad row.
            self.fail(check, detail(i), count=int(bad.sum()), row=block.start + i)
            ok &= ~bad
        return ok


@dataclass
class _Expected:
    """The prepared shard's supervised rows, in store order."""

    positions: np.ndarray  # int64 [n_rows] position t within its sequence
    offsets: np.ndarray  # int64 [N+1]
    seq: np.ndarray  # int64 [n_rows] sequence index of each row
    targets: np.ndarray  # uint32 [n_rows] actual token t+1 (= labels[t])
    spans: np.ndarray  # int8 [n_rows] span of token t+1


def _expected_rows(shard) -> _Expected:
    flat = np.flatnonzero(shard.labels != IGNORE_INDEX)
    seq = np.searchsorted(shard.offsets, flat, side="right") - 1
    counts = np.bincount(seq, minlength=len(shard))
    return _Expected(
        positions=flat - shard.offsets[seq],
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        seq=seq,
        targets=shard.labels[flat].astype(np.uint32),
        # A position's span is the span of the token it predicts (harmony_render.position_spans).
        spans=shard.token_spans[np.minimum(flat + 1, len(shard.token_spans) - 1)],
    )


def _group_codes(shard, expect: _Expected, groupings: dict[str, list[str]]) -> dict[str, np.ndarray]:
    lang_idx = {g: i for i, g in enumerate(groupings["language"])}
    ex_idx = {g: i for i, g in enumerate(groupings["exercise"])}
    lang = np.array([lang_idx[v if v is not None else NONE_GROUP] for v in shard.languages], np.int32)
    ex = np.array([ex_idx[v if v is not None else NONE_GROUP] for v in shard.exercises], np.int32)
    return {
        "span": (expect.spans == Span.FINAL).astype(np.int32),  # reasoning 0, final 1
        "language": lang[expect.seq],
        "exercise": ex[expect.seq],
    }


def _sizes(files: dict[str, int], arrays: tuple[str, ...]) -> tuple[int, dict[str, int]]:
    """Stored bytes of the shard group, in all and per array, from its listing."""
    by_array: dict[str, int] = {name: 0 for name in arrays}
    for key, size in files.items():
        top = key.split("/", 1)[0]
        if top in by_array:
            by_array[top] += size
    return sum(files.values()), by_array


def _read_1d(arr, scan: ShardScan, name: str, *, unit: str = "rows") -> tuple[np.ndarray, np.ndarray]:
    """A whole 1-d array, with the rows of chunks that fail to decode masked out (and reported)."""
    n = arr.shape[0]
    out = np.zeros(n, arr.dtype)
    ok = np.ones(n, bool)
    for lo, hi, got in _read_rows({name: arr}, 0, n, arr.chunks[0], scan, unit=unit):
        out[lo:hi] = got[name]
    for lo, hi in scan.unreadable.get(name, []):
        ok[lo:hi] = False
    return out, ok


def _read_rows(arrays: dict, a: int, b: int, chunk: int, scan: ShardScan, *, unit: str = "rows"):
    """Rows [a, b) of every array; where that fails, chunk by chunk, reporting each chunk that does not
    decode (readable) and yielding only the ones that do. `unit` "entries": the arrays are a sampled
    store's entry arrays, whose indexes are not rows (a finding then names no row)."""
    try:
        yield a, b, {n: arr[a:b] for n, arr in arrays.items()}
        return
    except Exception:  # decode errors surface as ValueError/RuntimeError from the codecs: locate them
        pass
    for lo in range(a, b, chunk):
        hi = min(lo + chunk, b)
        got = {}
        for n, arr in arrays.items():
            try:
                got[n] = arr[lo:hi]
            except Exception as e:
                scan.unreadable.setdefault(n, []).append((lo, hi))
                scan.fail(
                    "readable",
                    f"{n} chunk {lo // chunk} ({unit} {lo}-{hi - 1}) does not decode: {e}",
                    row=lo if unit == "rows" else None,
                )
        if len(got) == len(arrays):
            yield lo, hi, got
