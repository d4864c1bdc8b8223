"""Write validated records into WebDataset shards (``<split>-%06d.tar``) with a ``manifest.json`` beside them.

Every record is checked (schema, transcript when required, audio readable and sane); rejects are counted by reason,
listed in ``rejects.jsonl`` and summarised. A re-run over a folder that already holds shards resumes: ids already
written are skipped and numbering continues, so nothing is duplicated; leftover ``.tmp`` files (an interrupted
shard) are deleted and their samples written again.
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from clips.audio import audio_problem, load_audio
from clips.manifest import MALFORMED
from clips.schema import METADATA_FIELDS, metadata_problems
from clips.tar_samples import ShardTarWriter, iter_tar_samples, safe_key

SHARD_NAME = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{6})\.tar$")
AUDIO_FORMATS = {"flac": ("FLAC", "PCM_16"), "wav": ("WAV", "FLOAT")}


@dataclass
class WriteSummary:
    out_dir: Path
    kept: Counter = field(default_factory=Counter)  # split -> samples written in this run
    rejected: Counter = field(default_factory=Counter)  # reason -> count
    already_written: int = 0  # ids skipped because an earlier run wrote them
    shards: list[str] = field(default_factory=list)  # shards written in this run

    def __str__(self) -> str:
        lines = [f"shards in {self.out_dir}: wrote {sum(self.kept.values())} samples in {len(self.shards)} shards"]
        lines += [f"  kept {split}: {n}" for split, n in sorted(self.kept.items())]
        if self.already_written:
            lines.append(f"  already written by an earlier run (skipped): {self.already_written}")
        lines += [f"  rejected {reason}: {n}" for reason, n in self.rejected.most_common()]
        return "\n".join(lines)


class _Reject(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def shard_files(folder: str | os.PathLike, split: str | None = None) -> list[Path]:
    """The complete shards in ``folder`` (optionally of one split), in name order."""
    return sorted(p for p in Path(folder).glob("*.tar")
                  if (m := SHARD_NAME.match(p.name)) and (split is None or m["split"] == split))


def write_shards(records: Iterable[dict[str, Any]], out_dir: str | os.PathLike, *, split: str | None = None,
                 target_sr: int | None = None, max_count: int = 1000, max_bytes: int = 256 * 2**20,
                 min_seconds: float = 0.2, max_seconds: float = 60.0, require_transcript: bool = False,
                 audio_format: str = "flac", resume: bool = True, progress: bool = True) -> WriteSummary:
    """Validate ``records`` and write them as shards; see the module docstring. ``resume=False`` refuses a folder
    that already holds shards."""
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {', '.join(AUDIO_FORMATS)}, got {audio_format!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = shard_files(out)
    if existing and not resume:
        raise FileExistsError(f"{out} already holds {len(existing)} shards; use another folder or resume")
    for leftover in out.glob("*.tar.tmp"):
        leftover.unlink()
    previous_ids = {meta["id"] for _, meta in iter_shard_metadata(existing)}
    claimed: set[str] = set()  # ids of this run's records so far, written or rejected
    summary = WriteSummary(out)
    writers: dict[str, _SplitWriter] = {}
    # "w": a rerun goes over every record again, so it lists each reject once, not once per run
    with _sigterm_raises(), open(out / "rejects.jsonl", "w", encoding="utf-8") as rejects:
        try:
            for record in tqdm(records, desc="writing shards", unit="clip", disable=not progress):
                if MALFORMED in record:  # a row the reader could not turn into a record
                    summary.rejected["malformed_row"] += 1
                    rejects.write(json.dumps({"id": record.get("id"), "audio_path": None, "reason": "malformed_row",
                                              "detail": record[MALFORMED]}) + "\n")
                    continue
                meta = {k: v for k, v in record.items() if k not in ("audio_path", "teacher", "qa")}
                meta["split"] = meta.get("split") or split
                # The first record of an id stands for it, written or rejected, and a later one is a duplicate: so
                # a rerun, which skips the first as already written, rejects the same records as the first run.
                duplicate = meta.get("id") in claimed
                claimed.add(meta.get("id"))
                if meta.get("id") in previous_ids and not duplicate:
                    summary.already_written += 1
                    continue
                try:
                    if duplicate:
                        raise _Reject("duplicate_id", "an earlier record has the same id")
                    members = _encode(record, meta, target_sr, min_seconds, max_seconds, require_transcript,
                                      audio_format)
                except _Reject as rej:
                    summary.rejected[rej.reason] += 1
                    rejects.write(json.dumps({"id": record.get("id"), "audio_path": record.get("audio_path"),
                                              "reason": rej.reason, "detail": rej.detail}) + "\n")
                    continue
                if meta["split"] not in writers:
                    writers[meta["split"]] = _SplitWriter(out, meta["split"], max_count, max_bytes, summary.shards)
                writers[meta["split"]].write(safe_key(meta["id"]), members)
                summary.kept[meta["split"]] += 1
            for writer in writers.values():
                writer.close()
        except BaseException:
            for writer in writers.values():  # no cut shard left behind, under its final name or as .tmp
                writer.abort()
            raise
    write_manifest(out)
    if progress:
        print(summary)
    return summary


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Inside the block SIGTERM (``kill``, a scheduler) raises ``SystemExit(143)``, as Ctrl-C raises
    KeyboardInterrupt, so the unfinished shard is removed as for any error: by default SIGTERM ends the process on
    the spot and leaves its ``.tmp``. The previous handler is back afterwards; an ignored SIGTERM stays ignored
    (as does one handled outside Python), and only the main thread may set a handler."""
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_IGN, None) or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _encode(record: dict, meta: dict, target_sr: int | None, min_s: float, max_s: float,
            require_transcript: bool, audio_format: str) -> dict[str, bytes]:
    if meta["split"] is None:
        raise _Reject("no_split", "the record has no split and none was given")
    problems = metadata_problems(meta, need_audio_fields=False)
    if problems:
        reason = "unknown_emotion" if any(p.startswith("unknown emotion") for p in problems) else "bad_metadata"
        raise _Reject(reason, "; ".join(problems))
    if meta["id"] in ("", None) or "/" in meta["id"]:
        raise _Reject("bad_metadata", f"unusable id {meta['id']!r}")
    if require_transcript and not (meta.get("transcript") or "").strip():
        raise _Reject("missing_transcript")
    path = record.get("audio_path")
    if not path or not Path(path).is_file():
        raise _Reject("missing_audio_file", str(path))
    try:
        wave, sr = load_audio(path, target_sr)
    except (RuntimeError, ValueError, OSError) as err:
        raise _Reject("unreadable_audio", str(err)) from None
    problem = audio_problem(wave, sr, min_s, max_s)
    if problem:
        raise _Reject(problem, f"{wave.size / sr:.3f} s at {sr} Hz")
    meta.update(duration=round(wave.size / sr, 6), sample_rate=sr)
    # Keep the schema's field order, then the optional keys.
    ordered = {k: meta[k] for k in METADATA_FIELDS} | {k: v for k, v in meta.items() if k not in METADATA_FIELDS}
    fmt, subtype = AUDIO_FORMATS[audio_format]
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), sr, format=fmt, subtype=subtype)
    members = {audio_format: buf.getvalue(), "json": _json_bytes(ordered)}
    for extra in ("teacher", "qa"):
        if record.get(extra) is not None:
            members[f"{extra}.json"] = _json_bytes(record[extra])
    return members


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


