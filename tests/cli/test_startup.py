"""Issue 10, start-up: what the cheapest calls import (a set of modules, never a time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("jsonschema", "typer", "yaml", "reconciler.api.session", "reconciler.read.manifest", "aspose")

PROBE = """
import sys
sys.argv = ["ocr-reconcile", *sys.argv[1:]]
{body}
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY:" + ",".join(heavy))
"""


def _loaded(body: str, *args: str) -> list[str]:
    code = PROBE.format(body=body, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, timeout=120)
    [line] = [x for x in done.stdout.splitlines() if x.startswith("HEAVY:")]
    return [m for m in line.removeprefix("HEAVY:").split(",") if m]


def test_version_imports_nothing_heavy() -> None:
    assert _loaded("from reconciler.cli import main\nmain()", "--version") == []


def test_importing_the_package_imports_nothing_until_a_name_is_used() -> None:
    assert _loaded("import reconciler\nassert reconciler.__version__") == []
    assert "reconciler.api.session" in _loaded("from reconciler import open_session")


def test_every_exported_name_resolves() -> None:
    import reconciler

    for name in reconciler.__all__:
        assert getattr(reconciler, name) is not None, name


def test_plan_json_is_compact_for_a_machine_and_indented_on_a_terminal(tmp_path: object) -> None:
    from reconciler.decide.plan import FleetPlan
    from reconciler.render import plans as render

    assert render.render_plan(FleetPlan(()), "json", render.View(on_terminal=False)).count("\n") == 0
    assert render.render_plan(FleetPlan(()), "json", render.View(on_terminal=True)).count("\n") > 0


def test_help_imports_no_validator() -> None:
    body = "from reconciler.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass"
    assert "jsonschema" not in _loaded(body, "--help")


MUTATION = (
    "reconciler.api.apply",
    "reconciler.disk.transfer",
    "reconciler.disk.moves",
    "reconciler.disk.recovery",
    "reconciler.api.restore",
)
READ_ONLY = (
    ("validate", "{manifest}"),
    ("plan", "{manifest}", "--store", "{store}", "--backend", "directory"),
    ("plan", "--json", "{manifest}", "--store", "{store}", "--backend", "directory"),
    ("check", "{manifest}", "--store", "{store}", "--backend", "directory"),
    ("list", "{manifest}", "--store", "{store}", "--backend", "directory"),
    ("backups", "--store", "{store}"),
)


def _loaded_by_command(args: tuple[str, ...], watch: tuple[str, ...]) -> list[str]:
    body = "from reconciler.cli import main\ntry:\n    main()\nexcept SystemExit as exc:\n    assert exc.code in (0, 2, None), exc.code"
    code = PROBE.format(body=body, heavy=watch)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [line] = [x for x in done.stdout.splitlines() if x.startswith("HEAVY:")]
    return [m for m in line.removeprefix("HEAVY:").split(",") if m]


def test_reading_commands_import_no_mutation_code_and_no_pydantic(tmp_path: Path) -> None:
    """Typer 0.29 coerces values through pydantic (~80 ms); cli_typer does it for the CLI's plain types."""
    subprocess.run([sys.executable, "-m", "reconciler.demo", str(tmp_path / "demo")], check=True, capture_output=True, timeout=120)
    manifest = Path(__file__).parents[2] / "manifests" / "example.yaml"
    for args in READ_ONLY:
        filled = tuple(a.format(manifest=manifest, store=tmp_path / "demo" / "models") for a in args)
        assert _loaded_by_command(filled, (*MUTATION, "pydantic", "aspose")) == [], filled


def test_apply_imports_the_mutation_code_the_probe_watches(tmp_path: Path) -> None:
    """The probe above can fail: a command that mutates is seen importing what it watches."""
    subprocess.run([sys.executable, "-m", "reconciler.demo", str(tmp_path / "demo")], check=True, capture_output=True, timeout=120)
    manifest = Path(__file__).parents[2] / "manifests" / "example.yaml"
    args = ("apply", "--yes", str(manifest), "--store", str(tmp_path / "demo" / "models"), "--backend", "directory")
    assert set(_loaded_by_command(args, MUTATION)) >= {"reconciler.api.apply", "reconciler.disk.transfer", "reconciler.disk.moves"}


