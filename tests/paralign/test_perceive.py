"""Perceive, then reply (paralign/perceive.py): the model is asked the emotion question about the same speech
first, and the emotion it names is the cue its reply is generated under."""
from __future__ import annotations

import pytest
import torch

from lightning_modules.speech_llm import SpeechLLM
from paralign.perceive import known_answers, perceived_emotions
from paralign.recipe_loading import RecipeError, load_recipe
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


def test_reply_from_perceived_replies_to_the_words_and_the_named_cue_as_text():
    """``prompt.reply_from: perceived``: a row with a named emotion replies as the teacher read it (its words and
    that cue, no speech tokens), token for token the cascade's prompt; a row without one keeps its speech."""
    torch.manual_seed(0)
    model = SpeechLLM(tiny_cfg({"response": {}, "emotion": {}}, generation={"max_new_tokens": 5},
                               prompt={"perceive": True, "content": "transcript", "transcripts": "corpus",
                                       "reply_from": "perceived"})).eval()
    batch = batch_for(model, [make_clip(0, 80), make_clip(1, 120, "happy")])
    cues = ["happy" if t == "response" else None for t in batch.task]
    replies = model.generate(batch, cues=cues)
    prompter = model.llm.prompter
    for i, cue in enumerate(cues):
        if cue:
            text = prompter.cascade_ids(batch.template[i], batch.words[i], cue)
            said = prompter.tokenizer.decode(text)
            assert "(I feel happy.)" in said and batch.words[i] in said
            assert replies[i] == model.llm.generate_text([text], max_new_tokens=5)[0]
    speech_rows = [i for i, cue in enumerate(cues) if not cue]
    assert speech_rows and [replies[i] for i in speech_rows] == model.generate(batch.select(speech_rows))
    with pytest.raises(RecipeError, match="prompt.reply_from=perceived .* needs prompt.perceive=true"):
        load_recipe("recipes/demo.yaml", ["prompt.perceive=false", "prompt.reply_from=perceived"])


def test_answers_the_model_gave_already_are_not_asked_again(monkeypatch):
    """The evaluation's emotion task asks every clip perceive's question first: the response task's perceive step
    takes those answers (by clip and prompt, cut to perceive's length) and generates only for the rest."""
    model = _model()
    batch = batch_for(model, [make_clip(0, 80), make_clip(1, 120, "happy")])
    responses = [i for i, t in enumerate(batch.task) if t == "response"]
    question = model.llm.prompter.student_template(model.tasks["emotion"].instructions[0], None)
    first = batch.keys[responses[0]]
    long_answer = "angry " + "very " * 40 + "sad"
    records = [
        {"id": first, "task": "emotion", "prompt": question, "reply": long_answer},
        # another question about the second clip: not perceive's answer
        {"id": batch.keys[responses[1]], "task": "emotion", "prompt": "{speech}\nAnything?", "reply": "Happy."},
        {"id": batch.keys[responses[1]], "task": "style", "prompt": question, "reply": "Sad."},
    ]
    answered = known_answers(model, records)
    assert set(answered) == {(first, question), (batch.keys[responses[1]], "{speech}\nAnything?")}  # emotion only
    assert "angry" in answered[(first, question)] and "sad" not in answered[(first, question)]  # cut to 16 tokens
    asked = []

    def answer(sub, **options):
        asked.append(len(sub.prefix))
        return ["I hear fear."] * len(sub.prefix)

    monkeypatch.setattr(model, "generate", answer)
    perceived = perceived_emotions(model, batch, answered=answered)
    assert [perceived[i] for i in responses] == ["angry", "fearful"]
    assert asked == [1]  # only the clip without an answer
    asked.clear()
    assert perceived_emotions(model, batch) == [None if i not in responses else "fearful" for i in range(len(batch))]
    assert asked == [2]
