"""Metric functions of the evaluation report, each small enough to check by hand.

Conventions: a prediction of ``None`` means the answer could not be matched to any label; it is counted as wrong
(never dropped, which would flatter a model that rambles). Per-item metrics return one value per item so that
:func:`bootstrap_ci` can resample items; corpus metrics (WER, macro-F1) are bootstrapped over item pairs.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import numpy as np

UNMATCHED = "(unmatched)"


def _check_pairs(pred: Sequence, ref: Sequence) -> None:
    if len(pred) != len(ref):
        raise ValueError(f"predictions and references differ in length: {len(pred)} vs {len(ref)}")
    if not ref:
        raise ValueError("no items to score")
    if any(r is None for r in ref):
        raise ValueError("a reference label is None: drop unlabelled items before scoring")


def accuracy(pred: Sequence[str | None], ref: Sequence[str]) -> float:
    """Share of items whose prediction equals the reference (None never does)."""
    _check_pairs(pred, ref)
    return sum(p is not None and p == r for p, r in zip(pred, ref)) / len(ref)


def macro_f1(pred: Sequence[str | None], ref: Sequence[str]) -> float:
    """Unweighted mean of per-class F1 over every class seen in the references or predictions.

    ``None`` is not a class: an unmatched answer only costs its true class a false negative.
    """
    _check_pairs(pred, ref)
    classes = sorted(set(ref) | {p for p in pred if p is not None})
    tp: dict[str, int] = defaultdict(int)
    fp: dict[str, int] = defaultdict(int)
    fn: dict[str, int] = defaultdict(int)
    for p, r in zip(pred, ref):
        if p == r:
            tp[r] += 1
            continue
        fn[r] += 1
        if p is not None:
            fp[p] += 1
    return sum(2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) for c in classes) / len(classes)


def confusion_matrix(
    pred: Sequence[str | None], ref: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """Counts with true labels as rows and predicted labels as columns, plus an unmatched column when needed.

    ``labels`` fixes the order; only labels that occur (as truth or prediction) are kept, so the plot stays legible.
    """
    _check_pairs(pred, ref)
    seen = set(ref) | {p for p in pred if p is not None}
    given = list(labels or [])
    order = [lb for lb in given if lb in seen] + sorted(seen - set(given))
    columns = order + ([UNMATCHED] if any(p is None for p in pred) else [])
    index = {lb: i for i, lb in enumerate(columns)}
    matrix = [[0] * len(columns) for _ in order]
    for p, r in zip(pred, ref):
        matrix[index[r]][index[UNMATCHED if p is None else p]] += 1
    return {"labels": order, "columns": columns, "matrix": matrix}


def plot_confusion(confusion: dict[str, Any], path: str | Path, title: str = "Confusion matrix") -> Path:
    """Write the matrix as a PNG (colour = share of the row, text = count)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion["matrix"], dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    rows, cols = confusion["labels"], confusion["columns"]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.5 + 0.6 * len(cols)), max(3.5, 1.2 + 0.5 * len(rows))), dpi=110)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted (matched answer)")
    ax.set_ylabel("true label")
    ax.set_title(title, fontsize=10)
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, int(counts[i, j]), ha="center", va="center",
                    color="white" if shares[i, j] > 0.5 else "black", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def rouge_per_item(preds: Sequence[str], refs: Sequence[str]) -> dict[str, list[float]]:
    """ROUGE-1 and ROUGE-L F-measure of each reply against its reference (torchmetrics, no stemming)."""
    from torchmetrics.functional.text.rouge import rouge_score

    if len(preds) != len(refs):
        raise ValueError(f"predictions and references differ in length: {len(preds)} vs {len(refs)}")
    out: dict[str, list[float]] = {"rouge1": [], "rougeL": []}
    for p, r in zip(preds, refs):
        scores = rouge_score(p, r, rouge_keys=("rouge1", "rougeL"))
        out["rouge1"].append(float(scores["rouge1_fmeasure"]))
        out["rougeL"].append(float(scores["rougeL_fmeasure"]))
    return out


