"""CREMA-D (Cao et al., 2014), read as released.

Layout: ``<root>/AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav`` (e.g. ``1001_DFA_ANG_XX.wav``; actors
1001-1091, twelve sentences, emotions ANG DIS FEA HAP NEU SAD, levels LO MD HI or XX for unspecified) and
``<root>/VideoDemographics.csv`` (``ActorID,Age,Sex,Race,Ethnicity``) for the actor's sex.

- emotion: the *intended* emotion of the file name (the crowd-perceived labels of ``processedResults`` are not
  read). The level goes to ``extra``.
- gender: from ``VideoDemographics.csv``; without that file, null (logged).
- split: the corpus defines none, so every clip is ``train``. No valence / arousal / dominance.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Iterator

from prep.importers.records import IssueTally, make_record, require_any

DATASET = "cremad"
EMOTION_MAP: dict[str, str] = {
    "ANG": "angry",
    "DIS": "disgusted",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
FILE_NAME = re.compile(r"(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})")
SEX_TO_GENDER = {"male": "male", "female": "female"}


def read_demographics(path: Path) -> dict[str, str]:
    """Actor id -> gender from ``VideoDemographics.csv``; an unknown Sex value raises, naming the actor."""
    genders: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            sex = row["Sex"].strip().lower()
            if sex not in SEX_TO_GENDER:
                raise ValueError(f"{path}: actor {row['ActorID']} has unknown Sex {row['Sex']!r}")
            genders[row["ActorID"].strip()] = SEX_TO_GENDER[sex]
    return genders


def import_cremad(root: Path) -> Iterator[dict[str, Any]]:
    """Records for every clip in ``<root>/AudioWAV``."""
    wavs = require_any(root, "AudioWAV/*.wav", "CREMA-D", "<root>/AudioWAV/1001_DFA_ANG_XX.wav")
    demographics = root / "VideoDemographics.csv"
    return _records(wavs, read_demographics(demographics) if demographics.is_file() else None)


def _records(wavs: list[Path], genders: dict[str, str] | None) -> Iterator[dict[str, Any]]:
    issues = IssueTally(DATASET)
    if genders is None:
        issues.note("VideoDemographics.csv missing (gender null for every clip)", "VideoDemographics.csv")
    for wav in wavs:
        name = FILE_NAME.fullmatch(wav.stem)
        if name is None or name["sentence"] not in SENTENCES or name["emotion"] not in EMOTION_MAP \
                or name["level"] not in LEVELS:
            issues.note("file name is not <actor>_<sentence>_<emotion>_<level>.wav with known codes", wav)
            continue
        if genders is not None and name["actor"] not in genders:
            issues.note("actor missing from VideoDemographics.csv (clip kept, gender null)", wav)
        yield make_record(
            DATASET,
            wav.stem,
            wav,
            speaker=name["actor"],
            gender=(genders or {}).get(name["actor"]),
            transcript=SENTENCES[name["sentence"]],
            emotion=EMOTION_MAP[name["emotion"]],
            emotion_original=name["emotion"],
            split="train",
            language="en",
            extra={"intensity": LEVELS[name["level"]]},
        )
    issues.report()
