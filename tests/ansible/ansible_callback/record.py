# An Ansible callback for the tests: every task result and the final per-host stats, written as one
# JSON file (OCR_RECORD_FILE), so the tests read Ansible's own results rather than its text output.
from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.results: list[dict[str, Any]] = []

    def _add(self, result: Any, status: str) -> None:
        self.results.append({"host": result._host.get_name(), "task": result._task.get_name(), "status": status, "result": result._result})

    def v2_runner_on_ok(self, result: Any) -> None:
        self._add(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._add(result, "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._add(result, "skipped")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._add(result, "unreachable")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        doc = {"stats": {host: stats.summarize(host) for host in stats.processed}, "results": self.results}
        with open(os.environ["OCR_RECORD_FILE"], "w") as fh:
            json.dump(doc, fh, default=str)
