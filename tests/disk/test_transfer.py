"""Unit tests of the mutation layer's modules, on real files: the journal, recovery of each half-done
move state, the backup catalogue, and saved-plan fingerprints."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from reconciler.base.errors import ApplyError, PendingRunError, UnknownRunError
from reconciler.base.fsops import Tree
from reconciler.base.layout import INDEX_NAME, journal_path
from reconciler.decide.differences import fingerprint_differences
from reconciler.disk.catalogue import (
    BackupRun,
    Entry,
    Provenance,
    Status,
    StoreId,
    create_run,
    find_run,
    list_runs,
    open_backup_root,
    read_run,
    write_index,
)
from reconciler.disk.journal import Journal, Pending, pending_run, read_journal, store_lock
from reconciler.disk.records import Move, MoveDone, MoveSkipped, Op, Role, RunHeader, TornHeader, UnreadableHeader
from reconciler.disk.recovery import recover
from reconciler.disk.retention import Retention, prune_runs
from reconciler.disk.transfer import execute
from reconciler.read.scan import FileFacts, StoreScan, stat_entry


def _store(tmp_path: Path, **files: bytes) -> tuple[Path, Path]:
    store = tmp_path / "models"
    store.mkdir()
    for name, data in files.items():
        (store / name).write_bytes(data)
    return store, tmp_path / "backups"


def _header(store: Path, backups: Path, *names: str) -> RunHeader:
    run_dir = backups / "run1"
    moves = []
    for name in names:
        facts = stat_entry(str(store), name)
        assert facts is not None
        moves.append(Move(str(store / name), str(run_dir / name), Role.BACKUP, facts))
    return RunHeader(
        Op.APPLY, "run1", str(run_dir), str(store), Provenance("m.yaml", "0" * 64, "t"), 1, tuple(moves), keep=None, token="t0"
    )


# -- journal ------------------------------------------------------------------------------------------


def test_journal_round_trip_and_a_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "j"
    begun = RunHeader(Op.APPLY, "r", str(tmp_path / "r"), str(tmp_path), Provenance(None, None, None), 1, ())
    journal = Journal.begin(path, begun)
    journal.record(MoveDone("backup:a", "rename", None, None))
    with open(path, "ab") as fh:
        fh.write(b'{"type": "done", "ke')  # a crash in the middle of an append
    header, records = read_journal(path) or (TornHeader(), [])
    assert isinstance(header, RunHeader) and header.op is Op.APPLY and header == begun
    assert records == [MoveDone("backup:a", "rename", None, None)]
    with pytest.raises(FileExistsError):
        Journal.begin(path, begun)  # an unfinished run is never overwritten
    journal.remove()
    assert read_journal(path) is None


def test_a_journal_with_a_torn_header_reads_as_torn(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(b'{"type": "beg')
    assert read_journal(path) == (TornHeader(), [])
    path.write_bytes(b"")  # created, killed before its first write
    assert read_journal(path) == (TornHeader(), [])


# The lines the journal has always written (keys sorted): a journal of an earlier version must read the same.
OLD_JOURNAL = (
    b'{"created_ns": 7, "displaced_run_dir": "/b/d", "keep": 3, "manifest": {"name": "t", "sha256": "ab", "source": "m.yaml"}, '
    b'"max_age_s": 60, "moves": [{"dst": "/b/d/a", "facts": {"dev": 5, "engine_visible": null, "inode": 4, "kind": "file", '
    b'"link_target": null, "mtime_ns": 3, "name": "a", "sha256": "cd", "size": 2, "symlinked_folder": null}, "role": "displace", '
    b'"src": "/s/a"}, {"dst": "/s/a", "facts": {"dev": 5, "engine_visible": null, "inode": 4, "kind": "symlink", "link_target": "x", '
    b'"mtime_ns": 3, "name": "a", "sha256": null, "size": 1, "symlinked_folder": null}, "role": "restore", "src": "/b/r1/a"}], '
    b'"op": "restore", "run_dir": "/b/r1", "run_id": "r1", "store": "/s", "store_id": [1, 2], "token": "t0", "type": "begin"}\n'
    b'{"identity": [1, 2, 3, 4], "key": "displace:a", "method": "copy", "sha256": "cd", "type": "done"}\n'
    b'{"identity": null, "key": "restore:a", "method": "rename", "sha256": null, "type": "done"}\n'
    b'{"key": "displace:b", "type": "skip", "why": "w"}\n'
)


def test_a_journal_reads_as_typed_records_and_is_written_byte_for_byte_as_before(tmp_path: Path) -> None:
    header = RunHeader(
        Op.RESTORE,
        "r1",
        "/b/r1",
        "/s",
        Provenance("m.yaml", "ab", "t"),
        7,
        (
            Move("/s/a", "/b/d/a", Role.DISPLACE, FileFacts("a", "file", 2, 3, 4, 5, sha256="cd")),
            Move("/b/r1/a", "/s/a", Role.RESTORE, FileFacts("a", "symlink", 1, 3, 4, 5, link_target="x")),
        ),
        keep=3,
        displaced_run_dir="/b/d",
        token="t0",
        max_age_s=60,
        store_id=(1, 2),
    )
    records: list[MoveDone | MoveSkipped] = [
        MoveDone("displace:a", "copy", "cd", (1, 2, 3, 4)),
        MoveDone("restore:a", "rename", None, None),
        MoveSkipped("displace:b", "w"),
    ]
    old = tmp_path / "old"
    old.write_bytes(OLD_JOURNAL + b'[1]\n{"type": "note"}\n{"type": "done"}\n{"type": "done", "key": "backup:z"}\n')
    assert read_journal(old) == (header, [*records, MoveDone("backup:z", "rename", None, None)])  # lines no run writes: left out
    new = tmp_path / "new"
    journal = Journal.begin(new, header)
    journal.record_many(records[:2])
    journal.record(records[2])
    journal.close()
    assert new.read_bytes() == OLD_JOURNAL


def test_a_header_that_is_not_a_run_is_reported_by_its_op_and_refused_by_recovery(tmp_path: Path) -> None:
    store, backups = _store(tmp_path, a=b"x")
    journal_path(str(store)).write_text('{"type": "begin", "op": "apply", "run_id": "r"}\n')
    header, _ = read_journal(journal_path(str(store))) or (TornHeader(), [])
    assert isinstance(header, UnreadableHeader) and header.why.startswith("cannot be read as a run (KeyError")
    assert pending_run(str(store)) == Pending("apply", "r")
    with store_lock(str(store)) as lock, pytest.raises(ApplyError, match=re.escape(header.why)):
        recover(str(store), lock, backups)


# -- the engine and recovery --------------------------------------------------------------------------


def test_execute_moves_and_indexes_and_refuses_a_pending_journal(tmp_path: Path) -> None:
    store, backups = _store(tmp_path, a=b"aa", b=b"bbb")
    header = _header(store, backups, "a", "b")
    with store_lock(str(store)) as lock:
        journal_path(str(store)).write_text("{}")
        with pytest.raises(PendingRunError):
            execute(header, lock)
        journal_path(str(store)).unlink()
        outcome = execute(header, lock)
    assert [e.name for e in outcome.moved] == ["a", "b"] and not outcome.error
    run = read_run(backups / "run1")
    assert run is not None and run.status == Status.COMPLETE
    for entry in run.entries:  # a rename reads no byte: identity as placed, no hash
        st = os.lstat(backups / "run1" / entry.name)
        assert entry.identity == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) and entry.sha256 is None
    assert not journal_path(str(store)).exists() and not (store / "a").exists()


def _crash_after_begin(store: Path, header: RunHeader) -> None:
    """The state a kill leaves right before the first move: journal written, run folder made."""
    Journal.begin(journal_path(str(store)), header)
    run = BackupRun(header.run_id, Path(header.run_dir), header.created_ns, Status.IN_PROGRESS, header.store, header.manifest)
    with open_backup_root(Path(header.run_dir).parent) as backup:
        create_run(backup, run).close()


@pytest.mark.parametrize("state", ["not started", "renamed, unrecorded", "half copied", "copied, original still there", "changed"])
def test_recovery_settles_every_half_done_state(tmp_path: Path, state: str) -> None:
    store, backups = _store(tmp_path, a=b"model bytes")
    header = _header(store, backups, "a")
    _crash_after_begin(store, header)
    src, dst = store / "a", backups / "run1" / "a"
    if state == "renamed, unrecorded":
        os.rename(src, dst)
    elif state == "half copied":
        (dst.parent / header.temp(0)).write_bytes(b"model")
    elif state == "copied, original still there":
        dst.write_bytes(b"model bytes")
    elif state == "changed":
        src.write_bytes(b"someone else's new bytes")
    assert pending_run(str(store)) is not None
    with store_lock(str(store)) as lock:
        result = recover(str(store), lock, backups)
    assert result is not None and result.op == "apply" and result.run_id == "run1"
    assert not journal_path(str(store)).exists() and not (dst.parent / header.temp(0)).exists()
    if state == "changed":
        assert result.skipped == (("a", "changed since the plan was made; left in place"),)
        assert src.read_bytes() == b"someone else's new bytes" and not dst.exists()
        assert not dst.parent.exists()  # a run that moved nothing leaves no run behind
        return
    else:
        assert dst.read_bytes() == b"model bytes" and not src.exists()
        completed_by_the_crashed_run = state in ("renamed, unrecorded", "copied, original still there")
        assert (result.already_done, result.finished) == ((("a",), ()) if completed_by_the_crashed_run else ((), ("a",)))
    run = read_run(backups / "run1")
    assert run is not None and run.status == Status.COMPLETE


def test_recovery_of_a_torn_journal_only_removes_it(tmp_path: Path) -> None:
    store, backups = _store(tmp_path, a=b"x")
    journal_path(str(store)).write_bytes(b'{"typ')
    with store_lock(str(store)) as lock:
        result = recover(str(store), lock, backups)
        assert result is not None and result.op == "torn"
        assert recover(str(store), lock, backups) is None
    assert (store / "a").read_bytes() == b"x"


# -- catalogue ----------------------------------------------------------------------------------------


def _run(backups: Path, run_id: str, created: int, status: str = Status.COMPLETE, store: str = "/s") -> BackupRun:
    path = backups / run_id
    path.mkdir(parents=True)
    (path / "x").write_bytes(b"xyz")
    entry = Entry("x", "file", 3, "0" * 64, None, "rename")
    run = BackupRun(run_id, path, created, status, store, Provenance(None, None, None), (entry,))
    with Tree(str(path), os.open(path, os.O_RDONLY | os.O_DIRECTORY)) as tree:
        write_index(tree, run)
    return run


A, B, C, D, E = (f"2026010{i}T000000Z-{c * 6}" for i, c in zip(range(1, 6), "abcde", strict=True))


def test_catalogue_lists_finds_and_prunes_only_complete_runs_of_this_store(tmp_path: Path) -> None:
    backups = tmp_path / "b"
    _run(backups, A, 1)
    _run(backups, B, 2, Status.FAILED)
    _run(backups, C, 3)
    _run(backups, D, 4)
    _run(backups, E, 5, store="/another-store")  # sharing the backup folder
    (backups / "stray").mkdir()
    (backups / "corrupt").mkdir()
    (backups / "corrupt" / "index.json").write_text("{not json")
    this = StoreId("/s", None)
    assert [r.run_id for r in list_runs(backups, this)] == [D, C, B, A]
    assert find_run(backups, C[:8] + "T000000Z-c").run_id == C
    with pytest.raises(UnknownRunError) as ambiguous:
        find_run(backups, "2026010", this)
    assert len(ambiguous.value.candidates) == 4
    with pytest.raises(UnknownRunError):
        find_run(backups, "nope")
    with open_backup_root(backups) as backup:
        assert prune_runs(backup, this, Retention(keep=1), 0) == (C, A)
    assert [r.run_id for r in list_runs(backups)] == [E, D, B]  # the failed run and the other store's are never pruned
    assert not (backups / A).exists() and (backups / "stray").is_dir() and (backups / "corrupt" / "index.json").exists()
    index = json.loads((backups / D / INDEX_NAME).read_text())
    assert index["format_version"] == 1 and index["entries"][0]["name"] == "x"


def test_pruning_deletes_only_what_the_run_holds(tmp_path: Path) -> None:
    """A file someone put in a run folder is not the tool's: pruning leaves it, and its folder."""
    backups = tmp_path / "b"
    _run(backups, A, 1)
    _run(backups, C, 3)
    (backups / A / "someone-elses.txt").write_text("keep me")
    with open_backup_root(backups) as backup:
        assert prune_runs(backup, StoreId("/s", None), Retention(keep=1), 0) == (A,)
    assert sorted(os.listdir(backups / A)) == ["someone-elses.txt"]


