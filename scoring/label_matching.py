"""Map a free-text answer ("She sounds pretty furious to me") to a label of the shared vocabulary.

Two stages, because the LLM answers in prose: first keywords (word-boundary match of a label and its synonyms,
skipping simple negations such as "not angry"); when no keyword matches or several labels tie, the nearest label
by MiniLM sentence embedding, provided the similarity clears ``min_similarity`` (below it the answer says nothing
about the labels, e.g. "I don't know", and stays unmatched = None, which metrics count as wrong).
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

from clips.vocab import EMOTION_ADJECTIVE, STYLE_PHRASE
from scoring.embedder import Embedder, default_embedder

# "other" has no keywords on purpose: the word "other" is too common in prose ("each other") to mean the label.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "neutral": ("neutral", "neutrally", "matter-of-fact", "unemotional", "emotionless", "flat", "indifferent"),
    "happy": ("happy", "happily", "happiness", "joy", "joyful", "joyous", "cheerful", "glad", "excited", "delighted",
              "pleased", "upbeat", "thrilled", "elated", "amused"),
    "sad": ("sad", "sadly", "sadness", "unhappy", "sorrow", "sorrowful", "depressed", "gloomy", "melancholy",
            "heartbroken", "miserable", "tearful", "grief", "grieving"),
    "angry": ("angry", "angrily", "anger", "furious", "mad", "irritated", "annoyed", "frustrated", "enraged",
              "irate", "outraged", "ticked off", "hostile", "rage"),
    "fearful": ("fearful", "fear", "afraid", "scared", "frightened", "terrified", "anxious", "nervous", "worried",
                "panicked", "panicky", "alarmed"),
    "disgusted": ("disgusted", "disgust", "disgusting", "revolted", "repulsed", "grossed out", "sickened"),
    "surprised": ("surprised", "surprise", "surprising", "amazed", "astonished", "shocked", "startled", "stunned"),
    "calm": ("calm", "calmly", "relaxed", "peaceful", "serene", "composed", "tranquil", "soothing"),
    "contempt": ("contempt", "contemptuous", "scornful", "scorn", "disdain", "disdainful", "sneering", "condescending"),
    "other": (),
    "whispered": ("whispered", "whisper", "whispering", "whispers", "hushed"),
    "fast": ("fast", "quickly", "quick", "rapid", "rapidly", "hurried", "hurriedly", "rushed"),
    "slow": ("slow", "slowly", "sluggish", "unhurried", "drawn out", "leisurely"),
    "loud": ("loud", "loudly", "shouting", "shouted", "yelling", "yelled", "booming"),
    "soft": ("soft", "softly", "quiet", "quietly", "gentle", "gently", "hushed"),
    "high-pitched": ("high-pitched", "high pitched", "high pitch", "high voice", "shrill", "squeaky"),
    "low-pitched": ("low-pitched", "low pitched", "low pitch", "low voice", "deep voice", "deep-voiced"),
    "creaky": ("creaky", "creak", "creaking", "vocal fry", "croaky", "croaking", "gravelly", "raspy"),
    "breathy": ("breathy", "breathily", "airy", "breathiness"),
    "singing": ("singing", "sing", "sings", "sung", "sang", "melodic", "singsong"),
    "laughing": ("laughing", "laugh", "laughs", "laughter", "giggling", "giggle", "chuckling", "chuckle"),
    "projected": ("projected", "projecting", "projection", "projects"),
    "default": ("default", "normal", "ordinary", "regular", "normally", "typical"),
}

# A negation cancels a keyword when it sits at most this many words before it, with no clause break between
# ("not angry", "isn't really angry", "no sign of anger"; but "not sure, angry" still counts).
NEGATION_WINDOW = 3
_NEGATIONS = {"not", "no", "never", "without", "nor", "hardly", "barely", "neither"}
_CLAUSE_BREAK = re.compile(r"[.,;:!?]|\bbut\b|\bhowever\b|\brather\b|\binstead\b")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    # Spaces and hyphens inside a phrase are interchangeable: "high pitched" == "high-pitched".
    parts = [re.escape(p) for p in re.split(r"[\s-]+", keyword.lower())]
    return re.compile(r"(?<![a-z])" + r"[\s-]+".join(parts) + r"(?![a-z])")


_PATTERNS: dict[str, list[re.Pattern[str]]] = {
    label: [_keyword_pattern(k) for k in keywords] for label, keywords in SYNONYMS.items()
}


def _patterns(label: str) -> list[re.Pattern[str]]:
    # A label outside the shared vocabulary is still matched by its own name.
    return _PATTERNS.get(label) or ([_keyword_pattern(label)] if label not in SYNONYMS else [])


def _negated(text: str, start: int) -> bool:
    before = text[:start]
    brk = None
    for brk in _CLAUSE_BREAK.finditer(before):
        pass
    if brk is not None:
        before = before[brk.end():]
    words = _WORD.findall(before)[-NEGATION_WINDOW:]
    return any(w in _NEGATIONS or w.endswith("n't") for w in words)


def keyword_hits(answer: str, labels: Sequence[str]) -> Counter[str]:
    """How many non-negated keyword occurrences each label has in ``answer`` (labels with none are absent)."""
    text = answer.lower()
    hits: Counter[str] = Counter()
    for label in labels:
        for pattern in _patterns(label):
            for m in pattern.finditer(text):
                if not _negated(text, m.start()):
                    hits[label] += 1
    return hits


def label_description(label: str) -> str:
    """The sentence a label is embedded as (closer to how answers are phrased than the bare label)."""
    if label in EMOTION_ADJECTIVE:
        return f"The speaker sounds {EMOTION_ADJECTIVE[label]}."
    if label in STYLE_PHRASE:
        return f"The speaker is {STYLE_PHRASE[label]}."
    return label


def _keyword_stage(answer: str | None, labels: Sequence[str]) -> tuple[str | None, list[str]]:
    """(decided label, candidates for the embedding stage); no candidates means nothing more to do."""
    if answer is None or not answer.strip():
        return None, []
    hits = keyword_hits(answer, labels)
    if hits:
        best = max(hits.values())
        top = [label for label in labels if hits.get(label) == best]
        if len(top) == 1:
            return top[0], []
        return None, top
    return None, list(labels)


def match_labels(
    answers: Sequence[str | None],
    labels: Sequence[str],
    *,
    embedder: Embedder | None = None,
    min_similarity: float = 0.2,
) -> list[str | None]:
    """Batched :func:`match_label`: the embedding model runs once over every answer the keywords left open."""
    if not labels:
        raise ValueError("match_labels needs at least one candidate label")
    decided: list[str | None] = []
    pending: list[tuple[int, list[str]]] = []
    for i, answer in enumerate(answers):
        label, candidates = _keyword_stage(answer, labels)
        decided.append(label)
        if candidates:
            pending.append((i, candidates))
    if pending:
        embedder = embedder or default_embedder()
        label_vecs = dict(zip(labels, embedder.encode([label_description(lb) for lb in labels])))
        answer_vecs = embedder.encode([answers[i] for i, _ in pending])
        for (i, candidates), vec in zip(pending, answer_vecs):
            sims = {lb: float(vec @ label_vecs[lb]) for lb in candidates}
            best = max(candidates, key=sims.__getitem__)
            decided[i] = best if sims[best] >= min_similarity else None
    return decided


def match_label(
    answer: str | None,
    labels: Sequence[str],
    *,
    embedder: Embedder | None = None,
    min_similarity: float = 0.2,
) -> str | None:
    """The label ``answer`` names (keywords first, then nearest embedding), or None when it names none."""
    return match_labels([answer], labels, embedder=embedder, min_similarity=min_similarity)[0]
