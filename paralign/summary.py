"""What a person wants to read at the end of a run: the headline figures and the showcase."""
from __future__ import annotations

from collections import defaultdict
from typing import Any


def _estimate(metrics: dict[str, Any], task: str, name: str) -> str:
    entry = metrics.get("tasks", {}).get(task, {}).get("metrics", {}).get(name)
    if not isinstance(entry, dict) or entry.get("value") is None:
        return "n/a"
    low, high = entry.get("low"), entry.get("high")
    ci = f" (95% CI {low:.2f}-{high:.2f})" if low is not None and high is not None else ""
    return f"{entry['value']:.3f}{ci}, n={entry.get('n', '?')}"


def print_headline(metrics: dict[str, Any]) -> None:
    probe = metrics.get("probe", {})
    lines = [
        "held-out evaluation (unseen voices and sentences):",
        f"  emotion accuracy of the LLM's own answers from speech: {_estimate(metrics, 'emotion', 'accuracy')}",
        f"  style accuracy of the LLM's answers:                  {_estimate(metrics, 'style', 'accuracy')}",
        f"  linear probe on speech tokens, emotion:              "
        f"{probe.get('emotion') if probe.get('emotion') is None else round(probe['emotion'], 3)}",
        f"  response ROUGE-L vs the emotion-aware text replies:  {_estimate(metrics, 'response', 'rougeL')}",
        f"  asr WER:                                              {_estimate(metrics, 'asr', 'wer')}",
    ]
    print("\n".join(lines))


def print_real(metrics: dict[str, Any]) -> None:
    """The zero-shot figure on real speech (``paralign.real_eval``), per emotion too."""
    real = metrics.get("real_eval", {})
    per = metrics.get("tasks", {}).get("emotion", {}).get("per_emotion", {}).get("accuracy", {})
    chance = 1 / len(real["emotions"]) if real.get("emotions") else None
    print(f"\nzero-shot on real speech ({real.get('source')}; {len(real.get('emotions', []))} emotions shared with "
          f"training, chance {chance:.2f}):" if chance else f"\nzero-shot on real speech ({real.get('source')}):")
    print(f"  emotion accuracy of the LLM's own answers from speech: {_estimate(metrics, 'emotion', 'accuracy')}")
    if per:
        print("  per emotion: " + ", ".join(f"{e} {v['value']:.2f} (n={v['n']})" for e, v in sorted(per.items())
                                            if v.get("value") is not None))


def print_showcase(records: list[dict[str, Any]]) -> None:
    """Same words, different voices, different replies: grouped by sentence."""
    by_sentence: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_sentence[r["transcript"]].append(r)
    print("\nshowcase: the frozen LLM's reply to each recording (it never sees the emotion in text)")
    for sentence, rows in by_sentence.items():
        print(f'\n  "{sentence}"')
        for r in sorted(rows, key=lambda x: x["emotion"] or ""):
            print(f"    [{r['emotion']:>9} voice] {r['reply'].strip()[:160]}")
