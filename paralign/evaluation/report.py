"""Write a run's ``eval/metrics.json``, ``eval/report.md`` and its PNG plots from the metrics dict.

The report explains every metric in one line, gives each figure with its 95 % bootstrap interval and n, and puts
the judge's rubric and its validation figures right next to the judge scores so a reader can tell whether to
trust them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from paralign.evaluation.figures import compute_metrics
from scoring.metrics import plot_confusion

__all__ = ["compute_metrics", "write_report", "METRIC_HELP", "LOWER_IS_BETTER", "format_estimate", "digits_for"]

# Metrics where a smaller value is better (tables and charts say so).
LOWER_IS_BETTER = {"wer", "unmatched_rate"}

METRIC_HELP: dict[str, str] = {
    "accuracy": "share of answers whose matched label is correct (style: is one of the clip's styles); "
                "unmatched answers count as wrong",
    "macro_f1": "unweighted mean over labels of the per-label F1 of the matched answers (rare labels weigh as "
                "much as common ones)",
    "unmatched_rate": "share of answers that named no label at all (keyword and embedding match both failed)",
    "accuracy_closed_set": "the LLM's closed-set answer: of the evaluated clips' emotions, the one whose answer "
                           "(\"The speaker sounds sad.\") it finds likeliest after the same prompt and speech, "
                           "right or wrong; the protocol of cross-corpus emotion recognition (the shared emotions)",
    "macro_f1_closed_set": "macro-F1 of those closed-set answers",
    "rouge1": "ROUGE-1 F: unigram overlap of the reply with the teacher's text-prompted reply, 0-1",
    "rougeL": "ROUGE-L F: longest-common-subsequence overlap of the reply with the teacher reply, 0-1",
    "semantic_similarity": "cosine of MiniLM sentence embeddings of the reply and the teacher reply "
                           "(closer in meaning = higher)",
    "reply_emotion_accuracy": "share of responses whose emotion, read off the reply with the words held fixed (the "
                              "emotion under whose cue the frozen LLM finds the reply likeliest), is the clip's "
                              "true emotion; chance is 1 / the number of emotions",
    "reply_emotion_blind": "the same for the LLM's reply to the words alone (no voice, no cue): the floor",
    "reply_emotion_ceiling": "the same for a second, sampled teacher reply under the true cue: the ceiling",
    "wer": "word error rate of the asr task: word edits / reference words over the whole set (lower is better)",
    "judge": "mean LLM-judge score, 0-100, for fitting what was said AND how the speaker felt "
             "(unparsable judge answers are left out and counted)",
}

VALIDATION_HELP = (
    "Judge validation: the judge also scored the emotion-task answers, whose correctness is known. A trustworthy "
    "judge scores correct answers higher: point-biserial r and Spearman rho near 0 mean it cannot tell them apart; "
    "'accuracy at threshold' is how well 'score >= t' predicts correctness at the best t (compare it with the share "
    "of the majority outcome)."
)


def digits_for(metric: str) -> int:
    """Judge scores are on 0-100 (one decimal); every other metric is a rate or a similarity (three)."""
    return 1 if metric == "judge" else 3


def format_estimate(est: dict[str, Any], digits: int = 3) -> str:
    """``0.812 [0.790, 0.835]``."""
    return f"{est['value']:.{digits}f} [{est['low']:.{digits}f}, {est['high']:.{digits}f}]"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _metric_table(task_metrics: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| metric | value [95 % CI] | n |", "|---|---|---|"]
    for name, est in task_metrics.items():
        arrow = " (lower is better)" if name in LOWER_IS_BETTER else ""
        lines.append(f"| {name}{arrow} | {format_estimate(est, digits_for(name))} | {est['n']} |")
    return lines


def _breakdown_table(breakdown: dict[str, dict[str, dict[str, Any]]], group_name: str) -> list[str]:
    """Rows = groups (e.g. emotions), columns = metrics; each cell ``mean (n)``."""
    names = list(breakdown)
    groups = sorted({g for per_group in breakdown.values() for g in per_group})
    if not groups:
        return []
    lines = [f"| {group_name} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for group in groups:
        cells = []
        for name in names:
            cell = breakdown[name].get(group)
            cells.append("-" if cell is None else f"{cell['value']:.{digits_for(name)}f} ({cell['n']})")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return lines


def _judge_section(judge: dict[str, Any]) -> list[str]:
    lines = [
        "## LLM judge", "",
        f"Judge: `{judge['id']}` (malformed answers retried {judge['retries']} times, then counted as unparsed "
        "and left out of the mean).", "",
        "Rubric:", "", "```", judge["rubric"], "```", "",
        "### Judge validation", "", VALIDATION_HELP, "",
    ]
    v = judge.get("validation")
    if v is None:
        lines.append("Not available: this evaluation has no emotion-task items to validate the judge on.")
        return lines + [""]
    lines += [
        "| figure | value |", "|---|---|",
        f"| items (parsed / unparsed) | {v['n']} / {v['n_unparsed']} |",
        f"| share of correct answers | {_fmt(v['share_correct'])} |",
        f"| point-biserial r (p) | {_fmt(v['point_biserial'])} ({_fmt(v['point_biserial_p'], 4)}) |",
        f"| Spearman rho (p) | {_fmt(v['spearman'])} ({_fmt(v['spearman_p'], 4)}) |",
        f"| best threshold t | {_fmt(v['threshold'], 1)} |",
        f"| accuracy of 'score >= t' | {_fmt(v['accuracy_at_threshold'])} |",
    ]
    if v.get("note"):
        lines += ["", f"Note: {v['note']}."]
    return lines + [""]


def _validation_line(v: dict[str, Any] | None) -> str:
    """The judge's agreement with known correctness, in one sentence beside its scores."""
    if v is None:
        return "The judge could not be validated (no emotion-task items); read its scores with care."
    return (f"Judge validation on {v['n']} emotion answers: point-biserial r = {_fmt(v['point_biserial'])}, "
            f"accuracy at the best threshold {_fmt(v['accuracy_at_threshold'])} "
            f"(share correct {_fmt(v['share_correct'])}); details under 'LLM judge'.")


