"""The scan of one committed shard of a sampled store (vpmoe/teacher/sampled_store.py): the array layout, the
alignment with the prepared shard (shared with top-k stores: scan.py), then one pass over the rows that
checks the draws (ids in range and unique per row, counts >= 1 summing with the tail count to N, entry
offsets) and the actual token's values, and counts unique ids per row, tail draws and top-1 draws."""

from __future__ import annotations

import math

import numpy as np

from vpmoe.report.scan import ShardScan, _read_1d
from vpmoe.teacher.array_file import SAMPLED_ARRAYS
from vpmoe.teacher.convert import target_nll_reason

ROW_NAMES = ("row_unique", "tail_count", "target_logprob", "target_rank")


def empty_sampled_stats() -> dict:
    """What a shard's scan adds up (ShardInfo.sampled); run.py sums them over shards."""
    return {"rows": 0, "draws": 0, "tail_draws": 0, "top1_draws": 0, "nll_sum": 0.0, "unique_hist": [0] * 256}


class SampledShardScan(ShardScan):
    ARRAYS = SAMPLED_ARRAYS

    def __init__(self, job, ctx, checks):
        super().__init__(job, ctx, checks)
        self.samples = int((ctx.attrs.get("scoring_config") or {}).get("samples", 0))
        self.stats = empty_sampled_stats()

    def run(self, stats, bar):
        info = super().run(stats, bar)
        info.sampled = self.stats
        return info

    def _open_arrays(self, num_seqs: int) -> dict | None:
        opened = self._open_files()
        if opened is None:
            return None
        arrays, problems = opened
        if not problems:
            n_rows, n_entries = arrays["positions"].shape[0], arrays["sampled_id_codes"].shape[0]
            for name in ("positions", *ROW_NAMES):
                if arrays[name].shape != (n_rows,):
                    problems.append(f"{name}: shape {arrays[name].shape}, expected ({n_rows},)")
            if arrays["sampled_counts"].shape != (n_entries,):
                problems.append(
                    f"sampled_counts: shape {arrays['sampled_counts'].shape}, expected ({n_entries},)"
                )
            for name in ("seq_offsets", "seq_entry_offsets"):
                if arrays[name].shape != (num_seqs + 1,):
                    problems.append(f"{name}: shape {arrays[name].shape}, expected ({num_seqs + 1},)")
            if not 1 <= self.samples <= 255:
                problems.append(f"scoring_config.samples {self.samples!r} is not in [1, 255]")
            self._load_id_order(arrays["id_order"], problems)
        if problems:
            self.fail("readable", "; ".join(problems), count=len(problems))
            return None
        return arrays

    def _scan_rows(self, arrays, expect, codes, stats, bar) -> None:
        """The whole shard at once: a sampled shard is ~40 bytes per position decoded (a user's shard of
        ~1.4M positions: ~60 MB), and its ragged entries are split by cumulative row lengths."""
        self._scan_all_rows(arrays)
        n_rows = arrays["positions"].shape[0]
        if bar is not None:
            bar.update(n_rows)
        self.scanned += n_rows

    def _scan_all_rows(self, arrays) -> None:
        n_rows = arrays["positions"].shape[0]
        got, ok = {}, np.ones(n_rows, bool)
        for name in ROW_NAMES:
            got[name], good = _read_1d(arrays[name], self, name)
            ok &= good
        if not self._row_unique_readable():
            # without every row's entry count the entries cannot be split into rows: only the failed
            # chunks (readable) are reported for this shard
            self.checks.note("sampled_counts", f"{self.stem}: not checked (row_unique does not decode)")
            return
        n = got["row_unique"].astype(np.int64)
        ends = np.cumsum(n)
        n_entries = arrays["sampled_id_codes"].shape[0]
        entry_offsets, offsets_ok = _read_1d(arrays["seq_entry_offsets"], self, "seq_entry_offsets")
        row_offsets = self.locate_offsets
        if int(ends[-1] if n_rows else 0) != n_entries:
            self.fail("sampled_counts", f"row_unique adds up to {int(ends[-1]) if n_rows else 0} entries, the "
                      f"entry arrays hold {n_entries}")  # fmt: skip
            return
        if offsets_ok.all() and row_offsets is not None and len(row_offsets) == len(entry_offsets):
            want = np.concatenate([[0], ends])[np.asarray(row_offsets, np.int64)]
            bad = np.flatnonzero(want != entry_offsets)
            if len(bad):
                self.fail("sampled_counts", f"seq_entry_offsets[{int(bad[0])}] = {int(entry_offsets[bad[0]])}, "
                          f"row_unique says {int(want[bad[0]])}", count=len(bad))  # fmt: skip
        codes_, codes_ok = _read_1d(arrays["sampled_id_codes"], self, "sampled_id_codes", unit="entries")
        counts, counts_ok = _read_1d(arrays["sampled_counts"], self, "sampled_counts", unit="entries")
        row_of = np.repeat(np.arange(n_rows), n)
        bad_entry = ~(codes_ok & counts_ok)
        ok[row_of[bad_entry]] = False
        ids = self.id_order.decode(codes_.astype(np.uint32))  # a bad code -> vocab, counted below
        self._check_rows(got, ids, counts, row_of, ok)

    def _row_unique_readable(self) -> bool:
        return not self.unreadable.get("row_unique")

    def _check_rows(self, got, ids, counts, row_of, ok) -> None:
        """The value checks on the rows whose chunks decoded (`ok` on entry: a row in a chunk that did not
        decode is reported by `readable` only, not as a bad value), then the statistics of the rows that
        passed every check."""
        n_rows = len(ok)
        readable = ok.copy()

        def flag(check, bad_rows, what):
            rows = np.flatnonzero(bad_rows & readable)
            if len(rows):
                self.fail(check, what(int(rows[0])), count=len(rows), row=int(rows[0]))
            ok[rows] = False

        out = np.zeros(n_rows, bool)
        np.logical_or.at(out, row_of, ids >= self.vocab)
        flag("ids_in_range", out, lambda r: f"a drawn id outside [0, {self.vocab}) in row {r}")
        # unique per row: sort (row, id) pairs, equal neighbours are duplicates
        order = np.lexsort((ids, row_of))
        same = (row_of[order][1:] == row_of[order][:-1]) & (ids[order][1:] == ids[order][:-1])
        dup = np.zeros(n_rows, bool)
        dup[row_of[order][1:][same]] = True
        flag("unique_ids", dup, lambda r: f"an id drawn twice in row {r}")
        zero = np.zeros(n_rows, bool)
        zero[row_of[counts == 0]] = True
        width = min(self.samples, int(self.attrs.get("k") or self.samples))  # the reader pads to this
        wide = got["row_unique"].astype(np.int64) > width
        flag(
            "sampled_counts",
            wide,
            lambda r: f"row {r} holds {int(got['row_unique'][r])} ids, more than min(N, k) = {width}",
        )
        total = np.bincount(row_of, weights=counts.astype(np.float64), minlength=n_rows) + got["tail_count"]
        flag("sampled_counts", zero | (total != self.samples),
             lambda r: f"row {r}: counts {int(total[r] - got['tail_count'][r])} + tail {int(got['tail_count'][r])} "
             f"= {int(total[r])} draws, N = {self.samples}" + (" (a count of 0)" if zero[r] else ""))  # fmt: skip
        lp, rank = got["target_logprob"], got["target_rank"]
        flag("finite", ~np.isfinite(lp), lambda r: f"actual-token log-prob {lp[r]} in row {r}")
        flag("nonpositive", (lp > self.cfg.logprob_tolerance) | (rank < 1),
             lambda r: f"row {r}: actual-token log-prob {lp[r]}, rank {rank[r]}")  # fmt: skip
        # statistics over the rows that passed
        n = np.bincount(row_of, minlength=n_rows)
        top1 = np.zeros(n_rows, np.int64)
        np.maximum.at(top1, row_of, counts.astype(np.int64))
        s = self.stats
        s["rows"] += int(ok.sum())
        s["draws"] += int(ok.sum()) * self.samples
        s["tail_draws"] += int(got["tail_count"][ok].astype(np.int64).sum())
        s["nll_sum"] -= float(lp[ok].astype(np.float64).sum())
        s["top1_draws"] += int(top1[ok].sum())
        s["unique_hist"] = (np.asarray(s["unique_hist"]) + np.bincount(n[ok], minlength=256)[:256]).tolist()
        self._check_not_uniform()

    def _check_not_uniform(self) -> None:
        """teacher_not_degenerate for draws: a uniform teacher's top-k holds k / vocab of its mass, so
        nearly every draw falls in the tail; require the shard's drawn share at least e^min_top1_gain
        times that (the top-k stores' threshold, as a mass ratio instead of a log-prob gain). The actual
        tokens' mean NLL is judged as in top-k stores (convert.degenerate_teacher)."""
        s, k = self.stats, int(self.attrs.get("k") or 0)
        if not s["draws"] or not k:
            return
        why = target_nll_reason(
            s["nll_sum"] / s["rows"], s["rows"], self.vocab, self.cfg.max_target_nll_ratio
        )
        if why is not None:
            self.fail("teacher_not_degenerate", why, count=s["rows"])
            return
        drawn = 1.0 - s["tail_draws"] / s["draws"]
        floor = math.exp(self.cfg.min_top1_gain) * k / self.vocab
        if drawn < floor:
            self.fail(
                "teacher_not_degenerate",
                f"near-uniform teacher output over {s['rows']} rows: {drawn:.6f} of the draws fell on the top-{k} "
                f"ids, below e^{self.cfg.min_top1_gain} x {k}/{self.vocab} = {floor:.6f} (a uniform "
                f"distribution puts {k / self.vocab:.6f} there)",
                count=s["rows"],
            )


def summarize(parts: list[dict], samples: int) -> dict:
    """The store's sampled-row statistics from its shards' (ShardInfo.sampled)."""
    hist = np.sum([np.asarray(p["unique_hist"]) for p in parts], axis=0) if parts else np.zeros(256)
    rows = int(sum(p["rows"] for p in parts))
    draws = int(sum(p["draws"] for p in parts))
    cum = np.cumsum(hist)

    def q(f):
        return int(np.searchsorted(cum, f * rows, side="left")) if rows else None

    return {
        "rows": rows,
        "samples": samples,
        "unique_ids_per_position": {
            "mean": float((hist * np.arange(len(hist))).sum() / rows) if rows else None,
            "p10": q(0.1),
            "p50": q(0.5),
            "p90": q(0.9),
            "max": int(np.flatnonzero(hist)[-1]) if rows else None,
        },
        "tail_draw_share": sum(p["tail_draws"] for p in parts) / draws if draws else None,
        "top1_draw_share": sum(p["top1_draws"] for p in parts) / draws if draws else None,
    }