class _SplitWriter:
    """Rolls over to a new shard of one split when the current one reaches ``max_count`` samples or
    ``max_bytes``; numbering continues after the split's existing shards."""

    def __init__(self, out: Path, split: str, max_count: int, max_bytes: int, written: list[str]):
        self.out, self.split, self.max_count, self.max_bytes, self.written = out, split, max_count, max_bytes, written
        existing = shard_files(out, split)
        self.next_index = int(SHARD_NAME.match(existing[-1].name)["index"]) + 1 if existing else 0
        self.current: ShardTarWriter | None = None

    def write(self, key: str, members: dict[str, bytes]) -> None:
        size = sum(len(v) + 512 for v in members.values())
        if self.current is not None and (self.current.count >= self.max_count
                                         or self.current.bytes + size > self.max_bytes):
            self.close()
        if self.current is None:
            self.current = ShardTarWriter(self.out / f"{self.split}-{self.next_index:06d}.tar")
            self.next_index += 1
        self.current.write(key, members)

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.written.append(self.current.path.name)
            self.current = None

    def abort(self) -> None:
        if self.current is not None:
            self.current.abort()
            self.current = None


def iter_shard_metadata(shards: Iterable[Path]) -> Iterable[tuple[Path, dict]]:
    """(shard, parsed ``<key>.json``) for every sample of ``shards``."""
    for shard in shards:
        with open(shard, "rb") as f:
            for sample in iter_tar_samples(f):
                if "json" in sample:
                    yield shard, json.loads(sample["json"])


