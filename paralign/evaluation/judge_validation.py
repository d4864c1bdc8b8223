"""Does the judge agree with ground truth? (method 2's check, reported next to every judge score)

On items whose answers are labels we know whether each answer is correct; a trustworthy judge gives correct
answers higher scores. Three views: point-biserial correlation (Pearson between score and a 0/1 outcome),
Spearman rank correlation, and the accuracy of "correct iff score >= t" at the best threshold t.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def best_threshold(scores: Sequence[float], correct: Sequence[bool]) -> tuple[float, float]:
    """``(t, accuracy)`` maximising the accuracy of predicting ``correct`` as ``score >= t``.

    Candidates are every observed score plus max + 1 (= "all wrong"); ties go to the lowest t.
    """
    s = np.asarray(scores, dtype=float)
    c = np.asarray(correct, dtype=bool)
    best = (float(s.max()) + 1, float(np.mean(~c)))
    for t in sorted(set(s.tolist())):
        acc = float(np.mean((s >= t) == c))
        if acc > best[1] or (acc == best[1] and t < best[0]):
            best = (t, acc)
    return best


def validate_judge(scores: Sequence[float | None], correct: Sequence[bool]) -> dict[str, Any]:
    """Agreement figures between judge scores and correctness; unparsed scores (None) are left out and counted.

    Correlations are None (with ``note``) when undefined: fewer than 3 items, or no variation in scores or outcomes.
    """
    from scipy import stats

    if len(scores) != len(correct):
        raise ValueError(f"scores and correctness differ in length: {len(scores)} vs {len(correct)}")
    pairs = [(float(s), bool(c)) for s, c in zip(scores, correct) if s is not None]
    out: dict[str, Any] = {
        "n": len(pairs), "n_unparsed": len(scores) - len(pairs), "point_biserial": None, "point_biserial_p": None,
        "spearman": None, "spearman_p": None, "threshold": None, "accuracy_at_threshold": None,
        "share_correct": None, "note": None,
    }
    if not pairs:
        out["note"] = "no parsed judge scores"
        return out
    s = [p[0] for p in pairs]
    c = [p[1] for p in pairs]
    out["threshold"], out["accuracy_at_threshold"] = best_threshold(s, c)
    out["share_correct"] = sum(c) / len(c)
    if len(pairs) < 3 or len(set(s)) < 2 or len(set(c)) < 2:
        out["note"] = "correlation undefined: fewer than 3 items or no variation in scores or correctness"
        return out
    pb = stats.pointbiserialr(c, s)
    sp = stats.spearmanr(s, c)
    out.update(point_biserial=float(pb.statistic), point_biserial_p=float(pb.pvalue),
               spearman=float(sp.statistic), spearman_p=float(sp.pvalue))
    return out
