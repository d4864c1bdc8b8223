"""One class per clip for the classifier heads and the linear probe (clips/vocab.py: label_class)."""
from __future__ import annotations

import torch

from clips.vocab import EMOTIONS, STYLES, label_class
from lightning_modules.speech_llm import SpeechLLM
from scoring.probe import probe_accuracy

CASES = [
    ({"emotion": "sad"}, "emotion", EMOTIONS.index("sad")),
    ({"emotion": None}, "emotion", None),
    ({"style": ["default", "fast"]}, "style", STYLES.index("fast")),  # the marked delivery, wherever it is listed
    ({"style": ["fast", "whisper"]}, "style", STYLES.index("fast")),
    ({"style": ["default"]}, "style", STYLES.index("default")),
    ({"style": []}, "style", None),  # no style label: not guessed as "default"
    ({}, "style", None),
]


def test_label_class_rule():
    for meta, kind, expected in CASES:
        assert label_class(kind, meta) == expected, (meta, kind)


def test_the_head_trains_and_the_probe_scores_the_same_class(monkeypatch):
    """A clip styled ["default", "fast"] is "fast" for both; a clip without a style label is in neither."""
    metas = [{"style": ["default", "fast"]}] * 8 + [{"style": ["default", "slow"]}] * 8 + [{"style": []}] * 4
    pooled = torch.zeros(len(metas), 4)
    captured = {}

    def head(x):
        return torch.zeros(len(x), len(STYLES), requires_grad=True)

    def cross_entropy(logits, target, ignore_index):
        captured["target"] = target.tolist()
        return logits.sum()

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", cross_entropy)
    SpeechLLM._classifier_loss(None, head, pooled, metas, "style")
    monkeypatch.undo()
    assert captured["target"] == [STYLES.index("fast")] * 8 + [STYLES.index("slow")] * 8 + [-100] * 4
    # the probe separates the same two classes (fast vs slow, the unlabelled clips left out) on separable features
    vectors = {f"c{i:02d}": (torch.tensor([1.0, 0, 0, 0]) if i < 8 else torch.tensor([0, 1.0, 0, 0]), m)
               for i, m in enumerate(metas)}
    assert probe_accuracy("style", vectors, min_clips=8) == 1.0


def test_the_style_task_makes_no_example_of_a_clip_without_a_style_label():
    """The style task's target follows the same rule: RAVDESS labels no style, and an angry shout must not be
    trained as "speaking in an ordinary way"; a clip labelled ordinary (["default"]) is."""
    from clips.tasks import build_tasks
    from paralign.config import TaskConfig

    style = build_tasks({"style": TaskConfig()})["style"]
    assert style.target_text({"emotion": "angry", "style": []}, None) is None
    assert style.target_text({"emotion": "angry"}, None) is None
    assert "ordinary" in style.target_text({"style": ["default"]}, None)
    assert "fast" in style.target_text({"style": ["default", "fast"]}, None)
