"""Issue 11: declared models installed from a mirror, an HTTP server or the Hugging Face Hub, verified,
resumable, and never unverified in the store. Everything is served locally (tests/model_server.py)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.base.errors import ExitCode
from reconciler.base.layout import downloads_path

from ..conftest import LLAMA, run_cli, tree_digest
from ..model_server import ModelServer

SIZE = 3 * 1024 * 1024 + 7


def _blob(name: str, size: int = SIZE) -> bytes:
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server() -> Iterator[ModelServer]:
    with ModelServer().running() as running:
        yield running


@pytest.fixture
def empty_store(tmp_path: Path) -> Path:
    store = tmp_path / "models"
    store.mkdir()
    (store / LLAMA).write_bytes(b"the declared model that is here already")
    return store


def _manifest(tmp_path: Path, store: Path, models: list[dict[str, Any]], **extra: Any) -> Path:
    doc = {
        "apiVersion": "ocr-reconcile/v1",
        "kind": "ModelState",
        "metadata": {"name": "installs"},
        "store": {"backend": "directory", "path": str(store)},
        "models": [{"name": LLAMA}, *models],
        "in_progress": {"min_age": 0},
        **extra,
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_fresh_store_converges_in_one_apply_and_the_second_is_a_no_op(server: ModelServer, empty_store: Path, tmp_path: Path) -> None:
    """One model from the mirror (by name), one with its own URL; the plan says what comes from where."""
    qwen, phi = _blob("qwen"), _blob("phi", 1024 * 1024)
    server.add("/mirror/qwen/q.gguf", qwen)
    direct = server.add("/elsewhere/phi-2.gguf", phi)
    manifest = _manifest(
        tmp_path,
        empty_store,
        [{"name": "qwen/q.gguf", "sha256": _sha(qwen), "size": len(qwen)}, {"name": "phi.gguf", "sha256": _sha(phi), "source": direct}],
        sources={"mirror": server.url + "/mirror"},
    )
    planned = run_cli("plan", "--detailed-exitcode", str(manifest))
    assert planned.returncode == ExitCode.CHANGES, planned.stderr
    assert "+ qwen/q.gguf" in planned.stdout and f"{server.url}/mirror/qwen/q.gguf" in planned.stdout
    doc = json.loads(run_cli("plan", "--json", str(manifest)).stdout)
    installs = {c["name"]: c for c in doc["changes"] if c["actions"] == ["install"]}
    assert installs["qwen/q.gguf"]["download"] == len(qwen) and installs["phi.gguf"]["source"] == direct
    assert doc["summary"]["install"] == 2 and doc["summary"]["bytes_to_download"] == len(qwen)
    applied = run_cli("apply", "--yes", str(manifest))
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert "Install: 2 models installed" in applied.stdout
    assert (empty_store / "qwen" / "q.gguf").read_bytes() == qwen and (empty_store / "phi.gguf").read_bytes() == phi
    again = run_cli("apply", "--yes", str(manifest))
    assert again.returncode == ExitCode.OK and "No changes" in again.stdout
    assert not any(p.is_file() for p in downloads_path(str(empty_store)).rglob("*"))  # nothing left behind


def test_a_file_mirror_and_an_absolute_path(empty_store: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "nfs"
    (mirror / "qwen").mkdir(parents=True)
    qwen, other = _blob("qwen"), _blob("other", 5000)
    (mirror / "qwen" / "q.gguf").write_bytes(qwen)
    (tmp_path / "other.bin").write_bytes(other)
    manifest = _manifest(
        tmp_path,
        empty_store,
        [{"name": "qwen/q.gguf", "sha256": _sha(qwen)}, {"name": "o.bin", "sha256": _sha(other), "source": str(tmp_path / "other.bin")}],
        sources={"mirror": str(mirror)},
    )
    applied = run_cli("apply", "--yes", str(manifest))
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert (empty_store / "qwen" / "q.gguf").read_bytes() == qwen and (empty_store / "o.bin").read_bytes() == other


def test_the_hub_through_hf_endpoint_with_a_token_never_shown(server: ModelServer, empty_store: Path, tmp_path: Path) -> None:
    gguf = _blob("hub")
    server.add("/Qwen/Qwen2.5-GGUF/resolve/v1.0/sub/q4.gguf", gguf)
    source = "hf://Qwen/Qwen2.5-GGUF/sub/q4.gguf@v1.0"
    manifest = _manifest(tmp_path, empty_store, [{"name": "q4.gguf", "sha256": _sha(gguf), "source": source}])
    env = {"HF_ENDPOINT": server.url, "HF_TOKEN": "hf_secret_token_123"}
    applied = run_cli("-v", "apply", "--yes", str(manifest), env=env)
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert (empty_store / "q4.gguf").read_bytes() == gguf
    assert "Bearer hf_secret_token_123" in server.auth
    plan = run_cli("plan", "--json", str(manifest), env=env)
    for text in (applied.stdout, applied.stderr, plan.stdout, plan.stderr):
        assert "hf_secret_token_123" not in text


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("wrong", "is wrong: its sha256"),
        ("html404", "HTTP 404 Not Found"),
        ("404", "HTTP 404 Not Found"),
        ("html200", "answered with an HTML page"),
    ],
)
def test_bad_bytes_never_reach_the_store(server: ModelServer, empty_store: Path, tmp_path: Path, fault: str, said: str) -> None:
    gguf = _blob("bad")
    url = server.add("/m.gguf", gguf)
    server.faults["/m.gguf"] = [fault] * 10
    manifest = _manifest(tmp_path, empty_store, [{"name": "m.gguf", "sha256": _sha(gguf), "source": url}])
    before = tree_digest(empty_store)
    applied = run_cli("apply", "--yes", str(manifest))
    assert applied.returncode == ExitCode.ERROR
    [line] = [x for x in applied.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: cannot install m.gguf: ") and said in line and "nothing entered the store" in line, line
    assert "Traceback" not in applied.stderr and tree_digest(empty_store) == before


@pytest.mark.parametrize("fault", ["drop", "500", "stall"])
def test_transient_failures_are_retried_and_a_dropped_download_resumes(
    server: ModelServer, empty_store: Path, tmp_path: Path, fault: str
) -> None:
    gguf = _blob("flaky")
    url = server.add("/m.gguf", gguf)
    server.faults["/m.gguf"] = [fault]
    manifest = _manifest(
        tmp_path, empty_store, [{"name": "m.gguf", "sha256": _sha(gguf), "source": url}], sources={"timeout": 1, "retries": 2}
    )
    applied = run_cli("apply", "--yes", str(manifest))
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert (empty_store / "m.gguf").read_bytes() == gguf
    assert server.sent["/m.gguf"] < 1.5 * len(gguf), server.sent
    if fault == "drop":
        resumed = server.requests[-1][1] or ""
        assert resumed.startswith("bytes=") and 0 < int(resumed[6:-1]) <= len(gguf) // 2  # from what had arrived


def test_a_download_killed_with_sigkill_resumes_on_the_next_apply(server: ModelServer, empty_store: Path, tmp_path: Path) -> None:
    gguf = _blob("killed", 8 * 1024 * 1024)
    url = server.add("/m.gguf", gguf)
    server.faults["/m.gguf"] = ["hold"]
    manifest = _manifest(tmp_path, empty_store, [{"name": "m.gguf", "sha256": _sha(gguf), "source": url}])
    exe = str(Path(sys.executable).parent / "ocr-reconcile")
    child = subprocess.Popen([exe, "apply", "--yes", str(manifest)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert server.half_sent.wait(120), "the download never started"
        folder = downloads_path(str(empty_store))
        for _ in range(2400):  # what the server sent has reached the file (bounded; no timing assertion)
            parts = list(folder.glob("*.part")) if folder.exists() else []
            if parts and parts[0].stat().st_size >= len(gguf) // 2:
                break
            server.release.wait(0.05)
        else:
            raise AssertionError("the first half never reached the partial file")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(60)
    server.release.set()
    assert not (empty_store / "m.gguf").exists()
    applied = run_cli("apply", "--yes", str(manifest))
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert (empty_store / "m.gguf").read_bytes() == gguf
    assert server.sent["/m.gguf"] < 1.5 * len(gguf), server.sent


def test_a_download_interrupted_with_ctrl_c_stops_and_resumes_on_the_next_apply(
    server: ModelServer, empty_store: Path, tmp_path: Path
) -> None:
    gguf = _blob("interrupted", 8 * 1024 * 1024)
    url = server.add("/m.gguf", gguf)
    server.faults["/m.gguf"] = ["hold"]
    manifest = _manifest(tmp_path, empty_store, [{"name": "m.gguf", "sha256": _sha(gguf), "source": url}], sources={"timeout": 1})
    exe = str(Path(sys.executable).parent / "ocr-reconcile")
    child = subprocess.Popen([exe, "apply", "--yes", str(manifest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.half_sent.wait(120), "the download never started"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == ExitCode.INTERRUPTED and "Interrupted." in err and "Traceback" not in err, err
    assert not (empty_store / "m.gguf").exists()
    server.release.set()
    applied = run_cli("apply", "--yes", str(manifest))
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert (empty_store / "m.gguf").read_bytes() == gguf and server.sent["/m.gguf"] < 1.5 * len(gguf)


def test_a_mismatched_model_is_replaced_when_the_manifest_says_so(server: ModelServer, empty_store: Path, tmp_path: Path) -> None:
    good = _blob("good")
    url = server.add("/m.gguf", good)
    (empty_store / "m.gguf").write_bytes(b"corrupted")
    models = [{"name": "m.gguf", "sha256": _sha(good), "source": url}]
    report = _manifest(tmp_path, empty_store, models)
    assert run_cli("plan", "--detailed-exitcode", str(report)).returncode == ExitCode.CANNOT_CONVERGE  # report: the default
    replace = _manifest(tmp_path, empty_store, models, sources={"on_mismatch": "replace"})
    planned = run_cli("plan", "--detailed-exitcode", str(replace))
    assert planned.returncode == ExitCode.CHANGES and "^ m.gguf" in planned.stdout
    applied = run_cli("apply", "--yes", str(replace))
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert (empty_store / "m.gguf").read_bytes() == good
    [kept] = list((tmp_path / "models.ocr-reconcile-backups").rglob("m.gguf"))
    assert kept.read_bytes() == b"corrupted"  # the bad file is in the backup run, not deleted


def test_guards_for_downloads_are_in_the_plan(server: ModelServer, empty_store: Path, tmp_path: Path) -> None:
    gguf = _blob("big")
    url = server.add("/m.gguf", gguf)
    models = [{"name": "m.gguf", "sha256": _sha(gguf), "source": url, "size": len(gguf)}]
    manifest = _manifest(tmp_path, empty_store, models, limits={"max_install_bytes": "1 MiB"})
    planned = run_cli("plan", "--json", str(manifest))
    [violation] = json.loads(planned.stdout)["guards"]["violation_details"]
    assert violation["guard"] == "max_install_bytes"
    applied = run_cli("apply", "--yes", str(manifest))
    assert applied.returncode == ExitCode.GUARD and not (empty_store / "m.gguf").exists()
    assert server.sent["/m.gguf"] == 0  # refused before any byte was fetched


@pytest.mark.parametrize(
    ("model", "said"),
    [
        ({"name": "m.gguf", "source": "https://example.com/m.gguf"}, "needs a sha256 pin beside it"),
        ({"name": "m.gguf", "sha256": "a" * 64, "source": "https://user:pw@example.com/m.gguf"}, "must not carry credentials"),
        ({"name": "m.gguf", "sha256": "a" * 64, "source": "ftp://example.com/m.gguf"}, "has scheme 'ftp'"),
        ({"name": "m.gguf", "sha256": "a" * 64, "source": "hf://only-owner"}, "must be hf://<owner>/<repo>/<path"),
    ],
)
def test_a_source_is_refused_at_validation_with_its_place(tmp_path: Path, empty_store: Path, model: dict[str, Any], said: str) -> None:
    manifest = _manifest(tmp_path, empty_store, [model])
    done = run_cli("validate", str(manifest))
    assert done.returncode == ExitCode.ERROR
    [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert f"{manifest}:" in line and "models[1].source" in line and said in line, line


def test_a_file_that_appeared_meanwhile_is_never_overwritten(server: ModelServer, empty_store: Path, tmp_path: Path) -> None:
    """The verified download is moved in with a rename that never replaces: whatever is there wins."""
    from reconciler import open_session

    gguf = _blob("race")
    url = server.add("/m.gguf", gguf)
    manifest = _manifest(tmp_path, empty_store, [{"name": "m.gguf", "sha256": _sha(gguf), "source": url}])
    with open_session(manifest) as session:
        plan = session.plan()
        (empty_store / "m.gguf").write_bytes(b"put there by hand meanwhile")
        with session.lock() as held:
            result = session.apply(plan, held)
    assert (empty_store / "m.gguf").read_bytes() == b"put there by hand meanwhile"
    assert [name for name, _ in result.install.skipped] == ["m.gguf"]


def test_installs_show_in_check_and_in_fleet_plans(server: ModelServer, empty_store: Path, tmp_path: Path) -> None:
    gguf = _blob("fleet")
    url = server.add("/m.gguf", gguf)
    manifest = _manifest(tmp_path, empty_store, [{"name": "m.gguf", "sha256": _sha(gguf), "source": url, "size": len(gguf)}])
    check = run_cli("check", str(manifest))
    assert check.returncode == ExitCode.CHANGES and "1 to install (m.gguf)" in check.stdout
    assert json.loads(run_cli("check", "--format", "json", str(manifest)).stdout)["to_install"] == ["m.gguf"]
    assert "ocr_reconcile_install_models{" in run_cli("check", "--format", "prometheus", str(manifest)).stdout
    snapshot = tmp_path / "host-a.json"
    assert run_cli("snapshot", "--manifest", str(manifest), "--host", "a", "--out", str(snapshot)).returncode == ExitCode.OK
    fleet = run_cli("plan", str(manifest), "--state", str(snapshot), "--format", "markdown")
    assert fleet.returncode == ExitCode.OK and "`+`" in fleet.stdout and "m.gguf" in fleet.stdout
    doc = json.loads(run_cli("plan", str(manifest), "--state", str(snapshot), "--json").stdout)
    [change] = [c for c in doc["hosts"][0]["changes"] if c["name"] == "m.gguf"]
    assert change["actions"] == ["install"] and change["download"] == len(gguf) and change["source"] == url


def test_on_a_terminal_each_download_has_its_bar_under_the_total(empty_store: Path, tmp_path: Path) -> None:
    from ..conftest import run_with_stderr_on_a_terminal

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    models = []
    for name in ("alpha.gguf", "beta.gguf"):
        data = _blob(name)
        (mirror / name).write_bytes(data)
        models.append({"name": name, "sha256": _sha(data), "size": len(data)})
    manifest = _manifest(tmp_path, empty_store, models, sources={"mirror": str(mirror)})
    done, drawn = run_with_stderr_on_a_terminal(["apply", "--yes", str(manifest)])
    assert done.returncode == ExitCode.OK
    assert b"downloading 2 models" in drawn and b"alpha.gguf" in drawn and b"beta.gguf" in drawn
    assert b"downloading" not in done.stdout


def test_proxies_come_from_the_environment(server: ModelServer, empty_store: Path, tmp_path: Path) -> None:
    """The source's host does not even resolve: the bytes can only come through HTTP_PROXY."""
    gguf = _blob("proxied")
    server.add("/m.gguf", gguf)
    manifest = _manifest(tmp_path, empty_store, [{"name": "m.gguf", "sha256": _sha(gguf), "source": "http://models.invalid/m.gguf"}])
    applied = run_cli("apply", "--yes", str(manifest), env={"HTTP_PROXY": server.url, "http_proxy": server.url, "NO_PROXY": ""})
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert (empty_store / "m.gguf").read_bytes() == gguf and server.proxied == ["http://models.invalid/m.gguf"]


