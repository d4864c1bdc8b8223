"""What a person wants to read at the end of a run: the headline figures and the showcase."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig


def _estimate(metrics: dict[str, Any], task: str, name: str) -> str:
    entry = metrics.get("tasks", {}).get(task, {}).get("metrics", {}).get(name)
    if not isinstance(entry, dict) or entry.get("value") is None:
        return "n/a"
    low, high = entry.get("low"), entry.get("high")
    ci = f" (95% CI {low:.2f}-{high:.2f})" if low is not None and high is not None else ""
    return f"{entry['value']:.3f}{ci}, n={entry.get('n', '?')}"


def _head(metrics: dict[str, Any], key: str = "heads") -> str:
    value = (metrics.get(key) or {}).get("emotion")
    return "n/a" if value is None else f"{value:.3f}"


def print_headline(metrics: dict[str, Any]) -> None:
    probe = metrics.get("probe", {})
    lines = [
        "held-out evaluation (unseen voices and sentences):",
        f"  emotion accuracy of the LLM's own answers from speech: {_estimate(metrics, 'emotion', 'accuracy')}",
        f"  style accuracy of the LLM's answers:                  {_estimate(metrics, 'style', 'accuracy')}",
        f"  linear probe on speech tokens, emotion:              "
        f"{probe.get('emotion') if probe.get('emotion') is None else round(probe['emotion'], 3)}"
        f" (fitted on {probe.get('fitted_on', 'half of the evaluated clips')})",
        f"  the model's emotion head on the same tokens:         {_head(metrics)}",
        f"  closed set (the likeliest of the clips' emotions):   LLM "
        f"{_estimate(metrics, 'emotion', 'accuracy_closed_set')}; head {_head(metrics, 'heads_closed_set')}",
        f"  response ROUGE-L vs the emotion-aware text replies:  {_estimate(metrics, 'response', 'rougeL')}",
        f"  response semantic similarity to those replies:       "
        f"{_estimate(metrics, 'response', 'semantic_similarity')}",
        f"  reply emotion accuracy (words held fixed):           "
        f"{_estimate(metrics, 'response', 'reply_emotion_accuracy')}",
        f"    controls: emotion-blind reply {_estimate(metrics, 'response', 'reply_emotion_blind')}; "
        f"teacher's own ceiling {_estimate(metrics, 'response', 'reply_emotion_ceiling')}",
        f"  asr WER:                                              {_estimate(metrics, 'asr', 'wer')}",
    ]
    print("\n".join(lines))


def print_cross_corpus(results: dict[str, dict[str, Any]]) -> None:
    """Emotion on other corpora (``eval.cross_corpus``): one line per corpus, per emotion below it."""
    for name, metrics in results.items():
        emotions = metrics["cross_corpus"]["emotions"]
        shared = f"{len(emotions)} emotions shared with training, chance {1 / len(emotions):.2f}" if emotions else \
            "every emotion"
        print(f"\nzero-shot on {name} ({metrics['cross_corpus']['source']}; {shared}):")
        print(f"  emotion accuracy of the LLM's own answers: {_estimate(metrics, 'emotion', 'accuracy')}; "
              f"macro-F1 {_estimate(metrics, 'emotion', 'macro_f1')}")
        print(f"  the model's emotion head on its speech tokens: {_head(metrics)} (every label it knows)")
        print(f"  closed set, the likeliest of the shared emotions: LLM "
              f"{_estimate(metrics, 'emotion', 'accuracy_closed_set')}; macro-F1 "
              f"{_estimate(metrics, 'emotion', 'macro_f1_closed_set')}; head {_head(metrics, 'heads_closed_set')}")
        per = metrics.get("tasks", {}).get("emotion", {}).get("per_emotion", {}).get("accuracy", {})
        if per:
            print("  per emotion: " + ", ".join(f"{e} {v['value']:.2f} (n={v['n']})" for e, v in sorted(per.items())
                                                if v.get("value") is not None))


def print_showcase(records: list[dict[str, Any]]) -> None:
    """Same words, different voices, different replies: grouped by sentence."""
    by_sentence: dict[str, list[dict]] = defaultdict(list)
    seen: set[tuple] = set()
    for r in records:  # one recording per sentence and emotion (a test split holds many)
        if (r["transcript"], r["emotion"]) not in seen:
            seen.add((r["transcript"], r["emotion"]))
            by_sentence[r["transcript"]].append(r)
    print("\nshowcase: the frozen LLM's reply to each recording (it never sees the emotion in text; with "
          "prompt.perceive, 'felt' is the emotion it named from the speech before replying), and below it the "
          "teacher's reply to the words with that emotion as the cue (what it aims at)")
    for sentence, rows in by_sentence.items():
        heard = rows[0].get("heard")
        print(f'\n  "{sentence}"' + (f'  (Whisper heard: "{heard}")' if heard and heard != sentence else ""))
        for r in sorted(rows, key=lambda x: x["emotion"] or ""):
            felt = f"(felt {r['perceived']}) " if r.get("perceived") else ""
            print(f"    [{r['emotion']:>9} voice] {felt}{r['reply'].strip()[:160]}")
            if r.get("teacher"):
                print(f"    {'teacher':>17}: {r['teacher'].strip()[:160]}")


def evaluate_and_print(cfg: DictConfig, ckpt: str | Path | None, run_dir: str | Path) -> None:
    """``paralign eval`` and the end of ``paralign train`` (``eval.after_train``): the held-out evaluation, the
    showcase (``eval.showcase_split``) and the zero-shot figures on other corpora (``eval.cross_corpus``), printed."""
    from paralign.evaluation.cross_corpus import OUT, evaluate_cross_corpus
    from paralign.evaluation.run import evaluate, showcase_records
    from paralign.model_folder import load_trained

    run_dir = Path(run_dir)
    model = load_trained(cfg, ckpt) if ckpt is not None else None  # once, for all three
    print_headline(evaluate(cfg, ckpt, run_dir, model=model))
    if model is not None and cfg.eval.showcase_split:
        print_showcase(showcase_records(cfg, model, run_dir / "eval"))
    print(f"evaluation report: {run_dir / 'eval' / 'report.md'}")
    cross = evaluate_cross_corpus(cfg, model, ckpt, run_dir) if model is not None else {}
    if cross:
        print_cross_corpus(cross)
        print(f"cross-corpus reports: {run_dir / OUT}/<corpus>/report.md")
