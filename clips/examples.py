"""Training examples and batches, typed: a ``Clip`` becomes one ``Example`` per sampled task
(``ExampleBuilder``), examples become a ``Batch`` (``collate``) with its declared fields only.

Runs inside DataLoader workers: everything here is token ids and tensors, no LLM weights.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from clips.clip import Clip
from clips.metadata import metadata_text, with_metadata
from clips.padding import pad_frames
from clips.prompts import ChatPrompter
from clips.tasks import Task, sample_tasks


@dataclass
class Example:
    """One (clip, task): the prompt's token ids around the speech slot, the target's, and what scoring reads."""

    key: str
    meta: dict[str, Any]
    duration: float
    task: str | None  # None: a question outside the trained tasks (inference)
    template: str  # the user turn as the student got it, with {speech} (generation rebuilds a cue from it)
    prefix: list[int]
    suffix: list[int]  # ends with the assistant header: the reply follows
    target: list[int]  # the reply's ids and end-of-turn; [] for an example without a target (replies only)
    target_text: str | None
    words: str | None  # the words a listener got (content: transcript, and what a cascade reads)
    transcript_ids: list[int]  # the corpus transcript in LLM ids, for the CTC loss
    question_type: str | None = None  # a QA example's question type
    teacher_prompt: list[int] | None = None  # KL with kl_source=online: the teacher's prompt ids
    topk: dict[str, list] | None = None  # KL with kl_source=cached: the teacher's top-k log-probs
    features: torch.Tensor | None = None  # set by the loader once the clip is decoded

    @classmethod
    def question(cls, key: str, features: torch.Tensor, prompter: ChatPrompter, template: str,
                 words: str | None = None, task: str | None = None) -> "Example":
        """An example that only asks, with no target (inference, the perceive step): ``template`` as the student
        of ``task`` gets it, with ``words`` before the speech for ``prompt.content: transcript``."""
        student = prompter.student_template(template, words)
        parts = prompter.cued_parts(student)
        return cls(key=key, meta={}, duration=0.0, task=task, template=student, prefix=parts.prefix,
                   suffix=parts.suffix, target=[], target_text=None, words=words, transcript_ids=[],
                   features=features)


@dataclass
class Batch:
    """What the model gets: padded features and, per row, the example's fields (``Example``'s, as lists).
    Not frozen: Lightning moves the tensors to the device by setting the fields of a copy."""

    features: torch.Tensor  # [B, T, ...]
    feature_lens: torch.Tensor  # [B]
    keys: list[str]
    meta: list[dict[str, Any]]
    duration: list[float]
    task: list[str | None]
    template: list[str]
    prefix: list[list[int]]
    suffix: list[list[int]]
    target: list[list[int]]
    target_text: list[str | None]
    words: list[str | None]
    transcript_ids: list[list[int]]
    question_type: list[str | None]
    teacher_prompt: list[list[int] | None]
    topk: list[dict[str, list] | None]
    num_frames: int = 0
    audio_seconds: float = 0.0
    position: Any = None  # the resumable loader's tag, taken off before the step (datamodules/loader.py)

    def __len__(self) -> int:
        return len(self.keys)

    def select(self, rows: list[int]) -> "Batch":
        """The batch of these rows only, in this order (features keep the batch's padded length)."""
        index = torch.tensor(rows, dtype=torch.long, device=self.features.device)
        return _assemble(self.features[index], self.feature_lens[index.to(self.feature_lens.device)],
                         [self.keys[i] for i in rows],
                         {name: [getattr(self, name)[i] for i in rows] for name in _PER_ROW})


_PER_ROW = ("meta", "duration", "task", "template", "prefix", "suffix", "target", "target_text", "words",
            "transcript_ids", "question_type", "teacher_prompt", "topk")


def collate(examples: list[Example]) -> Batch:
    """The DataModule's ``collate``: features padded along time, every declared field as a per-row list."""
    features, lens = pad_frames([e.features for e in examples])
    return _assemble(features, lens, [e.key for e in examples],
                     {name: [getattr(e, name) for e in examples] for name in _PER_ROW})


def _assemble(features: torch.Tensor, lens: torch.Tensor, keys: list[str], per_row: dict[str, list]) -> Batch:
    return Batch(features=features, feature_lens=lens, keys=keys, **per_row, num_frames=int(lens.sum()),
                 audio_seconds=float(sum(per_row["duration"])))


class ExampleBuilder:
    """``builder(clip, rng) -> list[Example]``: the DataModule's ``example_builder``.

    ``all_tasks=True`` (evaluation) makes one example per usable task instead of sampling by share.
    ``need_target=False`` (replies only, e.g. the showcase) also makes examples of tasks the clip has no target
    for, such as a response task on a clip without a cached teacher reply (their ``target`` is empty).
    """

    def __init__(self, tasks: dict[str, Task], prompter: ChatPrompter, examples_per_clip: int = 1,
                 all_tasks: bool = False, need_target: bool = True) -> None:
        self.tasks = tasks
        self.prompter = prompter
        self.examples_per_clip = examples_per_clip
        self.all_tasks = all_tasks
        self.need_target = need_target

    def __call__(self, clip: Clip, rng: random.Random) -> list[Example]:
        usable = [n for n, t in self.tasks.items()
                  if t.target_text(clip.meta, clip.teacher, clip.qa[0] if clip.qa else None) is not None
                  or not self.need_target and (t.target != "qa" or clip.qa)]
        names = usable if self.all_tasks else sample_tasks(self.tasks, usable, self.examples_per_clip, rng)
        return [self.example(clip, self.tasks[name], rng) for name in names]

    def example(self, clip: Clip, task: Task, rng: random.Random) -> Example:
        meta = clip.meta
        qa = rng.choice(clip.qa) if clip.qa and task.target == "qa" else None
        template = rng.choice(task.instructions)
        if qa is not None:
            template = template.replace("{question}", qa.question)
        if task.metadata is not None:
            template = with_metadata(template, metadata_text(meta, task.metadata))
        framing = self.prompter.framing
        words = None
        if framing.content == "transcript" or clip.heard is not None or framing.transcripts == "corpus":
            words = framing.heard_words(clip)  # read by the student (content: transcript) or by a cascade
        # perceive: training reads the true emotion's cue after the speech; generation puts the one the model names
        # there (SpeechLLM.generate ``cues``), so the example's ``template`` stays without it
        cue = meta.get("emotion") if framing.perceive and task.target == "teacher" else None
        student = self.prompter.student_template(template, words)
        parts = self.prompter.cued_parts(student, cue)
        target_text = task.target_text(meta, clip.teacher, qa)
        example = Example(
            key=clip.key, meta=meta, duration=clip.duration, task=task.name, template=student,
            prefix=parts.prefix, suffix=parts.suffix,
            target=[] if target_text is None else self.prompter.reply_ids(target_text, task.max_target_tokens),
            target_text=target_text, words=words,
            transcript_ids=self.prompter.encode(meta["transcript"]) if meta.get("transcript") else [],
            question_type=qa.type if qa is not None else None, features=clip.features,
        )
        if task.kl_source == "online":
            # The words the student reads (Whisper's, with content: transcript) under the cue: the teacher and the
            # student then differ only where the speech tokens stand, so the KL teaches how it was said.
            example.teacher_prompt = self.prompter.teacher_ids(
                template, meta, task.teacher_variant, words if framing.content == "transcript" else None)
        elif task.kl_source == "cached":
            example.topk = task.teacher_topk(clip.teacher)
            if example.topk is None:
                raise ValueError(f"task {task.name}: a KL loss with kl_source=cached needs top-k log-probs in the "
                                 f"shards (teacher.topk > 0), clip {clip.key} has none")
        return example
