"""Reply emotion accuracy (paralign/evaluation/reply_emotion.py) on the tiny random LLM: the likelihood it ranks
cues by is the model's own, a reply is assigned the cue it is likeliest under, and the controls are cached."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_modules.speech_llm import load_frozen_llm
from paralign.recipe_loading import load_recipe
from paralign.evaluation import reply_emotion as R

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"
EMOTIONS = ["happy", "sad", "angry"]


@pytest.fixture(scope="module")
def llm():
    model = load_frozen_llm(load_recipe(RECIPE))
    torch.manual_seed(0)
    with torch.no_grad():  # sharp weights: replies that depend on the prompt
        for p in model.model.parameters():
            p.mul_(8.0)
    return model.eval()


@torch.no_grad()
def _alone(llm, words: str, emotion: str, reply: str) -> float:
    """log P(reply + end of turn | prompt) from one plain forward pass, one sequence, no padding."""
    p = llm.prompter
    prompt = p.text_prompt_ids(R.TEMPLATE, p.framing.text(words, emotion))
    target = p.reply_ids(reply)
    logits = llm.model(input_ids=torch.tensor([prompt + target])).logits[0].log_softmax(-1)
    return float(sum(logits[len(prompt) - 1 + i, t] for i, t in enumerate(target)))


def test_cue_loglik_is_the_llms_likelihood_under_each_cue(llm):
    words, replies = ["we missed the bus", "it is raining"], ["oh no", "lovely, a long reply to pad"]
    table = R.cue_loglik(llm, words, replies, EMOTIONS, batch_size=4)  # batches cut across replies
    for i in range(2):
        for k, e in enumerate(EMOTIONS):
            assert table[i, k].item() == pytest.approx(_alone(llm, words[i], e, replies[i]), abs=1e-3)


def test_each_reply_is_assigned_the_cue_it_is_likeliest_under(llm, tmp_path):
    items = [{"id": f"c{i}-{e}", "transcript": f"sentence {i} about things", "emotion": e}
             for i in range(2) for e in EMOTIONS]
    replies = R.teacher_replies(llm, items, tmp_path, max_new_tokens=6)
    words = [it["transcript"] for it in items]
    table = R.cue_loglik(llm, words, replies, EMOTIONS)
    assert R.assign_emotions(llm, words, replies, EMOTIONS) == [EMOTIONS[k] for k in table.argmax(1).tolist()]
    assert R.teacher_replies(llm, items, tmp_path, max_new_tokens=6) == replies  # cached, the same


def test_metrics_with_controls_are_cached(llm, tmp_path, monkeypatch):
    records = [{"id": f"c{i}-{e}", "task": "response", "transcript": f"sentence {i}", "emotion": e,
                "reply": "fine"} for i in range(3) for e in EMOTIONS]
    records.append({"id": "x", "task": "emotion", "transcript": "s", "emotion": "sad", "reply": "sad"})
    first = R.reply_emotion_metrics(llm, records, tmp_path, max_new_tokens=5, temperature=0.7, top_p=0.9, seed=0,
                                    n_boot=50)
    assert first["n"] == 9 and first["emotions"] == EMOTIONS and first["chance"] == pytest.approx(1 / 3)
    # the same reply to every voice of a sentence is assigned one emotion per sentence: right once in three
    assert first["model"]["value"] == pytest.approx(1 / 3)
    assert first["blind"]["value"] == pytest.approx(1 / 3)  # the words alone: the floor, whatever it replies
    calls = []
    monkeypatch.setattr("prep.teacher.generate_sorted", lambda *a, **k: calls.append(1) or iter(()))
    again = R.reply_emotion_metrics(llm, records, tmp_path, max_new_tokens=5, temperature=0.7, top_p=0.9, seed=0,
                                    n_boot=50)
    assert not calls and again["ceiling"] == first["ceiling"]  # controls came from the cache
    assert R.reply_emotion_metrics(llm, records[-1:], tmp_path, max_new_tokens=5, temperature=0.7, top_p=0.9,
                                   seed=0) is None  # no response to score
