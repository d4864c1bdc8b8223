"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al., Interspeech 2005), read as released.

Layout: the release keeps its audio in ``<root>/wav/<name>.wav``; any folder of EmoDB-named .wav files reads the
same, since the .wav files are found recursively and every label comes from the file name alone (so a copy laid out
``speaker_NN/<name>.wav``, as ``emodb_dev``, gives the same records). A name such as ``03a01Fa`` is: speaker (two
digits: 03 08 09 10 11 12 13 14 15 16), text (one of the ten sentences a01 a02 a04 a05 a07 b01 b02 b03 b09 b10),
emotion letter (W anger, L boredom, E disgust, A fear, F happiness, T sadness, N neutral) and version letter.

- emotion: the letter, mapped onto the shared vocabulary. Boredom has no shared label (calling it ``neutral``, ``sad``
  or ``other`` would teach or score something the speaker did not act), so boredom clips are **left out**, counted in
  the import summary. The corpus's own name (``anger``, ``happiness`` ...) is kept in ``emotion_original``.
- speaker / gender: the speaker digits (``03``) and the sex the EmoDB documentation gives each speaker. A copy whose
  folder names a speaker (``speaker_03``) must agree with the file name, or the clip is skipped.
- transcript: the sentence of the text id, as the EmoDB documentation writes it (its older spelling: "Heute abend",
  "hochgetragen"; other copies write "Heute Abend", "hoch getragen"). A copy cut short (``emodb_dev`` holds 2.0 s of
  each clip) keeps the whole sentence as transcript while its audio holds only the start.
- language ``de``; the text id and version go to ``extra``.
- split: the corpus defines none, so every clip is ``train``. No valence / arousal / dominance.

A .wav whose name is not an EmoDB code (unknown speaker, text or emotion letter) is skipped and counted, never given a
guessed label.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from prep.importers.records import CorpusLayoutError, IssueTally, make_record

DATASET = "emodb"
EMOTION_CODES: dict[str, tuple[str, str | None]] = {  # letter -> (label as the corpus names it, shared label)
    "W": ("anger", "angry"),
    "L": ("boredom", None),  # no shared label: left out
    "E": ("disgust", "disgusted"),
    "A": ("fear", "fearful"),
    "F": ("happiness", "happy"),
    "T": ("sadness", "sad"),
    "N": ("neutral", "neutral"),
}
SENTENCES: dict[str, str] = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
SPEAKER_GENDERS: dict[str, str] = {
    "03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
    "12": "male", "13": "female", "14": "female", "15": "male", "16": "female",
}
FILE_NAME = re.compile(r"(?P<speaker>\d\d)(?P<text>[ab]\d\d)(?P<emotion>[A-Z])(?P<version>[a-z])")
SPEAKER_FOLDER = re.compile(r"speaker_(?P<speaker>\d\d)")
LEFT_OUT = "boredom (L): no shared emotion label, left out"
NOT_A_CODE = "file name is not an EmoDB code <speaker><text><emotion><version> with known codes (e.g. 03a01Fa.wav)"


def import_emodb(root: Path) -> Iterator[dict[str, Any]]:
    """Records for every EmoDB-named .wav under ``root`` (the release's folder holding ``wav/``, or any copy)."""
    if not root.is_dir():
        raise CorpusLayoutError(f"EmoDB root {root} is not a directory")
    wavs = sorted(path for path in root.rglob("*") if path.suffix.lower() == ".wav" and path.is_file())
    if not any(FILE_NAME.fullmatch(wav.stem) for wav in wavs):
        raise CorpusLayoutError(f"{root} does not look like EmoDB: no .wav file under it is named like an EmoDB clip "
                                "(expected e.g. <root>/wav/03a01Fa.wav)")
    return _records(wavs)


def _records(wavs: list[Path]) -> Iterator[dict[str, Any]]:
    issues = IssueTally(DATASET)
    for wav in wavs:
        code = FILE_NAME.fullmatch(wav.stem)
        if (code is None or code["speaker"] not in SPEAKER_GENDERS or code["text"] not in SENTENCES
                or code["emotion"] not in EMOTION_CODES):
            issues.note(NOT_A_CODE, wav)
            continue
        folder = SPEAKER_FOLDER.fullmatch(wav.parent.name)
        if folder is not None and folder["speaker"] != code["speaker"]:
            issues.note("speaker in the file name differs from its speaker_NN folder", wav)
            continue
        original, emotion = EMOTION_CODES[code["emotion"]]
        if emotion is None:
            issues.note(LEFT_OUT, wav)
            continue
        yield make_record(
            DATASET,
            wav.stem,
            wav,
            speaker=code["speaker"],
            gender=SPEAKER_GENDERS[code["speaker"]],
            transcript=SENTENCES[code["text"]],
            emotion=emotion,
            emotion_original=original,
            split="train",
            language="de",
            extra={"text_id": code["text"], "version": code["version"]},
        )
    issues.report()
