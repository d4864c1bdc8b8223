"""Closed-set emotion answers: the likeliest of the evaluated clips' emotions, by the LLM's likelihood of each."""
from __future__ import annotations

import pytest

from clips.vocab import EMOTIONS
from scoring.closed_set import closed_set_choices, closed_set_metrics


def _item(emotion: str, favoured: list[str]) -> dict:
    """A record whose likelihoods rank ``favoured`` first, in that order, every other emotion far below."""
    logp = {e: -50.0 for e in EMOTIONS}
    for rank, e in enumerate(favoured):
        logp[e] = -1.0 - rank
    return {"id": f"{emotion}-{'-'.join(favoured)}", "task": "emotion", "emotion": emotion, "answer_logp": logp}


def test_the_choice_is_the_likeliest_emotion_the_clips_have():
    items = [_item("sad", ["calm", "sad"]),  # calm is likelier, but no clip is calm: sad
             _item("angry", ["surprised", "happy", "angry"]),  # happy, a wrong answer within the set
             _item("happy", ["happy"])]
    labels, chosen = closed_set_choices(items)
    assert labels == ["happy", "sad", "angry"]  # the vocabulary's order
    assert chosen == ["sad", "happy", "happy"]
    m = closed_set_metrics(items, n_boot=50, seed=0)
    assert m["accuracy"]["value"] == pytest.approx(2 / 3) and m["accuracy"]["n"] == 3
    assert m["per_emotion"]["angry"] == {"value": 0.0, "n": 1}
    assert m["confusion"]["labels"] == ["happy", "sad", "angry"]


def test_no_closed_set_figure_when_a_record_has_no_likelihoods():
    items = [_item("sad", ["sad"]), {"id": "old", "task": "emotion", "emotion": "happy"}]
    assert closed_set_choices(items) is None and closed_set_metrics(items, n_boot=10, seed=0) is None
    assert closed_set_choices([]) is None
