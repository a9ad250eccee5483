"""A fork server: runs ``ocr-reconcile`` commands as real processes without paying, for each one, the
interpreter start and the imports: a small command costs about 0.06 s instead of 0.27 s on this
machine, and the difference grows on a loaded one.

Run as ``python forkserver.py CONSOLE_SCRIPT`` by :class:`tests.reliability.common.Cli`, once per test
session. It imports the console script's entry point (the ``ocr-reconcile`` entry of the installed
distribution: what ``.venv/bin/ocr-reconcile`` runs) and nothing else of the project, preloads the
third-party modules every command loads on first use (:func:`_warm_up`), and never runs a command
itself. For each request it forks a child that becomes the command, exactly as the console
script would run it: its own PID, the requested environment, working directory and argv, stdin from
``/dev/null``, stdout and stderr to the requested files, then ``sys.exit(main())`` and a normal
interpreter exit. So a crash hook's ``kill -9`` is a real kill of a real process, and no state of one
command (the crash hook's step counter, any cache) can leak into the next: every child starts from the
same freshly imported image. Where forking would be unsafe (the server has more than one thread) the
child ``exec``s the console script instead.

Protocol, one JSON object a line. Requests on stdin:
``{"argv": [...], "env": {...}, "cwd": DIR, "stdout": FILE, "stderr": FILE}``. Responses on stdout:
``{"pid": N}`` as soon as the child exists (so the client can kill it), then
``{"pid": N, "returncode": R}`` once it has exited (R < 0: killed by signal -R, as in ``subprocess``).
The server exits when its stdin closes.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

try:
    from .in_child import in_child
except ImportError:  # run as a script (as Cli runs it): its own folder is on sys.path
    from in_child import in_child  # type: ignore[import-not-found,no-redef]

NAME = "ocr-reconcile"


def _entry_point() -> Callable[[], Any]:
    [ep] = entry_points(group="console_scripts", name=NAME)
    main: Callable[[], Any] = ep.load()
    return main


def _warm_up(command: Callable[[], Any]) -> None:
    """Import once, in the server, the library modules that every command imports on first use (this
    typer loads its option-coercion machinery, pydantic, lazily: 60 ms of each command otherwise).
    Found by running ``validate`` of a file that does not exist in a throwaway child, which touches no
    store. Only third-party modules are imported: the project's own (and the engine, which starts a
    runtime) are left to load as in a real process."""

    def imported_by_a_command() -> list[str]:
        before = set(sys.modules)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 1)
        os.dup2(null, 2)
        sys.argv = [NAME, "validate", "/nonexistent/ocr-reconcile-fork-server-warm-up.yaml"]
        with contextlib.suppress(SystemExit):
            command()
        return sorted(set(sys.modules) - before)

    found = in_child(imported_by_a_command)
    for name in found if isinstance(found, list) else []:
        if name.split(".")[0] not in ("reconciler", "aspose", "__main__"):
            try:
                importlib.import_module(name)
            except Exception:  # one that cannot be imported on its own simply loads lazily, as before
                continue


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _lines(fd: int) -> Any:
    """Request lines read with ``os.read``: no buffered file object that a child could inherit and close."""
    buffer = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        buffer += chunk


def _become(request: dict[str, Any], script: str, requests: int, responses: int) -> None:
    """In the child: take the command's fds, directory, environment and argv."""
    os.close(requests)
    os.close(responses)
    os.chdir(request["cwd"])
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    argv = [script, *request["argv"]]
    if _threads() > 1:
        os.execve(script, argv, request["env"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = argv


def serve(script: str) -> None:
    """Answer requests until stdin closes. Returns only in a child, which then runs the command."""
    requests, responses = os.dup(0), os.dup(1)  # private copies: fds 0 and 1 are the commands' own
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    for request in _lines(requests):
        pid = os.fork()
        if pid == 0:
            _become(request, script, requests, responses)
            return
        os.write(responses, (json.dumps({"pid": pid}) + "\n").encode())
        _, status = os.waitpid(pid, 0)
        os.write(responses, (json.dumps({"pid": pid, "returncode": os.waitstatus_to_exitcode(status)}) + "\n").encode())
    sys.exit(0)


if __name__ == "__main__":
    sys.path[0] = os.path.dirname(sys.argv[1])  # as for the console script: its folder, not this one
    command = _entry_point()
    _warm_up(command)
    gc.freeze()  # the image every child shares: its collector never walks (and so never copies) it
    serve(sys.argv[1])
    sys.exit(command())