SPLIT_FILE = "split.json"
ASR_FILE = "asr.json"  # which model transcribed the clips (`<key>.asr.json`) and its WER (prep/transcribe.py)


def write_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """Scan the shards in ``folder`` and write ``manifest.json``: shards with sample counts, hours per split and
    the label inventory (emotion and style counts, speakers)."""
    folder = Path(folder)
    counts: Counter = Counter()
    seconds: Counter = Counter()
    emotions: Counter = Counter()
    styles: Counter = Counter()
    speakers: set[str] = set()
    split_speakers: dict[str, set[str]] = {}
    shards = shard_files(folder)
    for shard, meta in iter_shard_metadata(shards):
        counts[shard.name] += 1
        seconds[meta.get("split")] += float(meta.get("duration") or 0.0)
        emotions[str(meta.get("emotion"))] += 1
        styles.update(meta.get("style") or [])
        if meta.get("speaker"):
            speakers.add(meta["speaker"])
            split_speakers.setdefault(str(meta.get("split")), set()).add(meta["speaker"])
    manifest = {
        "shards": [{"name": s.name, "split": SHARD_NAME.match(s.name)["split"], "samples": counts[s.name]}
                   for s in shards],
        "samples": sum(counts.values()),
        "hours": {split: round(sec / 3600, 6) for split, sec in sorted(seconds.items())},
        "labels": {"emotion": dict(emotions.most_common()), "style": dict(styles.most_common()),
                   "speakers": sorted(speakers)},
        "speakers_per_split": {split: sorted(names) for split, names in sorted(split_speakers.items())},
    }
    if (folder / SPLIT_FILE).exists():  # how the split was made (paralign import --val-speakers ...)
        manifest["split"] = json.loads((folder / SPLIT_FILE).read_text(encoding="utf-8"))
    if (folder / ASR_FILE).exists():
        manifest["asr"] = json.loads((folder / ASR_FILE).read_text(encoding="utf-8"))
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, folder / "manifest.json")
    return manifest


def rewrite_shards(in_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   add: Callable[[list[tuple[str, dict]]], list[dict[str, bytes]]], *, batch_size: int = 1,
                   skip_existing: bool = True, progress: bool = True) -> list[Path]:
    """Copy every shard of ``in_dir`` to ``out_dir`` (same names; may be the same folder), adding members.

    ``add`` gets up to ``batch_size`` ``(key, metadata)`` pairs of one shard (batched so a teacher LLM can
    generate for many clips at once) and returns, per pair, the members to add, e.g.
    ``{"teacher.json": b"..."}``; an added member replaces one of the same name. Each output shard is written
    atomically; with ``skip_existing`` and a separate ``out_dir``, shards already there are kept (an interrupted
    teacher run resumes). Returns the shards written.
    """
    src, dst = Path(in_dir), Path(out_dir)
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    with _sigterm_raises():  # a teacher run stopped by its scheduler leaves no .tmp shard
        for shard in tqdm(shard_files(src), desc="rewriting shards", unit="shard", disable=not progress):
            target = dst / shard.name
            if skip_existing and target.exists() and src.resolve() != dst.resolve():
                continue
            _rewrite_shard(shard, target, add, batch_size)
            written.append(target)
    write_manifest(dst)
    return written


def _rewrite_shard(shard: Path, target: Path, add: Callable[[list[tuple[str, dict]]], list[dict[str, bytes]]],
                   batch_size: int) -> None:
    with open(shard, "rb") as f:
        samples = list(iter_tar_samples(f))
    writer = ShardTarWriter(target)
    try:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start:start + batch_size]
            additions = add([(s["__key__"], json.loads(s["json"])) for s in chunk])
            if len(additions) != len(chunk):
                raise ValueError(f"add() returned {len(additions)} results for {len(chunk)} samples")
            for sample, extra in zip(chunk, additions):
                members = {k: v for k, v in sample.items() if k != "__key__"} | extra
                writer.write(str(sample["__key__"]), members)
    except BaseException:
        writer.abort()
        raise
    writer.close()
