"""Emotion on other corpora, zero-shot: the frozen LLM's own answers for recordings, speakers and languages it never
trained on (``eval.cross_corpus``).

An entry is ``<importer>=<folder>`` for a corpus as released (``emodb=/data/EmoDB``; imported once into
``<data.dir>-cross/<importer>``, every clip in the test split, with Whisper's transcripts where the model reads the
words) or a folder of shards (``<name>=<folder>`` names it in the report; the folder's name otherwise). Only clips
whose emotion the training corpus also has are asked about: a model trained on six emotions is not scored on an
eighth it never saw. Each corpus gets its own report in ``<run>/eval_cross/<name>/``: accuracy, macro-F1,
per-emotion accuracy, the confusion matrix.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lightning_modules.speech_llm import SpeechLLM

log = logging.getLogger(__name__)
SPLIT = "test"
OUT = "eval_cross"


@dataclass(frozen=True)
class Corpus:
    name: str
    folder: Path
    importer: str | None  # None: a folder of shards


def parse_entries(entries: list[str]) -> list[Corpus]:
    """``eval.cross_corpus`` entries as corpora; a ValueError naming a malformed entry."""
    from prep.importers import IMPORTERS

    corpora = []
    for entry in entries:
        name, sep, folder = str(entry).partition("=")
        if not sep:
            name, folder = Path(entry).expanduser().name, entry
        folder_path = Path(folder).expanduser()
        if not name or not folder:
            raise ValueError(f"eval.cross_corpus entry {entry!r}: write <importer>=<folder> or a shard folder")
        shards = folder_path.is_dir() and any(folder_path.glob("*.tar"))
        if not shards and folder_path.exists() and name not in IMPORTERS:
            raise ValueError(f"eval.cross_corpus entry {entry!r}: {folder} holds no shards, and {name!r} is no "
                             f"importer (one of {', '.join(sorted(IMPORTERS))}): write <importer>={folder}")
        corpora.append(Corpus(name, folder_path, None if shards else name))
    if len({c.name for c in corpora}) != len(corpora):
        raise ValueError(f"eval.cross_corpus names a corpus twice: {entries}")
    return corpora


def trained_emotions(cfg: DictConfig) -> set[str]:
    """Emotions of the training corpus's manifest (empty: unknown, then every clip is kept)."""
    manifest = Path(cfg.data.dir) / "manifest.json"
    if not manifest.exists():
        return set()
    labels = json.loads(manifest.read_text()).get("labels", {}).get("emotion", {})
    return {e for e in labels if e not in ("None", "null")}


def corpus_shards(cfg: DictConfig, corpus: Corpus) -> Path:
    """The corpus's shard folder, imported (and transcribed, where the model reads the words) on first use."""
    if corpus.importer is None:
        return corpus.folder
    out = Path(f"{cfg.data.dir.rstrip('/')}-cross") / corpus.name
    _import(cfg, corpus, out)
    from paralign.data import asr_model, needs_transcripts

    if needs_transcripts(cfg):  # the model reads the words: Whisper's, as in training
        from prep.transcribe import transcribe_shards

        transcribe_shards(out, asr_model(cfg), cache_dir=cfg.encoder.cache_dir)
    return out


def _import(cfg: DictConfig, corpus: Corpus, out: Path) -> None:
    from clips.shard_writer import write_shards
    from prep.importers import import_corpus

    keep = trained_emotions(cfg)
    records = (dict(r, split=SPLIT) for r in import_corpus(corpus.importer, corpus.folder)
               if not keep or r.get("emotion") in keep)
    summary = write_shards(records, out, split=SPLIT, target_sr=cfg.data.sample_rate)
    if not summary.kept and not summary.already_written:
        raise ValueError(f"eval.cross_corpus {corpus.name}={corpus.folder}: no clip could be imported (see "
                         f"{out / 'rejects.jsonl'})")


def evaluate_cross_corpus(cfg: DictConfig, model: SpeechLLM, ckpt: str | Path,
                          run_dir: Path) -> dict[str, dict[str, Any]]:
    """Emotion answers of ``model`` (from ``ckpt``) on each of ``eval.cross_corpus`` (name -> metrics); an absent
    folder is said and skipped."""
    from paralign.evaluation.run import evaluate

    entries = list(cfg.eval.get("cross_corpus") or [])
    if not entries or "emotion" not in model.tasks:
        return {}
    results = {}
    for corpus in parse_entries(entries):
        if not corpus.folder.exists():
            print(f"cross-corpus evaluation of {corpus.name} skipped: {corpus.folder} does not exist")
            continue
        shards = corpus_shards(cfg, corpus)
        other = OmegaConf.merge(cfg, {"data": {"test": [str(shards)]},
                                      "eval": {"split": SPLIT, "tasks": ["emotion"], "judge": "none", "max_clips": 0}})
        out_name = f"{OUT}/{corpus.name}"
        metrics = evaluate(other, ckpt, run_dir, model=model, out_name=out_name,
                           title=f"Emotion on another corpus, zero-shot: {corpus.name} ({corpus.folder})")
        scored = metrics.get("tasks", {}).get("emotion", {}).get("per_emotion", {}).get("accuracy", {})
        # the emotions both corpora have: the ones its clips were scored on (chance is one over their number)
        metrics["cross_corpus"] = {"name": corpus.name, "source": str(corpus.folder), "shards": str(shards),
                                   "emotions": sorted(e for e, v in scored.items() if v.get("n"))}
        (run_dir / out_name / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str) + "\n")
        results[corpus.name] = metrics
    return results
