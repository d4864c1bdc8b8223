"""WebDataset tar conventions in one place: member naming, grouping members into samples, atomic shard writing."""
from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe_key(sample_id: str) -> str:
    """A tar key for ``sample_id``: webdataset splits member names at the first dot of the basename, so keys must
    hold no dots (nor slashes). Ids that need changing get a short hash so two ids never collide."""
    key = _UNSAFE.sub("_", sample_id)
    if key != sample_id or not key:
        key = f"{key}_{hashlib.sha1(sample_id.encode()).hexdigest()[:8]}"
    return key


def split_member(name: str) -> tuple[str, str]:
    """``dir/abc.teacher.json`` -> (``dir/abc``, ``teacher.json``), webdataset's rule (first dot of the basename)."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext.lower() if dot else "")


def iter_tar_samples(stream: IO[bytes]) -> Iterator[dict[str, bytes | str]]:
    """Group consecutive regular members of a tar stream into samples ``{"__key__": key, ext: bytes, ...}``.

    Reads in streaming mode (works on pipes). A damaged tar raises ``tarfile.TarError`` from the point of damage;
    the samples before it have already been yielded.
    """
    current: dict[str, bytes | str] | None = None
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, ext = split_member(member.name)
            if current is not None and current["__key__"] != key:
                yield current
                current = None
            if current is None:
                current = {"__key__": key}
            handle = tar.extractfile(member)
            current[ext] = handle.read() if handle is not None else b""
    if current is not None:
        yield current


class ShardTarWriter:
    """Writes one shard under ``<name>.tmp`` and renames it to its real name only in ``close()``, so an
    interrupted write never leaves a file that looks like a complete shard."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self._tar = tarfile.open(self.tmp_path, mode="w", format=tarfile.PAX_FORMAT)
        self.count = 0
        self.bytes = 0

    def write(self, key: str, members: dict[str, bytes]) -> None:
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mode = 0o444
            info.mtime = 0  # reproducible shards: same input, same bytes
            self._tar.addfile(info, io.BytesIO(data))
            self.bytes += len(data) + 512
        self.count += 1

    def close(self) -> None:
        self._tar.close()
        os.replace(self.tmp_path, self.path)

    def abort(self) -> None:
        self._tar.close()
        self.tmp_path.unlink(missing_ok=True)
