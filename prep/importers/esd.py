"""ESD, the Emotional Speech Dataset (Zhou et al., ICASSP 2021), read as released.

Layout: ``<root>/<spk>/<Emotion>/[train|evaluation|test/]<spk>_<nnnnnn>.wav`` and ``<root>/<spk>/<spk>.txt``
(``<utterance id> <TAB> <transcript> <TAB> <emotion>``), speakers 0001-0010 Mandarin, 0011-0020 English.

- emotion: taken from the ``<Emotion>`` folder, the release's unambiguous label. The third column of the text
  files is not used: the Mandarin files write it in Chinese, and not with the same words in every file.
- split: the ``train`` / ``evaluation`` / ``test`` subfolders where the release has them (``evaluation`` becomes
  ``validation``); releases without them are all ``train``.
- gender: from the speaker list in the corpus README. No valence / arousal / dominance in this corpus.
- The text files are not uniformly encoded (UTF-8, UTF-16-LE, GB2312) and some separate fields with spaces
  instead of tabs (HLTSingapore/Emotional-Speech-Data issue #1); both are handled here.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from prep.importers.records import VALIDATION_SPLIT, IssueTally, make_record, require_any

DATASET = "esd"
EMOTION_MAP: dict[str, str] = {
    "Neutral": "neutral",
    "Angry": "angry",
    "Happy": "happy",
    "Sad": "sad",
    "Surprise": "surprised",
}
SPLIT_FOLDERS: dict[str, str] = {"train": "train", "evaluation": VALIDATION_SPLIT, "test": "test"}
FEMALE_SPEAKERS = frozenset({"0001", "0002", "0003", "0007", "0009", "0015", "0016", "0017", "0018", "0019"})
MANDARIN_SPEAKERS = frozenset(f"{n:04d}" for n in range(1, 11))


def decode_text_file(path: Path) -> str:
    """The text of an ESD transcript file, whichever of the release's encodings it uses."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data:  # UTF-16 without a byte-order mark: ASCII characters come with a zero byte
        return data.decode("utf-16-le")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030")  # superset of GB2312 / GBK


def read_transcripts(path: Path) -> dict[str, str]:
    """Utterance id -> transcript from ``<spk>.txt`` (tab-separated, or space-separated with the emotion last)."""
    transcripts: dict[str, str] = {}
    for line in decode_text_file(path).splitlines():
        line = line.strip()
        if not line:
            continue
        if "\t" in line:
            fields = line.split("\t")
            utterance, text = fields[0], fields[1] if len(fields) > 1 else ""
        else:
            tokens = line.split()
            utterance, text = tokens[0], " ".join(tokens[1:-1])
        if text.strip():
            transcripts[utterance.strip()] = text.strip()
    return transcripts


def import_esd(root: Path) -> Iterator[dict[str, Any]]:
    """Records for every ESD clip under ``root`` (the folder holding ``0001`` ... ``0020``)."""
    speakers = [
        path
        for path in require_any(root, "[0-9][0-9][0-9][0-9]", "ESD", "<root>/0011/Angry/0011_000351.wav")
        if path.is_dir()
    ]
    return _records(speakers)


def _records(speaker_dirs: list[Path]) -> Iterator[dict[str, Any]]:
    issues = IssueTally(DATASET)
    for speaker_dir in speaker_dirs:
        speaker = speaker_dir.name
        text_file = speaker_dir / f"{speaker}.txt"
        transcripts = read_transcripts(text_file) if text_file.is_file() else {}
        if not transcripts:
            issues.note("speaker without a transcript file (clips kept, transcript null)", text_file)
        for folder in sorted(p for p in speaker_dir.iterdir() if p.is_dir() and p.name not in EMOTION_MAP):
            issues.note("folder that is not one of the five emotions", folder)
        name_pattern = re.compile(rf"{speaker}_\d{{6}}")
        for label, emotion in EMOTION_MAP.items():
            emotion_dir = speaker_dir / label
            for wav in sorted(emotion_dir.rglob("*.wav")):
                if not name_pattern.fullmatch(wav.stem):
                    issues.note("file name is not <spk>_<nnnnnn>.wav", wav)
                    continue
                split = "train" if wav.parent == emotion_dir else SPLIT_FOLDERS.get(wav.parent.name)
                if split is None:
                    issues.note("unknown split subfolder", wav)
                    continue
                transcript = transcripts.get(wav.stem)
                if transcripts and transcript is None:
                    issues.note("utterance missing from the transcript file (clip kept, transcript null)", wav)
                yield make_record(
                    DATASET,
                    wav.stem,
                    wav,
                    speaker=speaker,
                    gender="female" if speaker in FEMALE_SPEAKERS else "male",
                    transcript=transcript,
                    emotion=emotion,
                    emotion_original=label,
                    split=split,
                    language="zh" if speaker in MANDARIN_SPEAKERS else "en",
                )
    issues.report()
