"""Predicted paralinguistic labels for method 2's explicit metadata (``metadata.source: predicted``).

The predictor is a run of this framework trained with classifier heads on pooled speech tokens
(``classifier.enabled``, e.g. ``recipes/emotion_predictor.yaml``). It is run over every clip of a shard folder and
its output goes into new shards as ``extra.predicted`` of ``<key>.json``: the emotion with its probability, the
style when there is a style head, and valence / arousal / dominance estimated as the posterior-weighted mean of
each emotion's mean dimensional scores over the labelled train clips (the heads predict categories only; this is
how a category posterior becomes dimensional scores, and it is said so in the stored ``dimensions`` field). Clips
longer than ``segment_seconds`` also get time-stamped per-segment predictions.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from clips.audio import load_audio
from clips.metadata import DIMENSIONS
from clips.schema import AUDIO_EXTS
from clips.shard_writer import iter_shard_metadata, rewrite_shards, shard_files
from clips.tar_samples import iter_tar_samples
from clips.vocab import EMOTIONS, STYLES
from datamodules.features import build_features


def emotion_centroids(shards: list[Path], split: str = "train") -> dict[str, tuple[float, float, float]]:
    """Mean (valence, arousal, dominance) per emotion over the ``split`` clips that carry all three."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for _, meta in iter_shard_metadata(shards):
        if meta.get("split") != split or not meta.get("emotion") or any(meta.get(d) is None for d in DIMENSIONS):
            continue
        acc = sums[meta["emotion"]]
        for i, d in enumerate(DIMENSIONS):
            acc[i] += float(meta[d])
        acc[3] += 1
    return {e: (a[0] / a[3], a[1] / a[3], a[2] / a[3]) for e, a in sums.items()}


@dataclass
class LabelPredictor:
    """A trained model's classifier heads applied to whole clips or windows of them."""

    model: Any  # SpeechLLM with classifier heads
    centroids: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    model_id: str = ""

    def __post_init__(self) -> None:
        if "emotion" not in self.model.classifiers:
            raise ValueError("the predictor checkpoint has no emotion classifier head: train it with "
                             "classifier.enabled=true and 'emotion' in classifier.labels")
        cfg = self.model.cfg
        self.sample_rate = int(cfg.data.sample_rate)
        self.features = build_features(cfg)

    @torch.no_grad()
    def predict(self, wave) -> dict[str, Any]:
        """Labels of one waveform (at ``self.sample_rate``)."""
        feats = self.features(wave)[None]
        speech, lens = self.model.speech_embeddings(feats, torch.tensor([feats.shape[1]]))
        pooled = self.model.pool(speech, lens)
        probs = self.model.classifiers["emotion"](pooled).softmax(-1)[0]
        best = int(probs.argmax())
        out: dict[str, Any] = {"emotion": EMOTIONS[best], "confidence": round(float(probs[best]), 4)}
        weights = {e: float(probs[EMOTIONS.index(e)]) for e in self.centroids}
        total = sum(weights.values())
        if total > 0:
            for i, d in enumerate(DIMENSIONS):
                out[d] = round(sum(w * self.centroids[e][i] for e, w in weights.items()) / total, 3)
        if "style" in self.model.classifiers:
            out["style"] = [STYLES[int(self.model.classifiers["style"](pooled)[0].argmax())]]
        return out

    def predict_clip(self, wave, segment_seconds: float = 0.0) -> dict[str, Any]:
        """Whole-clip labels plus, for clips longer than ``segment_seconds`` (> 0), one entry per window."""
        out = self.predict(wave)
        hop = int(segment_seconds * self.sample_rate)
        if hop > 0 and wave.shape[0] > hop:
            out["segments"] = []
            for start in range(0, wave.shape[0], hop):
                piece = wave[start:start + hop]
                if piece.shape[0] < self.sample_rate * 0.5 and out["segments"]:  # a short tail joins the last one
                    out["segments"][-1]["end"] = round(wave.shape[0] / self.sample_rate, 2)
                    break
                entry = {"start": round(start / self.sample_rate, 2),
                         "end": round((start + piece.shape[0]) / self.sample_rate, 2)}
                out["segments"].append(entry | self.predict(piece))
        out["model"] = self.model_id
        out["dimensions"] = "posterior-weighted emotion centroids of the train labels" if self.centroids else None
        return out


def _audio_member(sample: dict) -> bytes | None:
    return next((sample[ext] for ext in AUDIO_EXTS if ext in sample), None)


def predict_shard_labels(predictor: LabelPredictor, shard_dir: str | os.PathLike, out_dir: str | os.PathLike,
                         segment_seconds: float = 0.0) -> dict[str, int]:
    """Predict every clip of ``shard_dir`` and write the shards, with ``extra.predicted`` in each ``<key>.json``,
    to ``out_dir`` (a separate folder: the labelled originals stay as they are). Returns counts."""
    shards = shard_files(shard_dir)
    if not shards:
        raise FileNotFoundError(f"no <split>-NNNNNN.tar shards in {shard_dir}")
    if Path(out_dir).resolve() == Path(shard_dir).resolve():
        raise ValueError("--out must differ from --shards: predictions go into new shards")
    predicted: dict[str, dict] = {}
    counts = {"clips": 0, "predicted": 0, "unreadable_audio": 0}
    for shard in tqdm(shards, desc="predicting labels", unit="shard"):
        with open(shard, "rb") as f:
            for sample in iter_tar_samples(f):
                counts["clips"] += 1
                audio = _audio_member(sample)
                try:
                    wave, _ = load_audio(audio, predictor.sample_rate)
                except (RuntimeError, ValueError, OSError, TypeError):
                    counts["unreadable_audio"] += 1
                    continue
                predicted[str(sample["__key__"])] = predictor.predict_clip(torch.from_numpy(wave), segment_seconds)
                counts["predicted"] += 1

    def add(chunk: list[tuple[str, dict]]) -> list[dict[str, bytes]]:
        added = []
        for key, meta in chunk:
            if key not in predicted:
                added.append({})
                continue
            meta["extra"] = (meta.get("extra") or {}) | {"predicted": predicted[key]}
            added.append({"json": json.dumps(meta, ensure_ascii=False).encode("utf-8")})
        return added

    rewrite_shards(shard_dir, out_dir, add, batch_size=256, skip_existing=False)
    return counts
