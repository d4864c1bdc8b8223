"""The per-utterance metadata schema of our shards (`<key>.json`), the contract in the README ("Data").

A *record* is what importers and the synthetic corpus produce before shards exist: the same fields plus
``audio_path``. Absent labels are ``None`` (never guessed).
"""
from __future__ import annotations

import math
from typing import Any

from clips.vocab import EMOTIONS, GENDERS, STYLES

# field -> (allowed python types, may be None)
# The members of a shard sample that may hold its audio, in the order they are looked for.
AUDIO_EXTS = ("flac", "wav", "ogg", "mp3")

METADATA_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "id": ((str,), False),
    "dataset": ((str,), False),
    "speaker": ((str,), True),
    "gender": ((str,), True),
    "duration": ((float, int), False),
    "sample_rate": ((int,), False),
    "transcript": ((str,), True),
    "emotion": ((str,), True),
    "emotion_original": ((str,), True),
    "valence": ((float, int), True),
    "arousal": ((float, int), True),
    "dominance": ((float, int), True),
    "style": ((list,), False),
    "split": ((str,), False),
}
REQUIRED_KEYS = tuple(METADATA_FIELDS)
OPTIONAL_KEYS = ("audio_path", "language", "extra")


def empty_metadata(**values: Any) -> dict[str, Any]:
    """A metadata dict with every field present: given values, ``[]`` for style, ``None`` elsewhere."""
    meta: dict[str, Any] = {k: None for k in METADATA_FIELDS}
    meta["style"] = []
    meta.update(values)
    return meta


def metadata_problems(meta: dict[str, Any], *, need_audio_fields: bool = True) -> list[str]:
    """Every way ``meta`` breaks the schema, as readable strings (empty list: valid).

    ``need_audio_fields=False`` is for records before the writer has measured duration / sample rate.
    """
    problems: list[str] = []
    for key, (types, nullable) in METADATA_FIELDS.items():
        if key not in meta:
            if not need_audio_fields and key in ("duration", "sample_rate"):
                continue
            problems.append(f"missing field {key!r}")
            continue
        value = meta[key]
        if value is None:
            if not nullable and not (not need_audio_fields and key in ("duration", "sample_rate")):
                problems.append(f"field {key!r} is null")
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            problems.append(f"field {key!r} has type {type(value).__name__}")
            continue
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"field {key!r} is not finite")
    unknown = set(meta) - set(METADATA_FIELDS) - set(OPTIONAL_KEYS)
    problems += [f"unknown field {k!r}" for k in sorted(unknown)]
    if meta.get("emotion") is not None and meta["emotion"] not in EMOTIONS:
        problems.append(f"unknown emotion {meta['emotion']!r}")
    if meta.get("gender") is not None and meta["gender"] not in GENDERS:
        problems.append(f"unknown gender {meta['gender']!r}")
    for style in meta.get("style") or []:
        if style not in STYLES:
            problems.append(f"unknown style {style!r}")
    for dim in ("valence", "arousal", "dominance"):
        value = meta.get(dim)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not 1.0 <= value <= 5.0:
            problems.append(f"{dim} {value} outside [1, 5]")
    return problems