def test_a_folder_that_merely_contains_an_index_is_never_pruned(tmp_path: Path) -> None:
    """With the backup folder set to the store's parent, the store itself (or any folder holding an
    ``index.json``) must never be taken for a run: only run-id folders whose index names them."""
    backups = tmp_path / "b"
    fake = _run(backups, "models", 1)
    _run(backups, A, 2)
    _run(backups, C, 3)
    with open_backup_root(backups) as backup:
        assert prune_runs(backup, StoreId("/s", None), Retention(keep=1), 0) == (A,)
    assert (fake.path / "x").exists()


# -- fingerprints -------------------------------------------------------------------------------------


def _facts(name: str, size: int = 1, inode: int = 1, sha: str | None = None, target: str | None = None) -> FileFacts:
    return FileFacts(name, "symlink" if target else "file", size, 5, inode, 0, link_target=target, sha256=sha)


def test_fingerprint_differences_name_every_kind_of_change() -> None:
    from reconciler.decide.plan import Guards, assemble
    from reconciler.read.manifest import ManifestRef

    was = StoreScan("/s", "directory", (_facts("a"), _facts("b"), _facts("c", sha="1" * 64), _facts("l", target="x")))
    now = StoreScan("/t", "directory", (_facts("a", size=2), _facts("c", inode=9, sha="1" * 64), _facts("l", target="y"), _facts("n")))
    plan = assemble(ManifestRef("t", "m.yaml", "/m.yaml", "0" * 64, 1), was, [], Guards())
    assert fingerprint_differences(plan, now) == [
        "store path changed: /s -> /t",
        "added: n",
        "removed: b",
        "resized: a (1 -> 2 bytes)",
        "replaced: c (same size, different file)",
        "replaced: l (same size, different file)",
    ]
    assert fingerprint_differences(plan, was) == []


