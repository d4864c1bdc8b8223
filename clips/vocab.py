"""The shared label vocabulary that every corpus is mapped onto.

Corpora name their emotions differently ("ang", "Angry", "A", "anger"); training and evaluation need one set.
Per-corpus mappings live with each importer and map *onto* these names; the original label is kept beside it.
"""
from __future__ import annotations

EMOTIONS: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgusted",
    "surprised",
    "calm",
    "contempt",
    "other",
)

# Speaking styles are labels about *how* words are delivered, independent of emotion.
STYLES: tuple[str, ...] = (
    "whispered",
    "fast",
    "slow",
    "loud",
    "soft",
    "high-pitched",
    "low-pitched",
    "creaky",
    "breathy",
    "singing",
    "laughing",
    "projected",
    "default",
)

GENDERS: tuple[str, ...] = ("female", "male")

# Plain-language phrases used when a label is written into a prompt ("The speaker sounds sad.").
EMOTION_ADJECTIVE: dict[str, str] = {
    "neutral": "neutral",
    "happy": "happy",
    "sad": "sad",
    "angry": "angry",
    "fearful": "afraid",
    "disgusted": "disgusted",
    "surprised": "surprised",
    "calm": "calm",
    "contempt": "contemptuous",
    "other": "emotional in an unusual way",
}

STYLE_PHRASE: dict[str, str] = {
    "whispered": "whispering",
    "fast": "speaking fast",
    "slow": "speaking slowly",
    "loud": "speaking loudly",
    "soft": "speaking softly",
    "high-pitched": "speaking in a high-pitched voice",
    "low-pitched": "speaking in a low-pitched voice",
    "creaky": "speaking with a creaky voice",
    "breathy": "speaking with a breathy voice",
    "singing": "singing",
    "laughing": "laughing while speaking",
    "projected": "projecting their voice",
    "default": "speaking in an ordinary way",
}


def check_emotion(label: str | None) -> str | None:
    """Return ``label`` if it is in the shared set (or None); raise ValueError naming it otherwise."""
    if label is None or label in EMOTIONS:
        return label
    raise ValueError(f"unknown emotion label {label!r}; expected one of {', '.join(EMOTIONS)}")


def check_styles(labels: list[str] | None) -> list[str]:
    """Return the style list if every entry is known; raise ValueError naming the first unknown one."""
    for label in labels or []:
        if label not in STYLES:
            raise ValueError(f"unknown style label {label!r}; expected some of {', '.join(STYLES)}")
    return list(labels or [])


# The label kinds a task or a classifier head asks about, and their classes.
LABEL_SETS: dict[str, tuple[str, ...]] = {"emotion": EMOTIONS, "style": STYLES}


def marked_styles(styles: list[str] | None) -> list[str]:
    """A clip's styles beyond "default" (an ordinary delivery): what its style says in words."""
    return [s for s in styles or [] if s in STYLES and s != "default"]


def label_class(kind: str, meta: dict) -> int | None:
    """The one class a clip is trained as (classifier heads) and probed for (linear probe), so the two figures
    cannot drift apart: its emotion; for style, its first marked style (["default", "fast"] is fast: the marked
    delivery is what tells it), else "default" where the clip is labelled so; None without the label (an absent
    label is never guessed)."""
    if kind == "emotion":
        return EMOTIONS.index(meta["emotion"]) if meta.get("emotion") in EMOTIONS else None
    styles = meta.get("style") or []
    marked = marked_styles(styles)
    if marked:
        return STYLES.index(marked[0])
    return STYLES.index("default") if "default" in styles else None
