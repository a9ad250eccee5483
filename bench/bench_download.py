"""Benchmark 7 (issue 11): installing a model from a local HTTP server vs ``curl -o`` of the same file
from the same server, in the same run. Both fetch over loopback from Python's own file server, so the
ratio is ocr-reconcile's cost (streaming, hashing on a helper thread, fsync, the journaled move into the
store) against a plain download. Size: ``BENCH_DOWNLOAD_MIB`` (1024). Run: ``make bench``.
"""

from __future__ import annotations

import functools
import os
import shutil
import statistics
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from common import TOOL, have, mib, precompile, run_child, scratch, write_manifest, write_real

from reconciler.base.hashing import fd_sha256


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    size = int(os.environ.get("BENCH_DOWNLOAD_MIB", "1024")) << 20
    precompile()
    with scratch() as tmp:
        served = tmp / "served"
        served.mkdir()
        write_real(served / "model.gguf", size)
        with open(served / "model.gguf", "rb") as fh:
            digest = fd_sha256(fh.fileno())
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/model.gguf"
        try:
            ours, curl = [], []
            for trial in range(3):
                store = tmp / f"store-{trial}"
                store.mkdir()
                manifest = write_manifest(tmp, store, models=[{"name": "model.gguf", "sha256": digest, "source": url}])
                os.sync()  # each timed run starts with no dirty data of an earlier one to write back
                ours.append(run_child([TOOL, "--quiet", "apply", "--yes", str(manifest)])[0])
                shutil.rmtree(store)
                os.sync()
                if have("curl"):
                    start = time.perf_counter()
                    run_child(["curl", "-sS", "-o", str(tmp / "curl.gguf"), url])
                    run_child(["sync", str(tmp / "curl.gguf")])
                    curl.append(time.perf_counter() - start)
                    os.unlink(tmp / "curl.gguf")
                    os.sync()
        finally:
            server.shutdown()
        mine = statistics.median(ours)
        line = f"7. install of {mib(size)} over HTTP (the whole apply command): {mine:.2f} s, {size / mine / 1e6:,.0f} MB/s"
        if curl:
            base = statistics.median(curl)
            line += f"; curl -o + sync {base:.2f} s, {size / base / 1e6:,.0f} MB/s [{mine / base:.2f}x] (medians of 3)"
        print(line + ("" if curl else "; curl: not installed"))


if __name__ == "__main__":
    main()
