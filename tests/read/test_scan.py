"""Scanning a store that holds a subfolder the scanning user cannot read."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.read.scan import scan_store
from reconciler.read.stores import DirectoryStore

from ..reliability.in_child import in_child

NOBODY = 65534
UNREADABLE = "subfolder 'locked' is not readable; its files were not scanned"


@pytest.fixture
def store_with_locked_folder() -> Iterator[Path]:
    """``models/a.gguf`` and ``models/locked/x.gguf``, under a fresh 0755 folder in /tmp (pytest's
    tmp_path is 0700, and the checkout may be anywhere: an unprivileged user must reach the store)."""
    base = Path(tempfile.mkdtemp(prefix="ocr-reconcile-perm-", dir="/tmp" if os.path.isdir("/tmp") else None))
    try:
        base.chmod(0o755)
        models = base / "models"
        (models / "locked").mkdir(parents=True)
        (models / "locked" / "x.gguf").write_text("x")
        (models / "a.gguf").write_text("a")
        yield models
    finally:
        for folder, subfolders, _ in os.walk(base):  # top-down: each subfolder is opened up before it is entered
            for name in subfolders:
                os.chmod(os.path.join(folder, name), 0o755)
        shutil.rmtree(base)


def _scan(models: Path) -> tuple[list[str], list[str]]:
    scan = scan_store(DirectoryStore(models))
    return [f.name for f in scan.files], list(scan.warnings)


def _scan_as_nobody(models: Path) -> tuple[list[str], list[str]]:
    """Scan in a forked child that dropped root for uid/gid 65534 and no groups. Everything it runs is
    already imported, so nothing under the checkout (wherever it is) has to be readable to that user."""

    def scan_as_nobody() -> dict[str, Any]:
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        except PermissionError as exc:
            return {"skip": f"cannot drop privileges here: {exc}"}
        files, warnings = _scan(models)
        return {"files": files, "warnings": warnings}

    answer = in_child(scan_as_nobody)
    if "skip" in answer:
        pytest.skip(answer["skip"])
    assert "error" not in answer, answer["error"]
    return answer["files"], answer["warnings"]


def test_unreadable_subfolder_is_a_warning_not_a_failure(store_with_locked_folder: Path) -> None:
    """A subfolder the user cannot open is reported as one warning and its files are not listed, while
    the rest of the store is scanned. Root reads everything, so as root the unreadable scan runs in a
    child that became uid 65534; as any other user the scan runs in this process."""
    models = store_with_locked_folder
    assert _scan(models) == (["a.gguf", "locked/x.gguf"], [])  # readable: everything, no warning (and every import done)
    (models / "locked").chmod(0o000)
    if os.geteuid() == 0:
        files, warnings = _scan_as_nobody(models)
    else:
        if os.access(models / "locked", os.R_OK | os.X_OK):
            pytest.skip("this user can read a mode-000 folder (a capability or a filesystem without permissions)")
        files, warnings = _scan(models)
    assert files == ["a.gguf"]
    assert warnings == [UNREADABLE]


def test_a_listable_but_unsearchable_subfolder_is_a_warning(store_with_locked_folder: Path) -> None:
    """Mode r-- (list, but not enter): its names can be read, its files not examined. A warning for each,
    never an internal error, and the rest of the store is scanned."""
    models = store_with_locked_folder
    assert _scan(models) == (["a.gguf", "locked/x.gguf"], [])  # every import done before privileges drop
    (models / "locked").chmod(0o444)
    if os.geteuid() == 0:
        files, warnings = _scan_as_nobody(models)
    else:
        if os.access(models / "locked", os.X_OK):
            pytest.skip("this user can search a mode-444 folder (a capability or a filesystem without permissions)")
        files, warnings = _scan(models)
    assert files == ["a.gguf"]
    assert warnings == ["'locked/x.gguf' cannot be examined (Permission denied); it was not scanned"]
