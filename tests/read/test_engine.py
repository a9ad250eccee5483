"""The real engine (aspose-ocr-python-net), in subprocesses with their own XDG_DATA_HOME.

The .NET runtime reads the environment once, so every engine call runs in a fresh process.
The unlicensed engine lists only files named Llama-3.2-3B-Instruct-Q4_K_M.gguf (any case): the
store below uses that name at several depths so the engine itself shows its one-level rule.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ..conftest import BIN, LLAMA, run_cli, tree_digest
from ..decide.test_planfile import assert_plan_schema

pytestmark = pytest.mark.engine

RAW_LIST = """
import json, os
os.environ.setdefault("DOTNET_SYSTEM_GLOBALIZATION_INVARIANT", "1")
from aspose.ocr.ai import AsposeAI
ai = AsposeAI()
print(json.dumps({"path": ai.get_local_path(), "items": list(ai.list_local())}))
ai.free_resources()
"""


@pytest.fixture
def xdg(tmp_path: Path) -> Path:
    """XDG_DATA_HOME with an engine store holding files at depth 0, 1 and 2, symlinks and stale files."""
    models = tmp_path / "xdg" / "Aspose.AI.LLM" / "models"
    (models / "sub" / "deep").mkdir(parents=True)
    (models / "qwen").mkdir()
    (models / LLAMA).write_bytes(b"declared model")
    (models / "sub" / LLAMA).write_bytes(b"same name, one level down")
    (models / "sub" / "stale.bin").write_bytes(b"stale in a subfolder")
    (models / "sub" / "deep" / LLAMA).write_bytes(b"two levels down: invisible to the engine")
    (models / "qwen" / "tokenizer.json").write_bytes(b"{}")
    (models / "old.gguf").write_bytes(b"stale at top")
    (models / LLAMA.upper()).symlink_to("old.gguf")  # a symlink the engine lists (case-insensitive name)
    (models / "qwen" / LLAMA.lower()).symlink_to("../sub")  # a symlink to a folder: not a file
    return tmp_path / "xdg"


def engine_env(xdg: Path) -> dict[str, str]:
    return {"XDG_DATA_HOME": str(xdg), "DOTNET_SYSTEM_GLOBALIZATION_INVARIANT": "1"}


def write_manifest(tmp_path: Path, **extra: object) -> Path:
    doc = {
        "apiVersion": "ocr-reconcile/v1",
        "kind": "ModelState",
        "metadata": {"name": "engine-test"},
        "store": {"backend": "aspose", "path": None},
        "models": [{"name": LLAMA}],
        "whitelist": ["*/tokenizer.json"],
        "in_progress": {"min_age": 0},
        **extra,
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def raw_list(xdg: Path) -> tuple[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", RAW_LIST], capture_output=True, text=True, env={**os.environ, **engine_env(xdg)}, check=True
    )
    data = json.loads(out.stdout)
    return data["path"], data["items"]


def test_scan_flags_equal_the_real_list_local_and_follow_the_one_level_rule(xdg: Path, tmp_path: Path) -> None:
    path, items = raw_list(xdg)
    models = xdg / "Aspose.AI.LLM" / "models"
    assert path == str(models)
    engine_names = {os.path.relpath(p, path) for p in items}
    # The engine itself: depth 0 and 1 listed, depth 2 not, a symlink to a file listed, to a folder not.
    assert engine_names == {LLAMA, f"sub/{LLAMA}", LLAMA.upper()}

    result = run_cli("list", str(write_manifest(tmp_path)), "--json", env=engine_env(xdg))
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    engine = {"licensed": False, "listed": 3, "hid_files": True}
    assert listed["store"] == {"path": str(models), "backend": "aspose", "engine": engine, "inode": models.stat().st_ino}
    flags = {f["name"]: f["engine_visible"] for f in listed["files"]}
    assert {n for n, v in flags.items() if v} == engine_names
    # The folder scan applies the same one-level rule, and sees what the engine hid.
    assert set(flags) == {LLAMA, LLAMA.upper(), "old.gguf", f"sub/{LLAMA}", "sub/stale.bin", "qwen/tokenizer.json"}
    assert f"sub/deep/{LLAMA}" not in flags


def test_plan_says_the_engine_hid_files(xdg: Path, tmp_path: Path) -> None:
    result = run_cli("plan", "--detailed-exitcode", str(write_manifest(tmp_path)), env=engine_env(xdg))
    assert result.returncode == 2, result.stderr
    assert "backend: aspose" in result.stdout
    notes = [line for line in result.stdout.splitlines() if line.startswith("Note: the engine is unlicensed")]
    assert len(notes) == 1 and "listed 3 of 6 files" in notes[0]


def test_apply_never_moves_a_file_the_plan_did_not_name(xdg: Path, tmp_path: Path) -> None:
    manifest = str(write_manifest(tmp_path))
    models = xdg / "Aspose.AI.LLM" / "models"
    before = tree_digest(models)
    plan = json.loads(run_cli("plan", "--detailed-exitcode", manifest, "--json", env=engine_env(xdg)).stdout)
    assert_plan_schema(plan)
    named = {c["name"] for c in plan["changes"] if c["actions"] == ["delete"]}
    assert named == {"old.gguf", f"sub/{LLAMA}", "sub/stale.bin"}
    # a case variant of a declared name is never moved (one file on a case-folding filesystem)
    [upper] = [c for c in plan["changes"] if c["name"] == LLAMA.upper()]
    assert upper["actions"] == ["ignore"] and "only by case" in upper["reason"]
    applied = run_cli("apply", manifest, "--yes", env=engine_env(xdg))
    assert applied.returncode == 0, applied.stderr
    after = tree_digest(models)
    assert set(before) - set(after) == named
    assert all(after[n] == before[n] for n in after)
    backup = models.parent / "models.ocr-reconcile-backups"
    [run] = [p for p in backup.iterdir()]
    backed = tree_digest(run)
    assert {n: backed[n] for n in named} == {n: before[n] for n in named}
    assert run_cli("apply", manifest, "--yes", env=engine_env(xdg)).stdout.count("No changes.") == 1


POINTED_LIST = """
import json, os, sys
os.environ.setdefault("DOTNET_SYSTEM_GLOBALIZATION_INVARIANT", "1")
from aspose.ocr.ai import AsposeAI, AsposeAIModelConfig, SpellCheckAIProcessor
ai = AsposeAI()
config = AsposeAIModelConfig()
config.allow_auto_download = False
config.directory_model_path = sys.argv[1]
try:
    ai.set_post_processor(SpellCheckAIProcessor(), config)
