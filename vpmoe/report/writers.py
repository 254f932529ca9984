"""Report outputs: report.json (stable keys), report.md (readable on its own), PNG histograms.

The directory is written to a temporary sibling and renamed into place, so a reader never sees half a
report; an existing directory is replaced only when it is a previous report (holds report.json) or empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vpmoe.report.run import Report, ReportError
from vpmoe.report.stats import METRICS, QUANTILES
from vpmoe.utils import storage
from vpmoe.utils.atomic import OutputExistsError, atomic_directory

SPAN_COLORS = {"reasoning": "tab:blue", "final": "tab:orange"}
MAX_SHARD_ROWS = 50


def write_report(report: Report, output: str | Path) -> str | Path:
    """Write report.json, report.md and the plots to `output`, a local directory or an `s3://` prefix.

    Locally the directory is committed whole (atomic_directory). On object storage there is no rename:
    the files are rendered into a local temporary, the images and report.md uploaded first, report.json
    last (the report's marker: a prefix with report.json is a complete report)."""
    if storage.is_remote(str(output)):
        return _write_remote(report, str(output).rstrip("/"))
    out = Path(output)
    if out.exists() and not (out.is_dir() and ((out / "report.json").is_file() or not any(out.iterdir()))):
        raise ReportError(f"{out} exists and is not a previous report; choose another output")
    try:  # the one commit helper: durable, atomic, and never replaces what is not a report of ours
        with atomic_directory(out, overwrite=True, kind="report") as tmp:
            _render(report, tmp)
    except OutputExistsError as e:
        raise ReportError(str(e)) from e
    return out


def _render(report: Report, tmp: Path) -> None:
    data = report.to_dict()
    (tmp / "report.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    images = write_plots(data, tmp)
    (tmp / "report.md").write_text(markdown(data, images))


def _write_remote(report: Report, out: str) -> str:
    import tempfile

    existing = storage.find(out)
    if existing and "report.json" not in existing:
        raise ReportError(f"{out} exists and is not a previous report; choose another output")
    with tempfile.TemporaryDirectory(prefix="vpmoe-report-") as tmp:
        _render(report, Path(tmp))
        marker = Path(tmp) / "report.json"
        data = marker.read_bytes()
        marker.unlink()
        if existing:  # the old report is incomplete from here on, never a mix of two
            storage.remove(storage.join(out, "report.json"))
        written = set(storage.put_tree(tmp, out))
        for stale in sorted(set(existing) - written - {"report.json"}):  # e.g. a plot the new one lacks
            storage.remove(storage.join(out, stale))
        storage.write_bytes(storage.join(out, "report.json"), data)
    return out


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(d: dict, images: list[str]) -> str:
    s, st, ds = d["summary"], d["store"], d["dataset"]
    lines = [
        f"# Teacher store shard-health report: {d['verdict']}",
        "",
        f"**{d['verdict']}**: {s['checks'] - s['checks_failed']}/{s['checks']} checks passed; "
        f"{s['shards_committed']}/{s['shards_expected']} dataset shards committed; "
        f"{_fmt(s['positions_scanned'])} positions scanned in {s['seconds']:.1f} s; "
        f"{s['samples_quarantined']} sample(s) quarantined by the scorer (not in the store).",
        "",
        "| | |",
        "| --- | --- |",
        f"| store | `{st['path']}` |",
        f"| teacher | `{st['teacher_id']}` (k={st['k']}, {st['dtype']}, {st['engine']} {st['engine_version']}) |",
        f"| dataset | `{ds['path']}` (manifest `{ds['manifest_hash']}`, padded vocab {ds['vocab_size']}) |",
        f"| store's dataset | `{st['dataset_manifest_hash']}` |",
        "",
        "## Checks",
        "",
        "Each failure names the shard and its first bad row (row index in the shard, sample id, position t; "
        "the row holds the teacher's distribution of token t+1).",
        "",
        "| check | result | failures | shards | first failure |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, c in d["checks"].items():
        first = ""
        if c["shards"]:
            shard, f = next(iter(c["shards"].items()))
            where = ", ".join(
                f"{key} {f['first'][key]}"
                for key in ("row", "sample_id", "position")
                if f["first"][key] is not None
            )
            first = f"`{shard}`" + (f" ({where})" if where else "") + f": {f['first']['detail']}"
        shards = ", ".join(f"`{x}`" for x in list(c["shards"])[:5]) + (" ..." if len(c["shards"]) > 5 else "")
        result = "pass" if c["passed"] else "**FAIL**"
        lines.append(f"| {name} | {result} | {_fmt(c['failures'])} | {shards} | {_escape(first)} |")
    lines += ["", "What each check verifies:", ""]
    lines += [f"- `{name}`: {c['description']}" for name, c in d["checks"].items()]
    notes = [n for c in d["checks"].values() for n in c["notes"]]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]

    if d["quarantined"]:
        lines += ["", "## Quarantined samples", "",
                  "Teacher output failed validation at scoring; left out of the store (listed in the shard's marker).", "",
                  "| sample | shard | reasons |", "| --- | --- | --- |"]  # fmt: skip
        lines += [
            f"| `{sid}` | `{q['shard']}` | {_escape(str(q['reasons']))} |"
            for sid, q in d["quarantined"].items()
        ]
    lines += _statistics_md(d["statistics"], images)
    lines += _storage_md(d)
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _sampled_md(s: dict) -> list[str]:
    u = s["unique_ids_per_position"]
    return [
        "",
        "## Teacher statistics (sampled rows)",
        "",
        f"Over the {_fmt(s['rows'])} rows that passed every value check; N = {s['samples']} draws per position "
        'from the teacher\'s (k+1)-way distribution (docs/teacher_store.md "Sampled stores").',
        "",
        "| unique ids per position: mean | p10 | p50 | p90 | max | tail draws (share) | top-1 draws (share) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {_fmt(u['mean'])} | {_fmt(u['p10'])} | {_fmt(u['p50'])} | {_fmt(u['p90'])} | {_fmt(u['max'])} | "
        f"{_fmt(s['tail_draw_share'])} | {_fmt(s['top1_draw_share'])} |",
    ]


def _statistics_md(stats: dict, images: list[str]) -> list[str]:
    if "sampled" in stats:
        return _sampled_md(stats["sampled"])
    qkeys = [f"p{round(q * 100)}" for q in QUANTILES]
    lines = [
        "",
        "## Teacher statistics",
        "",
        "Over the rows that passed every value check of aligned shards. Quantiles are read off "
        "1000-bin histograms (resolution one bin: 0.001 in probability, 0.0125 nats of entropy, "
        "0.04 nats of NLL, 1% of a decade of tail mass, ~1.3% of a rank); means are exact. "
        "Entropy is the top-k entropy plus a tail term, a lower bound on the full-vocabulary entropy "
        "(docs/teacher_store.md).",
        "",
    ]
    for m in METRICS:
        lines += [f"### {m.name} ({m.unit})", "", m.description + ".", ""]
        lines.append("| group | positions | mean | " + " | ".join(qkeys) + " |")
        lines.append("| --- | --- | --- | " + " | ".join("---" for _ in qkeys) + " |")
        for grouping in ("span", "language", "exercise"):
            for group, g in stats[grouping].items():
                v = g["metrics"][m.name]
                label = group if grouping == "span" else f"{grouping}={group}"
                lines.append(
                    f"| {label} | {_fmt(g['positions'])} | {_fmt(v['mean'])} | "
                    + " | ".join(_fmt(v[q]) for q in qkeys)
                    + " |"
                )
        if f"hist_{m.name}.png" in images:
            lines += ["", f"![{m.name}](hist_{m.name}.png)"]
        lines.append("")
    lines += ["### Actual token in the top-k", "", "| group | rank 1 | in top-k |", "| --- | --- | --- |"]
    for grouping in ("span", "language", "exercise"):
        for group, g in stats[grouping].items():
            label = group if grouping == "span" else f"{grouping}={group}"
            lines.append(f"| {label} | {_fmt(g['target_rank1_frac'])} | {_fmt(g['target_in_topk_frac'])} |")
    return lines


def _storage_md(d: dict) -> list[str]:
    s = d["storage"]
    pps = s["positions_per_shard"]
    lines = [
        "",
        "## Storage",
        "",
        f"- bytes/position: {_fmt(s['bytes_per_position'])} stored vs {_fmt(s['raw_bytes_per_position'])} raw "
        f"({s['raw_layout']}): compression ratio {_fmt(s['compression_ratio'])}",
        "- by array (bytes/position): "
        + ", ".join(f"{n} {_fmt(v)}" for n, v in s["bytes_per_position_by_array"].items()),
        f"- positions per shard: min {_fmt(pps['min'])}, median {_fmt(pps['median'])}, max {_fmt(pps['max'])}",
        "",
        "![positions per shard](positions_per_shard.png)",
        "",
        "| shard | status | sequences | positions | stored bytes | bytes/position |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    shards = d["shards"]
    if len(shards) > MAX_SHARD_ROWS:  # a readable page: the shards with a problem, the rest in report.json
        named = {shard for c in d["checks"].values() for shard in c["shards"]}
        shards = {stem: sh for stem, sh in shards.items() if sh["status"] != "scanned" or stem in named}
        lines.insert(
            -2, f"{len(d['shards']) - len(shards)} shards without findings not listed (see report.json)."
        )
        lines.insert(-2, "")
    for stem, sh in shards.items():
        bpp = (
            sh["stored_bytes"] / sh["positions"]
            if sh["positions"] and sh["stored_bytes"] is not None
            else None
        )
        lines.append(
            f"| {stem} | {sh['status']} | {_fmt(sh['sequences'])} | {_fmt(sh['positions'])} | "
            f"{_fmt(sh['stored_bytes'])} | {_fmt(bpp)} |"
        )
    return lines


def write_plots(d: dict, out: Path) -> list[str]:
    """One PNG per metric (reasoning vs final, each normalised to its own count), and positions per
    shard. Returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    spans = d["statistics"].get(
        "span"
    )  # none for a sampled store: its statistics are one table (_sampled_md)
    for m in METRICS if spans is not None else ():
        fig, ax = plt.subplots(figsize=(6, 3.5))
        drew = False
        for span, color in SPAN_COLORS.items():
            h = spans[span]["metrics"][m.name]["histogram"]
            counts = np.asarray(h["counts"], float)
            if counts.sum() == 0:
                continue
            ax.stairs(counts / counts.sum(), h["edges"], label=f"{span} ({int(counts.sum()):,})", color=color)
            drew = True
        if h["scale"] != "linear":
            ax.set_xscale("log", base=10 if h["scale"] == "log10" else 2)
        ax.set_xlabel(f"{m.name} ({m.unit})")
        ax.set_ylabel("fraction of positions")
        ax.set_title(m.name)
        if drew:
            ax.legend()
        fig.tight_layout()
        name = f"hist_{m.name}.png"
        fig.savefig(out / name, dpi=80)
        plt.close(fig)
        written.append(name)
    sizes = [s["positions"] for s in d["shards"].values() if s["positions"] is not None]
    if sizes:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(sizes, bins=min(50, max(1, len(sizes))))
        ax.set_xlabel("positions per shard")
        ax.set_ylabel("shards")
        fig.tight_layout()
        fig.savefig(out / "positions_per_shard.png", dpi=80)
        plt.close(fig)
        written.append("positions_per_shard.png")
    return written
