"""vpmoe.utils.storage against the local file system and a real S3-compatible server (moto, server mode):
the same calls give the same results on both, failures name the URL, and ranged reads are single GETs
(counted on the server)."""

from __future__ import annotations

import gc
import io
import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vpmoe.utils import storage
from vpmoe.utils.storage import StorageConfig, StorageError

DATA = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "root")
    return storage.join(request.getfixturevalue("s3_bucket"), "root")


def _key_path(url: str) -> str:
    """The server-side request path of an s3:// URL."""
    parts = urlsplit(url)
    return f"/{parts.netloc}{parts.path}"


def test_is_remote_and_join():
    assert storage.is_remote("s3://b/k") and not storage.is_remote("/a/b")
    assert not storage.is_remote("file:///a/b") and not storage.is_remote("rel/x")
    with pytest.raises(StorageError, match=r"unsupported.*gs://b/k"):
        storage.is_remote("gs://b/k")
    assert storage.join("s3://b/", "x/", "y") == "s3://b/x/y"
    assert storage.join("/a", "x", "y") == "/a/x/y"
    with pytest.raises(StorageError, match="absolute"):
        storage.join("/a", "/etc")


def test_round_trip_same_on_local_and_s3(root):
    f = storage.join(root, "sub", "a.bin")
    assert not storage.exists(f)
    storage.write_bytes(f, DATA)
    storage.write_bytes(storage.join(root, "sub", "deeper", "b.txt"), "héllo\n".encode())
    storage.write_bytes(storage.join(root, "top.txt"), b"x")
    assert storage.exists(f) and storage.exists(storage.join(root, "sub"))
    assert storage.read_bytes(f) == DATA
    assert storage.read_text(storage.join(root, "sub", "deeper", "b.txt")) == "héllo\n"
    assert storage.read_range(f, 1000, 1300) == DATA[1000:1300]
    assert storage.read_range(f, 10000, 10240) == DATA[10000:]
    assert storage.read_range(f, 5, 5) == b""
    assert storage.size(f) == len(DATA)
    assert storage.listdir(root) == ["sub", "top.txt"]
    assert storage.listdir(storage.join(root, "sub")) == ["a.bin", "deeper"]
    storage.write_bytes(f, b"replaced")
    assert storage.read_bytes(f) == b"replaced"
    with pytest.raises(StorageError, match=r"directory|prefix"):
        storage.remove(storage.join(root, "sub"))
    storage.remove(f)
    assert not storage.exists(f)
    storage.remove(storage.join(root, "sub"), recursive=True)
    assert storage.listdir(root) == ["top.txt"]


def test_failures_name_the_path_and_range(root):
    missing = storage.join(root, "no", "such.bin")
    for call in (storage.read_bytes, storage.size, storage.remove, storage.listdir, storage.open_input):
        with pytest.raises(StorageError) as err:
            call(missing)
        assert missing in str(err.value), call
    f = storage.join(root, "a.bin")
    storage.write_bytes(f, DATA)
    with pytest.raises(StorageError, match=r"bytes \[10000, 10300\).*truncated") as err:
        storage.read_range(f, 10000, 10300)
    assert f in str(err.value)
    with pytest.raises(StorageError, match=r"bytes \[20000, 20100\)") as err:  # entirely past the end
        storage.read_range(f, 20000, 20100)
    assert f in str(err.value)
    with pytest.raises(StorageError, match=r"not a regular file|not an object"):
        storage.size(root)
    with pytest.raises(StorageError, match="listdir"):
        storage.listdir(f)


def test_missing_object_error_names_the_full_url(s3_bucket):
    url = f"{s3_bucket}/deep/prefix/missing.bin"
    with pytest.raises(StorageError) as err:
        storage.read_range(url, 0, 10)
    assert f"{url} bytes [0, 10)" in str(err.value)


def test_read_range_is_one_get_with_the_range_header(s3_server, s3_bucket):
    url = f"{s3_bucket}/obj.bin"
    storage.write_bytes(url, DATA)
    with s3_server.count_requests() as reqs:
        assert storage.read_range(url, 100, 200) == DATA[100:200]
    assert reqs == [("GET", _key_path(url), "bytes=100-199")]


def test_whole_object_reads_are_one_get_each(s3_server, s3_bucket):
    urls = [f"{s3_bucket}/whole{i}.bin" for i in range(3)]
    for u in urls:
        storage.write_bytes(u, DATA)
    with s3_server.count_requests() as reqs:
        assert storage.read_bytes(urls[0]) == DATA
    assert [(r.method, r.path, r.range) for r in reqs] == [("GET", _key_path(urls[0]), None)]
    with s3_server.count_requests() as reqs:
        assert storage.read_many([*urls, f"{s3_bucket}/absent.bin"]) == {
            **dict.fromkeys(urls, DATA),
            f"{s3_bucket}/absent.bin": None,
        }
    assert sorted((r.method, r.path) for r in reqs) == sorted(
        ("GET", _key_path(u)) for u in [*urls, f"{s3_bucket}/absent.bin"]
    )


