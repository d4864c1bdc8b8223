"""From generation records to the metrics dict of ``metrics.json`` (rendered by :mod:`paralign.evaluation.report`).

A generation record is ``{"id" (clip id), "task" (response|emotion|style|asr|qa), "prompt", "reply", "reference"
(teacher reply / label text / transcript), "emotion", "style" (list), "transcript", "speaker", "question_type"
(qa only, optional)}``. Every figure carries a bootstrap 95 % interval and its n, and every item that cannot be
scored (no label, no reference) is counted in ``skipped`` rather than silently dropped.
"""
from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from typing import Any, Sequence

from clips.tasks import TASK_NAMES
from clips.vocab import LABEL_SETS
from paralign.evaluation.judge import RUBRIC, Judge, summarize
from paralign.evaluation.judge_validation import validate_judge
from scoring import metrics as M
from scoring.answers import label_truth, score_answers
from scoring.closed_set import closed_set_metrics

log = logging.getLogger(__name__)

TEXT_TASKS = ("response", "qa")


def fingerprint_test_set(generations: Sequence[dict[str, Any]]) -> str:
    """sha256 of the sorted distinct clip ids: two runs are comparable only when these match."""
    ids = sorted({str(g["id"]) for g in generations})
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def _check_records(generations: Sequence[dict[str, Any]]) -> None:
    for i, g in enumerate(generations):
        missing = [k for k in ("id", "task", "reply") if k not in g]
        if missing:
            raise ValueError(f"generation record {i} lacks {', '.join(missing)}")


def _ci(items: Sequence, metric_fn=None, *, n_boot: int, seed: int) -> dict[str, Any]:
    return M.bootstrap_ci(items, metric_fn, n=n_boot, seed=seed)


def _label_task(task: str, items: list[dict], embedder, n_boot: int, seed: int) -> dict[str, Any]:
    labels = LABEL_SETS[task]
    scored = score_answers(task, [g["reply"] for g in items], items, embedder=embedder)
    pred, correct = scored.predicted, scored.correct
    pairs = list(zip(pred, scored.reference))
    entry = {
        "n": len(items),
        "metrics": {
            "accuracy": _ci(pairs, M.pairwise(M.accuracy), n_boot=n_boot, seed=seed),
            "macro_f1": _ci(pairs, M.pairwise(M.macro_f1), n_boot=n_boot, seed=seed),
            "unmatched_rate": _ci([float(p is None) for p in pred], n_boot=n_boot, seed=seed),
        },
        "confusion": M.confusion_matrix(pred, scored.reference, labels),
        "per_emotion": {"accuracy": M.group_means([float(c) for c in correct], [g.get("emotion") for g in items])},
        "_correct": correct,
    }
    closed = closed_set_metrics(items, n_boot, seed) if task == "emotion" else None
    if closed is not None:  # the LLM's likeliest answer among the evaluated clips' emotions
        entry["metrics"].update(accuracy_closed_set=closed["accuracy"], macro_f1_closed_set=closed["macro_f1"])
        entry["per_emotion"]["accuracy_closed_set"] = closed["per_emotion"]
        entry["closed_set"] = {"labels": closed["labels"], "confusion": closed["confusion"]}
    return entry


def _text_task(items: list[dict], embedder, judge: Judge | None, n_boot: int, seed: int) -> dict[str, Any]:
    replies = [g["reply"] for g in items]
    refs = [g["reference"] for g in items]
    per_item = M.rouge_per_item(replies, refs)
    per_item["semantic_similarity"] = M.semantic_similarity(replies, refs, embedder)
    out: dict[str, Any] = {"n": len(items), "metrics": {}, "per_emotion": {}}
    if judge is not None:
        results = judge.score(items, desc=f"judging {items[0]['task']}")
        out["judge"] = summarize(results)
        scored = [(r.score, g) for r, g in zip(results, items) if r.score is not None]
        if scored:
            out["metrics"]["judge"] = _ci([s for s, _ in scored], n_boot=n_boot, seed=seed)
            out["per_emotion"]["judge"] = M.group_means([s for s, _ in scored], [g.get("emotion") for _, g in scored])
    emotions = [g.get("emotion") for g in items]
    for name, values in per_item.items():
        out["metrics"][name] = _ci(values, n_boot=n_boot, seed=seed)
        out["per_emotion"][name] = M.group_means(values, emotions)
    if any(g.get("question_type") for g in items):
        out["per_question_type"] = {
            name: M.group_means(values, [g.get("question_type") for g in items]) for name, values in per_item.items()
        }
        if "judge" in out["per_emotion"]:  # method 2's benchmark: the judge score per question type
            out["per_question_type"]["judge"] = M.group_means([s for s, _ in scored],
                                                              [g.get("question_type") for _, g in scored])
    return out


def compute_metrics(
    generations: Sequence[dict[str, Any]],
    *,
    embedder=None,
    judge: Judge | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric of the report, per task, with bootstrap intervals (see the module doc for the record format).

    ``embedder`` defaults to the shared MiniLM model; with a ``judge``, response/qa replies are judged and the
    judge is validated on the emotion-task answers (correct = matched label equals the truth).
    """
    _check_records(generations)
    if embedder is None:
        from scoring.embedder import default_embedder

        embedder = default_embedder()
    by_task: dict[str, list[dict]] = defaultdict(list)
    skipped: Counter[str] = Counter()
    for g in generations:
        task = g["task"]
        if task not in TASK_NAMES:
            skipped[f"{task}: unknown task"] += 1
        elif task in LABEL_SETS and label_truth(task, g) is None:  # the scoring rule's own test of a label
            skipped[f"{task}: no {task} label"] += 1
        elif task in TEXT_TASKS and not (g.get("reference") or "").strip():
            skipped[f"{task}: no reference reply"] += 1
        elif task == "asr" and not (g.get("reference") or g.get("transcript") or "").strip():
            skipped["asr: no transcript"] += 1
        else:
            by_task[task].append(g)
    for reason, count in skipped.items():
        log.warning("evaluation: skipped %d items (%s)", count, reason)

    tasks: dict[str, Any] = {}
    for task in TASK_NAMES:
        items = by_task.get(task)
        if not items:
            continue
        if task in LABEL_SETS:
            tasks[task] = _label_task(task, items, embedder, n_boot, seed)
        elif task in TEXT_TASKS:
            tasks[task] = _text_task(items, embedder, judge, n_boot, seed)
        else:
            errors = M.word_errors([g["reply"] for g in items],
                                   [g.get("reference") or g["transcript"] for g in items])
            tasks[task] = {"n": len(items), "metrics": {"wer": _ci(errors, M.corpus_wer, n_boot=n_boot, seed=seed)}}

    judge_info = None
    if judge is not None:
        judge_info = {"id": judge.judge_id, "rubric": RUBRIC, "retries": judge.retries, "validation": None}
        if "emotion" in tasks:
            results = judge.score(by_task["emotion"], desc="judging emotion answers (validation)")
            judge_info["validation"] = validate_judge([r.score for r in results], tasks["emotion"]["_correct"])
    for entry in tasks.values():
        entry.pop("_correct", None)
    return {
        "test_set": {
            "fingerprint": fingerprint_test_set(generations),
            "n_clips": len({str(g["id"]) for g in generations}),
            "n_items": {task: len(items) for task, items in sorted(by_task.items())},
        },
        "tasks": tasks,
        "judge": judge_info,
        "skipped": dict(skipped),
        "bootstrap": {"resamples": n_boot, "seed": seed, "level": 0.95},
    }
