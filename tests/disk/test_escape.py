"""Issue 8, on real filesystems: moves that cannot be redirected, a catalogue that keeps to its own
store, recovery that never gets stuck. Hostile actions happen at exact points of the real code
(``faults.hooked``), never after a sleep."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reconciler import JournalError, open_session
from reconciler.base.errors import ExitCode
from reconciler.base.layout import INDEX_NAME, default_backup_root, journal_path
from reconciler.cli.app import app
from reconciler.demo import build_store
from reconciler.disk.faults import hooked

from ..conftest import BIN, manifest_doc, tree_digest

STALE = {"latest.gguf", "mistral-7b-v0.1.Q2_K.gguf", "old/Llama-3.1-8B-Instruct-Q4_K_M.gguf", "phi-2.Q4_K_M.gguf"}


def only(store: Path, keep: str) -> None:
    """Leave ``keep`` as the one stale entry, so that a hook fires during its move and no other's."""
    for name in STALE - {keep}:
        os.unlink(store / name)


def _backups(runner: CliRunner, manifest: Path) -> list[dict[str, object]]:
    result = runner.invoke(app, ["backups", "-m", str(manifest), "--json"])
    assert result.exit_code == 0, result.output
    runs: list[dict[str, object]] = json.loads(result.stdout)
    return runs


# -- moves that cannot be redirected ----------------------------------------------------------------


