"""Turn a decoded clip into training examples (one per sampled task) and examples into a model batch.

Runs inside DataLoader workers: everything here is token ids and tensors, no LLM weights.
"""
from __future__ import annotations

import random
from typing import Any

from datamodules.batching import pad_features
from datamodules.metadata import metadata_text, with_metadata
from datamodules.prompts import ChatPrompter
from datamodules.tasks import Task, sample_tasks


class ExampleBuilder:
    """``builder(clip, rng) -> list[example]``: the DataModule's ``example_builder``.

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

    def __call__(self, clip: dict, rng: random.Random) -> list[dict]:
        meta, teacher = clip["meta"], clip.get("teacher")
        qa_pairs = clip.get("qa") or []
        usable = [n for n, t in self.tasks.items()
                  if t.target_text(meta, teacher, qa_pairs[0] if qa_pairs else None) is not None
                  or not self.need_target and (t.target != "qa" or qa_pairs)]
        names = usable if self.all_tasks else sample_tasks(self.tasks, usable, self.examples_per_clip, rng)
        return [self.example(clip, self.tasks[name], rng) for name in names]

    def example(self, clip: dict, task: Task, rng: random.Random) -> dict:
        meta, teacher = clip["meta"], clip.get("teacher")
        qa_pairs = clip.get("qa") or []
        qa = rng.choice(qa_pairs) if qa_pairs and task.target == "qa" else None
        template = rng.choice(task.instructions)
        if qa is not None:
            template = template.replace("{question}", qa["question"])
        if task.metadata is not None:
            template = with_metadata(template, metadata_text(meta, task.metadata))
        framing = self.prompter.framing
        teacher_template = template
        words = None
        if framing.content == "transcript":
            words = framing.heard_words(clip)
            template = framing.student_template(template, words)
        elif clip.get("asr") or framing.transcripts == "corpus":  # what a cascade reads (paralign/evaluation/run.py)
            words = framing.heard_words(clip)
        # perceive: training reads the true emotion's cue after the speech; generation puts the one the model names
        # there (SpeechLLM.generate ``cues``), so the example's ``template`` stays without it
        cued = framing.with_cue(template, meta.get("emotion")) if framing.perceive and task.target == "teacher" \
            else template
        parts = self.prompter.prompt_parts(cued)
        target_text = task.target_text(meta, teacher, qa)
        example = {
            "key": clip["key"], "features": clip["features"], "duration": clip["duration"], "meta": meta,
            "task": task.name, "template": template, "prefix": parts.prefix, "suffix": parts.suffix,
            "target": [] if target_text is None else self.prompter.reply_ids(target_text, task.max_target_tokens),
            "target_text": target_text, "words": words,
            # the transcript in LLM token ids, for the CTC loss (lightning_modules/token_ctc.py)
            "transcript_ids": self.prompter.encode(meta["transcript"]) if meta.get("transcript") else [],
            "question_type": qa.get("type") if qa is not None else None,
        }
        if task.kl_source is not None:
            if task.kl_source == "online":
                # The words the student reads (Whisper's, with content: transcript) under the cue: the teacher and
                # the student then differ only where the speech tokens stand, so the KL teaches how it was said.
                speech_text = framing.teacher_text(meta, task.teacher_variant == "conditioned",
                                                   words if framing.content == "transcript" else None)
                example["teacher_prompt"] = self.prompter.text_prompt_ids(teacher_template, speech_text)
            else:
                example["topk"] = task.teacher_topk(teacher)
                if example["topk"] is None:
                    raise ValueError(f"task {task.name}: a KL loss with kl_source=cached needs top-k "
                                     f"log-probs in the shards (teacher.topk > 0), clip {clip['key']} has none")
        return example


def collate(examples: list[dict]) -> dict[str, Any]:
    """The DataModule's ``collate``: padded features plus per-example token id lists."""
    batch = pad_features(examples)
    batch["num_frames"] = int(batch["feature_lens"].sum())
    batch["audio_seconds"] = float(sum(e["duration"] for e in examples))
    return batch
