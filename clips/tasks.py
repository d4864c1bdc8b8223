"""Alignment tasks, their data side: what to ask the frozen LLM about a clip, and what it should answer.

A task has instruction templates (one is sampled per example; ``{speech}`` marks where the speech goes in the user
turn), a target source (a teacher reply cached in the shard, a label rendered through a template, the transcript,
or a generated QA pair) and a sampling share. Its loss side (weight, schedule, loss kind, KL settings) is the
model's: ``lightning_modules/objectives.py``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from clips.members import QAPair, TeacherReplies, Variant
from clips.metadata import SLOT as METADATA_SLOT
from clips.metadata import MetadataSpec
from clips.vocab import EMOTION_ADJECTIVE, STYLE_PHRASE, marked_styles

TASK_NAMES = ("response", "emotion", "style", "asr", "qa")

DEFAULT_INSTRUCTIONS: dict[str, list[str]] = {
    # The response task has no instruction: the LLM answers what was said, as it would a typed message.
    "response": ["{speech}"],
    "emotion": [
        "{speech}\nHow is the speaker feeling? Answer in one sentence.",
        "{speech}\nWhat emotion does the speaker's voice express?",
        "{speech}\nDescribe the speaker's emotional state in one sentence.",
    ],
    "style": [
        "{speech}\nDescribe how the speaker is speaking: speed, loudness, pitch and voice quality.",
        "{speech}\nHow does the speaker sound? Describe their speaking style.",
    ],
    "asr": ["{speech}\nRepeat exactly what was said.", "{speech}\nTranscribe the speech."],
    "qa": ["{speech}\n{question}"],
}
DEFAULT_TARGET = {"response": "teacher", "emotion": "label", "style": "label", "asr": "transcript", "qa": "qa"}


def emotion_sentence(emotion: str) -> str:
    return f"The speaker sounds {EMOTION_ADJECTIVE[emotion]}."


def style_sentence(styles: list[str]) -> str:
    phrases = [STYLE_PHRASE[s] for s in styles] or [STYLE_PHRASE["default"]]
    joined = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"The speaker is {joined}."


@dataclass
class Task:
    name: str
    instructions: list[str]
    target: str
    share: float = 1.0
    teacher_variant: Variant = Variant.CONDITIONED
    # where a KL term's teacher distribution comes from, which decides what an example carries: "cached" top-k
    # log-probs from the shards, or the "online" teacher prompt's token ids; None: the loss has no KL term
    kl_source: str | None = None
    max_target_tokens: int = 64
    metadata: MetadataSpec | None = None  # method 2 (explicit): metadata shown next to the speech
    label_kind: str | None = field(default=None)  # which label the task asks about (for answer accuracy)

    def target_text(self, meta: dict, teacher: TeacherReplies | None, qa: QAPair | None = None) -> str | None:
        """The reply this task trains towards for a clip, or None when the clip cannot serve this task."""
        if self.target == "teacher":
            entry = teacher.get(self.name, self.teacher_variant) if teacher is not None else None
            return entry.reply if entry is not None and entry.reply else None
        if self.target == "transcript":
            return meta.get("transcript") or None
        if self.target == "qa":
            return qa.answer if qa else None
        if self.name == "emotion":
            return emotion_sentence(meta["emotion"]) if meta.get("emotion") else None
        if self.name == "style":
            # no style label (a corpus that has none, as RAVDESS): no example, never "an ordinary way" made up; an
            # ordinary delivery is labelled so (["default"])
            return style_sentence(marked_styles(meta["style"])) if meta.get("style") else None
        raise ValueError(f"task {self.name!r} has no label target")

    def teacher_topk(self, teacher: TeacherReplies | None) -> dict | None:
        entry = teacher.get(self.name, self.teacher_variant) if teacher is not None else None
        return entry.topk if entry is not None else None


def build_tasks(cfg_tasks) -> dict[str, Task]:
    """Enabled tasks from a recipe's ``tasks`` section, in a stable order."""
    tasks = {}
    for name, tc in cfg_tasks.items():
        if not tc.enabled:
            continue
        target = tc.target or DEFAULT_TARGET[name]
        if target == "label" and name not in ("emotion", "style"):
            raise ValueError(f"tasks.{name}.target=label: only emotion and style have label targets")
        instructions = list(tc.instructions) or DEFAULT_INSTRUCTIONS[name]
        md = tc.metadata
        if not md.enabled and any(METADATA_SLOT in t for t in instructions):
            raise ValueError(f"tasks.{name}.instructions use {METADATA_SLOT} but tasks.{name}.metadata.enabled "
                             "is false")
        tasks[name] = Task(
            name=name, instructions=instructions, target=target, share=tc.share,
            teacher_variant=Variant(tc.teacher_variant), kl_source=tc.kl_source if "kl" in tc.loss else None,
            max_target_tokens=tc.max_target_tokens,
            metadata=MetadataSpec(md.source, tuple(md.fields), md.segments) if md.enabled else None,
            label_kind=name if name in ("emotion", "style") else None,
        )
    if not tasks:
        raise ValueError("the recipe enables no task")
    return tasks


def sample_tasks(tasks: dict[str, Task], usable: list[str], n: int, rng: random.Random) -> list[str]:
    """Pick up to ``n`` distinct usable tasks, each with probability proportional to its share."""
    names = [t for t in usable if tasks[t].share > 0]
    chosen: list[str] = []
    while names and len(chosen) < n:
        pick = rng.choices(names, weights=[tasks[t].share for t in names])[0]
        chosen.append(pick)
        names.remove(pick)
    return chosen
