"""MSP-Podcast (Lotfian & Busso, 2019; releases 1.x), read as released.

Layout: ``<root>/Audios/<FileName>``, ``<root>/Labels/labels_consensus.csv`` with columns
``FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set`` and, where distributed,
``<root>/Transcripts/<stem>.txt``.

- emotion: ``EmoClass`` (A S H U F D C N O; ``X`` = no consensus becomes null), original code kept.
- valence / arousal / dominance: ``EmoVal`` / ``EmoAct`` / ``EmoDom`` on the corpus's 1-7 scale, mapped
  linearly onto [1, 5].
- speaker / gender: ``SpkrID`` and ``Gender``; ``Unknown`` becomes null.
- split: ``Split_Set`` (Train -> train, Development -> validation, Test1 / Test2 / Test3 -> test1 / test2 / test3;
  the test sets stay apart because they are built differently and reported separately).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterator

from prep.importers.records import (
    VALIDATION_SPLIT,
    CorpusLayoutError,
    IssueTally,
    make_record,
    require_any,
    rescale_vad,
)

DATASET = "msp-podcast"
EMOTION_MAP: dict[str, str | None] = {
    "A": "angry",
    "S": "sad",
    "H": "happy",
    "U": "surprised",
    "F": "fearful",
    "D": "disgusted",
    "C": "contempt",
    "N": "neutral",
    "O": "other",
    "X": None,
}
SPLITS = {"Train": "train", "Development": VALIDATION_SPLIT, "Test1": "test1", "Test2": "test2", "Test3": "test3"}
GENDERS = {"Male": "male", "Female": "female", "Unknown": None}
RATING_SCALE = (1.0, 7.0)
LABEL_COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")


def read_labels(path: Path) -> list[dict[str, str]]:
    """The rows of ``labels_consensus.csv``; raise CorpusLayoutError if a needed column is missing."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in LABEL_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise CorpusLayoutError(f"{path} lacks the column(s) {', '.join(missing)}")
        return list(reader)


def _rating(text: str) -> float | None:
    """A rating cell as a float; an empty cell (no rating given) is None."""
    return float(text) if text.strip() else None


def import_msp_podcast(root: Path) -> Iterator[dict[str, Any]]:
    """Records for every row of ``<root>/Labels/labels_consensus.csv`` whose audio is in ``<root>/Audios``."""
    (labels,) = require_any(
        root, "Labels/labels_consensus.csv", "MSP-Podcast", "<root>/Labels/labels_consensus.csv"
    )
    return _records(root, read_labels(labels))


def _records(root: Path, rows: list[dict[str, str]]) -> Iterator[dict[str, Any]]:
    issues = IssueTally(DATASET)
    for row in rows:
        wav = root / "Audios" / row["FileName"]
        if row["EmoClass"] not in EMOTION_MAP or row["Split_Set"] not in SPLITS or row["Gender"] not in GENDERS:
            issues.note("unknown EmoClass, Split_Set or Gender value", row["FileName"])
            continue
        if not wav.is_file():
            issues.note("labelled file missing from Audios/", wav)
            continue
        transcript_file = root / "Transcripts" / f"{wav.stem}.txt"
        transcript = transcript_file.read_text(encoding="utf-8").strip() if transcript_file.is_file() else None
        ratings = (_rating(row["EmoVal"]), _rating(row["EmoAct"]), _rating(row["EmoDom"]))
        speaker = row["SpkrID"].strip()
        yield make_record(
            DATASET,
            wav.stem,
            wav,
            speaker=None if speaker in ("", "Unknown") else speaker,
            gender=GENDERS[row["Gender"]],
            transcript=transcript,
            emotion=EMOTION_MAP[row["EmoClass"]],
            emotion_original=row["EmoClass"],
            split=SPLITS[row["Split_Set"]],
            language="en",
            **rescale_vad(ratings, *RATING_SCALE, issues, wav),
        )
    issues.report()