def normalise_words(text: str) -> str:
    """Lower case, punctuation gone (apostrophes inside words kept), single spaces: what WER compares, as speech
    recognition is scored. Unnormalised, "Kids are talking by the door." against the corpus's "Kids are talking by
    the door" is one error in six words, and a transcript's WER mostly counts its full stops."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).replace(" '", " ").replace("' ", " ").split())


def word_errors(preds: Sequence[str], refs: Sequence[str]) -> list[tuple[int, int]]:
    """Per item (word edit distance, reference word count) of the normalised words (``normalise_words``), from
    torchmetrics' WER; empty references refused."""
    from torchmetrics.functional.text import word_error_rate

    if len(preds) != len(refs):
        raise ValueError(f"predictions and references differ in length: {len(preds)} vs {len(refs)}")
    out = []
    for p, r in zip(preds, refs):
        p, r = normalise_words(p), normalise_words(r)
        n_ref = len(r.split())
        if n_ref == 0:
            raise ValueError("an ASR reference transcript is empty: drop it before scoring WER")
        out.append((round(float(word_error_rate(p, r)) * n_ref), n_ref))
    return out


def corpus_wer(errors: Sequence[tuple[int, int]]) -> float:
    """Total word errors over total reference words (the usual corpus WER, not a mean of per-item rates)."""
    return sum(e for e, _ in errors) / sum(n for _, n in errors)


def semantic_similarity(preds: Sequence[str], refs: Sequence[str], embedder) -> list[float]:
    """Cosine similarity of MiniLM sentence embeddings of each reply and its reference."""
    return embedder.cosine(list(preds), list(refs))


def pairwise(fn: Callable[[Sequence, Sequence], float]) -> Callable[[Sequence[tuple]], float]:
    """Adapt ``fn(pred, ref)`` to a function of a list of ``(pred, ref)`` pairs, as :func:`bootstrap_ci` wants."""
    def over_pairs(pairs: Sequence[tuple]) -> float:
        pred, ref = zip(*pairs)
        return fn(list(pred), list(ref))
    return over_pairs


def bootstrap_ci(
    items: Sequence,
    metric_fn: Callable[[Sequence], float] | None = None,
    *,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | int]:
    """Point estimate and percentile-bootstrap ``1 - alpha`` interval of ``metric_fn`` over resampled items.

    ``items`` are per-item values (``metric_fn`` defaults to the mean) or tuples such as ``(pred, ref)`` pairs
    (wrap a two-argument metric with :func:`pairwise`). Deterministic for a given ``seed``.
    Returns ``{"value", "low", "high", "n"}``.
    """
    items = list(items)
    if not items:
        raise ValueError("bootstrap_ci needs at least one item")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(items), size=(n, len(items)))
    if metric_fn is None:
        values = np.asarray(items, dtype=float)
        point = float(values.mean())
        stats = values[draws].mean(axis=1)
    else:
        point = float(metric_fn(items))
        stats = np.array([metric_fn([items[j] for j in row]) for row in draws], dtype=float)
    low, high = np.nanpercentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"value": point, "low": float(low), "high": float(high), "n": len(items)}


def group_means(values: Sequence[float], groups: Sequence[Hashable]) -> dict[str, dict[str, float | int]]:
    """Mean of ``values`` per group (e.g. per true emotion), skipping items whose group is None."""
    if len(values) != len(groups):
        raise ValueError(f"values and groups differ in length: {len(values)} vs {len(groups)}")
    buckets: dict[str, list[float]] = defaultdict(list)
    for v, g in zip(values, groups):
        if g is not None:
            buckets[str(g)].append(float(v))
    return {g: {"value": float(np.mean(vs)), "n": len(vs)} for g, vs in sorted(buckets.items())}
