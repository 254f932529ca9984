"""Build a SYNTH-schema corpus of real text from Debian packages (offline, deterministic).

The bundled sample (data/sample/) is written for this project; a teacher trained on it learns little. This
tool turns real text that Debian ships into SYNTH rows, so a small GPT-OSS teacher can be trained on it
(benchmarks/quality/train_teacher.py) and distillation quality measured on text with real structure:

    package       source text                                                  language
    bible-kjv     the King James Bible (`bible -f Gen1:1-Rev22:21`: one verse    en
                  a line, "Ge1:1 In the beginning ...")
    fortunes      /usr/share/games/fortunes/* (English collections)            en
    fortunes-de   /usr/share/games/fortunes/de/*                               de
    fortunes-es   /usr/share/games/fortunes/es/*.fortunes                      es
    fortunes-it   /usr/share/games/fortunes/it/*                               it
    python3-doc   the Python 3.11 documentation's reST sources                 en
                  (/usr/share/doc/python3-doc/html/_sources/**/*.rst.txt)

(Debian 12 has no French fortunes package: `fortunes-fr` was dropped after Debian 10.)

Mapping: every row is three consecutive pieces of one source, so real text fills every span.
    query                "Continue this passage ..." + piece A (a short instruction, then the text)
    synthetic_reasoning  piece B, the text that follows A (the `analysis` span)
    synthetic_answer     piece C, the text that follows B (the `final` span)
- KJV: pieces are runs of whole verses ("{chapter}:{verse} {text}", one a line) inside one book; A is
  about 300-800 characters, B 700-1500, C 250-700 (lengths drawn per row by a seeded RNG).
- Fortunes: one collection file at a time; A is one fortune, B the fortunes after it (500-1200
  characters), C the next one or few (150-500), joined by the file's own "\\n%\\n" separator. The
  instruction is in the collection's language. Fortunes over 1500 characters, or mostly non-letters
  (ASCII art), are skipped; backspace overstrikes and control characters are removed.
- Python docs: a file is cut into blank-line-separated blocks (indentation kept, so code stays code;
  Sphinx-only blocks such as `.. index::` and `.. _label:` dropped); pieces are runs of whole blocks,
  A 400-900 characters, B 800-1600, C 300-800. Subfolders used: tutorial, reference, howto, library,
  faq, using, extending, installing, glossary (not whatsnew, c-api, distutils).
Pieces never overlap: a source is tiled A B C A B C ..., so no text of one row appears in another, and
a held-out row's text is unseen in training. `synth_id` is `real_<source>_<tile index>` (e.g.
`real_kjv_000123`): the tile's position in its source, stable whatever the budget or `--max-rows`.
Every row has `exercise` `memorization`, the source excerpt (A + B + C) in `query_seed_text` and a
`debian://<package>/<path>#<locator>` `query_seed_url`.

Selection: each source's tiles are shuffled by a seeded RNG and taken until the source's budget of
o200k tokens in reasoning + answer is met (tiles whose query + reasoning + answer exceed
`MAX_TEXT_TOKENS` are skipped, so every prepared sequence is <= 1024 tokens). The budgets total 640k
supervised text tokens so that the default held-out split (`data.eval_fraction=0.05`, chosen by the
hash of the sample id) holds >= 30k supervised positions and training >= 300k. The selected rows are
shuffled together (seeded); `--max-rows N` keeps the first N of that order (a mix of all sources).

Determinism: only seeded `random.Random` instances (seeded from strings) and sorted file lists; the
Parquet file is written with fixed settings (zstd level 19, one row group), so the same package
versions give a byte-identical file. The summary prints the package versions.

Usage: .venv/bin/python tools/build_real_corpus.py --output data/real/real_corpus.parquet [--max-rows N]
       [--install]    (as root: apt-get install the packages first)
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from random import Random

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SEED = "vpmoe-real-corpus-v1"
PACKAGES = ("bible-kjv", "fortunes", "fortunes-de", "fortunes-es", "fortunes-it", "python3-doc")
APT_COMMAND = "apt-get install -y " + " ".join(PACKAGES)
FORTUNES = Path("/usr/share/games/fortunes")
PYDOC = Path("/usr/share/doc/python3-doc/html/_sources")
PYDOC_DIRS = ("tutorial", "reference", "howto", "library", "faq", "using", "extending", "installing")
PYDOC_FILES = ("glossary.rst.txt",)

# Budgets in o200k tokens of reasoning + answer text per source (the supervised positions are these plus
# ~11 Harmony header tokens per row). 640k in all: at eval_fraction 0.05 about 32k are held out.
BUDGETS = {
    "kjv": 270_000,
    "fortunes_en": 80_000,
    "fortunes_de": 50_000,
    "fortunes_es": 35_000,
    "fortunes_it": 35_000,
    "pydoc": 170_000,
}
# query + reasoning + answer tokens; the system message, headers and stop tokens add ~60 more.
MAX_TEXT_TOKENS = 940

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sample_data import COLUMNS, SCHEMA  # noqa: E402 -- the SYNTH schema, as the bundled sample has it

MODEL = "real-text (no generator)"

# KJV book abbreviations as `bible -f` prints them, in canonical order, with their names.
KJV_BOOKS = {
    "Ge": "Genesis", "Exo": "Exodus", "Lev": "Leviticus", "Num": "Numbers", "Deu": "Deuteronomy",
    "Josh": "Joshua", "Jdgs": "Judges", "Ruth": "Ruth", "1Sm": "1 Samuel", "2Sm": "2 Samuel",
    "1Ki": "1 Kings", "2Ki": "2 Kings", "1Chr": "1 Chronicles", "2Chr": "2 Chronicles", "Ezra": "Ezra",
    "Neh": "Nehemiah", "Est": "Esther", "Job": "Job", "Psa": "Psalms", "Prv": "Proverbs",
    "Eccl": "Ecclesiastes", "SSol": "Song of Solomon", "Isa": "Isaiah", "Jer": "Jeremiah",
    "Lam": "Lamentations", "Eze": "Ezekiel", "Dan": "Daniel", "Hos": "Hosea", "Joel": "Joel",
    "Amos": "Amos", "Obad": "Obadiah", "Jonah": "Jonah", "Mic": "Micah", "Nahum": "Nahum",
    "Hab": "Habakkuk", "Zep": "Zephaniah", "Hag": "Haggai", "Zec": "Zechariah", "Mal": "Malachi",
    "Mat": "Matthew", "Mark": "Mark", "Luke": "Luke", "John": "John", "Acts": "Acts", "Rom": "Romans",
    "1Cor": "1 Corinthians", "2Cor": "2 Corinthians", "Gal": "Galatians", "Eph": "Ephesians",
    "Phi": "Philippians", "Col": "Colossians", "1Th": "1 Thessalonians", "2Th": "2 Thessalonians",
    "1Tim": "1 Timothy", "2Tim": "2 Timothy", "Titus": "Titus", "Phmn": "Philemon", "Heb": "Hebrews",
    "Jas": "James", "1Pet": "1 Peter", "2Pet": "2 Peter", "1Jn": "1 John", "2Jn": "2 John",
    "3Jn": "3 John", "Jude": "Jude", "Rev": "Revelation",
}  # fmt: skip

KJV_QUERIES = (
    "Continue this passage from the King James Bible ({ref}):\n\n{text}",
    "Here is {ref} in the King James Version. Continue the text from where it stops.\n\n{text}",
    "{text}\n\nThis is {ref} (King James Version). What comes next?",
)
FORTUNE_QUERIES = {
    "en": "Here is a fortune from the \u201c{name}\u201d collection:\n\n{text}\n\n"
    "Continue with the fortunes that follow it in the collection.",
    "de": "Hier ist ein Spruch aus der Sammlung \u201e{name}\u201c:\n\n{text}\n\n"
    "Setze die Sammlung mit den Spr\u00fcchen fort, die darauf folgen.",
    "es": "Aqu\u00ed tienes una frase de la colecci\u00f3n \u00ab{name}\u00bb:\n\n{text}\n\n"
    "Contin\u00faa con las frases que la siguen en la colecci\u00f3n.",
    "it": "Ecco una frase della raccolta \u00ab{name}\u00bb:\n\n{text}\n\n"
    "Continua con le frasi che la seguono nella raccolta.",
}
PYDOC_QUERIES = (
    "Continue this passage from the Python 3.11 documentation ({ref}):\n\n{text}",
    "The following is from the Python documentation, {ref}. Continue it.\n\n{text}",
)
LICENSES = {
    "kjv": "Public domain (King James Version; Debian bible-kjv-text)",
    "fortunes": "fortune-mod data, see /usr/share/doc/fortunes/copyright",
    "pydoc": "PSF-2.0 (Python documentation; Debian python3-doc)",
}


class CorpusError(RuntimeError):
    pass


@dataclass
class Tile:
    """Three consecutive pieces of one source, before selection."""

    source: str  # budget key, e.g. "kjv", "fortunes_de"
    index: int  # position among the source's tiles: the stable part of synth_id
    language: str
    query: str
    reasoning: str
    answer: str
    seed_text: str  # the excerpt A + B + C, without the instruction
    seed_url: str
    license: str
    script: str

    @property
    def synth_id(self) -> str:
        return f"real_{self.source}_{self.index:06d}"

    def row(self) -> dict:
        return {
            "synth_id": self.synth_id,
            "language": self.language,
            "exercise": "memorization",
            "model": MODEL,
            "query": self.query,
            "query_seed_url": self.seed_url,
            "query_seed_text": self.seed_text,
            "additional_seed_url": None,
            "seed_license": self.license,
            "constraints": None,
            "script": self.script,
            "synthetic_reasoning": self.reasoning,
            "synthetic_answer": self.answer,
            "words": len(self.reasoning.split()) + len(self.answer.split()),
        }


# --------------------------------------------------------------------------------------------------
# Packages
# --------------------------------------------------------------------------------------------------


def package_versions() -> dict[str, str | None]:
    versions = {}
    for p in PACKAGES:
        try:
            out = subprocess.run(
                ["dpkg-query", "-W", "-f=${Status}\t${Version}", p],
                capture_output=True,
                text=True,
                check=False,
            )
        except FileNotFoundError:  # not a Debian system
            versions[p] = None
            continue
        status, _, version = out.stdout.partition("\t")
        versions[p] = version if out.returncode == 0 and status.endswith(" installed") else None
    return versions


def missing_sources() -> list[str]:
    """What is missing on this machine, as human-readable lines (empty: all sources present)."""
    missing = []
    if shutil.which("bible") is None:
        missing.append("the `bible` program (package bible-kjv)")
    for lang, pkg in (("de", "fortunes-de"), ("es", "fortunes-es"), ("it", "fortunes-it")):
        if not (FORTUNES / lang).is_dir():
            missing.append(f"{FORTUNES / lang} (package {pkg})")
    if not (FORTUNES / "cookie").is_file():
        missing.append(f"{FORTUNES}/cookie (package fortunes)")
    if not (PYDOC / "library").is_dir():
        missing.append(f"{PYDOC} (package python3-doc)")
    return missing


def ensure_packages(install: bool) -> None:
    missing = missing_sources()
    if not missing:
        return
    if install:
        if os.geteuid() != 0:
            raise CorpusError(f"--install needs root; run as root: {APT_COMMAND}")
        print(f"installing: {APT_COMMAND}", flush=True)
        subprocess.run(APT_COMMAND.split(), check=True)
        missing = missing_sources()
        if not missing:
            return
    raise CorpusError(
        "missing source text: " + "; ".join(missing) + f". Install it with:\n  sudo {APT_COMMAND}\n"
        "(or rerun this tool as root with --install)"
    )


# --------------------------------------------------------------------------------------------------
# Reading and cleaning
# --------------------------------------------------------------------------------------------------

_OVERSTRIKE = re.compile(r".\x08")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean(text: str) -> str:
    """Remove backspace overstrikes and control characters (tabs and newlines stay), NFC-normalize, strip
    trailing spaces of every line and blank lines at both ends."""
    text = _CONTROL.sub("", _OVERSTRIKE.sub("", text.replace("\r\n", "\n")))
    text = unicodedata.normalize("NFC", text)
    lines = [ln.rstrip() for ln in text.split("\n")]
    return "\n".join(lines).strip("\n")


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 ({e})") from None


def kjv_verses() -> list[tuple[str, str, str]]:
    """(book abbreviation, "chapter:verse", text) for every verse, in order."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}  # no COLUMNS: no wrapping
    out = subprocess.run(
        ["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, check=True, env=env, stdin=subprocess.DEVNULL
    ).stdout.decode("utf-8")
    verses = []
    pat = re.compile(r"^([1-3]?[A-Za-z]+)(\d+:\d+) (.*)$")
    for line in out.splitlines():
        if not line.strip():
            continue
        m = pat.match(line)
        if m is None or m.group(1) not in KJV_BOOKS:
            raise CorpusError(f"`bible -f` printed an unexpected line: {line[:80]!r}")
        verses.append((m.group(1), m.group(2), clean(m.group(3))))
    if len(verses) != 31102:
        raise CorpusError(f"`bible -f Gen1:1-Rev22:21` printed {len(verses)} verses, expected 31102")
    return verses


def fortune_files() -> dict[str, list[Path]]:
    """Collection files per language (regular files only: the .u8 and top-level links are aliases)."""

    def regular(folder: Path, pattern: str) -> list[Path]:
        return sorted(
            p for p in folder.glob(pattern)
            if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8") and p.name not in ASCII_ART
        )  # fmt: skip

    return {
        "en": regular(FORTUNES, "*"),
        "de": regular(FORTUNES / "de", "*"),
        "es": regular(FORTUNES / "es", "*.fortunes"),
        "it": regular(FORTUNES / "it", "*"),
    }


def read_fortunes(path: Path) -> list[str]:
    items = []
    for raw in re.split(r"^%[ \t]*$", read_text(path), flags=re.M):
        text = clean(raw)
        if not text or len(text) > 1500:
            continue
        letters = sum(ch.isalpha() for ch in text)
        if letters < 0.5 * len(text.replace(" ", "").replace("\n", "")):
            continue  # ASCII art, tables of symbols
        items.append(text)
    return items


ASCII_ART = ("ascii-art", "asciiart")  # pictures, not text


_SPHINX_ONLY = re.compile(
    r"^\.\. (index::|_|highlight::|moduleauthor::|sectionauthor::|testsetup::|testcleanup::|XXX|"
    r"toctree::|only::|raw::|include::|literalinclude::|impl-detail::|audit-event::)"
)


def pydoc_files() -> list[Path]:
    files = [PYDOC / f for f in PYDOC_FILES if (PYDOC / f).is_file()]
    for d in PYDOC_DIRS:
        files += sorted((PYDOC / d).rglob("*.rst.txt"))
    return sorted(files)


def pydoc_blocks(path: Path, max_chars: int = 1200) -> list[str]:
    """Blank-line-separated blocks of one reST file, Sphinx-only blocks and rules dropped, long blocks cut
    at line boundaries into pieces of at most `max_chars` (a single longer line is kept whole)."""
    blocks = []
    for raw in re.split(r"\n[ \t]*\n", clean(read_text(path))):
        block = raw.strip("\n")
        first = block.lstrip()
        if not block.strip() or _SPHINX_ONLY.match(first) or re.fullmatch(r"[-=~*^#]{4,}", first):
            continue
        if block.rstrip() == "..":  # an empty reST comment
            continue
        piece: list[str] = []
        size = 0
        for line in block.split("\n"):
            if piece and size + len(line) + 1 > max_chars:
                blocks.append("\n".join(piece))
                piece, size = [], 0
            piece.append(line)
            size += len(line) + 1
        if piece:
            blocks.append("\n".join(piece))
    return blocks


# --------------------------------------------------------------------------------------------------
# Tiling: consecutive pieces A B C of whole units (verses, fortunes, blocks)
# --------------------------------------------------------------------------------------------------


def take(units: list[str], start: int, target: int, sep: str) -> tuple[int, str] | None:
    """Whole units from `start` until at least `target` characters (at least one unit); None if there are
    no units left. Returns (next start, joined text)."""
    if start >= len(units):
        return None
    end, size = start, 0
    while end < len(units) and (end == start or size < target):
        size += len(units[end]) + len(sep)
        end += 1
    return end, sep.join(units[start:end])


def tile_units(units: list[str], rng: Random, ranges: tuple[tuple[int, int], ...], sep: str):
    """Yield (first unit, A, B, C) over `units`, drawing each piece's target length from `ranges`."""
    pos = 0
    while True:
        start = pos
        pieces = []
        for lo, hi in ranges:
            got = take(units, pos, rng.randint(lo, hi), sep)
            if got is None:
                return
            pos, text = got
            pieces.append(text)
        yield start, *pieces


def kjv_tiles() -> list[Tile]:
    verses = kjv_verses()
    rng = Random(f"{SEED}/kjv")
    tiles: list[Tile] = []
    by_book: dict[str, list[tuple[str, str, str]]] = {}
    for v in verses:
        by_book.setdefault(v[0], []).append(v)
    for abbr, book in by_book.items():
        units = [f"{ref} {text}" for _, ref, text in book]
        name = KJV_BOOKS[abbr]
        for start, a, b, c in tile_units(units, rng, ((300, 800), (700, 1500), (250, 700)), "\n"):
            n_a = a.count("\n") + 1
            n_all = n_a + b.count("\n") + 1 + c.count("\n") + 1
            first, last_a, last = book[start][1], book[start + n_a - 1][1], book[start + n_all - 1][1]
            query = rng.choice(KJV_QUERIES).format(ref=f"{name} {first}-{last_a}", text=a)
            tiles.append(
                Tile(
                    source="kjv", index=len(tiles), language="en", query=query, reasoning=b, answer=c,
                    seed_text=f"{name}\n\n{a}\n{b}\n{c}",
                    seed_url=f"debian://bible-kjv-text/usr/lib/bible.data#{abbr}{first}-{abbr}{last}",
                    license=LICENSES["kjv"], script="real_kjv_continuation_v1",
                )
            )  # fmt: skip
    return tiles


def fortune_tiles() -> list[Tile]:
    tiles: list[Tile] = []
    for lang, files in fortune_files().items():
        rng = Random(f"{SEED}/fortunes_{lang}")
        source = f"fortunes_{lang}"
        n = 0
        for path in files:
            items = read_fortunes(path)
            rel = path.relative_to(FORTUNES)
            name = str(rel).removesuffix(".fortunes")
            pkg = "fortunes" if lang == "en" else f"fortunes-{lang}"
            pos = 0
            while pos + 3 <= len(items):
                a = items[pos]
                got_b = take(items, pos + 1, rng.randint(500, 1200), "\n%\n")
                got_c = take(items, got_b[0], rng.randint(150, 500), "\n%\n") if got_b else None
                if got_c is None:
                    break
                tiles.append(
                    Tile(
                        source=source, index=n, language=lang,
                        query=FORTUNE_QUERIES[lang].format(name=name, text=a),
                        reasoning=got_b[1], answer=got_c[1], seed_text="\n%\n".join((a, got_b[1], got_c[1])),
                        seed_url=f"debian://{pkg}/usr/share/games/fortunes/{rel}#{pos}-{got_c[0] - 1}",
                        license=LICENSES["fortunes"], script="real_fortunes_continuation_v1",
                    )
                )  # fmt: skip
                n += 1
                pos = got_c[0]
    return tiles


def pydoc_tiles() -> list[Tile]:
    rng = Random(f"{SEED}/pydoc")
    tiles: list[Tile] = []
    for path in pydoc_files():
        rel = str(path.relative_to(PYDOC)).removesuffix(".txt")
        blocks = pydoc_blocks(path)
        for start, a, b, c in tile_units(blocks, rng, ((400, 900), (800, 1600), (300, 800)), "\n\n"):
            query = rng.choice(PYDOC_QUERIES).format(ref=rel, text=a)
            tiles.append(
                Tile(
                    source="pydoc", index=len(tiles), language="en", query=query, reasoning=b, answer=c,
                    seed_text="\n\n".join((a, b, c)),
                    seed_url=f"debian://python3-doc/usr/share/doc/python3-doc/html/_sources/{rel}.txt#block{start}",
                    license=LICENSES["pydoc"], script="real_pydoc_continuation_v1",
                )
            )  # fmt: skip
    return tiles


# --------------------------------------------------------------------------------------------------
# Selection and output
# --------------------------------------------------------------------------------------------------


def count_tokens():
    from vpmoe.tokenizer import load_harmony

    enc = load_harmony()
    return lambda text: len(enc.encode(text, disallowed_special=()))


def select(tiles: list[Tile], budgets: dict[str, int], ntok) -> tuple[list[dict], dict[str, Counter]]:
    by_source: dict[str, list[Tile]] = {}
    for t in tiles:
        by_source.setdefault(t.source, []).append(t)
    rows: list[dict] = []
    stats: dict[str, Counter] = {}
    for source in sorted(by_source):
        pool = by_source[source]
        order = list(range(len(pool)))
        Random(f"{SEED}/select/{source}").shuffle(order)
        st = stats[source] = Counter(tiles=len(pool))
        for i in order:
            if st["supervised_text_tokens"] >= budgets[source]:
                break
            t = pool[i]
            q, r, a = ntok(t.query), ntok(t.reasoning), ntok(t.answer)
            if q + r + a > MAX_TEXT_TOKENS:
                st["skipped_too_long"] += 1
                continue
            rows.append(t.row())
            st["rows"] += 1
            st["query_tokens"] += q
            st["supervised_text_tokens"] += r + a
            st["chars"] += len(t.query) + len(t.reasoning) + len(t.answer)
    Random(f"{SEED}/order").shuffle(rows)
    return rows, stats


def write(rows: list[dict], out: Path) -> None:
    from vpmoe.utils.atomic import commit_file

    table = pa.Table.from_pylist([{c: r[c] for c in COLUMNS} for r in rows], schema=SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", compression_level=19, row_group_size=max(1, len(rows)))
    out.parent.mkdir(parents=True, exist_ok=True)
    commit_file(out, buf.getvalue())


EVAL_FRACTION = 0.05  # the trainer's default data.eval_fraction, which train_teacher.py uses too


def _id_hash(synth_id: str, part: int) -> int:
    """64-bit slice `part` of sha256(synth_id): part 0 is `vpmoe.train.data.is_held_out`'s (reimplemented
    to keep torch out of this tool), part 1 an independent one for `--train-share`."""
    import hashlib

    return int.from_bytes(hashlib.sha256(synth_id.encode()).digest()[8 * part : 8 * part + 8], "big")


def is_held_out(synth_id: str, fraction: float = EVAL_FRACTION) -> bool:
    return _id_hash(synth_id, 0) < fraction * 2**64


def held_out_share(rows: list[dict], ntok, fraction: float = EVAL_FRACTION) -> tuple[int, int]:
    """(rows, reasoning + answer tokens) that `vpmoe.train.data.is_held_out` would hold out at `fraction`."""
    n = toks = 0
    for r in rows:
        if is_held_out(r["synth_id"], fraction):
            n += 1
            toks += ntok(r["synthetic_reasoning"]) + ntok(r["synthetic_answer"])
    return n, toks


def train_subset(rows: list[dict], train_share: float) -> list[dict]:
    """Every row held out at EVAL_FRACTION, and the others whose independent hash falls below
    `train_share` (order kept)."""
    if train_share >= 1.0:
        return rows
    return [r for r in rows if is_held_out(r["synth_id"]) or _id_hash(r["synth_id"], 1) < train_share * 2**64]


def build(max_rows: int | None = None, train_share: float = 1.0) -> tuple[list[dict], dict[str, Counter]]:
    """`train_share` < 1 keeps every row held out at EVAL_FRACTION and that share of the others, chosen
    by an independent hash of synth_id: a smaller training set whose held-out rows are exactly the full
    corpus's, so a teacher trained on the full corpus never saw them (benchmarks/quality/README.md)."""
    tiles = kjv_tiles() + fortune_tiles() + pydoc_tiles()
    ntok = count_tokens()
    rows, stats = select(tiles, BUDGETS, ntok)
    rows = train_subset(rows, train_share)
    if max_rows is not None:
        rows = rows[:max_rows]
    return rows, stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, required=True, help="Parquet file to write")
    ap.add_argument(
        "--max-rows", type=int, default=None, help="keep only the first N rows (a mix of sources)"
    )
    ap.add_argument(
        "--install", action="store_true", help=f"as root, run `{APT_COMMAND}` if anything is missing"
    )
    ap.add_argument(
        "--train-share",
        type=float,
        default=1.0,
        help=f"keep every row held out at eval_fraction {EVAL_FRACTION} and this share of the others",
    )
    args = ap.parse_args(argv)
    if args.max_rows is not None and args.max_rows < 1:
        ap.error("--max-rows must be >= 1")
    if not 0.0 < args.train_share <= 1.0:
        ap.error("--train-share must be in (0, 1]")
    try:
        ensure_packages(args.install)
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    rows, stats = build(args.max_rows, args.train_share)
    write(rows, args.output)
    ntok = count_tokens()
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes, {len(rows)} rows)")
    print("packages: " + ", ".join(f"{p}={v}" for p, v in package_versions().items()))
    kept = Counter(r["synth_id"].rsplit("_", 1)[0].removeprefix("real_") for r in rows)
    print(f"{'source':<13} {'tiles':>6} {'rows':>6} {'written':>7} {'chars':>10} {'query tok':>10} "
          f"{'reas+ans tok':>12} {'too long':>8}")  # fmt: skip
    tot = Counter()
    for source, st in sorted(stats.items()):
        print(f"{source:<13} {st['tiles']:>6} {st['rows']:>6} {kept[source]:>7} {st['chars']:>10,} "
              f"{st['query_tokens']:>10,} {st['supervised_text_tokens']:>12,} {st['skipped_too_long']:>8}")  # fmt: skip
        tot.update(st)
    print(f"{'total':<13} {tot['tiles']:>6} {tot['rows']:>6} {len(rows):>7} {tot['chars']:>10,} "
          f"{tot['query_tokens']:>10,} {tot['supervised_text_tokens']:>12,}")  # fmt: skip
    if args.train_share < 1.0:
        print(
            f"(--train-share {args.train_share}: every held-out row, that share of the others: {len(rows)} rows)"
        )
    if args.max_rows is not None:
        print(f"(--max-rows {args.max_rows}: the selection above, cut to the first {len(rows)} rows)")
    n_held, tok_held = held_out_share(rows, ntok)
    print(f"held out at eval_fraction {EVAL_FRACTION} (sha256 of synth_id): {n_held} rows, {tok_held:,} reasoning+answer "
          "tokens (+~11 Harmony header positions per row)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
