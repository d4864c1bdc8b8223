"""RAVDESS (Livingstone & Russo, 2018), the audio-only speech and song releases, read as released.

Layout: ``<root>/Actor_XX/MM-VV-EE-II-SS-RR-AA.wav``, the seven two-digit fields being modality (03 = audio
only), vocal channel (01 speech, 02 song), emotion (01-08), intensity (01 normal, 02 strong), statement
(01 / 02, the only two sentences), repetition and actor (01-24; odd actors are male, even female).

- emotion: the emotion code; song clips also carry the style ``singing``. Intensity goes to ``extra``.
- split: the corpus defines none, so every clip is ``train``. No valence / arousal / dominance.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from prep.importers.records import IssueTally, make_record, require_any

DATASET = "ravdess"
EMOTION_CODES: dict[str, tuple[str, str]] = {  # code -> (label as the corpus names it, shared label)
    "01": ("neutral", "neutral"),
    "02": ("calm", "calm"),
    "03": ("happy", "happy"),
    "04": ("sad", "sad"),
    "05": ("angry", "angry"),
    "06": ("fearful", "fearful"),
    "07": ("disgust", "disgusted"),
    "08": ("surprised", "surprised"),
}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
INTENSITIES = {"01": "normal", "02": "strong"}
VOCAL_CHANNEL_STYLES = {"01": [], "02": ["singing"]}
FILE_NAME = re.compile(r"03-(?P<channel>0[12])-(?P<emotion>0[1-8])-(?P<intensity>0[12])-(?P<statement>0[12])"
                       r"-(?P<repetition>0[12])-(?P<actor>\d\d)")


def import_ravdess(root: Path) -> Iterator[dict[str, Any]]:
    """Records for every audio clip under ``root`` (the folder holding ``Actor_01`` ... ``Actor_24``)."""
    actors = require_any(root, "Actor_[0-9][0-9]", "RAVDESS", "<root>/Actor_01/03-01-01-01-01-01-01.wav")
    return _records(actors)


def _records(actor_dirs: list[Path]) -> Iterator[dict[str, Any]]:
    issues = IssueTally(DATASET)
    for actor_dir in actor_dirs:
        for wav in sorted(actor_dir.glob("*.wav")):
            code = FILE_NAME.fullmatch(wav.stem)
            if code is None:
                issues.note("file name is not an audio-only RAVDESS code 03-VV-EE-II-SS-RR-AA", wav)
                continue
            if f"Actor_{code['actor']}" != actor_dir.name:
                issues.note("actor in the file name differs from its Actor_XX folder", wav)
                continue
            original, emotion = EMOTION_CODES[code["emotion"]]
            yield make_record(
                DATASET,
                wav.stem,
                wav,
                speaker=actor_dir.name,
                gender="male" if int(code["actor"]) % 2 else "female",
                transcript=STATEMENTS[code["statement"]],
                emotion=emotion,
                emotion_original=original,
                style=list(VOCAL_CHANNEL_STYLES[code["channel"]]),
                split="train",
                language="en",
                extra={"intensity": INTENSITIES[code["intensity"]]},
            )
    issues.report()
