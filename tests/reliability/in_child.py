"""Run a function in a forked child and get its JSON-able result back through a pipe: for work that
must not touch this process (dropping privileges, running a command once to see what it imports).

A plain module with no imports from the project or the tests, so that ``forkserver.py``, which runs
as a script, can use it too."""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from typing import Any


def in_child(work: Callable[[], Any]) -> Any:
    """``work()`` run in a forked child; its result, or ``{"error": traceback}`` if it raised. The
    child leaves through ``os._exit``: no ``finally`` or ``atexit`` of this process runs twice."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child; always leaves through os._exit
        try:
            os.close(read)
            try:
                answer = work()
            except BaseException:
                answer = {"error": traceback.format_exc()}
            os.write(write, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    return json.loads(data)
