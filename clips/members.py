"""What a clip carries beside its audio and labels, as shard members: the teacher's replies (``<key>.teacher.json``),
generated question-answer pairs (``<key>.qa.json``) and Whisper's transcript (``<key>.asr.json``).

One type for each, shared by their writers (``prep/``) and readers (the stream, the example builder): a member
that does not have the shape raises ``ValueError`` naming what is wrong, which the stream counts as ``bad_json``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Variant(str, Enum):
    """Which text the teacher replied to (recipe ``teacher.variants``, ``tasks.<name>.teacher_variant``)."""

    CONDITIONED = "conditioned"  # the words and the cue of the clip's emotion (and style)
    PLAIN = "plain"  # the words alone


VARIANT_NAMES = tuple(v.value for v in Variant)


@dataclass(frozen=True)
class TeacherReply:
    """One reply; ``topk``: the teacher's top-k log-probs over its reply's tokens (KL with ``kl_source: cached``);
    ``prompt`` / ``model`` / ``generation``: how it was made (kept in the shard for a reader, unused in training)."""

    reply: str
    topk: dict[str, list] | None = None
    prompt: str | None = None
    model: str | None = None
    generation: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reply": self.reply}
        for name in ("topk", "prompt", "model", "generation"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclass
class TeacherReplies:
    """A clip's teacher replies: task -> variant -> reply (``<key>.teacher.json``)."""

    entries: dict[str, dict[Variant, TeacherReply]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> "TeacherReplies":
        """Read a ``teacher.json`` object; variants this version does not know are left out (a newer writer's)."""
        if not isinstance(data, dict):
            raise ValueError(f"teacher.json holds {type(data).__name__}, expected an object of tasks")
        entries: dict[str, dict[Variant, TeacherReply]] = {}
        for task, variants in data.items():
            if not isinstance(variants, dict):
                raise ValueError(f"teacher.json task {task!r} holds {type(variants).__name__}, expected variants")
            for name, entry in variants.items():
                if name not in VARIANT_NAMES:
                    continue
                if not isinstance(entry, dict) or not isinstance(entry.get("reply"), str):
                    raise ValueError(f"teacher.json {task}.{name} has no reply text")
                entries.setdefault(task, {})[Variant(name)] = TeacherReply(
                    entry["reply"], entry.get("topk"), entry.get("prompt"), entry.get("model"), entry.get("generation"))
        return cls(entries)

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {task: {v.value: r.to_json() for v, r in variants.items()}
                for task, variants in self.entries.items() if variants}

    def get(self, task: str, variant: Variant) -> TeacherReply | None:
        return self.entries.get(task, {}).get(variant)

    def put(self, task: str, variant: Variant, reply: TeacherReply | None) -> None:
        """Set a reply; ``None`` removes one (an empty reply must not leave a stale one from another run)."""
        if reply is None:
            self.entries.get(task, {}).pop(variant, None)
        else:
            self.entries.setdefault(task, {})[variant] = reply


@dataclass(frozen=True)
class QAPair:
    """A generated question about a clip and its answer (``<key>.qa.json`` holds a list; ``prep/qa_generate.py``)."""

    question: str
    answer: str
    type: str | None = None

    @classmethod
    def list_from_json(cls, data: Any) -> list["QAPair"]:
        if not isinstance(data, list):
            raise ValueError(f"qa.json holds {type(data).__name__}, expected a list of pairs")
        pairs = []
        for item in data:
            if not isinstance(item, dict) or not isinstance(item.get("question"), str) \
                    or not isinstance(item.get("answer"), str):
                raise ValueError("a qa.json pair needs question and answer text")
            pairs.append(cls(item["question"], item["answer"], item.get("type")))
        return pairs


def heard_from_json(data: Any) -> str:
    """The text of an ``asr.json`` member (``{"text", "model"}``, ``prep/transcribe.py``)."""
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise ValueError("asr.json needs a text field")
    return data["text"]
