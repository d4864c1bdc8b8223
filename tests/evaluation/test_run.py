"""``paralign eval`` (paralign/evaluation/run.py) end to end on a tiny trained model."""
from __future__ import annotations

import json

import pytest

from clips.examples import Example
from clips.tasks import DEFAULT_INSTRUCTIONS
from clips.vocab import EMOTIONS
from paralign.cli import main
from scoring.label_matching import match_labels


@pytest.mark.slow
def test_nothing_is_generated_twice_for_a_clip(tmp_path, monkeypatch, capsys):
    """Under ``prompt.perceive`` the response task's replies go under the emotion the model names for the clip;
    the emotion task has asked it that question of the same clips already, so perceive asks nothing again, and
    each reply's cue is the emotion task's answer. A showcase of the evaluated split shows the evaluation's
    replies, generated once."""
    run = tmp_path / "run"
    args = ["--recipe", "recipes/tiny.yaml", f"run.dir={run}", f"data.dir={tmp_path / 'data'}", "prompt.perceive=true",
            "trainer.max_steps=2", "trainer.val_check_interval=100", "callbacks.validation_generations=null",
            "eval.tasks=[response,emotion]", "eval.showcase_split=test"]
    assert main(["train", *args]) == 0
    asked = []
    question = Example.question.__func__

    def counted(cls, key, *rest, **kwargs):
        asked.append(key)
        return question(cls, key, *rest, **kwargs)

    monkeypatch.setattr(Example, "question", classmethod(counted))
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(run / "checkpoints" / "last.ckpt"), *args]) == 0
    rows = [json.loads(line) for line in (run / "eval" / "generations.jsonl").read_text().splitlines()]
    responses = [r for r in rows if r["task"] == "response"]
    # the emotion task asks each clip one of its phrasings; perceive asks the first
    emotion = {r["id"]: r for r in rows if r["task"] == "emotion"}
    same = [r for r in responses if emotion[r["id"]]["prompt"] == DEFAULT_INSTRUCTIONS["emotion"][0]]
    assert same and len(asked) == len(responses) - len(same)  # once each, in the evaluation, none in the showcase
    assert [r["perceived"] for r in same] == match_labels([emotion[r["id"]]["reply"] for r in same], EMOTIONS)
    shown = capsys.readouterr().out
    first = {}  # the showcase shows one recording per sentence and emotion
    for r in responses:
        first.setdefault((r["transcript"], r["emotion"]), r["reply"].strip()[:160])
    assert all(reply in shown for reply in first.values())
