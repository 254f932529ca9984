"""The one commit helper (vpmoe/utils/atomic.py): durable file and directory commits, a replace with no
window, overwrite only of our own outputs, and debris cleaning that never touches a live owner's work."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO

from vpmoe.teacher.store import ShardArrays, StoreError, TeacherStore
from vpmoe.teacher.store_reader import _OpenShard
from vpmoe.utils.atomic import (
    OUTPUT_MARKER,
    OutputExistsError,
    atomic_directory,
    commit_file,
    make_owned_dir,
)


def spawn(code: str, *args: str) -> subprocess.Popen:
    """A second Python process (the other worker), talking over stdin/stdout one line at a time."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_commit_file_replaces_and_leaves_no_temporary(tmp_path):
    commit_file(tmp_path / "a.json", "one")
    commit_file(tmp_path / "a.json", b"two")
    assert (tmp_path / "a.json").read_text() == "two"
    assert os.listdir(tmp_path) == ["a.json"]


def test_replace_never_leaves_the_target_missing(tmp_path):
    target = tmp_path / "o"
    with atomic_directory(target, kind="t") as tmp:
        (tmp / "done").write_text("0")
    watcher = spawn(
        """
        import os, sys
        target, stop = sys.argv[1], sys.argv[2]
        misses = polls = 0
        print("ready", flush=True)
        while not os.path.exists(stop):
            polls += 1
            misses += not os.path.exists(os.path.join(target, "done"))
        print(misses, polls, flush=True)
        """,
        target,
        tmp_path / "stop",
    )
    assert watcher.stdout.readline().strip() == "ready"
    for i in range(1, 60):
        with atomic_directory(target, overwrite=True, kind="t") as tmp:
            (tmp / "done").write_text(str(i))
    (tmp_path / "stop").touch()
    misses, polls = map(int, watcher.stdout.readline().split())
    assert watcher.wait(timeout=30) == 0
    assert polls > 0 and misses == 0
    assert (target / "done").read_text() == "59"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "stop"]  # no temporaries, no old trees


def test_overwrite_only_replaces_our_own_output(tmp_path):
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with (
        pytest.raises(OutputExistsError, match=rf"refusing to overwrite {foreign}: .*notes\.txt"),
        atomic_directory(foreign, overwrite=True, kind="t") as tmp,
    ):
        (tmp / "x").write_text("x")
    assert os.listdir(foreign) == ["notes.txt"] and (foreign / "notes.txt").read_text() == "keep me"

    ours = tmp_path / "ours"
    with atomic_directory(ours, kind="t") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x").write_text("x")
    assert json.loads((ours / OUTPUT_MARKER).read_text()) == {
        "schema": 1,
        "kind": "t",
        "entries": ["sub", "sub/x"],
    }
    with (
        pytest.raises(OutputExistsError, match="describes 't' output"),
        atomic_directory(ours, overwrite=True, kind="other"),
    ):  # another stage's output
        pass
    (ours / "sub" / "added.txt").write_text("a user's file inside our output")
    with (
        pytest.raises(OutputExistsError, match=r"did not write: sub/added\.txt"),
        atomic_directory(ours, overwrite=True, kind="t"),
    ):
        pass
    assert (ours / "sub" / "added.txt").exists()
    (ours / "sub" / "added.txt").unlink()
    (ours / "sub" / "x").unlink()  # a subset of what we wrote is still ours
    with atomic_directory(ours, overwrite=True, kind="t") as tmp:
        (tmp / "y").write_text("y")
    assert sorted(os.listdir(ours)) == [OUTPUT_MARKER, "y"]

    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_directory(empty, overwrite=True, kind="t") as tmp:
        (tmp / "y").write_text("y")
    link = tmp_path / "link"
    link.symlink_to(ours)
    with (
        pytest.raises(OutputExistsError, match="symbolic link"),
        atomic_directory(link, overwrite=True, kind="t"),
    ):
        pass


def test_debris_is_cleaned_but_a_live_owners_temporary_is_not(tmp_path):
    holder = spawn(
        """
        import sys
        from pathlib import Path
        from vpmoe.utils.atomic import make_owned_dir
        owned = make_owned_dir(Path(sys.argv[1]), ".o.tmp-")
        print(owned.path, flush=True)
        sys.stdin.readline()
        """,
        tmp_path,
    )
    live = holder.stdout.readline().strip()
    dead = make_owned_dir(tmp_path, ".o.tmp-")
    dead.close()  # as if its owner crashed: the kernel dropped the lock
    (dead.path / "half-written").write_text("x")
    with atomic_directory(tmp_path / "o", kind="t") as tmp:
        (tmp / "x").write_text("x")
    assert not dead.path.exists()
    assert os.path.isdir(live)  # still locked by the live process: left alone
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    with atomic_directory(tmp_path / "o", overwrite=True, kind="t") as tmp:
        (tmp / "x").write_text("y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


STORE_WORKER = """
    import sys
    from tests.test_store_coding import provenance, synthetic_rows
    from vpmoe.teacher.store import ShardArrays, TeacherStore
    store = TeacherStore(sys.argv[1], provenance(3))
    rows = synthetic_rows(10, 3, seed=0)
    w = store.begin_shard("shard-00000", num_positions=10, num_sequences=1)
    w.add_sequence(**{f: getattr(rows, f) for f in ShardArrays.ROW_FIELDS})
    print("writing", flush=True)
    sys.stdin.readline()
    w.commit(dataset_shard_sha256="s", sample_ids=["0"])
    print("committed", flush=True)
"""


def test_two_workers_on_one_shard_never_delete_each_others_work(tmp_path):
    """Overlapping assignments (num_workers changed while old workers still run): the second writer of a
    shard fails loudly and deletes nothing; the first one's commit is intact. After a writer dies, its
    debris is provably stale (the lock is gone) and the shard is redone."""
    from tests.test_store_coding import provenance, synthetic_rows

    root = tmp_path / "store"
    first = spawn(STORE_WORKER, root)
    assert first.stdout.readline().strip() == "writing"
    store = TeacherStore(root, provenance(3))
    with pytest.raises(StoreError, match="another live process"):
        store.begin_shard("shard-00000", num_positions=10, num_sequences=1)
    assert len(list(store.shards_dir.glob(".tmp-shard-00000-*"))) == 1  # the first writer's, untouched
    first.stdin.write("go\n")
    first.stdin.flush()
    assert first.stdout.readline().strip() == "committed"
    assert first.wait(timeout=60) == 0
    assert store.is_complete("shard-00000", "s")
    rows = synthetic_rows(10, 3, seed=0)
    np.testing.assert_array_equal(_OpenShard(store.shards_dir / "shard-00000").topk_ids(0, 10), rows.topk_ids)

    crashed = spawn(STORE_WORKER, tmp_path / "store2")
    assert crashed.stdout.readline().strip() == "writing"
    crashed.send_signal(signal.SIGKILL)
    crashed.wait(timeout=30)
    store2 = TeacherStore(tmp_path / "store2", provenance(3))
    w = store2.begin_shard("shard-00000", num_positions=10, num_sequences=1)
    w.add_sequence(**{f: getattr(rows, f) for f in ShardArrays.ROW_FIELDS})
    w.commit(dataset_shard_sha256="s", sample_ids=["0"])
    assert sorted(p.name for p in store2.shards_dir.iterdir()) == ["shard-00000", "shard-00000.complete.json"]
