"""The one I/O layer for local paths and `s3://bucket/key` URLs: every stage reads and writes through it.

Paths: a plain path or `file://...` is local; `s3://bucket/key` is an object in an S3-compatible store,
reached through s3fs (botocore underneath); any other protocol is refused. Every failure is a
`StorageError` naming the full path or URL (and the byte range of a ranged read), with the underlying
exception chained.

Endpoint, region, credentials: the standard AWS variables and files, resolved by botocore itself
(`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, `AWS_PROFILE`, ~/.aws/*, instance or
pod roles). `StorageConfig` can set the endpoint and region (never credentials) and exports them, so
child processes resolve the same store.

Request shape (what the s3fs options below buy): `read_range` is exactly one ranged GET; `open_input`
returns an uncached file, so each `read` after a `seek` is one GET of exactly the bytes asked for (pyarrow
reads a Parquet footer and then only the column chunks it needs, never the whole object), plus one HEAD
when it is opened (for the size). Listings are never cached, so `exists`/`listdir` see other processes'
writes at once. Whole-object reads (`read_bytes`, `read_many`) are one GET each: s3fs would first HEAD
the object to split a large one into concurrent block GETs, which doubled the requests (and latency) of
the small objects we read whole (array metadata, markers, manifests) when a reader opens thousands of
shards.

Processes: the S3 file system object is looked up per call in fsspec's instance cache, keyed by our
options and the process id. Spawned children (DataLoader workers with the "spawn" context,
subprocesses) start clean and find the settings in their environment. After `fork` fsspec empties its
instance cache and event loop in the child, so every function here works there too; but a file object
from `open_input` must not cross a fork (fsspec raises "This class is not fork-safe" when it is used in
the child): open it again in the worker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vpmoe.utils.atomic import commit_file, fsync_dir

PathLike = str | os.PathLike
# The threshold s3fs compares before it switches a write to a multipart upload (and its part size), and
# the piece size of `sha256`. Ranged and file-object reads never read ahead (cache "none").
BLOCK_SIZE = 16 * 2**20

# How Parquet is read from a Python-owned source (a Python file object, or bytes): no pre-buffering,
# and `use_threads=False` on the read. Pages read that way are Python objects. Pre-buffering fetches
# them on Arrow's I/O threads and threaded decoding frees them on its CPU threads, possibly after the
# read has returned. If the interpreter is finalizing by then, that thread cannot take the GIL, unwinds
# through a noexcept destructor and aborts the process (std::terminate: rc -6 after a clean CLI run,
# caught in gdb on `pipelines.score`). Read this way, every read and release happens on the caller's
# thread before the call returns. Each column chunk is still one ranged read on S3.
PYTHON_SOURCE_READ = {"pre_buffer": False}


class StorageError(RuntimeError):
    """A storage operation failed; the message names the path or URL (and byte range) involved."""


@dataclass(kw_only=True)
class StorageConfig:
    """Where the S3-compatible store is. None leaves the environment's (or botocore's) choice alone.

    Credentials are deliberately not configurable here: they come only from the standard AWS
    environment variables and files, so they never land in a config file, a log or a report.
    """

    endpoint_url: str | None = None
    region: str | None = None

    def apply(self) -> None:
        """Make the settings effective for this process and every child process started afterwards.

        They are exported as the standard variables botocore reads itself (`AWS_ENDPOINT_URL_S3`,
        `AWS_REGION`/`AWS_DEFAULT_REGION`), so spawned workers and subprocesses inherit them, and
        fsspec's cached file systems are dropped so the next call builds one with the new settings.
        The endpoint goes to the S3-only variable, not `AWS_ENDPOINT_URL`: the global one would also
        redirect STS, which pod-role (web identity) credentials are fetched from.
        """
        if self.endpoint_url is not None:
            os.environ["AWS_ENDPOINT_URL_S3"] = self.endpoint_url
        if self.region is not None:
            os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = self.region
        # Only a loaded s3fs can hold file systems built with old settings; local-only runs never load it
        # (nor botocore), so the trainer runs where only the local-path dependencies are installed.
        s3fs = sys.modules.get("s3fs")
        if s3fs is not None:
            s3fs.S3FileSystem.clear_instance_cache()


def is_remote(path: PathLike) -> bool:
    """True for `s3://` URLs, False for local paths and `file://` URLs; StorageError for other protocols."""
    p = os.fspath(path)
    if "://" not in p:
        return False
    scheme = p.split("://", 1)[0].lower()
    if scheme == "s3":
        return True
    if scheme == "file":
        return False
    raise StorageError(f"unsupported storage protocol {scheme!r} in {p} (supported: local paths, s3://)")


def _local(path: PathLike) -> str:
    p = os.fspath(path)
    return p[len("file://") :] if p.lower().startswith("file://") else p


def join(base: PathLike, *parts: PathLike) -> str:
    """`base` with `parts` appended, as a str. Parts are relative: a part starting with "/" is an error
    (os.path.join would silently drop `base`)."""
    names = [os.fspath(p) for p in parts]
    for name in names:
        if name.startswith("/"):
            raise StorageError(f"cannot join absolute part {name!r} onto {os.fspath(base)}")
    if is_remote(base):
        return "/".join([os.fspath(base).rstrip("/"), *(n.strip("/") for n in names if n.strip("/"))])
    return os.path.join(_local(base), *names)


def _fs():
    """The process's S3 file system (fsspec caches it per options and pid; building it is cheap after)."""
    import s3fs

    env = os.environ
    # botocore's own precedence (service-specific first); passed explicitly so that a changed variable
    # changes fsspec's cache key instead of reusing a client built for the old endpoint.
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    return s3fs.S3FileSystem(
        endpoint_url=endpoint,
        client_kwargs={"region_name": region} if region else None,
        default_block_size=BLOCK_SIZE,
        default_fill_cache=False,
        default_cache_type="none",
        use_listings_cache=False,
    )


