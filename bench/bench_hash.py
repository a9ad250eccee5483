"""Benchmark 4: ``check`` with a pinned 2 GiB model, cached vs unpinned, and the first (uncached) hash
against ``openssl dgst -sha256`` and hashlib's own throughput on the same file.

A pin whose file is unchanged (device, inode, size, mtime_ns, ctime_ns) is not read again: the cached
check should cost what an unpinned one does (target ≤ 1.1x). Size: ``BENCH_PIN_MIB`` (2048).
Run: ``make bench`` or ``.venv/bin/python bench/bench_hash.py``.
"""

from __future__ import annotations

import os
import time

from common import TOOL, have, median_child, mib, precompile, run_child, scratch, write_manifest, write_real

from reconciler.base.hashing import fd_sha256


def main() -> None:
    size = int(os.environ.get("BENCH_PIN_MIB", "2048")) << 20
    precompile()
    with scratch() as tmp:
        store = tmp / "models"
        store.mkdir()
        big = store / "pinned.gguf"
        write_real(big, size)
        for i in range(20):
            (store / f"other-{i}.bin").write_bytes(b"x" * 4096)
        with open(big, "rb") as fh:
            digest = fd_sha256(fh.fileno())
        names = [{"name": f"other-{i}.bin"} for i in range(20)]
        (tmp / "pinned").mkdir()
        (tmp / "plain").mkdir()
        pinned = write_manifest(tmp / "pinned", store, models=[*names, {"name": "pinned.gguf", "sha256": digest}])
        plain = write_manifest(tmp / "plain", store, models=[*names, {"name": "pinned.gguf"}])

        first, _ = run_child([TOOL, "check", str(pinned)])  # no cache yet: hashes the pin (and writes the cache)
        cached, _ = median_child([TOOL, "check", str(pinned)])
        unpinned, _ = median_child([TOOL, "check", str(plain)])
        no_cache, _ = run_child([TOOL, "--no-cache", "check", str(pinned)])
        times = f"cached {cached * 1e3:.0f} ms vs unpinned {unpinned * 1e3:.0f} ms"
        print(f"4. check with a {mib(size)} pin: {times}: ratio {cached / unpinned:.2f}x")
        start = time.perf_counter()
        with open(big, "rb") as fh:
            fd_sha256(fh.fileno())
        alone = time.perf_counter() - start
        line = f"   first hash: check {size / first / 1e6:,.0f} MB/s (--no-cache {size / no_cache / 1e6:,.0f} MB/s)"
        line += f", hashlib alone {size / alone / 1e6:,.0f} MB/s [{first / alone:.2f}x]"
        if have("openssl"):
            openssl, _ = median_child(["openssl", "dgst", "-sha256", str(big)], 3)
            line += f", openssl dgst -sha256 {size / openssl / 1e6:,.0f} MB/s [{first / openssl:.2f}x]"
        print(line)


if __name__ == "__main__":
    main()
