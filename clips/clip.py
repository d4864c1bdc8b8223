"""``Clip``: one utterance on its way from shard members to training examples, typed.

What the stream reads from a sample (``<key>.json`` and the members beside it) before its audio is decoded; the
loader sets ``features`` once it has decoded and featurised the audio. The waveform itself never travels.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from clips.members import QAPair, TeacherReplies, heard_from_json
from clips.schema import empty_metadata


@dataclass
class Clip:
    key: str
    meta: dict[str, Any]  # the schema's metadata (clips/schema.py), every field present
    duration: float
    teacher: TeacherReplies | None = None  # <key>.teacher.json
    qa: list[QAPair] = field(default_factory=list)  # <key>.qa.json
    heard: str | None = None  # Whisper's transcript, <key>.asr.json
    features: Any = None  # the model's input features, set by the loader's workers


def read_members(key: str, members: dict[str, bytes]
                 ) -> tuple[dict[str, Any], TeacherReplies | None, list[QAPair], str | None]:
    """A sample's JSON members parsed into their types: metadata (absent fields filled in, never guessed), teacher
    replies, QA pairs, Whisper's words. Raises ``ValueError`` (JSON, encoding or shape) naming what is wrong."""
    meta = json.loads(members["json"])
    if not isinstance(meta, dict):
        raise ValueError(f"{key}.json holds {type(meta).__name__}, expected an object")
    teacher = TeacherReplies.from_json(json.loads(members["teacher.json"])) if "teacher.json" in members else None
    qa = QAPair.list_from_json(json.loads(members["qa.json"])) if "qa.json" in members else []
    heard = heard_from_json(json.loads(members["asr.json"])) if "asr.json" in members else None
    return empty_metadata(id=meta.get("id", key)) | meta, teacher, qa, heard