@contextlib.contextmanager
def _errors(op: str, path: PathLike, rng: tuple[int, int] | None = None) -> Iterator[None]:
    """Turn storage failures (not bugs such as TypeError) into a StorageError naming path and range."""
    failures: tuple[type[BaseException], ...] = (OSError, ValueError)
    # botocore errors can only occur once s3fs (hence botocore) is loaded; local-only use never imports it.
    exc = sys.modules.get("botocore.exceptions")
    if exc is not None:
        failures += (exc.BotoCoreError, exc.ClientError)
    try:
        yield
    except StorageError:
        raise
    except failures as e:
        where = os.fspath(path) + ("" if rng is None else f" bytes [{rng[0]}, {rng[1]})")
        raise StorageError(f"{op} {where} failed: {type(e).__name__}: {e}") from e


def exists(path: PathLike) -> bool:
    """Whether a file/object or a directory/prefix exists at `path`."""
    with _errors("exists", path):
        if not is_remote(path):
            return os.path.exists(_local(path))
        fs, url = _fs(), os.fspath(path)
        if "/" not in fs._strip_protocol(url).strip("/"):
            return fs.exists(url)  # a bucket: s3fs probes it (HEAD bucket)
        try:
            fs.info(url)
        except FileNotFoundError:
            return False
        return True


def size(path: PathLike) -> int:
    """Size in bytes of the file/object at `path` (a directory/prefix is an error)."""
    with _errors("size", path):
        if not is_remote(path):
            st = os.stat(_local(path))
            if not stat.S_ISREG(st.st_mode):
                raise StorageError(f"size {os.fspath(path)} failed: not a regular file")
            return st.st_size
        info = _fs().info(os.fspath(path))
        if info["type"] != "file":
            raise StorageError(f"size {os.fspath(path)} failed: not an object (a prefix)")
        return int(info["size"])


def listdir(path: PathLike) -> list[str]:
    """Sorted names of the direct children of `path`: files/objects and directories/prefixes."""
    with _errors("listdir", path):
        if not is_remote(path):
            return sorted(os.listdir(_local(path)))
        fs, url = _fs(), os.fspath(path)
        entries = fs.ls(url, detail=True)
        own = fs._strip_protocol(url).rstrip("/")
        if len(entries) == 1 and entries[0]["type"] == "file" and entries[0]["name"].rstrip("/") == own:
            raise StorageError(f"listdir {url} failed: it is an object, not a prefix")
        return sorted({e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries} - {""})


def read_bytes(path: PathLike) -> bytes:
    """The whole content of the file/object at `path`."""
    with _errors("read", path):
        if not is_remote(path):
            return Path(_local(path)).read_bytes()
        return _fs().cat_file(os.fspath(path), max_concurrency=1)  # one GET, no HEAD (module docstring)


def read_text(path: PathLike) -> str:
    """The whole content of `path`, decoded as UTF-8 (a decoding error is a StorageError too)."""
    data = read_bytes(path)
    with _errors("decode (UTF-8)", path):
        return data.decode("utf-8")


