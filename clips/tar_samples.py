"""WebDataset tar conventions in one place: member naming, reading samples (through webdataset's own tar iterator
and grouping), atomic shard writing."""
from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from webdataset.tariterators import group_by_keys, tar_file_iterator

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe_key(sample_id: str) -> str:
    """A tar key for ``sample_id``: webdataset splits member names at the first dot of the basename, so keys must
    hold no dots (nor slashes). Ids that need changing get a short hash so two ids never collide."""
    key = _UNSAFE.sub("_", sample_id)
    if key != sample_id or not key:
        key = f"{key}_{hashlib.sha1(sample_id.encode()).hexdigest()[:8]}"
    return key


def iter_tar_samples(stream: IO[bytes], url: str = "") -> Iterator[dict[str, bytes | str]]:
    """The samples ``{"__key__": key, ext: bytes, ...}`` of a tar stream: consecutive regular members grouped by
    key, by webdataset's ``tar_file_iterator`` and ``group_by_keys`` (streaming, so pipes work; members are not
    kept in memory once read). A damaged tar raises ``tarfile.TarError`` from the point of damage, a sample with
    two members of one extension ``ValueError``; the samples before either have already been yielded."""
    files = ({**member, "__url__": url} for member in tar_file_iterator(stream))
    for sample in group_by_keys(files):
        sample.pop("__url__", None)
        yield sample


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
