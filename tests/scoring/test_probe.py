"""The linear probe that validation and evaluation both report."""
from __future__ import annotations

import torch

from clips.vocab import EMOTIONS
from scoring.probe import head_accuracy, probe_accuracy


def _pooled(n: int, separable: bool, seed: int = 0, prefix: str = "c") -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i in range(n):
        emotion = ("happy", "sad")[i % 2]
        vec = torch.randn(8, generator=g) + (4.0 * (i % 2) if separable else 0.0)
        out[f"{prefix}{i}"] = (vec, {"emotion": emotion, "style": ["default"]})
    return out


def test_probe_reads_a_label_that_is_there_and_not_one_that_is_not():
    assert probe_accuracy("emotion", _pooled(40, separable=True)) == 1.0
    assert probe_accuracy("emotion", _pooled(200, separable=False)) < 0.7  # noise: about chance (0.5)


def test_probe_fitted_on_other_clips_scores_every_clip():
    fit_on = _pooled(40, separable=True, seed=1, prefix="train")
    assert probe_accuracy("emotion", _pooled(10, separable=True), fit_on=fit_on) == 1.0


def test_too_few_clips_or_one_class_gives_no_figure():
    assert probe_accuracy("emotion", _pooled(6, separable=True)) is None
    one_class = {k: (v, {"emotion": "sad"}) for k, (v, _) in _pooled(40, separable=True).items()}
    assert probe_accuracy("emotion", one_class) is None


def test_the_models_head_is_scored_on_the_labelled_clips_only():
    head = torch.nn.Linear(len(EMOTIONS), len(EMOTIONS), bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(len(EMOTIONS)))  # reads the class off a one-hot token
    one_hot = torch.eye(len(EMOTIONS))
    pooled = {
        "a": (one_hot[EMOTIONS.index("sad")], {"emotion": "sad"}),  # right
        "b": (one_hot[EMOTIONS.index("sad")], {"emotion": "angry"}),  # wrong
        "c": (one_hot[EMOTIONS.index("happy")], {"emotion": "happy"}),  # right
        "d": (one_hot[0], {}),  # no label: not scored
    }
    assert abs(head_accuracy("emotion", head, pooled) - 2 / 3) < 1e-6
    assert head_accuracy("emotion", head, {"d": pooled["d"]}) is None


def test_the_head_over_a_closed_set_picks_the_likeliest_label_of_the_set():
    head = torch.nn.Linear(len(EMOTIONS), len(EMOTIONS), bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(len(EMOTIONS)))
    # each token favours "calm" most and its clip's true emotion second: wrong over every label, right over a set
    # without calm (another corpus's emotions)

    def token(second: str) -> torch.Tensor:
        vec = torch.zeros(len(EMOTIONS))
        vec[EMOTIONS.index("calm")], vec[EMOTIONS.index(second)] = 2.0, 1.0
        return vec

    pooled = {"a": (token("sad"), {"emotion": "sad"}), "b": (token("happy"), {"emotion": "happy"})}
    assert head_accuracy("emotion", head, pooled) == 0.0
    assert head_accuracy("emotion", head, pooled, among=["happy", "sad"]) == 1.0
