"""One rule for whether an answer names a clip's label, shared by validation and evaluation."""
from __future__ import annotations

import pytest

from clips.vocab import STYLES, label_class
from scoring.answers import label_truth, score_answers


def test_emotion_answers_are_right_only_when_they_name_the_clip_emotion(bow_embedder):
    metas = [{"emotion": "angry"}, {"emotion": "sad"}, {"emotion": "happy"}]
    scored = score_answers("emotion", ["She sounds furious.", "The speaker is happy.", "I cannot tell."],
                           metas, embedder=bow_embedder)
    assert scored.predicted[:2] == ["angry", "happy"]
    assert scored.correct == [True, False, False]  # an answer that names nothing is wrong, not skipped
    assert scored.reference == ["angry", "sad", "happy"]


def test_any_listed_style_counts_and_default_is_scored(bow_embedder):
    metas = [{"style": ["fast", "loud"]}, {"style": ["default"]}, {"style": ["slow"]}]
    scored = score_answers("style", ["They are speaking loudly.", "They speak in a normal way.", "Very fast."],
                           metas, embedder=bow_embedder)
    assert scored.correct == [True, True, False]
    # the named style when right, else the clip's one class (what the confusion matrix counts)
    assert scored.reference == ["loud", "default", "slow"]


def test_a_wrong_style_answer_counts_against_the_class_the_heads_train(bow_embedder):
    """["default", "fast"] is "fast" for the confusion matrix too (vocab.label_class), not its first entry."""
    metas = [{"style": ["default", "fast"]}, {"style": ["default", "fast"]}]
    scored = score_answers("style", ["Very slow.", "They speak in a normal way."], metas, embedder=bow_embedder)
    assert scored.correct == [False, True]  # naming any listed style is right, "default" included
    assert scored.reference == [STYLES[label_class("style", metas[0])], "default"] == ["fast", "default"]


def test_a_clip_without_the_label_is_not_scored():
    assert label_truth("emotion", {"emotion": None}) is None and label_truth("style", {"style": []}) is None
    with pytest.raises(ValueError, match="without a style label"):
        score_answers("style", ["fast"], [{"style": []}])
    with pytest.raises(ValueError, match="unknown label kind"):
        label_truth("gender", {})
