"""A local HTTP server for the install tests (there is no internet here): it serves files from memory
with ``Range``, ``If-Range`` and strong ETags, and plays faults scripted per path, one per request:
``drop`` (send half the body, then close), ``hold`` (send half, then wait until released: a process can
be killed mid-download), ``stall`` (send headers, then nothing until released: a read timeout),
``500``, ``html404``, ``404``, ``wrong`` (other bytes of the same length), ``wronghold`` (both), ``norange``
(ignore Range), ``nolength`` (no Content-Length, and 1 MiB more than the file).
It counts the body bytes it sent per path and keeps the Authorization headers it saw.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ModelServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.sent: dict[str, int] = defaultdict(int)
        self.auth: list[str | None] = []
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.proxied: list[str] = []  # absolute URLs asked of it as a forward proxy
        self.half_sent = threading.Event()  # a "hold" fault has sent half its body
        self.release = threading.Event()  # ends every "hold" and "stall"
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``path`` ('/'-rooted); its full URL."""
        self.files[path] = data
        return self.url + path

    def etag(self, path: str) -> str:
        return '"' + hashlib.sha256(self.files[path]).hexdigest()[:16] + '"'

    @contextmanager
    def running(self) -> Iterator[ModelServer]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.release.set()
            self._server.shutdown()
            self._server.server_close()


def _handler(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path.startswith("http://"):  # asked as a forward proxy: the absolute URL's path
                server.proxied.append(path)
                path = "/" + path.split("/", 3)[3]
            server.auth.append(self.headers.get("Authorization"))
            server.requests.append((path, self.headers.get("Range")))
            fault = server.faults[path].pop(0) if server.faults[path] else ""
            if path not in server.files or fault == "404":
                return self._reply(404, b"not found", "text/plain")
            if fault == "html404":
                return self._reply(404, b"<html><body>Not Found</body></html>", "text/html")
            if fault == "500":
                return self._reply(500, b"busy", "text/plain")
            data = server.files[path]
            if fault in ("wrong", "wronghold"):
                data = bytes(b ^ 0xFF for b in data)
            if fault == "nolength":  # no Content-Length: the file, then more, until the connection closes
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data + b"\0" * (1 << 20))
                server.sent[path] += len(data) + (1 << 20)
                self.close_connection = True
                return
            if fault == "html200":
                return self._reply(200, b"<html>login</html>", "text/html; charset=utf-8")
            start = 0
            wanted = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if wanted and fault != "norange" and (if_range is None or if_range == server.etag(path)):
                start = int(wanted.removeprefix("bytes=").split("-")[0])
            body = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", server.etag(path))
            self.send_header("Accept-Ranges", "bytes")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if fault == "stall":
                self.wfile.flush()
                server.release.wait(60)
                return
            if fault in ("drop", "hold", "wronghold"):
                half = body[: len(body) // 2]
                self.wfile.write(half)
                self.wfile.flush()
                server.sent[path] += len(half)
                if fault in ("hold", "wronghold"):
                    server.half_sent.set()
                    server.release.wait(60)
                self.close_connection = True
                return
            self.wfile.write(body)
            server.sent[path] += len(body)

        def _reply(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
