"""Perceive, then reply (paralign/perceive.py): the model is asked the emotion question about the same speech
first, and the emotion it names is the cue its reply is generated under."""
from __future__ import annotations

import torch

from lightning_modules.speech_llm import SpeechLLM
from paralign.perceive import perceived_emotions
from tests.lightning_modules.conftest import batch_for, make_clip, tiny_cfg


def _model(perceive: bool = True) -> SpeechLLM:
    torch.manual_seed(0)
    return SpeechLLM(tiny_cfg({"response": {}, "emotion": {}}, prompt={"perceive": perceive})).eval()


def test_the_response_examples_are_asked_the_emotion_question_about_their_own_speech(monkeypatch):
    model = _model()
    batch = batch_for(model, [make_clip(0, 80), make_clip(1, 120, "happy")])
    asked = []

    def answer(sub, **options):
        asked.append(sub)
        return ["The speaker sounds angry.", "I think they are not sad but happy."][:len(sub.prefix)]

    monkeypatch.setattr(model, "generate", answer)
    perceived = perceived_emotions(model, batch)
    responses = [i for i, t in enumerate(batch.task) if t == "response"]
    assert [perceived[i] for i in responses] == ["angry", "happy"]
    assert all(perceived[i] is None for i, t in enumerate(batch.task) if t != "response")
    (sub,) = asked
    question = model.llm.prompter.tokenizer.decode(sub.prefix[0] + sub.suffix[0])
    assert model.tasks["emotion"].instructions[0].replace("{speech}", "") in question
    assert sub.feature_lens.tolist() == [int(batch.feature_lens[i]) for i in responses]
    # the same speech frames as the examples asked about
    first = responses[0]
    assert torch.equal(sub.features[0, :80], batch.features[first, :80])


def test_nothing_is_asked_without_perceive(monkeypatch):
    model = _model(perceive=False)
    batch = batch_for(model, [make_clip(0, 80)])
    monkeypatch.setattr(model, "generate", lambda *a, **k: (_ for _ in ()).throw(AssertionError("asked")))
    assert perceived_emotions(model, batch) == [None] * len(batch.task)


def test_the_reply_is_generated_under_the_named_emotions_cue(monkeypatch):
    model = _model()
    batch = batch_for(model, [make_clip(0, 80)])
    seen = []
    monkeypatch.setattr(model.llm, "generate", lambda embeds, mask, **k: seen.append(mask.sum(1).tolist()) or
                        ["r"] * len(mask))
    trained = batch.suffix  # the training prompt: the clip's true emotion (sad) after the speech
    model.generate(batch)
    model.generate(batch, cues=["happy" if t == "response" else None for t in batch.task])
    assert batch.suffix == trained  # the caller's batch is left as it was
    cue = len(model.llm.prompter.encode(" (I feel happy.)"))
    bare, cued = seen
    responses = [t == "response" for t in batch.task]
    # a whole cue apart: with no emotion named the reply gets no cue at all, never the true one from training
    assert [c - b for c, b, r in zip(cued, bare, responses)] == [cue if r else 0 for r in responses]
