"""Issue 10, start-up: what the cheapest calls import (a set of modules, never a time)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("jsonschema", "typer", "yaml", "reconciler.api", "reconciler.manifest", "aspose")

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
    assert _loaded("from reconciler.console import main\nmain()", "--version") == []


def test_importing_the_package_imports_nothing_until_a_name_is_used() -> None:
    assert _loaded("import reconciler\nassert reconciler.__version__") == []
    assert "reconciler.api" in _loaded("from reconciler import open_session")


def test_every_exported_name_resolves() -> None:
    import reconciler

    for name in reconciler.__all__:
        assert getattr(reconciler, name) is not None, name


def test_plan_json_is_compact_for_a_machine_and_indented_on_a_terminal(tmp_path: object) -> None:
    from reconciler import render
    from reconciler.plan import FleetPlan

    assert render.render_plan(FleetPlan(()), "json", render.View(on_terminal=False)).count("\n") == 0
    assert render.render_plan(FleetPlan(()), "json", render.View(on_terminal=True)).count("\n") > 0


def test_help_imports_no_validator() -> None:
    body = "from reconciler.console import main\ntry:\n    main()\nexcept SystemExit:\n    pass"
    assert "jsonschema" not in _loaded(body, "--help")
