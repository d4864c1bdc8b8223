"""Batch inference: every clip of a manifest (or folder) asked every task, one JSON line per clip.

A line: ``{"id", "audio", "replies": {task: reply}, "labels": {"emotion": ..., "style": ...}, "heard",
"perceived", "model", "generation"}`` (``labels``: the label a task's answer names, matched as the evaluation
matches them). Lines are appended and synced batch by batch; a rerun skips the clips already answered, so a cut job
loses at most one batch. A file from another model or other generation settings is refused, never mixed in.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from tqdm import tqdm

from clips.manifest import AUDIO_COLUMNS
from clips.tasks import DEFAULT_INSTRUCTIONS
from clips.vocab import LABEL_SETS
from lightning_modules.speech_llm import SpeechLLM
from paralign.infer import Answerer, InferenceError, Question, audio_inputs
from prep.jsonl_cache import append_cache, read_cache
from scoring.label_matching import match_labels

log = logging.getLogger(__name__)


def manifest_clips(source: str | Path) -> list[tuple[str, str]]:
    """``(id, audio path)`` per clip: a folder's audio files (id: the file's stem), or a JSONL manifest's lines
    (``audio``, ``audio_path`` or ``path``, relative to the manifest; ``id``: given, else the file's stem)."""
    source = Path(source)
    if source.is_dir():
        files = [f for f in audio_inputs([str(source)]) if Path(f).is_file()]
        if not files:
            raise InferenceError(f"{source}: a folder with no .wav, .flac or .ogg file")
        return _unique([(Path(f).stem, f) for f in files], source)
    if not source.is_file():
        raise InferenceError(f"{source}: no such manifest or folder")
    clips = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InferenceError(f"{source}:{number}: not a JSON object ({err.msg})") from None
        audio = next((row[c] for c in AUDIO_COLUMNS if isinstance(row, dict) and row.get(c)), None)
        if audio is None:
            raise InferenceError(f"{source}:{number}: no audio path (one of {', '.join(AUDIO_COLUMNS)})")
        path = Path(audio) if Path(audio).is_absolute() else source.parent / audio
        clips.append((str(row.get("id") or path.stem), str(path)))
    return _unique(clips, source)


def _unique(clips: list[tuple[str, str]], source: Path) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for clip_id, path in clips:
        if clip_id in seen:
            raise InferenceError(f"{source}: id {clip_id!r} twice ({seen[clip_id]} and {path}): ids must be unique")
        seen[clip_id] = path
    return clips


def task_names(model: SpeechLLM, wanted: str | None) -> list[str]:
    """The tasks asked: ``wanted`` (comma-separated), else every task the model was trained on that a clip can be
    asked without a question of its own (not qa)."""
    names = [t.strip() for t in wanted.split(",")] if wanted else [t for t in model.tasks if t != "qa"]
    unknown = [t for t in names if t not in DEFAULT_INSTRUCTIONS or t == "qa"]
    if unknown:
        raise InferenceError(f"--task: {', '.join(unknown)} cannot be asked of a clip (response, emotion, style, "
                             "asr)")
    return names


def answer_manifest(answerer: Answerer, clips: list[tuple[str, str]], questions: dict[str, Question],
                    out: str | Path, batch_size: int) -> dict[str, int]:
    """Answer the clips not yet in ``out``; returns counts of answered, failed and skipped (already there) clips.
    A failed clip (unreadable, silent, too long ...) is logged with its reason and not written, so a rerun tries it
    again."""
    from paralign.evaluation.run import model_fingerprint

    out = Path(out)
    stamp = {"model": model_fingerprint(answerer.cfg, answerer.model), "generation": answerer.generation,
             "closed_set": list(answerer.choices) if answerer.choices else None}
    done = read_cache(out, key="id")
    for clip_id, line in done.items():
        if {k: line.get(k) for k in stamp} != json.loads(json.dumps(stamp)):
            raise InferenceError(f"{out} holds replies of another model or other generation settings (or --choices) "
                                 f"(clip {clip_id!r}): give another --out, or remove it to start again")
    todo = [(i, p) for i, p in clips if i not in done]
    counts = {"answered": 0, "failed": 0, "skipped": len(clips) - len(todo)}
    tasks = list(questions)
    with tqdm(total=len(clips), initial=counts["skipped"], desc="answering", unit="clip") as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            (answers,) = answerer.answer_files([p for _, p in chunk], list(questions.values()), len(chunk))
            lines = {}
            for (clip_id, path), answer in zip(chunk, answers):
                if answer.error is not None:
                    log.error("%s", answer.error)
                    counts["failed"] += 1
                    continue
                replies = dict(zip(tasks, answer.replies))
                lines[clip_id] = {"audio": path, "replies": replies, "labels": named_labels(replies),
                                  "heard": answer.heard, "perceived": answer.perceived, **stamp}
                if answer.choices is not None:  # --choices: the emotion question's closed set
                    lines[clip_id]["choices"] = answer.choices
            append_cache(out, lines, key="id")
            counts["answered"] += len(lines)
            bar.update(len(chunk))
    return counts


def named_labels(replies: dict[str, str]) -> dict[str, str | None]:
    """The label each label task's answer names (``emotion``, ``style``), as the evaluation matches answers."""
    return {task: match_labels([reply], LABEL_SETS[task])[0] for task, reply in replies.items() if task in LABEL_SETS}