def test_a_subfolder_swapped_for_a_link_mid_copy_never_redirects_the_unlink(
    store: Path, write_manifest: Callable[..., Path], tmp_path: Path, other_fs: Path
) -> None:
    """The old code unlinked by path after the copy: `old/` swapped for a link to a folder outside
    the store made it delete the outside file. Now the unlink goes through the descriptor of the
    folder that was copied from, and the outside file is untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Llama-3.1-8B-Instruct-Q4_K_M.gguf").write_bytes(b"not the store's: must survive")
    original = (store / "old" / "Llama-3.1-8B-Instruct-Q4_K_M.gguf").read_bytes()
    only(store, "old/Llama-3.1-8B-Instruct-Q4_K_M.gguf")

    def swap() -> None:
        if (store / "old").is_symlink():
            return
        os.rename(store / "old", tmp_path / "old-moved-away")
        os.symlink(outside, store / "old")

    manifest = write_manifest(backup={"dir": str(other_fs / "backups")})
    with open_session(manifest) as session, session.lock() as held:
        plan = session.plan()
        with hooked("copy-written", swap):
            result = session.apply(plan, held)
    assert (outside / "Llama-3.1-8B-Instruct-Q4_K_M.gguf").read_bytes() == b"not the store's: must survive"
    assert "old/Llama-3.1-8B-Instruct-Q4_K_M.gguf" in {m.name for m in result.moved}
    run_dir = other_fs / "backups" / str(result.run_id)
    assert (run_dir / "old" / "Llama-3.1-8B-Instruct-Q4_K_M.gguf").read_bytes() == original


def test_bytes_appended_during_a_cross_filesystem_copy_are_never_lost(
    store: Path, write_manifest: Callable[..., Path], other_fs: Path
) -> None:
    """Appended while the copy runs: the source stays (with every byte), the stale copy is discarded."""
    name = "phi-2.Q4_K_M.gguf"
    only(store, name)
    size = (store / name).stat().st_size

    def append() -> None:
        if (store / name).stat().st_size == size:  # once
            with open(store / name, "ab") as fh:
                fh.write(b" and more bytes")

    manifest = write_manifest(backup={"dir": str(other_fs / "backups")})
    with open_session(manifest) as session, session.lock() as held:
        plan = session.plan()
        want = (store / name).read_bytes() + b" and more bytes"
        with hooked("copy-chunk", append):
            result = session.apply(plan, held)
    assert (store / name).read_bytes().startswith(want)
    assert dict(result.skipped)[name] == "changed while it was being copied; left in place, the copy discarded"
    assert not list(other_fs.rglob(f"*{name}")) and not list(other_fs.rglob(".ocr-reconcile-tmp-*"))


def test_a_source_changed_after_its_copy_is_in_place_keeps_both(store: Path, write_manifest: Callable[..., Path], other_fs: Path) -> None:
    name = "mistral-7b-v0.1.Q2_K.gguf"
    only(store, name)
    manifest = write_manifest(backup={"dir": str(other_fs / "backups")})
    with open_session(manifest) as session, session.lock() as held:
        plan = session.plan()
        with hooked("copy-renamed", lambda: (store / name).write_bytes(b"rewritten")):
            result = session.apply(plan, held)
    assert (store / name).read_bytes() == b"rewritten"
    assert "both kept" in dict(result.skipped)[name]
    assert len(list(other_fs.rglob(name))) == 1  # the copy made before the change, kept too


def test_a_file_that_appears_before_a_cross_filesystem_restore_lands_is_never_replaced(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], other_fs: Path
) -> None:
    manifest = write_manifest(backup={"dir": str(other_fs / "backups")})
    assert runner.invoke(app, ["apply", str(manifest), "--yes"]).exit_code == ExitCode.OK
    [run] = _backups(runner, manifest)
    name = "phi-2.Q4_K_M.gguf"
    with open_session(manifest) as session, session.lock("restore") as held:
        planned = session.plan_restore(str(run["run_id"]), [name])
        with hooked("copy-written", lambda: (store / name).write_bytes(b"downloaded again meanwhile")):
            session.restore(planned, held)
    assert (store / name).read_bytes() == b"downloaded again meanwhile"
    assert (other_fs / "backups" / str(run["run_id"]) / name).exists()  # both stay
    assert not list(store.glob(".ocr-reconcile-tmp-*"))


def test_restore_force_never_writes_through_a_symlinked_subfolder(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    manifest = str(write_manifest())
    assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.OK
    [run] = _backups(runner, Path(manifest))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Llama-3.1-8B-Instruct-Q4_K_M.gguf").write_bytes(b"outside")
    os.rmdir(store / "old")
    os.symlink(outside, store / "old")
    result = runner.invoke(app, ["restore", str(run["run_id"]), "-m", manifest, "--force"])
    assert (outside / "Llama-3.1-8B-Instruct-Q4_K_M.gguf").read_bytes() == b"outside"
    assert sorted(os.listdir(outside)) == ["Llama-3.1-8B-Instruct-Q4_K_M.gguf"], result.output
    assert result.exit_code == ExitCode.CHANGES and "skipped old/Llama-3.1-8B-Instruct-Q4_K_M.gguf" in result.stdout, result.output


def test_a_name_too_long_for_any_suffix_still_moves_across_filesystems(
    store: Path, write_manifest: Callable[..., Path], other_fs: Path
) -> None:
    """250 bytes: the old `<name>.ocr-reconcile-partial` could never be created, so apply never converged."""
    long_name = "m" * 245 + ".gguf"
    (store / long_name).write_bytes(b"long")
    manifest = write_manifest(backup={"dir": str(other_fs / "backups")})
    with open_session(manifest) as session:
        result = session.apply(session.plan())
        assert long_name in {m.name for m in result.moved} and not result.skipped
        assert not session.plan().has_changes


def test_a_user_file_with_the_old_temporary_suffix_is_the_users(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path]
) -> None:
    """It is planned and backed up like any unmanaged file, never deleted as "ours"."""
    (store / "notes.ocr-reconcile-partial").write_bytes(b"my notes")
    manifest = write_manifest()
    assert runner.invoke(app, ["apply", str(manifest), "--yes"]).exit_code == ExitCode.OK
    [run] = _backups(runner, manifest)
    assert (default_backup_root(str(store)) / str(run["run_id"]) / "notes.ocr-reconcile-partial").read_bytes() == b"my notes"


# -- the catalogue keeps to its own store -----------------------------------------------------------


def test_stores_sharing_a_backup_folder_never_prune_or_list_each_others_runs(
    runner: CliRunner, tmp_path: Path, write_manifest: Callable[..., Path], store: Path
) -> None:
    shared = tmp_path / "shared-backups"
    other = tmp_path / "other-models"
    shutil.copytree(store, other, symlinks=True)
    mine = write_manifest("mine.yaml", backup={"dir": str(shared), "keep": 1})
    theirs = write_manifest("theirs.yaml", store={"path": str(other), "backend": "directory"}, backup={"dir": str(shared), "keep": 1})
    assert runner.invoke(app, ["apply", str(theirs), "--yes"]).exit_code == ExitCode.OK
    for i in range(2):
        (store / f"stale{i}.bin").write_bytes(b"x")
        assert runner.invoke(app, ["apply", str(mine), "--yes"]).exit_code == ExitCode.OK
    assert len(_backups(runner, mine)) == 1 and len(_backups(runner, theirs)) == 1
    assert len(os.listdir(shared)) == 2


def test_an_apply_that_moves_nothing_makes_no_run_and_evicts_nothing(store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = write_manifest(backup={"keep": 1})
    with open_session(manifest) as session:
        first = session.apply(session.plan())
    (store / "new.bin").write_bytes(b"x")
    for _ in range(3):  # each time, the file changes after the plan: skipped, nothing moved
        with open_session(manifest) as session, session.lock() as held:
            plan = session.plan()
            (store / "new.bin").write_bytes((store / "new.bin").read_bytes() + b"x")
            result = session.apply(plan, held)
            assert result.run_id is None and [n for n, _ in result.skipped] == ["new.bin"]
    assert [r.run_id for r in session.backups()] == [first.run_id]


def test_a_backup_folder_set_to_the_stores_parent_never_prunes_the_store(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """Even when the store holds an index that looks like a complete run of itself (and a store file
    called ``index.json``, the old index name, is backed up like any other)."""
    index = {"format_version": 1, "run_id": store.name, "created_ns": 1, "status": "complete", "store": str(store), "entries": []}
    manifest = write_manifest(backup={"dir": str(tmp_path), "keep": 1})
    for i in range(3):
        (store / "index.json").write_text(json.dumps(index))
        (store / INDEX_NAME).write_text(json.dumps(index))
        (store / f"stale{i}.bin").write_bytes(b"x")
        assert runner.invoke(app, ["apply", str(manifest), "--yes"]).exit_code == ExitCode.OK
    assert (store / "Llama-3.2-3B-Instruct-Q4_K_M.gguf").exists()


def test_restore_keeps_the_index_and_anything_it_did_not_put_there(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path]
) -> None:
    manifest = write_manifest()
    assert runner.invoke(app, ["apply", str(manifest), "--yes"]).exit_code == ExitCode.OK
    [run] = _backups(runner, manifest)
    run_dir = default_backup_root(str(store)) / str(run["run_id"])
    (run_dir / "someone-elses.txt").write_text("not listed in the index")
    assert runner.invoke(app, ["restore", str(run["run_id"]), "-m", str(manifest)]).exit_code == ExitCode.OK
    assert sorted(os.listdir(run_dir)) == [INDEX_NAME, "someone-elses.txt"]
    listing = runner.invoke(app, ["backups", "-m", str(manifest)]).stdout
    assert "restored" in listing and str(run["run_id"]) in listing
    again = runner.invoke(app, ["restore", str(run["run_id"]), "-m", str(manifest)])
    assert again.exit_code == ExitCode.ERROR and "was already restored" in again.stderr


# -- recovery and failures never leave the store stuck ----------------------------------------------


@pytest.mark.parametrize("kind", ["garbage", "folder", "symlink"])
def test_an_unreadable_journal_is_refused_clearly_and_abandon_releases_the_store(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path, kind: str
) -> None:
    journal = journal_path(str(store))
    if kind == "garbage":
        journal.write_bytes(b"\x00\x01 not json\n{}\n")
    elif kind == "folder":
        journal.mkdir()
    else:
        (tmp_path / "elsewhere").write_text("x")
        journal.symlink_to(tmp_path / "elsewhere")
    manifest = str(write_manifest())
    before = tree_digest(store)
    result = runner.invoke(app, ["apply", manifest, "--yes"])
    assert result.exit_code == ExitCode.ERROR and "internal error" not in result.stderr, result.output
    assert f"the journal {journal}" in result.stderr and "recover --abandon" in result.stderr
    assert tree_digest(store) == before
    gone = runner.invoke(app, ["recover", "-m", manifest, "--abandon"])
    assert gone.exit_code == ExitCode.OK and "nothing was moved" in gone.stdout, gone.output
    assert not os.path.lexists(journal) and len(list(store.parent.glob(f"{journal.name}.abandoned-*"))) == 1
    assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.OK
    if kind == "symlink":
        assert (tmp_path / "elsewhere").read_text() == "x"


def test_a_torn_journal_beside_orphaned_moves_is_not_taken_for_an_empty_run(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path]
) -> None:
    """A journal damaged to a torn header while moved files sit in an unfinished run: refused, then
    ``--abandon`` turns that run into a restorable one and every file comes back."""
    manifest = str(write_manifest())
    before = tree_digest(store)
    killed = subprocess.run([str(BIN / "ocr-reconcile"), "apply", manifest, "--yes"], env={**os.environ, "OCR_RECONCILE_CRASH_AT": "5"})
    assert killed.returncode == -9
    journal_path(str(store)).write_bytes(b'{"type": "beg')  # damaged afterwards
    result = runner.invoke(app, ["recover", "-m", manifest])
    assert result.exit_code == ExitCode.ERROR and "is torn, yet unfinished backup runs of this store exist" in result.stderr
    gone = runner.invoke(app, ["recover", "-m", manifest, "--abandon"])
    assert gone.exit_code == ExitCode.OK and "status abandoned" in gone.stdout, gone.output
    [run] = _backups(runner, Path(manifest))
    assert run["status"] == "abandoned" and run["files"] == 3  # killed after its 3rd rename
    assert runner.invoke(app, ["restore", str(run["run_id"]), "-m", manifest]).exit_code == ExitCode.OK
    assert tree_digest(store) == before


def test_recovery_tolerates_a_source_folder_removed_after_the_crash(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path]
) -> None:
    manifest = str(write_manifest())
    killed = subprocess.run([str(BIN / "ocr-reconcile"), "apply", manifest, "--yes"], env={**os.environ, "OCR_RECONCILE_CRASH_AT": "1"})
    assert killed.returncode == -9
    shutil.rmtree(store / "old")
    result = runner.invoke(app, ["recover", "-m", manifest])
    assert result.exit_code == ExitCode.OK and "vanished" in result.stdout, result.output
    assert not journal_path(str(store)).exists()


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_an_unusable_backup_folder_is_refused_before_the_journal(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path, kind: str
) -> None:
    target = tmp_path / "real-backups"
    target.mkdir()
    backups = tmp_path / "backups"
    if kind == "file":
        backups.write_text("a file")
    else:
        backups.symlink_to(target)
    before = tree_digest(store)
    result = runner.invoke(app, ["apply", str(write_manifest(backup={"dir": str(backups)})), "--yes"])
    assert result.exit_code == ExitCode.ERROR and f"backup folder {backups} cannot be used" in result.stderr, result.output
    assert tree_digest(store) == before and not journal_path(str(store)).exists() and not os.listdir(target)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder to another user")
def test_a_backup_folder_planted_by_another_user_is_refused(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """A hostile user who can write the store's parent pre-creates the default backup folder."""
    planted = default_backup_root(str(store))
    planted.mkdir()
    os.chown(planted, 65534, 65534)
    result = runner.invoke(app, ["apply", str(write_manifest()), "--yes"])
    assert result.exit_code == ExitCode.ERROR and "owned by uid 65534" in result.stderr, result.output
    assert not os.listdir(planted)