def test_recovery_never_deletes_either_side_of_a_conflict(tmp_path: Path) -> None:
    """Source and destination both exist and differ (say, an interrupted restore after which the user
    put a new copy of the model in place): recovery deletes neither, and reports both paths."""
    store, backups = _store(tmp_path, a=b"the backed-up bytes")
    header = _header(store, backups, "a")
    _crash_after_begin(store, header)
    (backups / "run1" / "a").write_bytes(b"someone else's copy, put there after the crash")
    with store_lock(str(store)) as lock:
        result = recover(str(store), lock, backups)
    assert result is not None and len(result.skipped) == 1
    name, why = result.skipped[0]
    assert name == "a" and "exist and differ; neither was touched" in why and str(store / "a") in why
    assert (store / "a").read_bytes() == b"the backed-up bytes"
    assert (backups / "run1" / "a").read_bytes() == b"someone else's copy, put there after the crash"
    assert not journal_path(str(store)).exists()


@pytest.mark.parametrize(
    ("journal", "message"),
    [
        ('{"type": "begin", "op": "apply"}\n', "cannot be read as a run (KeyError"),
        ('{"type": "begin", "op": "explode", "run_dir": "/x", "store": "/x", "created_ns": 1, "moves": []}\n', "cannot be read as a run"),
        (
            '{"type": "begin", "op": "apply", "run_id": "r", "run_dir": "/tmp/r", "store": "/etc", "created_ns": 1, "moves": []}\n',
            "names another store (/etc)",
        ),
    ],
    ids=["missing fields", "unknown op", "another store"],
)
def test_a_journal_that_is_not_a_run_of_this_store_is_refused_clearly(tmp_path: Path, journal: str, message: str) -> None:
    store, backups = _store(tmp_path, a=b"x")
    journal_path(str(store)).write_text(journal)
    with store_lock(str(store)) as lock, pytest.raises(ApplyError, match=re.escape(message)):
        recover(str(store), lock, backups)
    assert journal_path(str(store)).read_text() == journal and (store / "a").read_bytes() == b"x"