def test_option_values_are_still_checked_without_pydantic(tmp_path: Path) -> None:
    """cli_typer's own coercion: wrong values are refused with Typer's usual one-line reason."""
    from typer.testing import CliRunner

    from reconciler.cli.app import app

    runner = CliRunner()
    for args, reason in (
        (["backups", "prune", "--keep", "-1"], "'--keep': -1 is below the minimum, 0"),
        (["backups", "prune", "--keep", "x"], "'--keep': 'x' is not a whole number"),
        (["apply", "--lock-timeout", "soon", "m.yaml"], "'--lock-timeout': 'soon' is not a number"),
        (["apply", "--max-delete", "1.5", "m.yaml"], "'--max-delete': '1.5' is not a whole number"),
        (["apply", "--lock-timeout", "nan", "m.yaml"], "'--lock-timeout': 'nan' is not a finite number"),
        (["apply", "--lock-timeout", "inf", "m.yaml"], "'--lock-timeout': 'inf' is not a finite number"),
        (["apply", "--max-delete", "٣", "m.yaml"], "'--max-delete': '٣' is not a whole number"),  # int() would take it
        (["apply", "--max-delete", "9" * 5000, "m.yaml"], "'--max-delete': '" + "9" * 40 + "…' is not"),
    ):
        result = runner.invoke(app, ["--quiet", *args])
        assert result.exit_code == 1 and reason in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1 and "--help')" in result.output, result.output  # one line, with where to look
    done = runner.invoke(app, ["backups", "--store", str(tmp_path), "prune", "--keep", "2", "--dry-run"])
    assert done.exit_code == 0, done.output


def test_streamed_plan_json_is_the_compact_document_byte_for_byte(tmp_path: Path) -> None:
    """plan --json off a terminal is written change by change (jsonout.write_json); the bytes are the
    document render_plan builds whole, for one store and for a fleet, non-UTF-8 names included."""
    import io
    import os

    from reconciler import open_session
    from reconciler.base import jsonout
    from reconciler.decide import planfile
    from reconciler.decide.plan import FleetPlan
    from reconciler.render import plans as render

    from ..conftest import manifest_doc

    store = tmp_path / "models"
    store.mkdir()
    for i in range(2 * jsonout.BATCH + 7):
        (store / f"stale-{i}.bin").write_bytes(b"x")
    os.mkdir(os.fsencode(store / "odd") + b"\xff")
    (Path(os.fsdecode(os.fsencode(store / "odd") + b"\xff")) / "x.bin").write_bytes(b"y")
    manifest = tmp_path / "m.yaml"
    import yaml

    manifest.write_text(yaml.safe_dump(manifest_doc()))
    with open_session(manifest, store, "directory") as session:
        plan = session.plan()
    for value in (plan, FleetPlan((plan, plan))):
        out = io.StringIO()
        render.write_plan_json(value, out)
        whole = render.render_plan(value, "json", render.View(on_terminal=False))
        assert out.getvalue() == whole + "\n"
        assert len(planfile.plan_doc(plan)["changes"]) > 2 * jsonout.BATCH


def test_typer_is_adapted_only_by_the_entry_point_and_every_hook_still_exists() -> None:
    """Importing the CLI patches nothing; install() adapts all three hooks on the pinned Typer (a release
    that moved one fails here, by name, instead of silently slowing every start)."""
    code = (
        "import typer.core\n"
        "before = typer.core.build_runtime_param, typer.core.TyperOption.display_type_rich\n"
        "from reconciler.cli import app, adapt\n"
        "assert (typer.core.build_runtime_param, typer.core.TyperOption.display_type_rich) == before, 'patched on import'\n"
        "print(','.join(adapt.install()))\n"
    )
    from reconciler.cli import adapt

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert tuple(done.stdout.strip().split(",")) == adapt.HOOKS, done.stdout + done.stderr
