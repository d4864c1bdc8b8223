"""The ``README.md`` of an exported model: a model card in the Hugging Face convention (YAML front matter, then
what the model is, how to use it, what it was trained on, its evaluation figures with their intervals, and its
limits), written from the folder's ``config.json`` and the run's ``eval/metrics.json``."""
from __future__ import annotations

from typing import Any

import yaml

TAGS = ["paralign", "speech", "audio", "speech-llm", "speech-emotion-recognition", "paralinguistics"]


def model_card(config: dict[str, Any], metrics: dict[str, Any] | None) -> str:
    base, training = config["base_models"], config["training"]
    data = training["data"]
    front = {
        "library_name": "paralign",
        "pipeline_tag": "audio-text-to-text",
        "base_model": [m["source"] for m in (base["llm"], base["encoder"]) if m["source"] and "/" in m["source"]],
        "tags": TAGS,
        "datasets": [data["corpus"] or data["source"]],
        "metrics": sorted({name for task in (metrics or {}).get("tasks", {}).values() for name in task["metrics"]}),
    }
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
             f"# {config['recipe']['name']}", "",
             f"A speech encoder and adapter trained with paralign {config['paralign_version']} so that the frozen "
             f"LLM `{base['llm']['source']}` hears how something is said (emotion, speaking style) as well as what. "
             "The LLM and the pretrained encoder are not in this folder: they load from where they came from, and "
             "their content hashes in `config.json` make sure they are the ones the model was trained with.", "",
             "## Use", "", "```",
             "paralign serve --model <this folder>        # OpenAI-style /v1/chat/completions with audio, and a page",
             "paralign infer --model <this folder> --audio clip.wav",
             "paralign infer --model <this folder> --manifest clips.jsonl --out replies.jsonl",
             "```", "", "```python", "import paralign", "model = paralign.load('<this folder>')", "```", "",
             "## Parts", "",
             "| part | what | parameters |", "| --- | --- | --- |",
             f"| LLM (frozen) | {base['llm']['source']} (`{base['llm']['name']}`, {base['llm']['dtype']}) | "
             f"{base['llm']['frozen_parameters']:,} |",
             f"| speech encoder | {base['encoder']['source']} ({base['encoder']['type']}) | "
             f"{base['encoder']['frozen_parameters']:,} frozen |"]
    lines += [f"| {part} (trained) | {_what(part, config['trained'])} | {n:,} |"
              for part, n in sorted(config["trained"]["parts"].items())]
    lines += ["", "## Training data", "", _data_text(data, training), ""]
    lines += ["## Evaluation", ""] + _metrics_lines(metrics) + [""]
    lines += ["## Intended use and limitations", ""] + _limits(config) + [""]
    return "\n".join(lines) + "\n"


def _what(part: str, trained: dict[str, Any]) -> str:
    if part == "adapter":
        adapter = trained["adapter"]
        return f"{adapter['type']} adapter, {adapter['tokens_per_second']:g} speech tokens/s into the LLM"
    if part == "encoder":
        extra = [f"layer mix ({trained['layer_mix']})"] if trained.get("layer_mix") else []
        if trained.get("lora"):
            extra.append(f"LoRA rank {trained['lora']['rank']} on {', '.join(trained['lora']['targets'])}")
        return "encoder weights trained: " + (", ".join(extra) or "the whole encoder")
    if part == "classifiers":
        return "linear heads: " + ", ".join(f"{k} {v[0]}->{v[1]}" for k, v in trained["heads"].items())
    return part


def _data_text(data: dict[str, Any], training: dict[str, Any]) -> str:
    what = {"corpus": f"the `{data['corpus']}` corpus (real speech)",
            "synth": "paralign's synthetic demo corpus (espeak-ng voices)",
            "tiny": "tone clips made in code (a plumbing check: it learns nothing useful)"}.get(
                data["source"], f"`{data['source']}` data")
    parts = [f"Trained on {what} for {training['global_step']} steps."]
    for folder in data["shard_folders"]:
        hours = ", ".join(f"{split} {h:.2f} h" if h >= 0.1 else f"{split} {60 * h:.1f} min"
                          for split, h in folder["hours"].items())
        clips = ", ".join(f"{split} {n}" for split, n in folder["clips_per_split"].items())
        parts.append(f"Shards `{folder['folder']}`: {hours} ({clips} clips); emotions: "
                     f"{', '.join(folder['emotions'])}.")
    if training.get("init_from"):
        parts.append(f"Started from the weights of `{training['init_from']}`.")
    return " ".join(parts)


def _metrics_lines(metrics: dict[str, Any] | None) -> list[str]:
    if not metrics:
        return ["The run had no `eval/metrics.json` when it was exported (run `paralign eval` on it, then export)."]
    lines = [f"`paralign eval` on the run's {metrics.get('test_set', {}).get('n_clips', '?')} test clips; 95 % "
             "bootstrap intervals.", "", "| task | metric | value | 95 % interval | n |",
             "| --- | --- | --- | --- | --- |"]
    for task, entry in metrics.get("tasks", {}).items():
        for name, est in entry["metrics"].items():
            if isinstance(est, dict) and "value" in est:
                lines.append(f"| {task} | {name} | {est['value']:.3f} | {est['low']:.3f}-{est['high']:.3f} | "
                             f"{est.get('n', entry.get('n', ''))} |")
    probe = metrics.get("probe") or {}
    for kind, value in probe.items():
        if isinstance(value, float):
            lines.append(f"| linear probe | {kind} accuracy | {value:.3f} | | |")
    return lines


def _limits(config: dict[str, Any]) -> list[str]:
    data = config["training"]["data"]
    emotions = sorted({e for folder in data["shard_folders"] for e in folder["emotions"]})
    lines = ["- Research use: studying how a frozen LLM can be taught to hear emotion and speaking style. It is not "
             "a tool for judging people: its emotion answers are often wrong, most of all on voices, languages and "
             "recording conditions unlike its training data."]
    if data["source"] != "corpus":
        lines.append("- Trained on synthetic speech only: expect it to hear real voices far less well than its "
                     "figures above.")
    if emotions:
        lines.append(f"- It knows these emotions only: {', '.join(emotions)}.")
    lines.append("- Clips of 0.1-60 s, mono or mixed down, resampled to "
                 f"{config['audio']['sample_rate']} Hz.")
    return lines
