"""The resumable cache of the generation jobs (teacher replies, QA pairs): one JSON line per prompt hash.

Appended and fsynced batch by batch, so a cut run loses at most the batch in flight; a line cut by an interrupted
write is dropped when read, and the next append starts on a fresh line.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def read_cache(path: Path, key: str = "hash") -> dict[str, dict[str, Any]]:
    """hash -> {"reply", "topk"?} from a cache file (``key``: the field lines are keyed by); a line cut by an
    interrupted write is dropped (and logged)."""
    cache: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return cache
    broken = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
                cache[entry.pop(key)] = entry
            except (json.JSONDecodeError, KeyError, AttributeError):
                broken += 1
    if broken:
        log.warning("%s: %d unreadable lines ignored (an interrupted write); their prompts are generated again",
                    path, broken)
    return cache


def _ends_cleanly(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return True
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def append_cache(path: Path, entries: dict[str, dict[str, Any]], key: str = "hash") -> None:
    clean = _ends_cleanly(path)
    with open(path, "a", encoding="utf-8") as f:
        if not clean:  # a line cut by an interrupted write must not swallow the next one
            f.write("\n")
        for h, entry in entries.items():
            f.write(json.dumps({key: h, **entry}) + "\n")
        f.flush()
        os.fsync(f.fileno())
