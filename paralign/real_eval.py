"""Zero-shot emotion on real speech: the frozen LLM's own answers for recordings of people it never heard.

``eval.real_eval`` names a folder of shards or a corpus in its released layout (imported once, by the
``eval.real_eval_corpus`` importer, into ``<data.dir>-real/<corpus>``, every clip in the ``test`` split). Only
clips whose emotion the training corpus also has are asked about: a model trained on six emotions is not scored
on an eighth it never saw.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lightning_modules.speech_llm import SpeechLLM

log = logging.getLogger(__name__)
SPLIT = "test"


def trained_emotions(cfg: DictConfig) -> set[str]:
    """Emotions of the training corpus's manifest (empty: unknown, then every clip is kept)."""
    manifest = Path(cfg.data.dir) / "manifest.json"
    if not manifest.exists():
        return set()
    labels = json.loads(manifest.read_text()).get("labels", {}).get("emotion", {})
    return {e for e in labels if e not in ("None", "null")}


def real_shards(cfg: DictConfig) -> Path | None:
    """The shard folder for ``eval.real_eval`` (importing a corpus folder once), or None when it is absent."""
    root = Path(cfg.eval.real_eval).expanduser()
    if not root.exists():
        return None
    if any(root.glob("*.tar")):
        return root
    out = Path(f"{cfg.data.dir.rstrip('/')}-real") / cfg.eval.real_eval_corpus
    _import(cfg, root, out)
    from paralign.data import asr_model, needs_transcripts

    if needs_transcripts(cfg):  # the model reads the words: Whisper's, as in training
        from prep.transcribe import transcribe_shards

        transcribe_shards(out, asr_model(cfg), cache_dir=cfg.encoder.cache_dir)
    return out


def _import(cfg: DictConfig, root: Path, out: Path) -> None:
    from datamodules.shard_writer import write_shards
    from prep.importers import import_corpus

    keep = trained_emotions(cfg)
    records = (dict(r, split=SPLIT) for r in import_corpus(cfg.eval.real_eval_corpus, root)
               if not keep or r.get("emotion") in keep)
    summary = write_shards(records, out, split=SPLIT, target_sr=cfg.data.sample_rate)
    if not summary.kept and not summary.already_written:
        raise ValueError(f"eval.real_eval={root}: no clip could be imported (see {out / 'rejects.jsonl'})")


def evaluate_real(cfg: DictConfig, model: SpeechLLM, run_dir: Path) -> dict[str, Any] | None:
    """Emotion answers on ``eval.real_eval`` into ``<run>/eval_real/``; None when it is unset or absent."""
    from paralign.evaluate import evaluate

    if not cfg.eval.real_eval or "emotion" not in model.tasks:
        return None
    shards = real_shards(cfg)
    if shards is None:
        print(f"real-speech evaluation skipped: eval.real_eval={cfg.eval.real_eval} does not exist")
        return None
    real = OmegaConf.merge(cfg, {"data": {"test": [str(shards)]},
                                 "eval": {"split": SPLIT, "tasks": ["emotion"], "judge": "none", "max_clips": 0}})
    metrics = evaluate(real, run_dir / "checkpoints" / "last.ckpt", run_dir, model=model, out_name="eval_real",
                       title=f"Zero-shot emotion on real speech ({cfg.eval.real_eval})")
    metrics["real_eval"] = {"source": str(cfg.eval.real_eval), "shards": str(shards),
                            "emotions": sorted(trained_emotions(cfg))}
    (run_dir / "eval_real" / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str) + "\n")
    return metrics
