"""The LLM's likelihood of each emotion's answer after an example's prompt and speech: for the clip's own emotion it
is exactly the likelihood the training loss is taken of."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clips.vocab import EMOTIONS
from lightning_modules.speech_llm import SpeechLLM
from paralign.evaluation import answer_likelihood
from tests.lightning_modules.conftest import batch_for, make_clip, tiny_cfg


def test_each_answers_likelihood_is_the_teacher_forced_one():
    torch.manual_seed(0)
    model = SpeechLLM(tiny_cfg({"emotion": {}})).eval()
    # clips of different lengths: the prompts are left-padded, the continuations run on a copied KV cache
    clips = [make_clip(i, 80 + 40 * i, emotion) for i, emotion in enumerate(["sad", "happy", "angry"])]
    batch = batch_for(model, clips)
    scores = answer_likelihood.answer_logprobs(model, batch, model.tasks["emotion"])
    assert len(scores) == 3 and all(list(s) == list(EMOTIONS) for s in scores)

    with torch.no_grad():
        speech, lens = model.speech_embeddings(batch.features, batch.feature_lens)
        inputs = model._spliced(batch, speech, lens, with_target=True)  # each clip's own target, as in training
        logits, targets, rows = model.llm.label_logits(inputs["inputs_embeds"], inputs["attention_mask"],
                                                       inputs["position_ids"], inputs["labels"])
        logp = -F.cross_entropy(logits, targets, reduction="none")
    for i, clip in enumerate(clips):
        assert scores[i][clip.meta["emotion"]] == pytest.approx(float(logp[rows == i].sum()), abs=1e-4)
        assert len({round(v, 3) for v in scores[i].values()}) > 1  # the answers differ in likelihood
