"""The sample stream of one (rank, worker) *role*: shard sources, splitting, reading, shuffling, mixing.

Everything here is a deterministic function of (seed, epoch, role, number of roles), which is what makes exact
resume possible. Samples leave this stage *light*: json parsed, duration known, audio still encoded bytes, so a
resumed run can plan and skip batches without decoding anything.
"""
from __future__ import annotations

import glob
import io
import os
import random
import re
import signal
import tarfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import soundfile as sf
from braceexpand import braceexpand
from webdataset.gopen import gopen, set_options

from clips.clip import Clip, read_members
from clips.schema import AUDIO_EXTS
from clips.tar_samples import iter_tar_samples

REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://")  # a URL for webdataset's gopen (no local existence check)


def expand_sources(spec: str | os.PathLike | list, split: str | None = None) -> list[str]:
    """Shard URLs from a path, a folder (its ``<split>-*.tar``, or every ``*.tar`` without a split), a brace
    pattern (``train-{000000..000123}.tar``), a glob, a ``pipe:`` command or a URL that webdataset opens
    (``pipe:aws s3 cp s3://bucket/train-{000000..000009}.tar -``, ``https://...``), or a list of any of these."""
    if isinstance(spec, (list, tuple)):
        return [url for item in spec for url in expand_sources(item, split)]
    spec = str(spec)
    if spec.startswith("pipe:") or REMOTE.match(spec):
        return list(braceexpand(spec))
    if os.path.isdir(spec):
        urls = sorted(glob.glob(os.path.join(spec, f"{split}-*.tar" if split else "*.tar")))
        if not urls:
            raise FileNotFoundError(f"no {split + '-' if split else ''}*.tar shards in folder {spec}")
        return urls
    urls = [u for pattern in braceexpand(spec)
            for u in (sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern])]
    missing = [u for u in urls if not os.path.exists(u)]
    if missing or not urls:
        raise FileNotFoundError(f"shard source {spec!r}: {len(missing)} missing, e.g. {missing[:1] or spec}")
    return urls


@contextmanager
def open_url(url: str) -> Iterator[IO[bytes]]:
    """A readable byte stream for any URL webdataset's ``gopen`` takes: a local path, ``pipe:command`` (whose
    stdout is the tar), ``http(s)://`` (curl), ... A command that exits non-zero raises ``OSError``; one killed by
    SIGPIPE (we stopped reading early: end of epoch, shutdown) is not a failure."""
    stream = gopen(url, "rb")
    set_options(stream, ignore_status=[0, 128 + signal.SIGPIPE, -signal.SIGPIPE])  # a pipe's; a file has none
    try:
        yield stream
    finally:
        stream.close()


@dataclass
class LightClip:
    """A sample with its members parsed and its audio still encoded (what batch planning needs)."""
    clip: Clip
    audio_bytes: bytes

    @property
    def key(self) -> str:
        return self.clip.key

    @property
    def duration(self) -> float:
        return self.clip.duration


def read_light_clips(url: str, skips: Counter) -> Iterator[LightClip]:
    """The samples of one shard as LightClips; bad samples are skipped and counted in ``skips`` by reason; a
    damaged or unreadable tar ends that shard (counted as ``bad_tar``) and the stream goes on with the next."""
    try:
        with open_url(url) as stream:
            for raw in iter_tar_samples(stream, url):
                clip = _light(raw, skips)
                if clip is not None:
                    yield clip
    except (tarfile.TarError, OSError, EOFError, ValueError):  # ValueError: two members of one name in a sample
        skips["bad_tar"] += 1


def _light(raw: dict, skips: Counter) -> LightClip | None:
    key = str(raw["__key__"])
    if key.startswith("/") or ".." in key.split("/"):  # ../../x, /abs/x: a crafted tar's (a folder prefix, as
        skips["unsafe_name"] += 1                        # WebDataset writers make, is a plain key)
        return None
    ext = next((e for e in AUDIO_EXTS if e in raw), None)
    if ext is None:
        skips["missing_audio"] += 1
        return None
    if "json" not in raw:  # no labels, no transcript: training on it would teach empty targets
        skips["missing_json"] += 1
        return None
    try:
        meta, teacher, qa, heard = read_members(key, raw)
    except ValueError:  # JSON, encoding (UnicodeDecodeError is one) or a member of the wrong shape
        skips["bad_json"] += 1
        return None
    duration = meta.get("duration")
    if not isinstance(duration, (int, float)) or duration <= 0:
        try:  # plain wav+json tars may lack a duration: read it from the audio header, not the samples
            duration = sf.info(io.BytesIO(raw[ext])).duration
        except (RuntimeError, ValueError):
            skips["bad_audio"] += 1
            return None
    return LightClip(Clip(key, meta, float(duration), teacher, qa, heard), raw[ext])


def role_clips(urls: list[str], role: int, n_roles: int, epoch: int, seed: int, shuffle: bool,
               skips: Counter) -> Iterator[LightClip]:
    """The clips of one dataset that ``role`` reads: whole shards when there are at least ``n_roles`` of them
    (shard order shuffled per epoch, identically on every role), else every ``n_roles``-th sample."""
    urls = list(urls)
    if shuffle:
        random.Random(f"shards:{seed}:{epoch}").shuffle(urls)
    if len(urls) >= n_roles:
        for url in urls[role::n_roles]:
            yield from read_light_clips(url, skips)
        return
    index = 0
    for url in urls:
        for clip in read_light_clips(url, skips):
            if index % n_roles == role:
                yield clip
            index += 1


def shuffle_buffer(items: Iterator, size: int, rng: random.Random) -> Iterator:
    """Approximate shuffling with a buffer of ``size`` items (``size <= 1``: order kept)."""
    if size <= 1:
        yield from items
        return
    buffer: list = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        i = rng.randrange(size)
        buffer[i], item = item, buffer[i]
        yield item
    rng.shuffle(buffer)
    yield from buffer


def mix(streams: list[Iterator], weights: list[float], rng: random.Random) -> Iterator:
    """Draw from ``streams`` with probability proportional to ``weights``; an exhausted stream drops out and the
    rest go on until all are exhausted."""
    live = [(s, w) for s, w in zip(streams, weights) if w > 0]
    while live:
        i = rng.choices(range(len(live)), weights=[w for _, w in live])[0] if len(live) > 1 else 0
        try:
            yield next(live[i][0])
        except StopIteration:
            live.pop(i)
