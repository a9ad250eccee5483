"""Installable for real (issue 9): the sdist and the wheel build from this checkout, the wheel installs into a
fresh virtual environment, and the installed command validates and plans with the schemas it carries."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from reconciler.demo import build_store

from ..conftest import EXAMPLE_MANIFEST, ROOT

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the fresh environment is laid out as on Linux")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel, built from the checkout without fetching anything (build and hatchling
    come with the dev extra)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    [sdist] = out.glob("ocr_reconcile-*.tar.gz")
    [wheel] = out.glob("ocr_reconcile-*.whl")
    return sdist, wheel


def test_the_wheel_carries_the_schemas_and_the_console_script(built: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(built[1]) as wheel:
        names = wheel.namelist()
    assert "reconciler/schemas/manifest.schema.json" in names and "reconciler/schemas/plan.schema.json" in names
    assert any(n.endswith("entry_points.txt") for n in names)
    assert not any(n.startswith(("tests/", "build/")) for n in names)


def test_the_wheel_installed_in_a_fresh_environment_validates_and_plans(built: tuple[Path, Path], tmp_path: Path) -> None:
    """Only the wheel's own files serve ``reconciler`` there; its dependencies come from this test's
    environment by path (no network), and the checkout is nowhere on the path."""
    fresh = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True, timeout=300)
    py = fresh / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(built[1])], check=True, timeout=300)
    fresh_site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True, text=True
    ).stdout.strip()
    Path(fresh_site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # a plain path: its .pth files stay inert
    exe = fresh / "bin" / "ocr-reconcile"
    where = subprocess.run(
        [str(py), "-c", "import reconciler; print(reconciler.__file__)"], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout.strip()
    assert where.startswith(fresh_site), where
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("ocr-reconcile "), version.stderr
    manifest = tmp_path / "m.yaml"
    doc = yaml.safe_load(EXAMPLE_MANIFEST.read_text())
    doc["store"] = {"backend": "directory", "path": str(build_store(tmp_path / "models"))}
    manifest.write_text(yaml.safe_dump(doc))
    valid = subprocess.run([str(exe), "validate", str(manifest)], capture_output=True, text=True, cwd=tmp_path)
    assert valid.returncode == 0 and valid.stdout.strip() == f"ok: {manifest}", valid.stderr
    planned = subprocess.run([str(exe), "plan", str(manifest), "--detailed-exitcode"], capture_output=True, text=True, cwd=tmp_path)
    assert planned.returncode == 2 and "Plan: 4 to move to backup" in planned.stdout, planned.stderr


def test_the_sdist_carries_what_a_build_needs(built: tuple[Path, Path]) -> None:
    with tarfile.open(built[0]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "schemas/manifest.schema.json", "reconciler/cli/app.py"} <= names
