"""Closed-set emotion answers: the answer the frozen LLM finds likeliest among the emotions of the evaluated clips,
from the per-emotion log-likelihoods of the generation records (``answer_logp``,
``paralign/evaluation/answer_likelihood.py``).

Why: cross-corpus emotion recognition is scored over the emotions both corpora share (EmoBox's protocol), while a
free answer may name one the other corpus lacks (a model trained on RAVDESS answers "surprised" or "calm" to EmoDB's
clips). The likelihoods are the LLM's own reading of the same prompt, restricted to the corpus's label set; the free
answer stays the headline figure beside it.
"""
from __future__ import annotations

from typing import Any, Sequence

from clips.vocab import EMOTIONS
from scoring import metrics as M


def closed_set_choices(items: Sequence[dict[str, Any]]) -> tuple[list[str], list[str]] | None:
    """The evaluated clips' emotions (the closed set) and, per item, the likeliest of them by its ``answer_logp``;
    None when some item has no likelihoods (an evaluation from before they were recorded, or a cascade)."""
    if not items or any(not g.get("answer_logp") for g in items):
        return None
    labels = sorted({g["emotion"] for g in items}, key=EMOTIONS.index)
    chosen = [max(labels, key=lambda e: g["answer_logp"].get(e, float("-inf"))) for g in items]
    return labels, chosen


def closed_set_metrics(items: Sequence[dict[str, Any]], n_boot: int, seed: int) -> dict[str, Any] | None:
    """Accuracy and macro-F1 of the closed-set answers (95 % intervals), per-emotion accuracy and the confusion
    matrix over the set; None without likelihoods."""
    choice = closed_set_choices(items)
    if choice is None:
        return None
    labels, chosen = choice
    truth = [g["emotion"] for g in items]
    pairs = list(zip(chosen, truth))
    return {
        "labels": labels,
        "accuracy": M.bootstrap_ci(pairs, M.pairwise(M.accuracy), n=n_boot, seed=seed),
        "macro_f1": M.bootstrap_ci(pairs, M.pairwise(M.macro_f1), n=n_boot, seed=seed),
        "per_emotion": M.group_means([float(c == t) for c, t in pairs], truth),
        "confusion": M.confusion_matrix(chosen, truth, labels),
    }
