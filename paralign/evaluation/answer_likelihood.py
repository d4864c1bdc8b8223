"""The frozen LLM's likelihood of each emotion's answer ("The speaker sounds sad.") after an example's own prompt
and speech tokens: the closed-set reading of the emotion question (``scoring/closed_set.py`` picks the likeliest
among the evaluated clips' emotions). Every emotion's log-likelihood goes into the generation record
(``answer_logp``), so the set is chosen when scoring, from the clips' own labels.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from clips.examples import Batch
from clips.tasks import Task
from clips.vocab import EMOTIONS
from lightning_modules.speaker_norm import speakers_of
from lightning_modules.speech_llm import SpeechLLM


@torch.no_grad()
def answer_logprobs(model: SpeechLLM, batch: Batch, task: Task,
                    emotions: Sequence[str] = EMOTIONS) -> list[dict[str, float]]:
    """Per example of ``batch`` (all asking ``task``, a label task): the summed log-probability of each of
    ``emotions``' answers, end of turn included, teacher-forced after the example's own prompt and speech."""
    prompter = model.llm.prompter
    answers = [prompter.reply_ids(task.target_text({"emotion": e}, None), task.max_target_tokens) for e in emotions]
    speech, lens = model.speech_embeddings(batch.features, batch.feature_lens, speakers_of(batch.meta))
    inputs = model.llm.splice(batch.prefix, speech, lens, batch.suffix, left_pad=True)
    scores = model.llm.continuation_logprobs(inputs["inputs_embeds"], inputs["attention_mask"], answers)
    return [dict(zip(emotions, row)) for row in scores.tolist()]