def test_no_room_on_the_store_filesystem_is_refused_before_the_first_byte(server: ModelServer, tmp_path: Path) -> None:
    """A store on a 1 MiB tmpfs: with the size known the plan says so (exit 4 on apply); without it,
    the download stops at the Content-Length, before any byte of the body is read."""
    from ..reliability.common import small_filesystem

    gguf = _blob("roomy", 3 * 1024 * 1024)
    url = server.add("/m.gguf", gguf)
    with small_filesystem("1m") as small:
        if small is None:
            pytest.skip("mounting a small tmpfs is not permitted here (needs root)")
        store = small / "models"
        store.mkdir()
        (store / LLAMA).write_bytes(b"x")
        sized = _manifest(tmp_path, store, [{"name": "m.gguf", "sha256": _sha(gguf), "source": url, "size": len(gguf)}])
        planned = json.loads(run_cli("plan", "--json", str(sized)).stdout)
        assert [v["guard"] for v in planned["guards"]["violation_details"]] == ["free_space"]
        assert run_cli("apply", "--yes", str(sized)).returncode == ExitCode.GUARD
        unsized = _manifest(tmp_path, store, [{"name": "m.gguf", "sha256": _sha(gguf), "source": url}])
        applied = run_cli("apply", "--yes", str(unsized))
        assert applied.returncode == ExitCode.ERROR and "are free beside the store" in applied.stderr, applied.stderr
        parts = [p for p in downloads_path(str(store)).glob("*.part") if p.stat().st_size]
        assert not parts and not (store / "m.gguf").exists()  # no byte of the body was written anywhere