def test_write_bytes_is_one_put(s3_server, s3_bucket):
    url = f"{s3_bucket}/w.bin"
    with s3_server.count_requests() as reqs:
        storage.write_bytes(url, DATA)
    assert [(r.method, r.path) for r in reqs] == [("PUT", _key_path(url))]


def test_put_tree_uploads_every_file_with_relative_keys(s3_bucket, tmp_path):
    src = tmp_path / "tree"
    for rel in ("a.bin", "sub/b.bin", "sub/deeper/c.json"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(rel.encode() * 3)
    for dst in (f"{s3_bucket}/out", str(tmp_path / "local-out")):
        keys = storage.put_tree(src, dst)
        assert keys == ["a.bin", "sub/b.bin", "sub/deeper/c.json"]
        for rel in keys:
            assert storage.read_bytes(storage.join(dst, rel)) == rel.encode() * 3
        assert storage.listdir(storage.join(dst, "sub")) == ["b.bin", "deeper"]
    storage.put_file(src / "a.bin", f"{s3_bucket}/single.bin")
    assert storage.read_bytes(f"{s3_bucket}/single.bin") == b"a.bin" * 3


def test_parquet_row_group_read_fetches_only_what_it_needs(s3_server, s3_bucket, tmp_path):
    rng = np.random.default_rng(0)
    n = 200_000
    table = pa.table({"a": rng.integers(0, 2**62, n), "b": rng.random(n), "c": rng.integers(0, 9, n)})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=n // 10, compression="none")
    blob = buf.getvalue()
    url = f"{s3_bucket}/t.parquet"
    storage.write_bytes(url, blob)
    local = pq.ParquetFile(io.BytesIO(blob))
    assert local.num_row_groups == 10
    with s3_server.count_requests() as reqs:
        remote = pq.ParquetFile(storage.open_input(url), **storage.PYTHON_SOURCE_READ)  # as the stages read
        got = remote.read_row_group(7, columns=["b"])
    assert got.equals(local.read_row_group(7, columns=["b"]))
    gets = [r for r in reqs if r.method == "GET"]
    assert gets and all(r.path == _key_path(url) and r.range for r in gets), reqs
    fetched = sum(r.range_length for r in gets)
    assert fetched < len(blob) / 10, (fetched, len(blob), reqs)  # one column chunk of one row group + footer
    assert len(reqs) <= 4, reqs  # HEAD (size), footer, column chunk


def test_spawned_child_reads_a_range(s3_bucket):
    url = f"{s3_bucket}/spawn.bin"
    storage.write_bytes(url, DATA)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(storage.read_range, url, 300, 400).result(timeout=60) == DATA[300:400]


def _in_fork(fn) -> object:
    """Run `fn` in a forked child; its result (or exception) comes back pickled. The objects the child
    inherits are frozen out of its garbage collector (gc.freeze, what forking servers do): finalizers of
    other tests' objects can touch thread-owned state that does not exist after a fork (CI once saw the
    child segfault collecting them inside botocore's JSON load), which is not what this tests."""
    r, w = os.pipe()
    gc.freeze()
    pid = os.fork()
    gc.unfreeze()  # both processes: the child's own new objects are collected as usual
    if pid == 0:  # child: never return into pytest
        os.close(r)
        try:
            out = ("ok", fn())
        except BaseException as e:
            out = ("err", f"{type(e).__name__}: {e}")
        with os.fdopen(w, "wb") as f:
            pickle.dump(out, f)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = pickle.load(f)
    os.waitpid(pid, 0)
    return out


def test_after_fork_functions_work_and_inherited_handles_fail_loudly(s3_bucket):
    url = f"{s3_bucket}/fork.bin"
    storage.write_bytes(url, DATA)
    assert storage.read_range(url, 0, 10) == DATA[:10]  # the parent's file system exists before the fork
    assert _in_fork(lambda: storage.read_range(url, 20, 30)) == ("ok", DATA[20:30])
    handle = storage.open_input(url)
    status, message = _in_fork(lambda: handle.read(10))
    assert status == "err" and "fork-safe" in message


def test_storage_config_apply_sets_the_endpoint(s3_server, s3_bucket, monkeypatch):
    url = f"{s3_bucket}/cfg.bin"
    storage.write_bytes(url, DATA)
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, "registered-for-restore")  # apply() writes os.environ directly
        monkeypatch.delenv(key)
    StorageConfig(endpoint_url=s3_server.endpoint_url, region="us-east-1").apply()
    assert os.environ["AWS_ENDPOINT_URL_S3"] == s3_server.endpoint_url
    assert os.environ["AWS_REGION"] == "us-east-1"
    assert storage.read_range(url, 7, 9) == DATA[7:9]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(storage.read_range, url, 1, 4).result(timeout=60) == DATA[1:4]
