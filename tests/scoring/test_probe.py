"""The linear probe that validation and evaluation both report."""
from __future__ import annotations

import torch

from scoring.probe import probe_accuracy


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
