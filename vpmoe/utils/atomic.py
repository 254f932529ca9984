"""Durable, atomic commits: the one way every stage publishes a file or a directory.

Protocol (POSIX): write under a temporary name beside the target, fsync the data, rename(2) it onto the
target, fsync the parent directory.
- rename(2) is atomic: a reader sees the old target or the new one, never a mix (POSIX.1-2017 rename).
- rename only orders names, not data: without an fsync of the file first, a power loss after the rename
  can leave the new name pointing at empty or partial data (the ext4/XFS delayed-allocation case).
- the rename itself lives in the parent directory's entries; it is durable only once that directory is
  fsynced (POSIX leaves directory fsync to the implementation; Linux file systems honour it).

Temporary names carry an owner token (host, pid, random) and the owner holds an exclusive flock(2) on the
temporary file or directory until it is committed or removed. Debris cleaning (`remove_if_stale`) deletes
a temporary only after taking that lock itself: the kernel releases a lock when its holder dies (even by
SIGKILL), so a lock we can take proves the owner is gone, and a live owner's work is never deleted. Two
workers given overlapping assignments therefore fail loudly or skip, and never corrupt each other.

Directories are replaced with renameat2(RENAME_EXCHANGE) (Linux >= 3.16; ext4, XFS, btrfs, tmpfs,
overlayfs): the new tree and the old one swap names in one step, so the target never goes missing, and the
old tree, now under the temporary name, is deleted afterwards. rename(2) itself cannot replace a non-empty
directory, and the two-rename alternative (old -> debris, new -> target) leaves a window with no target.
Where the file system lacks the exchange (NFS, non-Linux) replacing is refused with a clear error; there is
no silent non-atomic fallback.

`overwrite=true` only ever replaces a directory that is recognizably ours: one this module published (its
`OUTPUT_MARKER` names the same kind of output and every entry now in it), or an empty one. Anything else
is an error naming the path and what was found, and nothing is touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

OUTPUT_MARKER = ".vpmoe-output.json"
_MARKER_SCHEMA = 1
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


class OutputExistsError(FileExistsError):
    pass


class BusyError(RuntimeError):
    """A temporary that another live process still owns (it holds the lock)."""


def owner_token() -> str:
    """Unique per call across hosts and processes: `<host>-<pid>-<random>`."""
    host = socket.gethostname().split(".")[0].replace("-", "_") or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


# --- fsync -------------------------------------------------------------------------------------------------


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under `root` (children before parents), so a rename of `root`
    never publishes a tree whose data or entries are still only in the page cache."""
    for dirpath, _, files in os.walk(root, topdown=False):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


# --- owned temporaries and debris ----------------------------------------------------------------------------


class Owned:
    """A temporary file or directory and the open descriptor that holds its flock (released by `close`).

    The lock follows the inode, so it keeps protecting the tree after a rename (e.g. a committed store
    shard whose marker is not written yet)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = -1


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def make_owned_dir(parent: Path, prefix: str) -> Owned:
    """Create and lock the directory `parent/<prefix><owner token>`."""
    return _make_owned(parent, prefix, directory=True)


def _make_owned(parent: Path, prefix: str, *, directory: bool) -> Owned:
    """Create and lock a new file or directory under a unique name.

    A name is visible before it can be locked, so a cleaner may lock and delete it in between; we then
    notice (the path is gone or is another inode) and retry under a new name, so we never write into a
    deleted tree or file."""
    for _ in range(8):
        path = parent / f"{prefix}{owner_token()}"
        if directory:
            path.mkdir(mode=0o755)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                continue
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        if _lock(fd) and _same_inode(path, fd):
            return Owned(path, fd)
        os.close(fd)
    raise BusyError(f"could not create a locked temporary {parent / prefix}*: it was removed each time")


def _same_inode(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def lock_existing(path: Path) -> Owned | None:
    """Lock an existing file or directory; None when a live process holds it (or it vanished)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    if _lock(fd) and _same_inode(path, fd):
        return Owned(path, fd)
    os.close(fd)
    return None


def remove_if_stale(path: Path) -> bool:
    """Delete debris `path` (file or directory) unless a live owner holds its lock.

    True when it is gone afterwards, False when it belongs to a live process (left untouched)."""
    if not os.path.lexists(path):
        return True
    if path.is_symlink():
        path.unlink()
        return True
    held = lock_existing(path)
    if held is None:
        return not os.path.lexists(path)
    try:  # deleted while we hold the lock: no owner can be writing into it
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    finally:
        held.close()
    return True


# --- commits ----------------------------------------------------------------------------------------------


