"""Perceive, then reply (``prompt.perceive``): before it replies, the frozen LLM is asked the emotion task's
question about the same speech tokens, and the emotion it names goes as the cue right after the speech.

Why: a small frozen LLM names the feeling it hears when asked (the emotion task), but does not act on it when
replying: its replies from the speech alone are the same for every voice. Asked first, its own answer, in its own
words, is what it replies to. The speech stays in the prompt, and nothing but the speech tells it the feeling.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import torch

from clips.examples import Batch, Example, collate
from clips.tasks import DEFAULT_INSTRUCTIONS
from clips.vocab import EMOTIONS
from lightning_modules.speech_llm import SpeechLLM
from scoring.label_matching import match_labels

ANSWER_TOKENS = 16  # "The speaker sounds afraid." and some slack


def emotion_question(model: SpeechLLM) -> str:
    """The emotion task's (first) question as the model was trained on it, or the task default."""
    task = model.tasks.get("emotion")
    return task.instructions[0] if task is not None else DEFAULT_INSTRUCTIONS["emotion"][0]


@torch.no_grad()
def perceived_emotions(model: SpeechLLM, batch: Batch, rows: list[int] | None = None,
                       answered: Mapping[tuple[str, str], str] | None = None) -> list[str | None]:
    """Per example: the emotion the model names for its speech (``rows``: only these examples; the rest None).

    ``rows`` None: the examples of a task trained on teacher replies (the response task) when ``prompt.perceive``
    is on, none otherwise. ``batch.words`` (content: transcript) are read with the question, as in training.
    ``answered``: answers the model already gave to this question about these clips (``known_answers``), by clip
    key and the prompt as the student got it; those examples are not asked again."""
    n = len(batch)
    rows = model.perceive_rows(batch) if rows is None else rows
    if not rows:
        return [None] * n
    question = emotion_question(model)
    prompter = model.llm.prompter
    answers = {i: (answered or {}).get((batch.keys[i], prompter.student_template(question, batch.words[i])))
               for i in rows}
    ask = [i for i in rows if answers[i] is None]
    if ask:
        sub = collate([Example.question(str(i), batch.features[i, :int(batch.feature_lens[i])], prompter, question,
                                        batch.words[i]) for i in ask])
        sub = dataclasses.replace(sub, features=sub.features.to(model.device),
                                  feature_lens=sub.feature_lens.to(model.device))
        answers.update(zip(ask, model.generate(sub, max_new_tokens=ANSWER_TOKENS, do_sample=False)))
    out: list[str | None] = [None] * n
    for i, emotion in zip(rows, match_labels([answers[i] for i in rows], EMOTIONS)):
        out[i] = emotion
    return out


def known_answers(model: SpeechLLM, records: Iterable[dict]) -> dict[tuple[str, str], str]:
    """The answers of evaluation ``records`` (``id``, ``task``, ``prompt``, ``reply``) to the question the perceive
    step asks, for :func:`perceived_emotions`: the evaluation's emotion task asks every clip the same question of
    the same speech and words, greedily, so perceive need not generate them again (half the response task's
    evaluation; a record asked another question has another prompt, so it is not taken). Each answer is cut to
    perceive's own ``ANSWER_TOKENS``, the length perceive would generate."""
    tokenizer = model.llm.prompter.tokenizer
    return {(r["id"], r["prompt"]): tokenizer.decode(model.llm.prompter.encode(r["reply"])[:ANSWER_TOKENS])
            for r in records if r.get("task") == "emotion"}
