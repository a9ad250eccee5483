"""Every file ocr-reconcile keeps beside a store, named in one place.

A store ``/srv/models`` gets siblings, never children (the engine would list a child as a model):

- ``/srv/models.ocr-reconcile.lock``: the store lock (``journal.store_lock``);
- ``/srv/models.ocr-reconcile-hashes.json``: the hash cache (``hashcache.py``);
- ``/srv/models.ocr-reconcile-journal``: the write-ahead journal of an unfinished run (``journal.py``);
- ``/srv/models.ocr-reconcile-backups/``: the default backup folder, one sub-folder per run, each with
  an index, ``.ocr-reconcile-index.json`` (``catalogue.py``);
- ``.ocr-reconcile-tmp-<token>-<n>``: a temporary copy during a cross-filesystem move, beside its
  destination (``transfer.py``): short, unique per run, created with ``O_EXCL``, named in the journal.

Use these functions instead of building such paths by hand, so that a new side file (a hash cache)
is added here once. This module only computes names: it never touches the disk.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

LOCK_SUFFIX = ".ocr-reconcile.lock"
JOURNAL_SUFFIX = ".ocr-reconcile-journal"
BACKUP_SUFFIX = ".ocr-reconcile-backups"
HASH_CACHE_SUFFIX = ".ocr-reconcile-hashes.json"
DOWNLOADS_SUFFIX = ".ocr-reconcile-downloads"  # installs: partial and verified downloads, never listed by the engine
INDEX_NAME = ".ocr-reconcile-index.json"  # in a run folder; never a store-relative name (see is_control_name)
LEGACY_INDEX_NAME = "index.json"  # runs made before 0.2 (read, never written)
TOOL_PREFIX = ".ocr-reconcile-"  # a base name starting so is the tool's, never a model
TEMP_PREFIX = TOOL_PREFIX + "tmp-"


def is_control_name(name: str) -> bool:
    """Whether a store-relative ``name`` is a file ocr-reconcile keeps for some store (a store nested
    inside another, at any depth, has its lock, journal and backups beside it): never planned as an
    unmanaged file."""
    ours = (LOCK_SUFFIX, JOURNAL_SUFFIX, BACKUP_SUFFIX, HASH_CACHE_SUFFIX, DOWNLOADS_SUFFIX)
    return any(part.endswith(ours) for part in name.split("/")) or name.rpartition("/")[2].startswith(TOOL_PREFIX)


def _beside(store_root: str, suffix: str) -> Path:
    return Path(store_root.rstrip("/") + suffix)


def lock_path(store_root: str) -> Path:
    """The store lock file: ``<store>.ocr-reconcile.lock``."""
    return _beside(store_root, LOCK_SUFFIX)


def hash_cache_path(store_root: str) -> Path:
    """The hash cache: ``<store>.ocr-reconcile-hashes.json`` (``hashcache.py``)."""
    return _beside(store_root, HASH_CACHE_SUFFIX)


def downloads_path(store_root: str) -> Path:
    """The folder beside the store where installs download (outside the folder the engine lists)."""
    return _beside(store_root, DOWNLOADS_SUFFIX)


def journal_path(store_root: str) -> Path:
    """The journal of an unfinished run: ``<store>.ocr-reconcile-journal``."""
    return _beside(store_root, JOURNAL_SUFFIX)


def default_backup_root(store_root: str) -> Path:
    """``<store>.ocr-reconcile-backups`` beside the store (the engine never lists a sibling)."""
    return _beside(store_root, BACKUP_SUFFIX)


def temp_name(token: str, index: int) -> str:
    """The temporary name of move ``index`` of the run with ``token``: a base name, well under any
    filesystem's limit whatever the length of the name it will become."""
    return f"{TEMP_PREFIX}{token}-{index}"


def check_backup_root(store_root: str, backup_root: Path) -> Path:
    """Refuse a backup folder inside the store (its files would be listed as models), or equal to it."""
    store_real = os.path.realpath(store_root)
    backup_real = os.path.realpath(backup_root)
    if backup_real == store_real or backup_real.startswith(store_real.rstrip("/") + "/"):
        raise ConfigError(f"backup folder {backup_root} is inside the store {store_root}; choose a folder beside it")
    return backup_root