def commit_file(path: str | Path, data: bytes | str) -> None:
    """Durably and atomically make `path` hold `data` (write temporary, fsync, rename, fsync parent)."""
    path = Path(path)
    owned = _make_owned(path.parent, f".{path.name}.tmp-", directory=False)
    try:
        with os.fdopen(os.dup(owned.fd), "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(owned.path, path)  # POSIX rename: `path` names the old file or the new, never neither
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            owned.path.unlink()
        raise
    finally:
        owned.close()
    fsync_dir(path.parent)


def commit_directory(tmp: Path, final: Path) -> None:
    """Publish the finished tree `tmp` as the new name `final` (which must not exist).

    rename(2) of a directory fails on an existing non-empty target (EEXIST/ENOTEMPTY), so a concurrent
    committer of the same name gets an error here instead of a mixed tree."""
    fsync_tree(tmp)
    try:
        os.rename(tmp, final)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise OutputExistsError(f"{final} already exists (committed by another process?)") from e
        raise
    fsync_dir(final.parent)


def _exchange(a: Path, b: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    rc = -1 if fn is None else fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        err = errno.ENOSYS if fn is None else ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OutputExistsError(
                f"cannot replace {b} atomically: its file system does not support renameat2(RENAME_EXCHANGE) "
                f"({os.strerror(err)}); remove {b} yourself or choose a new output"
            )
        raise OSError(err, f"renameat2({a}, {b}, RENAME_EXCHANGE): {os.strerror(err)}")


# --- published output directories -------------------------------------------------------------------------


def _entries(root: Path) -> set[str]:
    """Every path under `root` (files, directories, links; not followed), relative, but the marker."""
    found = set()
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in [*dirs, *files]:
            found.add(name if rel == "." else f"{rel}/{name}")
    found.discard(OUTPUT_MARKER)
    return found


def foreign_reason(target: Path, kind: str) -> str | None:
    """None when `target` may be replaced as a `kind` output; otherwise what makes it not ours."""
    if not target.is_dir() or target.is_symlink():
        return "it is not a directory" if not target.is_symlink() else "it is a symbolic link"
    entries = _entries(target)
    if not entries:
        return None  # an empty directory holds nothing to lose
    try:
        raw: bytes | Exception | None = (target / OUTPUT_MARKER).read_bytes()
    except FileNotFoundError:
        raw = None
    except OSError as e:
        raw = e
    return marker_reason(raw, entries, kind)


def marker_reason(raw: bytes | Exception | None, entries: set[str], kind: str) -> str | None:
    """The verdict on an output whose `entries` (relative paths, the marker excluded) sit beside an
    output marker with content `raw` (None: there is none; an exception: it could not be read): None
    when it may be replaced as a `kind` output, else why not. Shared by local directories and S3
    prefixes (vpmoe/data/publish.py)."""
    if raw is None:
        shown = ", ".join(sorted({e.split("/", 1)[0] for e in entries})[:5])
        return f"it has no {OUTPUT_MARKER} (not written by vpmoe) and holds: {shown}"
    try:
        if isinstance(raw, Exception):
            raise raw
        info = json.loads(raw)
    except (OSError, ValueError) as e:
        return f"its {OUTPUT_MARKER} is unreadable ({e})"
    if not isinstance(info, dict):
        return f"its {OUTPUT_MARKER} is not a vpmoe output marker"
    if info.get("schema") != _MARKER_SCHEMA or info.get("kind") != kind:
        return f"its {OUTPUT_MARKER} describes {info.get('kind')!r} output (schema {info.get('schema')}), not {kind!r}"
    extra = sorted(entries - set(info.get("entries", [])))
    if extra:
        return f"it holds entries vpmoe did not write: {', '.join(extra[:5])}" + (
            " ..." if len(extra) > 5 else ""
        )
    return None


def marker_bytes(kind: str, entries: list[str]) -> bytes:
    """The output marker of a `kind` output holding `entries` (what `atomic_directory` commits)."""
    return (
        json.dumps({"schema": _MARKER_SCHEMA, "kind": kind, "entries": entries}, indent=1) + "\n"
    ).encode()


def check_output_dir(target: Path, *, overwrite: bool, kind: str) -> None:
    """Fail before any work if `target` exists and may not be replaced, or its parent is not writable."""
    if os.path.lexists(target):
        if not overwrite:
            raise OutputExistsError(
                f"output {target} already exists; pass overwrite=true to replace it atomically"
            )
        reason = foreign_reason(target, kind)
        if reason is not None:
            raise OutputExistsError(
                f"refusing to overwrite {target}: {reason}. overwrite=true only replaces a previous {kind} "
                "output (or an empty directory); choose another output or remove it yourself"
            )
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write into {parent} (needed for output {target})")


def clean_output_debris(target: Path) -> list[Path]:
    """Remove stale temporaries of `target` (`.<name>.tmp-*`, left by a crash); returns the live ones kept."""
    live = []
    for p in target.parent.glob(f".{target.name}.tmp-*"):
        if not remove_if_stale(p):
            live.append(p)
    return live


@contextlib.contextmanager
def atomic_directory(target: str | Path, *, overwrite: bool = False, kind: str = "output") -> Iterator[Path]:
    """Yield a fresh, locked temporary directory beside `target`; on success it becomes `target`.

    The published tree gets `OUTPUT_MARKER` (its kind and entries), which is what lets a later
    overwrite recognize it. On an exception the temporary is deleted and `target` is untouched. Debris of
    crashed earlier runs is removed first, except temporaries a live process still holds."""
    target = Path(target)
    check_output_dir(target, overwrite=overwrite, kind=kind)
    clean_output_debris(target)
    owned = make_owned_dir(target.parent, f".{target.name}.tmp-")
    tmp = owned.path
    try:
        yield tmp
        entries = sorted(_entries(tmp))
        commit_file(tmp / OUTPUT_MARKER, marker_bytes(kind, entries))
        if os.path.lexists(target):
            check_output_dir(target, overwrite=overwrite, kind=kind)  # again: it may have changed meanwhile
            fsync_tree(tmp)
            _exchange(tmp, target)  # now `tmp` names the old tree, unlocked: debris from here on
            fsync_dir(target.parent)
            remove_if_stale(tmp)  # False only while a cleaner holds it: it is deleting it for us
        else:
            commit_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # our own temporary (or, after the exchange, the old tree)
        raise
    finally:
        owned.close()