def test_a_backup_folder_that_becomes_unusable_after_a_crash_gives_a_clear_way_out(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    backups = tmp_path / "b"
    manifest = str(write_manifest(backup={"dir": str(backups)}))
    killed = subprocess.run([str(BIN / "ocr-reconcile"), "apply", manifest, "--yes"], env={**os.environ, "OCR_RECONCILE_CRASH_AT": "1"})
    assert killed.returncode == -9
    os.rmdir(backups)
    backups.write_text("now a file")
    result = runner.invoke(app, ["recover", "-m", manifest])
    assert result.exit_code == ExitCode.ERROR and "cannot be used" in result.stderr and "internal" not in result.stderr
    backups.unlink()
    assert runner.invoke(app, ["recover", "-m", manifest]).exit_code == ExitCode.OK


def test_a_closed_stdout_is_not_an_error(store: Path, write_manifest: Callable[..., Path]) -> None:
    """`apply --yes | head -0`: the reader is gone before the first line; every move still happens
    and the exit code is the work's (0), with no "internal error"."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([str(BIN / "ocr-reconcile"), "apply", str(write_manifest()), "--yes"], stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert result.returncode == ExitCode.OK, result.stderr
    assert b"internal error" not in result.stderr and b"Error" not in result.stderr
    assert not any((store / n).exists() for n in STALE)


def test_journal_error_is_part_of_the_api() -> None:
    assert issubclass(JournalError, Exception) and JournalError("/j", "is odd").reason == "unreadable_journal"


@pytest.fixture
def shared_base() -> Iterator[Path]:
    """A folder another user can reach (pytest's own tmp folder is 0700), removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="ocr-reconcile-shared-"))
    os.chmod(base, 0o777)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another (unprivileged) user")
def test_an_unprivileged_user_swapping_a_folder_for_a_link_mid_apply_redirects_nothing(shared_base: Path) -> None:
    """A real process of another user (uid 65534), with write access to the store, swaps ``old/`` for
    a link to its own folder right after the apply's first rename: the next move is skipped and its
    folder outside the store is untouched."""
    store = build_store(shared_base / "models")
    for folder in (store, store / "old"):
        os.chmod(folder, 0o777)
    outside = shared_base / "attacker"
    outside.mkdir(mode=0o777)
    (outside / "Llama-3.1-8B-Instruct-Q4_K_M.gguf").write_bytes(b"attacker's bait")
    original = (store / "old" / "Llama-3.1-8B-Instruct-Q4_K_M.gguf").read_bytes()
    away = shared_base / "old-away"
    swap = ["/bin/sh", "-c", 'mv "$1" "$2" && ln -s "$3" "$1"', "sh", str(store / "old"), str(away), str(outside)]

    def attack() -> None:
        if not (store / "old").is_symlink():
            subprocess.run(swap, user=65534, group=65534, check=True, cwd="/")

    manifest = shared_base / "m.yaml"
    manifest.write_text(yaml.safe_dump(manifest_doc(store={"path": str(store), "backend": "directory"})))
    with open_session(manifest) as session, session.lock() as held:
        plan = session.plan()
        with hooked("renamed", attack):
            result = session.apply(plan, held)
    assert (outside / "Llama-3.1-8B-Instruct-Q4_K_M.gguf").read_bytes() == b"attacker's bait"
    assert sorted(os.listdir(outside)) == ["Llama-3.1-8B-Instruct-Q4_K_M.gguf"]
    assert (away / "Llama-3.1-8B-Instruct-Q4_K_M.gguf").read_bytes() == original  # never moved, never lost
    assert "old/Llama-3.1-8B-Instruct-Q4_K_M.gguf" in dict(result.skipped)


def test_a_folder_swapped_for_a_link_after_a_crash_redirects_nothing_on_recovery(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """Killed right after its journal was written; ``old/`` is then swapped for a link to a folder
    outside the store: recovery skips that move, and the outside folder is untouched."""
    manifest = str(write_manifest())
    killed = subprocess.run([str(BIN / "ocr-reconcile"), "apply", manifest, "--yes"], env={**os.environ, "OCR_RECONCILE_CRASH_AT": "1"})
    assert killed.returncode == -9
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Llama-3.1-8B-Instruct-Q4_K_M.gguf").write_bytes(b"outside")
    os.rename(store / "old", tmp_path / "old-away")
    os.symlink(outside, store / "old")
    result = runner.invoke(app, ["recover", "-m", manifest])
    assert result.exit_code == ExitCode.OK, result.output
    assert "skipped old/Llama-3.1-8B-Instruct-Q4_K_M.gguf" in result.stdout
    assert sorted(os.listdir(outside)) == ["Llama-3.1-8B-Instruct-Q4_K_M.gguf"]
    assert (outside / "Llama-3.1-8B-Instruct-Q4_K_M.gguf").read_bytes() == b"outside"


# -- the second adversarial pass ----------------------------------------------------------------------


def _chown_or_link(path: Path) -> None:
    """Make ``path`` look planted: another user's (as root), else a second hard link."""
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    else:
        os.link(path, path.with_name(path.name + ".second-link"))


def test_a_journal_planted_by_another_user_is_never_acted_on(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """The store's parent is writable by the attacker: a forged journal naming a folder outside the
    store as a run to restore from must not move anything (it made root move any file)."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "secret.txt").write_text("secret")
    st = os.lstat(victim / "secret.txt")
    facts = {"name": "secret.txt", "kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino, "dev": st.st_dev}
    move = {"src": str(victim / "secret.txt"), "dst": str(store / "secret.txt"), "role": "restore", "facts": facts}
    header = {"type": "begin", "op": "restore", "run_id": "victim", "run_dir": str(victim), "store": str(store), "created_ns": 1}
    journal = journal_path(str(store))
    journal.write_text(json.dumps({**header, "manifest": {}, "moves": [move]}) + "\n")
    _chown_or_link(journal)
    result = runner.invoke(app, ["apply", str(write_manifest()), "--yes"])
    assert result.exit_code == ExitCode.ERROR and "not written by this user's runs" in result.stderr, result.output
    assert (victim / "secret.txt").read_text() == "secret" and not (store / "secret.txt").exists()


def test_a_forged_journal_of_this_user_cannot_move_outside_the_store_either(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """Even a journal that passes the owner check is only acted on for moves a run would make."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "secret.txt").write_text("secret")
    st = os.lstat(victim / "secret.txt")
    facts = {
        "name": "../victim/secret.txt",
        "kind": "file",
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "inode": st.st_ino,
        "dev": st.st_dev,
    }
    move = {"src": str(victim / "secret.txt"), "dst": str(tmp_path / "b" / "x"), "role": "backup", "facts": facts}
    header = {"type": "begin", "op": "apply", "run_id": "x", "run_dir": str(tmp_path / "b" / "x"), "store": str(store), "created_ns": 1}
    journal_path(str(store)).write_text(json.dumps({**header, "manifest": {}, "moves": [move]}) + "\n")
    result = runner.invoke(app, ["recover", "-m", str(write_manifest())])
    assert result.exit_code == ExitCode.ERROR and "that no run would make" in result.stderr, result.output
    assert (victim / "secret.txt").read_text() == "secret"


def test_a_cross_filesystem_copy_never_gains_set_id_bits(store: Path, write_manifest: Callable[..., Path], other_fs: Path) -> None:
    """A setuid file of another user, copied by root, was a root-owned setuid binary after restore."""
    name = "phi-2.Q4_K_M.gguf"
    only(store, name)
    os.chmod(store / name, 0o6755)
    if os.geteuid() == 0:
        os.chown(store / name, 65534, 65534)
        os.chmod(store / name, 0o6755)
    manifest = write_manifest(backup={"dir": str(other_fs / "backups")})
    with open_session(manifest) as session:
        result = session.apply(session.plan())
    copy = os.stat(other_fs / "backups" / str(result.run_id) / name)
    assert copy.st_mode & 0o7777 == 0o755
    if os.geteuid() == 0:
        assert (copy.st_uid, copy.st_gid) == (65534, 65534)


def test_pruning_never_follows_an_edited_index_outside_the_run(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    victim = tmp_path / "victim2"
    victim.mkdir()
    (victim / "precious.txt").write_text("precious")
    manifest = write_manifest(backup={"keep": 1})
    assert runner.invoke(app, ["apply", str(manifest), "--yes"]).exit_code == ExitCode.OK
    [run] = _backups(runner, manifest)
    index_path = default_backup_root(str(store)) / str(run["run_id"]) / INDEX_NAME
    index = json.loads(index_path.read_text())
    index["entries"].append({"name": "../../victim2/precious.txt", "kind": "file", "size": 8, "sha256": None, "link_target": None})
    index_path.write_text(json.dumps(index))
    (store / "new.gguf").write_bytes(b"x")
    assert runner.invoke(app, ["apply", str(manifest), "--yes"]).exit_code == ExitCode.OK
    assert (victim / "precious.txt").read_text() == "precious"


def test_a_backup_folder_every_user_may_write_is_refused(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    before = tree_digest(store)
    result = runner.invoke(app, ["apply", str(write_manifest(backup={"dir": str(shared)})), "--yes"])
    assert result.exit_code == ExitCode.ERROR and "every user may write in it" in result.stderr, result.output
    assert tree_digest(store) == before


def test_deleting_the_lock_file_never_lets_a_second_run_in(store: Path) -> None:
    from reconciler.base.errors import LockedError
    from reconciler.base.layout import lock_path
    from reconciler.disk.journal import store_lock

    with store_lock(str(store)):
        os.unlink(lock_path(str(store)))  # by another user, who can write the store's parent
        with pytest.raises(LockedError), store_lock(str(store)):
            pass


def test_a_journal_removed_after_a_crash_leaves_a_restorable_run(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path]
) -> None:
    manifest = str(write_manifest())
    before = tree_digest(store)
    killed = subprocess.run([str(BIN / "ocr-reconcile"), "apply", manifest, "--yes"], env={**os.environ, "OCR_RECONCILE_CRASH_AT": "4"})
    assert killed.returncode == -9
    journal_path(str(store)).unlink()
    result = runner.invoke(app, ["recover", "-m", manifest])
    assert result.exit_code == ExitCode.ERROR and "recover --abandon makes them restorable" in result.stderr, result.output
    gone = runner.invoke(app, ["recover", "-m", manifest, "--abandon"])
    assert gone.exit_code == ExitCode.OK and "It had no journal left" in gone.stdout, gone.output
    [run] = _backups(runner, Path(manifest))
    assert run["status"] == "abandoned"
    assert runner.invoke(app, ["restore", str(run["run_id"]), "-m", manifest]).exit_code == ExitCode.OK
    assert tree_digest(store) == before


def test_abandon_never_fails_because_its_name_is_taken(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = journal_path(str(store))
    os.mkfifo(journal)
    frozen = time.gmtime(1_767_225_600)  # the clock is pinned: the name it gives is taken, whatever the machine's speed
    monkeypatch.setattr(time, "gmtime", lambda *_: frozen)
    taken = Path(f"{journal}.abandoned-{time.strftime('%Y%m%dT%H%M%SZ', frozen)}")
    taken.write_text("taken")
    gone = runner.invoke(app, ["recover", "-m", str(write_manifest()), "--abandon"])
    assert gone.exit_code == ExitCode.OK, gone.output
    assert not os.path.lexists(journal) and taken.read_text() == "taken"
    [kept] = [p for p in journal.parent.glob(f"{journal.name}.abandoned-*") if p != taken]
    assert kept.name.startswith(taken.name + "-")  # the next name tried: the stamp and a random suffix


def test_files_with_odd_names_move_and_come_back(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """A control character, or bytes that are not UTF-8: apply, a saved plan, a snapshot and a
    restore all work (a control character made the whole run unrestorable; non-UTF-8 crashed
    ``plan --out``)."""
    odd = ["esc\x1b[31mred.gguf", os.fsdecode(b"bad\xff.gguf")]
    for name in odd:
        (store / name).write_bytes(b"odd")
    before = tree_digest(store)
    manifest = str(write_manifest())
    plan_file = tmp_path / "p.json"
    assert runner.invoke(app, ["plan", "--detailed-exitcode", manifest, "--out", str(plan_file)]).exit_code == ExitCode.CHANGES
    assert runner.invoke(app, ["snapshot", "-m", manifest, "--out", str(tmp_path / "s.json")]).exit_code == ExitCode.OK
    assert runner.invoke(app, ["apply", str(plan_file), "--yes"]).exit_code == ExitCode.OK
    assert not any((store / n).exists() for n in odd)
    [run] = _backups(runner, Path(manifest))
    assert runner.invoke(app, ["restore", str(run["run_id"]), "-m", manifest]).exit_code == ExitCode.OK
    assert tree_digest(store) == before


# -- the third pass ---------------------------------------------------------------------------------


def test_a_kept_journal_renamed_back_is_never_replayed(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    """``recover --abandon`` keeps the journal beside the store, where another user may rename it back:
    it is sealed, so it is refused instead of moving (now declared) files a second time."""
    manifest = str(write_manifest())
    killed = subprocess.run([str(BIN / "ocr-reconcile"), "apply", manifest, "--yes"], env={**os.environ, "OCR_RECONCILE_CRASH_AT": "4"})
    assert killed.returncode == -9
    journal = journal_path(str(store))
    assert runner.invoke(app, ["recover", "-m", manifest, "--abandon"]).exit_code == ExitCode.OK
    [kept] = store.parent.glob(f"{journal.name}.abandoned-*")
    os.rename(kept, journal)
    result = runner.invoke(app, ["recover", "-m", manifest])
    assert result.exit_code == ExitCode.ERROR and "was abandoned" in result.stderr, result.output


def test_a_live_journal_put_back_after_its_run_was_abandoned_is_refused(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    manifest = str(write_manifest())
    killed = subprocess.run([str(BIN / "ocr-reconcile"), "apply", manifest, "--yes"], env={**os.environ, "OCR_RECONCILE_CRASH_AT": "4"})
    assert killed.returncode == -9
    journal = journal_path(str(store))
    os.rename(journal, tmp_path / "hidden")  # by another user, who can write the store's parent
    assert runner.invoke(app, ["recover", "-m", manifest, "--abandon"]).exit_code == ExitCode.OK
    os.rename(tmp_path / "hidden", journal)
    before = tree_digest(store)
    result = runner.invoke(app, ["apply", manifest, "--yes"])
    assert result.exit_code == ExitCode.ERROR and "which is abandoned already" in result.stderr, result.output
    assert tree_digest(store) == before


def test_a_fifo_swapped_in_for_the_journal_never_blocks(tmp_path: Path) -> None:
    from reconciler.disk.journal import Journal

    path = tmp_path / "journal"
    os.mkfifo(path)
    with pytest.raises(JournalError, match="changed while it was being read"):
        Journal.reopen(path)


def test_abandon_never_writes_into_a_run_another_user_planted(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest())
    assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.OK  # makes the backup folder, ours
    planted = default_backup_root(str(store)) / "20260101T000000Z-abcdef"
    planted.mkdir()
    st = os.stat(store)
    index = {"format_version": 1, "run_id": planted.name, "created_ns": 1, "status": "in-progress", "store": str(store)}
    (planted / INDEX_NAME).write_text(json.dumps({**index, "store_id": [st.st_dev, st.st_ino], "entries": []}))
    os.mkfifo(planted / (INDEX_NAME + ".tmp"))
    _chown_or_link(planted / INDEX_NAME)
    result = runner.invoke(app, ["recover", "-m", manifest, "--abandon"])
    assert result.exit_code == ExitCode.OK and "Nothing to abandon" in result.stdout, result.output
    assert json.loads((planted / INDEX_NAME).read_text())["status"] == "in-progress"


def test_a_forced_restore_killed_early_is_finished_without_false_conflicts(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], other_fs: Path
) -> None:
    """Killed before it displaced the file in the way: recovery displaces it, then restores, as planned."""
    manifest = str(write_manifest(backup={"dir": str(other_fs / "b")}))
    assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.OK
    [run] = _backups(runner, Path(manifest))
    name = "phi-2.Q4_K_M.gguf"
    original = (other_fs / "b" / str(run["run_id"]) / name).read_bytes()
    (store / name).write_bytes(b"new")
    for step in (1, 2, 3):
        cmd = [str(BIN / "ocr-reconcile"), "restore", str(run["run_id"]), name, "-m", manifest, "--force"]
        if subprocess.run(cmd, env={**os.environ, "OCR_RECONCILE_CRASH_AT": str(step)}).returncode == -9:
            break
    result = runner.invoke(app, ["recover", "-m", manifest])
    assert result.exit_code == ExitCode.OK and "skipped" not in result.stdout.replace("0 skipped", ""), result.output
    assert (store / name).read_bytes() == original
    [displaced] = [r for r in _backups(runner, Path(manifest)) if str(r["run_id"]).endswith("-displaced")]
    assert (other_fs / "b" / str(displaced["run_id"]) / name).read_bytes() == b"new"


def test_names_in_recovery_output_cannot_forge_lines() -> None:
    from reconciler.disk.recovery import Recovery
    from reconciler.render.runs import recovery_text

    text = recovery_text(Recovery("apply", "r", ("z\x1b[2J\nerror: FAKE",), (), (("y\nerror: FAKE", "why\nerror: FAKE"),)))
    assert "\nerror: FAKE" not in text and "\x1b" not in text


def test_a_forced_restore_killed_at_every_step_finishes_without_false_conflicts(runner: CliRunner, tmp_path: Path) -> None:
    """Same filesystem, renames group-committed: the displacement is recorded before the restore moves a
    file into its place, so whichever step the kill lands on, recovery displaces and restores as planned."""
    name = "phi-2.Q4_K_M.gguf"
    step = 1
    while True:
        case = tmp_path / f"k{step}"
        store = build_store(case / "models")
        manifest = case / "m.yaml"
        manifest.write_text(yaml.safe_dump(manifest_doc(store={"path": str(store), "backend": "directory"})))
        assert runner.invoke(app, ["apply", str(manifest), "--yes"]).exit_code == ExitCode.OK
        [run] = _backups(runner, manifest)
        original = (default_backup_root(str(store)) / str(run["run_id"]) / name).read_bytes()
        (store / name).write_bytes(b"new")
        cmd = [str(BIN / "ocr-reconcile"), "restore", str(run["run_id"]), name, "-m", str(manifest), "--force"]
        killed = subprocess.run(cmd, env={**os.environ, "OCR_RECONCILE_CRASH_AT": str(step)}, capture_output=True).returncode == -9
        if killed:
            result = runner.invoke(app, ["recover", "-m", str(manifest)])
            done = "0 skipped" in result.stdout or "Nothing to recover" in result.stdout  # (the last step removes the journal)
            assert result.exit_code == ExitCode.OK and done, (step, result.output)
        assert (store / name).read_bytes() == original, step
        [displaced] = [r for r in _backups(runner, manifest) if str(r["run_id"]).endswith("-displaced")]
        assert displaced["files"] == 1 and (default_backup_root(str(store)) / str(displaced["run_id"]) / name).read_bytes() == b"new"
        if not killed:
            break
        step += 1
    assert step > 5  # every step of the restore was killed once