def read_range(path: PathLike, start: int, end: int) -> bytes:
    """Bytes [start, end) of `path`: exactly one ranged GET on S3, pread locally.

    Fewer bytes than asked (the range runs past the end) is a StorageError ("truncated"); an empty
    range returns b"" without any I/O."""
    if not 0 <= start <= end:
        raise StorageError(f"read {os.fspath(path)} bytes [{start}, {end}) failed: invalid range")
    if start == end:
        return b""
    with _errors("read", path, (start, end)):
        if is_remote(path):
            data = _fs().cat_file(os.fspath(path), start=start, end=end)
        else:
            fd = os.open(_local(path), os.O_RDONLY)
            try:
                chunks, at = [], start
                while at < end:  # pread may return less than asked only at EOF (or for huge reads)
                    got = os.pread(fd, end - at, at)
                    if not got:
                        break
                    chunks.append(got)
                    at += len(got)
            finally:
                os.close(fd)
            data = b"".join(chunks)
    if len(data) != end - start:
        raise StorageError(
            f"read {os.fspath(path)} bytes [{start}, {end}) failed: truncated "
            f"(got {len(data)} of {end - start} bytes; the range runs past the end)"
        )
    return data


def open_input(path: PathLike) -> BinaryIO:
    """A seekable binary file for random access (for Parquet: `pq.ParquetFile(open_input(url),
    **PYTHON_SOURCE_READ)` and `use_threads=False` on its reads: `PYTHON_SOURCE_READ` says why).

    On S3 each `read` after a `seek` is one ranged GET of exactly the bytes asked for (no read-ahead),
    so it suits few large reads, not many small sequential ones (use `read_bytes` for those). Errors
    during later reads are raised by s3fs (OSError), not wrapped. Do not use it across a fork."""
    with _errors("open", path):
        if not is_remote(path):
            return open(_local(path), "rb")  # the caller owns (and closes) the file
        return _fs().open(os.fspath(path), "rb")


def read_many(paths: list[PathLike]) -> dict[str, bytes | None]:
    """{path: content, or None where nothing exists}, in the order given. On S3 one concurrent batch of
    GETs (a thousand shard markers in about the time of a few), so opening a large store stays fast."""
    keys = [os.fspath(p) for p in paths]
    out: dict[str, bytes | None] = {}
    remote = [k for k in keys if is_remote(k)]
    if remote:
        fs = _fs()
        with _errors("read", remote[0] + (f" (and {len(remote) - 1} more)" if len(remote) > 1 else "")):
            got = fs.cat(remote, on_error="return", max_concurrency=1)  # a GET each, no HEAD
        for k in remote:
            v = got.get(k, got.get(fs._strip_protocol(k)))
            if isinstance(v, FileNotFoundError):
                v = None
            elif isinstance(v, BaseException):
                raise StorageError(f"read {k} failed: {type(v).__name__}: {v}") from v
            out[k] = v
    for k in keys:
        if not is_remote(k):
            try:
                out[k] = Path(_local(k)).read_bytes()
            except FileNotFoundError:
                out[k] = None
            except OSError as e:
                raise StorageError(f"read {k} failed: {type(e).__name__}: {e}") from e
    return {k: out[k] for k in keys}


def find(path: PathLike) -> dict[str, int]:
    """Every file/object under the directory/prefix `path`: {relative "/"-separated key: size in bytes}
    (empty when `path` does not exist)."""
    with _errors("list", path):
        if not is_remote(path):
            root = Path(_local(path))
            return {
                Path(d, n).relative_to(root).as_posix(): Path(d, n).stat().st_size
                for d, _, files in os.walk(root)
                for n in files
            }
        fs, url = _fs(), os.fspath(path).rstrip("/")
        base = fs._strip_protocol(url).rstrip("/") + "/"
        found = fs.find(url, detail=True)
        return {k[len(base) :]: int(v["size"]) for k, v in found.items() if k.startswith(base)}


def glob(pattern: str) -> list[str]:
    """Sorted files/objects matching a glob pattern (`*`, `?`, `[...]`, `**`), as full paths or URLs."""
    with _errors("glob", pattern):
        if not is_remote(pattern):
            import glob as _glob

            return sorted(p for p in _glob.glob(_local(pattern), recursive=True) if os.path.isfile(p))
        return sorted(f"s3://{k}" for k, v in _fs().glob(pattern, detail=True).items() if v["type"] == "file")


def stat_version(path: PathLike) -> dict:
    """Size and a change stamp of a file/object (mtime in ns locally, the ETag on S3): what a cached
    plan compares to notice a replaced input without hashing it."""
    with _errors("stat", path):
        if not is_remote(path):
            st = os.stat(_local(path))
            return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
        info = _fs().info(os.fspath(path))
        return {"bytes": int(info["size"]), "etag": str(info.get("ETag", "")).strip('"')}


def sha256(path: PathLike) -> str:
    """sha256 of a file/object's content, read in `BLOCK_SIZE` pieces (inputs may be large)."""
    import hashlib

    h = hashlib.sha256()
    with _errors("read", path), open_input(path) as f:
        while chunk := f.read(BLOCK_SIZE):
            h.update(chunk)
    return h.hexdigest()


