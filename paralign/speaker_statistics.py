"""Speaker statistics for ``encoder.speaker_norm`` (``lightning_modules/speaker_norm.py``), read from the shards:
before training (every split's speakers; the reference is the training split's mean) and before an evaluation
(the speakers of the clips it reads, with the checkpoint's reference). No label is read: a speaker's clips are all
it takes, so an evaluation normalises a speaker it never trained on from that speaker's own test clips.
"""
from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from datamodules.datamodule import ShardDataModule
from lightning_modules.speaker_norm import SpeakerMeans, speaker_means
from lightning_modules.speech_llm import SpeechLLM
from paralign.data import shard_sources

log = logging.getLogger(__name__)
Part = tuple[list[Any], str]  # (shard sources, split name)


def _plain(sources: list[Any]) -> list[Any]:
    """Sources without mixing weights: statistics read every clip once."""
    return [s["shards"] if isinstance(s, dict) else s for s in sources]


def _label(parts: list[Part]) -> frozenset[str]:
    return frozenset(f"{split}:{source}" for sources, split in parts for source in _plain(sources))


def _accumulate(cfg: DictConfig, model: SpeechLLM, parts: list[Part], into: SpeakerMeans | None = None
                ) -> SpeakerMeans:
    acc = into or SpeakerMeans()
    for sources, split in parts:
        loader = ShardDataModule.clips_of(cfg, _plain(sources), split).test_dataloader()
        speaker_means(model.encoder, loader, f"speaker statistics: {split}", into=acc)
    return acc


def prepare_training(cfg: DictConfig, model: SpeechLLM) -> None:
    """The reference (the training split's mean) and every split's speakers, before training."""
    norm = getattr(model.encoder, "speaker_norm", None)
    if norm is None:
        return
    sources = shard_sources(cfg)
    if not sources["train"]:
        raise ValueError("encoder.speaker_norm: no training shards to compute the reference from")
    acc = _accumulate(cfg, model, [(sources["train"], "train")])
    reference = acc.overall()
    others = [(sources[split], split) for split in ("val", "test") if sources[split]]
    _accumulate(cfg, model, others, into=acc)
    parts = [(sources["train"], "train"), *others]
    norm.set_means(acc.means(), _label(parts), reference=reference)
    log.info("speaker normalisation: statistics of %d speakers, the reference from the training split",
             len(acc.frames))


def prepare_evaluation(cfg: DictConfig, model: SpeechLLM, parts: list[Part]) -> None:
    """Statistics of the speakers of ``parts`` (what an evaluation reads), unless those already in the model cover
    them (an evaluation right after training)."""
    norm = getattr(model.encoder, "speaker_norm", None)
    if norm is None:
        return
    label = _label(parts)
    if label <= norm.source:
        return
    acc = _accumulate(cfg, model, parts)
    norm.set_means(acc.means(), label)
    log.info("speaker normalisation: %d speakers of the evaluated clips", len(acc.frames))