def _examples(generations: Sequence[dict[str, Any]], task: str, k: int = 3) -> list[str]:
    """The first ``k`` of the task's records, those with a reference first (a reply is read beside what it aimed at;
    clips outside ``teacher.share`` have none)."""
    rows = [g for g in generations if g.get("task") == task]
    rows = ([g for g in rows if _one_line(g.get("reference"))] or rows)[:k]
    if not rows:
        return []
    lines = [f"Examples (first {len(rows)}):", ""]
    for g in rows:
        reference = _one_line(g.get("reference")) or "none"
        lines.append(f"- `{g['id']}` (emotion: {g.get('emotion')}, style: {', '.join(g.get('style') or []) or '-'})"
                     f"  \n  reply: {_one_line(g.get('reply'))}  \n  reference: {reference}")
    return lines + [""]


def _one_line(text: Any, limit: int = 200) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[:limit] + " ..."


def render_markdown(metrics: dict[str, Any], generations: Sequence[dict[str, Any]], plots: dict[str, str],
                    title: str) -> str:
    test_set = metrics["test_set"]
    boot = metrics["bootstrap"]
    lines = [
        f"# {title}", "",
        f"Model: `{metrics.get('checkpoint', '?')}`, fingerprint `{metrics.get('model_fingerprint', '?')}` (its "
        "trained weights and the recipe parts that shape a reply; every reply below is this model's).", "",
        f"Test set: {test_set['n_clips']} clips, fingerprint `{test_set['fingerprint'][:16]}` "
        f"(sha256 of the sorted clip ids; runs are comparable only when it matches). Items per task: "
        + ", ".join(f"{t} {n}" for t, n in test_set["n_items"].items()) + ".",
        "",
        f"Intervals: {int(boot['level'] * 100)} % percentile bootstrap over items, {boot['resamples']} resamples, "
        f"seed {boot['seed']}.",
        "",
        "## What the numbers mean", "",
    ]
    used = {name for entry in metrics["tasks"].values() for name in entry["metrics"]}
    lines += [f"- **{name}**: {text}" for name, text in METRIC_HELP.items() if name in used]
    lines.append("")
    if metrics.get("skipped"):
        lines += ["Items left out (cannot be scored): "
                  + "; ".join(f"{reason}: {n}" for reason, n in metrics["skipped"].items()), ""]
    for task, entry in metrics["tasks"].items():
        lines += [f"## Task `{task}` ({entry['n']} items)", ""]
        lines += _metric_table(entry["metrics"]) + [""]
        if entry.get("judge"):
            j = entry["judge"]
            lines += [f"Judge: {j['n_scored']} replies scored, {j['n_unparsed']} unparsed "
                      f"(left out of the mean), {j['n_retried']} needed a retry. "
                      + _validation_line((metrics.get("judge") or {}).get("validation")), ""]
        if entry.get("per_emotion"):
            lines += ["Per true emotion, mean (n):", ""] + _breakdown_table(entry["per_emotion"], "emotion") + [""]
        if entry.get("per_question_type"):
            lines += ["Per question type, mean (n):", ""]
            lines += _breakdown_table(entry["per_question_type"], "question type") + [""]
        if task in plots:
            lines += [f"![confusion matrix of the {task} task]({plots[task]})", ""]
        if entry.get("closed_set") and f"{task}_closed_set" in plots:
            lines += [f"Closed-set answers, over {', '.join(entry['closed_set']['labels'])}:", "",
                      f"![confusion matrix of the closed-set answers]({plots[f'{task}_closed_set']})", ""]
        lines += _examples(generations, task)
    probe = metrics.get("probe") or {}
    if any(probe.get(kind) is not None for kind in ("emotion", "style")):
        lines += ["## Linear probe", "",
                  "Logistic regression on the mean-pooled speech tokens (what the tokens carry, whether or not the "
                  f"LLM puts it in words), fitted on {probe.get('fitted_on', 'half of the evaluated clips')}:", ""]
        lines += [f"- {kind}: accuracy {probe[kind]:.3f}" for kind in ("emotion", "style")
                  if probe.get(kind) is not None] + [""]
    heads = {kind: v for kind, v in (metrics.get("heads") or {}).items() if v is not None}
    if heads:
        lines += ["## The model's classifier heads", "",
                  "Its own heads, trained with it on the same pooled tokens (argmax over every label they know): "
                  "right where the LLM's answers are wrong means the tokens carry it and the LLM does not read it.",
                  ""] + [f"- {kind}: accuracy {v:.3f}" for kind, v in heads.items()]
        closed = {kind: v for kind, v in (metrics.get("heads_closed_set") or {}).items() if v is not None}
        lines += [f"- {kind}, argmax over the evaluated clips' labels only (the closed set): accuracy {v:.3f}"
                  for kind, v in closed.items()] + [""]
    if metrics.get("judge"):
        lines += _judge_section(metrics["judge"])
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    eval_dir: str | Path,
    metrics: dict[str, Any],
    generations: Sequence[dict[str, Any]],
    *,
    title: str = "Evaluation report",
) -> Path:
    """Write ``metrics.json``, one confusion-matrix PNG per label task and ``report.md``; return the report path."""
    eval_dir = Path(eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n")
    plots: dict[str, str] = {}
    for task, entry in metrics["tasks"].items():
        if entry.get("confusion"):
            name = f"confusion_{task}.png"
            plot_confusion(entry["confusion"], eval_dir / name, title=f"{task}: true label vs matched answer")
            plots[task] = name
        if entry.get("closed_set"):
            name = f"confusion_{task}_closed_set.png"
            plot_confusion(entry["closed_set"]["confusion"], eval_dir / name,
                           title=f"{task}: true label vs the likeliest answer of the closed set")
            plots[f"{task}_closed_set"] = name
    report = eval_dir / "report.md"
    report.write_text(render_markdown(metrics, generations, plots, title))
    return report
