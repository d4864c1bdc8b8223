"""The sentence bank of the synthetic expressive corpus, read from ``sentences.txt`` beside this module.

Most sentences are emotionally ambiguous in their words, so only the voice can carry the emotion; a few carry an
emotion in their words and are tagged with it (``[sad] I miss the way things used to be.``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from clips.vocab import check_emotion

BANK_PATH = Path(__file__).with_name("sentences.txt")
MIN_WORDS, MAX_WORDS = 5, 14
_TAGGED = re.compile(r"^\[(?P<emotion>[a-z]+)\]\s+(?P<text>.+)$")


@dataclass(frozen=True)
class Sentence:
    text: str
    emotion_hint: str | None  # the emotion its words carry; None for the ambiguous ones


def parse_bank(lines: list[str], source: str = "<lines>") -> list[Sentence]:
    """Parse bank lines (comments and blanks skipped); raise ValueError naming the line of any bad entry."""
    sentences: list[Sentence] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _TAGGED.match(line)
        hint, text = (match["emotion"], match["text"]) if match else (None, line)
        where = f"{source}:{number}"
        try:
            check_emotion(hint)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        words = len(text.split())
        if not MIN_WORDS <= words <= MAX_WORDS:
            raise ValueError(f"{where}: {words} words, expected {MIN_WORDS}-{MAX_WORDS}: {text!r}")
        key = re.sub(r"[^a-z0-9 ]", "", text.lower())
        if key in seen:
            raise ValueError(f"{where}: duplicate of line {seen[key]}: {text!r}")
        seen[key] = number
        sentences.append(Sentence(text=text, emotion_hint=hint))
    return sentences


@lru_cache(maxsize=1)
def load_sentences() -> tuple[Sentence, ...]:
    """The whole bank, in file order."""
    return tuple(parse_bank(BANK_PATH.read_text(encoding="utf-8").splitlines(), source=str(BANK_PATH)))