except Exception:
    pass  # llama's native library does not load on a test host: no model is loaded
assert not ai.is_initialized(), "llama loaded here: this oracle must not run on a host with llama"
print(json.dumps({"path": ai.get_local_path(), "items": list(ai.list_local())}))
ai.free_resources()
"""
NATIVE_LOAD = "find library=liblibdl"  # the dynamic loader's log of set_post_processor's native-load attempt


def test_a_custom_store_is_listed_as_the_engine_would_without_pointing_the_engine_there(xdg: Path, tmp_path: Path) -> None:
    """The engine reaches another folder only through set_post_processor, which loads llama (and a
    model) where llama loads: ocr-reconcile lists such a folder by the engine's rules instead. The
    real engine, pointed there by this test alone, is the oracle; the dynamic loader's log shows
    that ocr-reconcile never tried the native load, and that the oracle did."""
    custom = tmp_path / "custom-store"
    for sub in ("sub/deep", "b", "qwen"):
        (custom / sub).mkdir(parents=True)
    for name in (
        LLAMA,
        "stale.bin",
        f"sub/{LLAMA}",
        f"sub/deep/{LLAMA}",
        f"b/{LLAMA.lower()}",
        LLAMA + " ",
        LLAMA.replace("I", "\u0131"),
        LLAMA.replace("K", "\u212a"),
        LLAMA.replace("gguf", "GGUF"),
    ):
        (custom / name).write_bytes(b"not a model")
    (custom / "qwen" / LLAMA).symlink_to("../sub")  # a folder
    (custom / "b" / LLAMA.upper()).symlink_to("gone")  # broken: still a file to the engine
    env = {**os.environ, **engine_env(xdg), "LD_DEBUG": "libs"}
    oracle = subprocess.run([sys.executable, "-c", POINTED_LIST, str(custom)], capture_output=True, text=True, env=env, check=True)
    assert NATIVE_LOAD in oracle.stderr
    data = json.loads(oracle.stdout)
    assert data["path"] == str(custom)
    engine_names = {os.path.relpath(p, custom) for p in data["items"]}

    result = run_cli("list", str(write_manifest(tmp_path)), "--json", "--store", str(custom), env={**engine_env(xdg), "LD_DEBUG": "libs"})
    assert result.returncode == 0, result.stderr
    assert NATIVE_LOAD not in result.stderr
    listed = json.loads(result.stdout)
    assert listed["store"]["path"] == str(custom)
    assert {f["name"] for f in listed["files"] if f["engine_visible"]} == engine_names
    assert engine_names == {LLAMA, f"sub/{LLAMA}", f"b/{LLAMA.lower()}", f"b/{LLAMA.upper()}", LLAMA.replace("gguf", "GGUF")}


FREED = "ocr-reconcile: engine: free_resources() done"


def test_free_resources_on_success(xdg: Path, tmp_path: Path) -> None:
    result = run_cli("-v", "plan", "--detailed-exitcode", str(write_manifest(tmp_path)), env=engine_env(xdg))
    assert result.returncode == 2
    assert result.stderr.count(FREED) == 1


def test_free_resources_on_error(xdg: Path, tmp_path: Path) -> None:
    inside = xdg / "Aspose.AI.LLM" / "models" / "backups"
    models = xdg / "Aspose.AI.LLM" / "models"
    before = tree_digest(models)
    result = run_cli("-v", "apply", "--yes", str(write_manifest(tmp_path, backup={"dir": str(inside)})), env=engine_env(xdg))
    assert result.returncode == 1
    assert "inside the store" in result.stderr
    assert result.stderr.count(FREED) == 1
    assert "engine: opened" in result.stderr  # the error came after the engine was opened
    assert tree_digest(models) == before


def test_free_resources_on_ctrl_c(xdg: Path, tmp_path: Path) -> None:
    """A real Ctrl-C typed at the confirmation prompt, through a pseudo-terminal."""
    models = xdg / "Aspose.AI.LLM" / "models"
    before = tree_digest(models)
    argv = [str(BIN / "ocr-reconcile"), "-v", "apply", str(write_manifest(tmp_path))]
    env = {**os.environ, **engine_env(xdg), "TERM": "dumb"}
    pid, fd = pty.fork()
    if pid == 0:  # child: becomes the session leader with the pty as controlling terminal
        for sig in (signal.SIGINT, signal.SIGQUIT):  # a background pytest (`cmd &`) ignores them; a terminal does not
            signal.signal(sig, signal.SIG_DFL)
        os.execve(argv[0], argv, env)
    output = b""
    # Generous safety cap only (a swallowed Ctrl-C must fail the test, not hang it); no assertion
    # depends on how fast the machine is: the loop ends when the child closes the terminal.
    deadline = time.monotonic() + 600
    sent = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child exited and the pty closed
                break
            if not chunk:
                break
            output += chunk
        if not sent and b"[y/N]" in output:
            os.write(fd, b"\x03")  # the terminal turns this into SIGINT for the foreground group
            sent = True
    if time.monotonic() >= deadline:  # still running after the cap: Ctrl-C was swallowed; end it so the test fails
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)  # the terminal closed: the child is exiting
    os.close(fd)
    text = output.decode(errors="replace")
    assert sent, text
    assert os.waitstatus_to_exitcode(status) == 130, text
    assert "Interrupted." in text
    assert text.count(FREED) == 1, text
    assert tree_digest(models) == before


@pytest.mark.parametrize("content", [None, "<License><Data>not a real license</Data></License>"])
def test_bad_license_is_a_one_line_error(xdg: Path, tmp_path: Path, content: str | None) -> None:
    """A missing or bogus license: exit 1 and one line, even where the engine itself aborts (no OpenSSL 1.x)."""
    lic = tmp_path / "Aspose.OCR.lic"
    if content is not None:
        lic.write_text(content)
    result = run_cli("list", str(write_manifest(tmp_path)), "--license", str(lic), env=engine_env(xdg))
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and str(lic) in line
