"""A QA benchmark (method 2's evaluation): JSONL in, test shards out, one sample per question.

Format, one JSON object per line::

    {"audio": "clips/a.wav", "question": "...", "answer": "reference answer", "type": "content+emotion",
     "id": "optional", "transcript": null, "emotion": null, "gender": null, "speaker": null,
     "valence": null, "arousal": null, "dominance": null, "style": []}

``audio`` is a path (relative paths are relative to the JSONL file); ``type`` is one of
:data:`prep.qa_generate.QUESTION_TYPES`. Labels are optional: they let the explicit-metadata recipes
(``source: labels``) and the per-emotion breakdowns use them. Each question becomes its own sample (the clip's
audio repeated), so `paralign eval` with ``eval.tasks=[qa]`` answers every question exactly once, and the report
breaks ROUGE, similarity and judge scores down by question type.

:func:`export_benchmark` goes the other way for the demo, which has no human annotations: the generated pairs of
a split (``paralign qa-generate``) plus one templated content+gender question per clip with a gender label.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from clips.schema import AUDIO_EXTS, empty_metadata
from clips.shard_writer import WriteSummary, shard_files, write_shards
from clips.tar_samples import iter_tar_samples, safe_key
from prep.qa_generate import QUESTION_TYPES, normalise_type

LABEL_KEYS = ("transcript", "emotion", "gender", "speaker", "valence", "arousal", "dominance", "style")
BENCH_KEYS = {"audio", "question", "answer", "type", "id", *LABEL_KEYS}


def read_benchmark(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Validated benchmark items; a bad line raises ValueError naming the file, the line and the problem."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not JSON ({err.msg})") from None
            if not isinstance(item, dict):
                raise ValueError(f"{where}: a line must be a JSON object")
            unknown = sorted(set(item) - BENCH_KEYS)
            if unknown:
                raise ValueError(f"{where}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(BENCH_KEYS))})")
            for key in ("audio", "question", "answer", "type"):
                if not isinstance(item.get(key), str) or not item[key].strip():
                    raise ValueError(f"{where}: '{key}' must be a non-empty string")
            qtype = normalise_type(item["type"])
            if qtype is None:
                raise ValueError(f"{where}: type {item['type']!r} is not one of {', '.join(QUESTION_TYPES)}")
            audio = Path(item["audio"])
            yield {**item, "type": qtype, "audio": str(audio if audio.is_absolute() else path.parent / audio),
                   "line": n}


def benchmark_records(items: Iterator[dict[str, Any]], name: str) -> Iterator[dict[str, Any]]:
    """Shard-writer records (split ``test``), one per question, the pair in ``qa``."""
    for item in items:
        labels = {k: item[k] for k in LABEL_KEYS if item.get(k) is not None}
        record = empty_metadata(id=item.get("id") or f"{name}-{item['line']:05d}", dataset=name, split="test",
                                **labels)
        record["audio_path"] = item["audio"]
        record["qa"] = [{"question": item["question"].strip(), "answer": item["answer"].strip(),
                         "type": item["type"], "source": f"benchmark:{name}"}]
        yield record


def import_benchmark(jsonl: str | os.PathLike, out_dir: str | os.PathLike, *, name: str | None = None,
                     sample_rate: int | None = 16000) -> WriteSummary:
    """Write the benchmark's questions as ``test-NNNNNN.tar`` shards (rejects counted in ``rejects.jsonl``)."""
    name = name or Path(jsonl).stem
    return write_shards(benchmark_records(read_benchmark(jsonl), name), out_dir, target_sr=sample_rate,
                        max_seconds=600.0)


def gender_question(meta: dict[str, Any]) -> dict[str, str] | None:
    """A content+gender question answerable from the labels (None without a gender or a transcript)."""
    if meta.get("gender") not in ("female", "male") or not (meta.get("transcript") or "").strip():
        return None
    who = "A woman" if meta["gender"] == "female" else "A man"
    return {"question": "Who is speaking, a man or a woman, and what do they say?",
            "answer": f'{who}. They say: "{meta["transcript"].strip()}"', "type": "content+gender"}


def export_benchmark(shard_dir: str | os.PathLike, out_dir: str | os.PathLike, split: str = "test") -> Counter:
    """A benchmark JSONL (``benchmark.jsonl`` + ``audio/``) from the ``qa.json`` pairs of one split's shards."""
    shards = shard_files(shard_dir, split)
    if not shards:
        raise FileNotFoundError(f"no {split}-NNNNNN.tar shards in {shard_dir}")
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    with open(out / "benchmark.jsonl", "w", encoding="utf-8") as sink:
        for shard in shards:
            with open(shard, "rb") as f:
                for sample in iter_tar_samples(f):
                    meta = json.loads(sample["json"])
                    pairs = json.loads(sample["qa.json"]) if "qa.json" in sample else []
                    extra = gender_question(meta)
                    pairs = pairs + ([extra] if extra else [])
                    ext = next((e for e in AUDIO_EXTS if e in sample), None)
                    if not pairs or ext is None:
                        counts["clips without pairs or audio"] += 1
                        continue
                    audio = out / "audio" / f"{safe_key(meta['id'])}.{ext}"
                    audio.write_bytes(sample[ext])
                    labels = {k: meta.get(k) for k in LABEL_KEYS}
                    for i, pair in enumerate(pairs):
                        sink.write(json.dumps({"id": f"{meta['id']}-q{i}", "audio": f"audio/{audio.name}",
                                               "question": pair["question"], "answer": pair["answer"],
                                               "type": pair["type"], **labels}, ensure_ascii=False) + "\n")
                        counts[pair["type"]] += 1
    return counts
