"""IEMOCAP (Busso et al., 2008), the full release, read as released.

Layout under ``<root>`` (the ``IEMOCAP_full_release`` folder):
- audio ``Session{1..5}/sentences/wav/<dialog>/<utterance>.wav``;
- labels ``Session*/dialog/EmoEvaluation/<dialog>.txt``, one line per utterance:
  ``[6.2901 - 8.2357] <TAB> Ses01F_impro01_F000 <TAB> neu <TAB> [2.5000, 2.5000, 2.5000]`` (valence, activation,
  dominance, already on a 1-5 scale), followed by the individual annotators' lines, which are not read;
- transcripts ``Session*/dialog/transcriptions/<dialog>.txt``: ``Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.``

- emotion: the consensus label. ``exc`` (excited) joins ``happy``, as in the usual four-class IEMOCAP setup;
  ``fru`` (frustrated) and ``oth`` become ``other`` (our vocabulary has no frustration); ``xxx`` (annotators did
  not agree) becomes null. The corpus code is kept in ``emotion_original``.
- speaker / gender: the letter before the turn number (``..._F000``) is the speaker's sex; each session has one
  female and one male actor, so the speaker id is ``Ses01_F``. (The letter after ``Ses01`` names who wore the
  motion-capture markers, not who speaks.)
- split: the corpus defines none (leave-one-session-out is the custom), so every clip is ``train`` and the session
  number goes to ``extra``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from prep.importers.records import IssueTally, make_record, require_any, rescale_vad

DATASET = "iemocap"
EMOTION_MAP: dict[str, str | None] = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "happy",
    "sad": "sad",
    "ang": "angry",
    "sur": "surprised",
    "fea": "fearful",
    "dis": "disgusted",
    "fru": "other",
    "oth": "other",
    "xxx": None,
}
EVALUATION_LINE = re.compile(
    r"\[[\d.]+\s*-\s*[\d.]+\]\s+(?P<utterance>\S+)\s+(?P<label>\S+)\s+"
    r"\[(?P<valence>[\d.]+),\s*(?P<arousal>[\d.]+),\s*(?P<dominance>[\d.]+)\]"
)
TRANSCRIPT_LINE = re.compile(r"(?P<utterance>Ses\S+) \[[\d.]+-[\d.]+\]:\s?(?P<text>.*)")
UTTERANCE_ID = re.compile(r"(?P<session>Ses0[1-5])[FM]_.+_(?P<sex>[FM])\d{3}")


def read_evaluations(path: Path) -> Iterator[re.Match[str]]:
    """The consensus line of every utterance in one ``EmoEvaluation/<dialog>.txt``."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = EVALUATION_LINE.match(line.strip())
        if match:
            yield match


def read_transcripts(path: Path) -> dict[str, str]:
    """Utterance id -> text from one ``transcriptions/<dialog>.txt`` (lines for unsegmented speech are skipped)."""
    transcripts: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = TRANSCRIPT_LINE.match(line.strip())
            if match:
                transcripts[match["utterance"]] = match["text"].strip()
    return transcripts


def import_iemocap(root: Path) -> Iterator[dict[str, Any]]:
    """Records for every labelled utterance under ``root`` (the folder holding ``Session1`` ... ``Session5``)."""
    label_files = require_any(
        root, "Session[1-5]/dialog/EmoEvaluation/Ses*.txt", "IEMOCAP",
        "<root>/Session1/dialog/EmoEvaluation/Ses01F_impro01.txt",
    )
    return _records(label_files)


def _records(label_files: list[Path]) -> Iterator[dict[str, Any]]:
    issues = IssueTally(DATASET)
    for label_file in label_files:
        session_dir = label_file.parents[2]
        transcripts = read_transcripts(session_dir / "dialog" / "transcriptions" / label_file.name)
        for line in read_evaluations(label_file):
            utterance, label = line["utterance"], line["label"]
            speaker = UTTERANCE_ID.fullmatch(utterance)
            if speaker is None or label not in EMOTION_MAP:
                issues.note("utterance id or emotion code not in the IEMOCAP format", f"{label_file}: {utterance}")
                continue
            wav = session_dir / "sentences" / "wav" / label_file.stem / f"{utterance}.wav"
            if not wav.is_file():
                issues.note("labelled utterance without its wav file", wav)
                continue
            if utterance not in transcripts:
                issues.note("utterance missing from its transcription file (clip kept, transcript null)", wav)
            ratings = (float(line["valence"]), float(line["arousal"]), float(line["dominance"]))
            yield make_record(
                DATASET,
                utterance,
                wav,
                speaker=f"{speaker['session']}_{speaker['sex']}",
                gender="female" if speaker["sex"] == "F" else "male",
                transcript=transcripts.get(utterance),
                emotion=EMOTION_MAP[label],
                emotion_original=label,
                split="train",
                language="en",
                extra={"session": int(speaker["session"][-1])},
                **rescale_vad(ratings, 1.0, 5.0, issues, wav),
            )
    issues.report()
