"""Benchmark 8 (issue 12): fleet rollouts through the ocr.reconcile collection, in the same run as baselines.

1. ``rollout.yml`` over 20 local hosts (the demo store each, ``ocr_serial=20``) vs the same 20 hosts running
   ``ansible.builtin.ping``: the difference over 20 is the module's per-host overhead.
2. one host with 500 stale files: ``model_state`` vs the same clean-up written as plain Ansible tasks
   (``find`` + ``copy`` with ``remote_src`` + ``file: state=absent``), the way it is done by hand.
Run: ``make bench`` (or ``.venv/bin/python bench/bench_ansible.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from common import BIN, REPO, scratch

from reconciler.demo import build_store

HOSTS = [f"host{i:02d}" for i in range(1, 21)]
PLAIN = """
- hosts: ocr_hosts
  gather_facts: false
  tasks:
    - ansible.builtin.find: {paths: "{{ ocr_store }}", recurse: true, file_type: file}
      register: found
    - ansible.builtin.set_fact:
        stale: "{{ found.files | map(attribute='path') | reject('search', 'keep-me') | list }}"
    - ansible.builtin.file: {path: "{{ ocr_store }}.backup", state: directory, mode: "0700"}
    - ansible.builtin.copy: {src: "{{ item }}", dest: "{{ ocr_store }}.backup/", remote_src: true, mode: preserve}
      loop: "{{ stale }}"
    - ansible.builtin.file: {path: "{{ item }}", state: absent}
      loop: "{{ stale }}"
"""
PING = "- hosts: ocr_hosts\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n"


def env(root: Path) -> dict[str, str]:
    collections = root / "collections" / "ansible_collections" / "ocr"
    collections.mkdir(parents=True, exist_ok=True)
    if not (collections / "reconcile").exists():
        (collections / "reconcile").symlink_to(REPO / "ansible")
    home = root / "ansible-home"
    return {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(root / "collections"),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORKS": "10",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def inventory(root: Path, hosts: list[str], manifest: Path) -> Path:
    doc = {
        "all": {
            "children": {
                "ocr_hosts": {
                    "hosts": {h: {"ocr_store": str(root / h / "models")} for h in hosts},
                    "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ocr_manifest": str(manifest)},
                }
            }
        }
    }
    path = root / f"inventory-{len(hosts)}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def play(root: Path, inv: Path, playbook: Path, *args: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inv), str(playbook), *args], capture_output=True, text=True, env=env(root)
    )
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{playbook.name} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return took


def main() -> None:
    if not (BIN / "ansible-playbook").exists():
        print("8. ansible: skipped (ansible-core is not installed in this venv)")
        return
    with scratch() as tmp:
        doc = yaml.safe_load((REPO / "manifests" / "example.yaml").read_text())
        doc["store"] = {"backend": "directory"}
        doc["in_progress"] = {"min_age": 0}
        manifest = tmp / "m.yaml"
        manifest.write_text(yaml.safe_dump(doc))
        for host in HOSTS:
            build_store(tmp / host / "models")
        inv = inventory(tmp, HOSTS, manifest)
        (tmp / "ping.yml").write_text(PING)
        ping = play(tmp, inv, tmp / "ping.yml")
        rollout = play(tmp, inv, REPO / "ansible" / "playbooks" / "rollout.yml", "-e", "ocr_serial=20")
        again = play(tmp, inv, REPO / "ansible" / "playbooks" / "rollout.yml", "-e", "ocr_serial=20")
        runs = f"{rollout:.1f} s (a second, no-op run {again:.1f} s); ping over the same hosts {ping:.1f} s"
        print(f"8. rollout over {len(HOSTS)} local hosts: {runs}")
        print(f"   per-host overhead of model_state beyond a ping: {(rollout - ping) / len(HOSTS) * 1e3:.0f} ms")

        one = tmp / "big"
        (one / "models").mkdir(parents=True)
        (one / "models" / "keep-me.bin").write_bytes(b"k")
        for i in range(500):
            (one / "models" / f"stale-{i:03d}.bin").write_bytes(os.urandom(4096))
        small = {**doc, "models": [{"name": "keep-me.bin"}], "whitelist": [], "limits": {"max_delete": None}}
        manifest_one = tmp / "one.yaml"
        manifest_one.write_text(yaml.safe_dump(small))
        inv_one = inventory(one.parent, ["big"], manifest_one)
        ours = play(one.parent, inv_one, REPO / "ansible" / "playbooks" / "rollout.yml", "-e", "ocr_serial=1")
        for i in range(500):
            (one / "models" / f"stale-{i:03d}.bin").write_bytes(os.urandom(4096))
        (tmp / "plain.yml").write_text(PLAIN)
        plain = play(one.parent, inv_one, tmp / "plain.yml")
        print(f"   one host, 500 stale files: model_state {ours:.1f} s vs find + copy + file {plain:.1f} s [{ours / plain:.2f}x]")


if __name__ == "__main__":
    main()
