"""Whether the frozen LLM's free-text answer names a clip's label: one rule for validation and evaluation.

An emotion answer is right when the label it names (``label_matching``) is the clip's emotion. A clip may carry
several styles: naming any of them is right, "default" included (the style target of a clip without a marked
style says it speaks normally); a wrong answer counts against the clip's one class in the confusion matrix
(``vocab.label_class``: its first marked style, the class the heads train and the probe scores). A clip without the
label (no emotion, an empty style list) is not scored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from clips.vocab import LABEL_SETS, label_class
from scoring.embedder import Embedder
from scoring.label_matching import match_labels


def label_truth(kind: str, meta: dict[str, Any]) -> str | list[str] | None:
    """The clip's emotion, or its list of styles; None when the clip has no such label (it is then not scored)."""
    if kind == "emotion":
        return meta.get("emotion") or None
    if kind == "style":
        return list(meta.get("style") or []) or None
    raise ValueError(f"unknown label kind {kind!r} (known: {', '.join(LABEL_SETS)})")


@dataclass
class ScoredAnswers:
    predicted: list[str | None]  # the label each answer names (None: it names none)
    reference: list[str]  # the truth each is scored against (several styles: the one named, else label_class's)
    correct: list[bool]


def score_answers(kind: str, answers: Sequence[str], metas: Sequence[dict[str, Any]], *,
                  embedder: Embedder | None = None) -> ScoredAnswers:
    """Match each answer to a label of ``kind`` and score it against its clip (every clip must have the label)."""
    truths = [label_truth(kind, m) for m in metas]
    if any(t is None for t in truths):
        raise ValueError(f"score_answers({kind!r}): a clip without a {kind} label cannot be scored")
    predicted = match_labels(list(answers), LABEL_SETS[kind], embedder=embedder)
    if kind == "emotion":
        correct = [p == t for p, t in zip(predicted, truths)]
        reference = list(truths)
    else:
        correct = [p in t for p, t in zip(predicted, truths)]
        reference = [p if ok else LABEL_SETS[kind][label_class(kind, m)] for p, ok, m in zip(predicted, correct, metas)]
    return ScoredAnswers(predicted, reference, correct)
