"""Issue 10, first part: a move within one filesystem reads no byte of the file; a copy across
filesystems reads it once; a restore checks identities instead of hashing. Measured in bytes read
(``rchar`` in ``/proc/self/io``: a count, not a time), on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler import open_session

SIZE = 64 * 1024 * 1024
NAME = "big-stale.gguf"


def _read_so_far() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.fixture
def big(store: Path) -> Path:
    with open(store / NAME, "wb") as fh:  # real bytes (a sparse file reads as fast, but zeros prove less)
        chunk = os.urandom(1024 * 1024)
        for _ in range(SIZE // len(chunk)):
            fh.write(chunk)
    return store / NAME


pytestmark = pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/self/io to count bytes read")


def test_a_move_within_one_filesystem_reads_no_byte_and_neither_does_its_restore(
    store: Path, big: Path, write_manifest: Callable[..., Path]
) -> None:
    with open_session(write_manifest()) as session:
        plan = session.plan()
        before = _read_so_far()
        result = session.apply(plan)
        read = _read_so_far() - before
        assert NAME in {m.name for m in result.moved} and read < SIZE // 8, f"apply read {read} bytes"
        [entry] = [m for m in result.moved if m.name == NAME]
        assert entry.method == "rename" and entry.sha256 is None and entry.identity is not None
        assert result.run_id is not None
        before = _read_so_far()
        session.restore(session.plan_restore(result.run_id, [NAME]))
        read = _read_so_far() - before
    assert big.stat().st_size == SIZE and read < SIZE // 8, f"restore read {read} bytes"


def test_a_copy_across_filesystems_reads_the_file_once(store: Path, big: Path, write_manifest: Callable[..., Path], other_fs: Path) -> None:
    with open_session(write_manifest(backup={"dir": str(other_fs / "b")})) as session:
        plan = session.plan()
        before = _read_so_far()
        result = session.apply(plan)
        read = _read_so_far() - before
    [entry] = [m for m in result.moved if m.name == NAME]
    assert entry.method == "copy" and entry.sha256 is not None
    assert SIZE <= read < SIZE + SIZE // 2, f"apply read {read} bytes for a {SIZE}-byte file: more than one pass"


def test_a_restore_across_filesystems_verifies_the_recorded_hash_on_its_one_pass(
    store: Path, big: Path, write_manifest: Callable[..., Path], other_fs: Path
) -> None:
    """Bit rot that keeps the identity (same inode, size and mtime) is caught by the copy's own hash."""
    from reconciler import BackupError

    with open_session(write_manifest(backup={"dir": str(other_fs / "b")})) as session:
        result = session.apply(session.plan())
        assert result.run_dir is not None and result.run_id is not None
        copy = result.run_dir / NAME
        st = copy.stat()
        with open(copy, "r+b") as fh:
            fh.seek(SIZE // 2)
            fh.write(b"rot")
        os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
        planned = session.plan_restore(result.run_id, [NAME])
        before = _read_so_far()
        with pytest.raises(BackupError, match="does not match the sha256 recorded for it"):
            session.restore(planned)
        assert _read_so_far() - before < SIZE + SIZE // 2
    assert not big.exists() and copy.exists() and not list(store.glob(".ocr-reconcile-tmp-*"))


# -- the hash cache ----------------------------------------------------------------------------------------


def _pinned(write_manifest: Callable[..., Path], digest: str) -> Path:
    return write_manifest(models=[{"name": "Llama-3.2-3B-Instruct-Q4_K_M.gguf"}, {"name": NAME, "sha256": digest}])


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_unchanged_pinned_model_is_not_read_again(store: Path, big: Path, write_manifest: Callable[..., Path]) -> None:
    from reconciler.base.layout import hash_cache_path

    manifest = _pinned(write_manifest, _digest(big))
    with open_session(manifest) as session:
        before = _read_so_far()
        assert session.plan().converges
        first = _read_so_far() - before
        before = _read_so_far()
        assert session.plan().converges
        second = _read_so_far() - before
    assert first >= SIZE and second < SIZE // 8, (first, second)
    assert hash_cache_path(str(store)).exists()
    with open_session(manifest, hash_cache=False) as session:  # --no-cache
        before = _read_so_far()
        assert session.plan().converges
        assert _read_so_far() - before >= SIZE


def test_a_changed_file_is_hashed_again(store: Path, big: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = _pinned(write_manifest, _digest(big))
    with open_session(manifest) as session:
        assert session.plan().converges
        with open(big, "r+b") as fh:  # same size, same mtime restored: only ctime tells
            st = os.fstat(fh.fileno())
            fh.write(b"changed")
        os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert not session.plan().converges  # the pin no longer matches: the cache was not trusted


def test_a_file_another_user_could_change_is_never_cached(store: Path, big: Path, write_manifest: Callable[..., Path]) -> None:
    """Group-writable (or another user's): its bytes could change behind its times (a writable mapping)."""
    big.chmod(0o664)
    with open_session(_pinned(write_manifest, _digest(big))) as session:
        assert session.plan().converges
        before = _read_so_far()
        assert session.plan().converges
        assert _read_so_far() - before >= SIZE  # read again: not trusted from the cache


def test_a_path_swapped_while_it_is_hashed_caches_the_file_that_was_read(store: Path, write_manifest: Callable[..., Path]) -> None:
    """The hostile race (a user who can write the store swaps folders: a file's own times do not move):
    the name leads to a bad file when it is looked up, to the good one when it is opened and read, and
    to the bad one again afterwards. The cache must pair the good hash with the file it read (the
    descriptor's identity), so the bad file is hashed again next time."""
    (store / "qwen").mkdir(exist_ok=True)
    (store / ".bad").mkdir()
    good_bytes = os.urandom(4 << 20)
    (store / ".bad" / "m.gguf").write_bytes(good_bytes)  # starts aside: the good file
    (store / "qwen" / "m.gguf").write_bytes(good_bytes[:-1] + b"!")  # the bad one, where the name leads
    good = _digest(store / ".bad" / "m.gguf")

    def swap() -> None:
        os.rename(store / "qwen", store / ".swap")
        os.rename(store / ".bad", store / "qwen")
        os.rename(store / ".swap", store / ".bad")

    class Swapper(Recorder):
        def begin(self, label: str, total_bytes: int) -> None:  # after the lookup, before the open
            swap()
            super().begin(label, total_bytes)

        def advance(self, done_bytes: int) -> None:  # the good file is open and being read
            if not any(kind == "advance" for kind, _ in self.events):
                swap()
            super().advance(done_bytes)

    manifest = write_manifest(models=[{"name": "Llama-3.2-3B-Instruct-Q4_K_M.gguf"}, {"name": "qwen/m.gguf", "sha256": good}])
    with open_session(manifest, progress=Swapper()) as session:
        session.plan()
    with open_session(manifest) as session:
        assert not session.plan().converges, "the cache paired the good hash with the swapped-in bad file"


@pytest.mark.parametrize("kind", ["garbage", "lax mode", "another user"])
def test_a_cache_that_is_not_this_users_own_is_never_trusted(
    store: Path, big: Path, write_manifest: Callable[..., Path], kind: str
) -> None:
    """A hostile user who can write the store's parent plants a cache saying a tampered model matches its pin."""
    import json as _json

    from reconciler.base.layout import hash_cache_path

    pin = _digest(big)
    with open(big, "r+b") as fh:
        fh.write(b"tampered")
    st = os.stat(big)
    key = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    cache = hash_cache_path(str(store))
    if kind == "garbage":
        cache.write_text("{not json")
    else:
        cache.write_text(_json.dumps({"format": 1, "files": {NAME: {"key": key, "sha256": pin}}}))
        if kind == "lax mode":
            os.chmod(cache, 0o666)
        elif os.geteuid() == 0:
            os.chown(cache, 65534, 65534)
        else:
            pytest.skip("needs root to give the cache to another user")
    with open_session(_pinned(write_manifest, pin)) as session:
        assert not session.plan().converges  # the tampered model is a mismatch, whatever the planted cache says


def test_no_cache_on_the_command_line_writes_no_cache(store: Path, big: Path, write_manifest: Callable[..., Path]) -> None:
    from typer.testing import CliRunner

    from reconciler.base.layout import hash_cache_path
    from reconciler.cli.app import app

    manifest = str(_pinned(write_manifest, _digest(big)))
    assert CliRunner().invoke(app, ["--no-cache", "plan", manifest]).exit_code == 0
    assert not hash_cache_path(str(store)).exists()
    assert CliRunner().invoke(app, ["plan", manifest]).exit_code == 0
    assert hash_cache_path(str(store)).exists()


class Recorder:
    """A Progress that keeps what it was told (a real implementation of the seam, for the library's side)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def begin(self, label: str, total_bytes: int) -> None:
        self.events.append(("begin", (label, total_bytes)))

    def advance(self, done_bytes: int) -> None:
        self.events.append(("advance", done_bytes))

    def end(self) -> None:
        self.events.append(("end", None))

    def part(self, label: str, total_bytes: int) -> Recorder:
        self.events.append(("part", (label, total_bytes)))
        return self


def test_hashing_reports_its_progress_in_bytes(store: Path, big: Path, write_manifest: Callable[..., Path]) -> None:
    recorder = Recorder()
    with open_session(_pinned(write_manifest, _digest(big)), progress=recorder) as session:
        session.plan()
        assert recorder.events[0] == ("begin", ("hashing 1 file", SIZE))
        advanced = [n for kind, n in recorder.events if kind == "advance" and isinstance(n, int)]
        assert sum(advanced) == SIZE and recorder.events[-1] == ("end", None)
        assert len(advanced) >= SIZE >> 20  # chunk by chunk, not once the whole file is read
        recorder.events.clear()
        session.plan()  # cached: nothing to hash, nothing to report
        assert recorder.events == []


def test_the_cli_prints_plain_progress_lines_off_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from reconciler.cli import progress as cli_progress

    monkeypatch.setattr(cli_progress, "PLAIN_EVERY_S", 0.0)
    shown = cli_progress.TerminalProgress()
    shown.begin("hashing 2 files", 2048)
    shown.advance(1024)
    shown.end()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "ocr-reconcile: hashing 2 files: 1.0 KiB of 2.0 KiB\n"
    quiet = cli_progress.TerminalProgress(quiet=True)
    quiet.begin("hashing 2 files", 2048)
    quiet.advance(2048)
    assert capsys.readouterr().err == ""


def test_apply_reports_its_progress_a_copy_chunk_by_chunk(
    store: Path, big: Path, write_manifest: Callable[..., Path], other_fs: Path
) -> None:
    """Across filesystems the copy advances as it writes; every byte planned is reported once."""
    recorder = Recorder()
    with open_session(write_manifest(backup={"dir": str(other_fs / "b")}), progress=recorder) as session:
        plan = session.plan()
        recorder.events.clear()
        session.apply(plan)
    moved = [c for c in plan.changes if c.action.value == "delete"]
    total = sum(c.size for c in moved if c.before is not None and c.before.kind == "file")
    assert recorder.events[0] == ("begin", (f"apply: {len(moved)} files", total))
    advanced = [n for kind, n in recorder.events if kind == "advance" and isinstance(n, int)]
    assert sum(advanced) == total and len(advanced) >= SIZE // (8 * 1024 * 1024)  # many steps for the one big copy
    assert recorder.events[-1] == ("end", None)


def test_a_long_apply_shows_progress_on_stderr_never_on_stdout(store: Path, big: Path, write_manifest: Callable[..., Path]) -> None:
    """Off a terminal the CLI prints a plain line (here every 0 s); stdout, which may carry JSON, stays clean."""
    code = "from reconciler.cli import progress as cli_progress; cli_progress.PLAIN_EVERY_S = 0.0; from reconciler.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "apply", "--yes", str(write_manifest())], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    lines = [x for x in done.stderr.splitlines() if x.startswith("ocr-reconcile: apply: ")]
    done_bytes, total = lines[-1].rsplit(": ", 1)[1].split(" of ")
    assert done_bytes == total, done.stderr  # the last line: every byte moved
    assert "ocr-reconcile:" not in done.stdout


def test_on_a_terminal_the_bar_goes_to_stderr_and_stdout_gets_only_the_document(
    store: Path, big: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """stdout redirected to a file, stderr a terminal: the Rich bar is drawn on the terminal, and the
    file holds the JSON document alone (Rich's own console would write to stdout)."""
    from ..conftest import run_with_stderr_on_a_terminal

    manifest = _pinned(write_manifest, _digest(big))
    with open(tmp_path / "plan.json", "wb") as out:
        done, drawn = run_with_stderr_on_a_terminal(["--no-cache", "plan", "--json", str(manifest)], stdout=out)
    assert done.returncode == 0
    document = (tmp_path / "plan.json").read_bytes()
    assert document.startswith(b"{") and json.loads(document)["format_version"]
    assert b"hashing 1 file" in drawn