def copy(src: PathLike, dst: PathLike) -> None:
    """Copy a file/object, all or nothing at `dst`. Within S3 a server-side copy (no bytes through this
    process); locally a hard link when possible (same file system), else a committed copy."""
    with _errors(f"copy {os.fspath(src)} ->", dst):
        if is_remote(src) and is_remote(dst):
            _fs().copy(os.fspath(src), os.fspath(dst))
        elif not is_remote(src) and not is_remote(dst):
            target = Path(_local(dst))
            _makedirs(target.parent)
            try:
                os.link(_local(src), target)
                fsync_dir(target.parent)
            except OSError:
                write_bytes(target, read_bytes(src))
        elif is_remote(dst):
            put_file(src, dst)
        else:
            write_bytes(dst, read_bytes(src))


def _makedirs(directory: Path) -> None:
    """Create `directory` and missing parents, each new entry fsynced into its parent (so the files
    committed below survive a crash with their directories)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)  # exist_ok: a concurrent writer may create it first
        fsync_dir(d.parent)


def write_bytes(path: PathLike, data: bytes) -> None:
    """Make `path` hold `data`, all or nothing: a reader sees the old content or the new, never a part.

    Locally: `atomic.commit_file` (temporary, fsync, rename, fsync directory), creating missing parent
    directories. On S3: one PUT (multipart above 2 x BLOCK_SIZE, which S3 also publishes only whole,
    at completion)."""
    with _errors("write", path):
        if not is_remote(path):
            target = Path(_local(path))
            _makedirs(target.parent)
            commit_file(target, bytes(data))
            return
        _fs().pipe_file(os.fspath(path), bytes(data), chunksize=BLOCK_SIZE)


def put_file(local_path: PathLike, url: PathLike) -> None:
    """Copy the local file `local_path` to `url`, all or nothing (see `write_bytes`).

    A local destination is committed with `atomic.commit_file`, which holds the whole file in memory."""
    with _errors(f"put {os.fspath(local_path)} ->", url):
        if not is_remote(url):
            write_bytes(url, Path(_local(local_path)).read_bytes())
            return
        if not os.path.isfile(_local(local_path)):
            raise StorageError(f"put {os.fspath(local_path)} -> {os.fspath(url)} failed: not a file")
        _fs().put_file(_local(local_path), os.fspath(url), chunksize=BLOCK_SIZE)


def put_tree(local_dir: PathLike, url_prefix: PathLike) -> list[str]:
    """Upload every file under `local_dir` to `join(url_prefix, key)`; returns the keys (relative,
    "/"-separated, sorted).

    Each object appears whole, but the tree does not appear at once: publish a tree by uploading its data
    objects with this and writing the marker that declares it complete last (`write_bytes`)."""
    root = Path(_local(local_dir))
    if not root.is_dir():
        raise StorageError(f"put {os.fspath(local_dir)} -> {os.fspath(url_prefix)} failed: not a directory")
    keys = sorted(
        Path(dirpath, name).relative_to(root).as_posix()
        for dirpath, _, files in os.walk(root)
        for name in files
    )
    if not is_remote(url_prefix):
        for key in keys:
            put_file(root / key, join(url_prefix, key))
        return keys
    with _errors(f"put {root} ->", url_prefix):
        # One call: s3fs uploads the files concurrently.
        _fs().put([str(root / k) for k in keys], [join(url_prefix, k) for k in keys], chunksize=BLOCK_SIZE)
    return keys


def remove(path: PathLike, recursive: bool = False) -> None:
    """Delete the file/object at `path`; with `recursive`, also a directory/prefix and all under it.

    A missing path is an error. A recursive delete on S3 is many requests, not one step: readers can
    see it half done, so delete the completeness marker of a tree first."""
    with _errors("remove", path):
        if not is_remote(path):
            p = Path(_local(path))
            if p.is_dir() and not p.is_symlink():
                if not recursive:
                    raise StorageError(f"remove {os.fspath(path)} failed: a directory (pass recursive=True)")
                shutil.rmtree(p)
            else:
                p.unlink()
            return
        fs, url = _fs(), os.fspath(path)
        if "/" not in fs._strip_protocol(url).strip("/"):
            raise StorageError(f"remove {url} failed: refusing to delete a whole bucket")
        info = fs.info(url)  # S3 deletes of missing keys succeed silently; make it an error as locally
        if info["type"] == "file" and not recursive:
            fs.rm_file(url)
        elif recursive:
            fs.rm(url, recursive=True)
        else:
            raise StorageError(f"remove {url} failed: a prefix (pass recursive=True)")
