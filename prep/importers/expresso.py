"""Expresso (Nguyen et al., Interspeech 2023), the read-speech part, read as released.

Layout: ``<root>/audio_48khz/read/<speaker>/<style>/base/<speaker>_<style>[_emphasis|_essentials]_<nnnnn>.wav``
(speakers ex01-ex04) and ``<root>/read_transcriptions.txt`` (``<id> <TAB> <text>``; emphasised words are written
``*like this*``, the asterisks are removed here). Optionally ``<root>/splits/{train,dev,test}.txt``, the split
files published with the dataset's processing scripts (one id per line; ``dev`` becomes ``validation``); without
them every clip is ``train``.

Not imported (logged): ``read/*/*/longform`` (minutes-long paragraphs without a sentence transcript) and
``conversational/`` (stereo dialogues, one speaker per channel, that would first need segmenting).

Styles map onto the shared vocabulary where one fits, and the style name is kept in ``emotion_original``:
happy / sad are emotions; default is ``neutral`` read in the ``default`` style; whisper, laughing and singing
are styles; confused, enunciated and narration have no counterpart (emotion null, no style). Speaker genders are
not in the files read here, so gender is null. No valence / arousal / dominance.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from prep.importers.records import VALIDATION_SPLIT, IssueTally, make_record, require_any

DATASET = "expresso"
STYLE_MAP: dict[str, tuple[str | None, list[str]]] = {  # style -> (shared emotion, shared styles)
    "confused": (None, []),
    "default": ("neutral", ["default"]),
    "enunciated": (None, []),
    "happy": ("happy", []),
    "laughing": (None, ["laughing"]),
    "narration": (None, []),
    "sad": ("sad", []),
    "singing": (None, ["singing"]),
    "whisper": (None, ["whispered"]),
}
SPLIT_FILES = {"train": "train", "dev": VALIDATION_SPLIT, "test": "test"}


def read_transcriptions(path: Path) -> dict[str, str]:
    """Clip id -> transcript from ``read_transcriptions.txt``, emphasis asterisks removed."""
    transcripts: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        clip, _, text = line.partition("\t")
        if text:
            transcripts[clip.strip()] = " ".join(text.replace("*", "").split())
    return transcripts


def read_splits(split_dir: Path) -> dict[str, str]:
    """Clip id -> split from the published split files; segment lines (``id<TAB>(start,end)``) are long files."""
    splits: dict[str, str] = {}
    for file_stem, split in SPLIT_FILES.items():
        path = split_dir / f"{file_stem}.txt"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#") and "\t" not in line:
                splits[line.strip()] = split
    return splits


def import_expresso(root: Path) -> Iterator[dict[str, Any]]:
    """Records for every read-speech clip under ``<root>/audio_48khz/read/*/*/base``."""
    wavs = require_any(
        root, "audio_48khz/read/ex[0-9][0-9]/*/base/*.wav", "Expresso",
        "<root>/audio_48khz/read/ex01/confused/base/ex01_confused_00001.wav",
    )
    transcript_file = root / "read_transcriptions.txt"
    transcripts = read_transcriptions(transcript_file) if transcript_file.is_file() else {}
    return _records(root, wavs, transcripts, read_splits(root / "splits"))


def _records(
    root: Path, wavs: list[Path], transcripts: dict[str, str], splits: dict[str, str]
) -> Iterator[dict[str, Any]]:
    issues = IssueTally(DATASET)
    for skipped in ("audio_48khz/conversational", "audio_48khz/read/*/*/longform"):
        if any(root.glob(skipped)):
            issues.note("part of Expresso not imported by design", skipped)
    for wav in wavs:
        style_dir = wav.parent.parent
        speaker, style = style_dir.parent.name, style_dir.name
        if style not in STYLE_MAP or not re.fullmatch(rf"{speaker}_{style}(_[a-z]+)?_\d{{5}}", wav.stem):
            issues.note("unknown style, or file name not <speaker>_<style>[_<set>]_<nnnnn>.wav", wav)
            continue
        if wav.stem not in transcripts:
            issues.note("clip missing from read_transcriptions.txt (clip kept, transcript null)", wav)
        if splits and wav.stem not in splits:
            issues.note("clip in no split file (kept as train)", wav)
        emotion, styles = STYLE_MAP[style]
        yield make_record(
            DATASET,
            wav.stem,
            wav,
            speaker=speaker,
            transcript=transcripts.get(wav.stem),
            emotion=emotion,
            emotion_original=style,
            style=list(styles),
            split=splits.get(wav.stem, "train"),
            language="en",
        )
    issues.report()