def test_two_models_with_one_pin_never_share_a_partial_file(server: ModelServer, empty_store: Path, tmp_path: Path) -> None:
    """From a hostile pass: the partial file was named by the pin alone, so a slow hostile source for a
    second model wrote into the first model's verified file after its check."""
    good = _blob("shared-pin")
    server.add("/good.gguf", good)
    server.add("/evil.gguf", good)
    server.faults["/evil.gguf"] = ["wronghold"]
    models = [{"name": n, "sha256": _sha(good), "source": f"{server.url}/{n}"} for n in ("good.gguf", "evil.gguf")]
    manifest = _manifest(tmp_path, empty_store, models, sources={"parallel": 2, "retries": 0})
    exe = str(Path(sys.executable).parent / "ocr-reconcile")
    child = subprocess.Popen([exe, "apply", "--yes", str(manifest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.half_sent.wait(120), "the hostile download never started"
        verified = downloads_path(str(empty_store)) / "verified" / "good.gguf"
        for _ in range(2400):  # the good model verified (bounded; no timing assertion)
            if verified.exists() or (empty_store / "good.gguf").exists():
                break
            server.release.wait(0.05)
        server.release.set()  # the hostile source goes on writing its wrong bytes
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert (empty_store / "good.gguf").read_bytes() == good, err
    assert not (empty_store / "evil.gguf").exists() and "cannot install evil.gguf" in err


def test_a_server_sending_more_than_the_size_is_cut_off(server: ModelServer, empty_store: Path, tmp_path: Path) -> None:
    gguf = _blob("endless", 200_000)
    url = server.add("/m.gguf", gguf)
    server.faults["/m.gguf"] = ["nolength"]
    manifest = _manifest(tmp_path, empty_store, [{"name": "m.gguf", "sha256": _sha(gguf), "source": url, "size": len(gguf)}])
    applied = run_cli("apply", "--yes", str(manifest))
    assert applied.returncode == ExitCode.ERROR and "sent more than the 200000 bytes expected" in applied.stderr, applied.stderr
    assert all(p.stat().st_size <= len(gguf) for p in downloads_path(str(empty_store)).glob("*.part"))
    assert not (empty_store / "m.gguf").exists()


def test_a_partial_file_that_cannot_be_resumed_is_started_over(server: ModelServer, empty_store: Path, tmp_path: Path) -> None:
    """Longer than the model, or from another source: never a 416 loop, never stuck."""
    from reconciler.api.fetch import Wanted, partial_name

    gguf = _blob("restart", 200_000)
    url = server.add("/m.gguf", gguf)
    manifest = _manifest(tmp_path, empty_store, [{"name": "m.gguf", "sha256": _sha(gguf), "source": url, "size": len(gguf)}])
    folder = downloads_path(str(empty_store))
    folder.mkdir(mode=0o700)
    part = folder / partial_name(Wanted("m.gguf", url, _sha(gguf), len(gguf)))
    part.write_bytes(b"junk" * 100_000)  # 400,000 bytes: more than the model
    part.with_suffix(".json").write_text(json.dumps({"etag": server.etag("/m.gguf"), "source": "http://elsewhere/m.gguf"}))
    applied = run_cli("apply", "--yes", str(manifest))
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert (empty_store / "m.gguf").read_bytes() == gguf


def test_a_source_that_is_no_url_is_one_line_at_validation(tmp_path: Path, empty_store: Path) -> None:
    manifest = _manifest(tmp_path, empty_store, [{"name": "m.gguf", "sha256": "a" * 64, "source": "http://[::1"}])
    done = run_cli("validate", str(manifest))
    assert done.returncode == ExitCode.ERROR and "Traceback" not in done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert "models[1].source: is not a valid URL" in line, line


def test_an_apply_while_another_holds_the_store_lock_downloads_nothing(server: ModelServer, empty_store: Path, tmp_path: Path) -> None:
    from reconciler import open_session

    gguf = _blob("locked")
    url = server.add("/m.gguf", gguf)
    manifest = _manifest(tmp_path, empty_store, [{"name": "m.gguf", "sha256": _sha(gguf), "source": url}])
    with open_session(manifest) as session, session.lock():
        second = run_cli("apply", "--yes", str(manifest))
    assert second.returncode == ExitCode.LOCKED and "locked" in second.stderr.lower(), second.stderr
    assert server.requests == [] and not (empty_store / "m.gguf").exists()
