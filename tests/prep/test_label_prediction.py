"""Predicted labels for explicit metadata: a model's own classifier heads run over shards into new shards."""
from __future__ import annotations

import json

import pytest
import torch

from clips.metadata import MetadataSpec, metadata_text
from clips.shard_writer import shard_files
from clips.tar_samples import iter_tar_samples
from clips.vocab import EMOTIONS, STYLES
from lightning_modules.speech_llm import SpeechLLM
from prep.label_prediction import LabelPredictor, emotion_centroids, predict_shard_labels
from prep.tiny_corpus import build_tiny_corpus
from tests.lightning_modules.conftest import tiny_cfg


def test_predictions_go_into_new_shards_with_segments(tmp_path):
    build_tiny_corpus(tmp_path / "base")
    torch.manual_seed(0)
    model = SpeechLLM(tiny_cfg(classifier={"enabled": True, "labels": ["emotion", "style"]})).eval()
    shards = shard_files(tmp_path / "base")
    centroids = emotion_centroids(shards)
    assert centroids == {e: (3.0, 3.0, 3.0) for e in ("neutral", "happy", "sad", "angry")}  # the tiny labels
    counts = predict_shard_labels(LabelPredictor(model, centroids, "tiny-head"), tmp_path / "base",
                                  tmp_path / "pred", segment_seconds=0.5)
    assert counts == {"clips": 24, "predicted": 24, "unreadable_audio": 0}
    samples = [s for shard in shard_files(tmp_path / "pred") for s in iter_tar_samples(open(shard, "rb"))]
    assert len(samples) == 24 and all("flac" in s and "teacher.json" in s for s in samples)
    meta = json.loads(samples[0]["json"])
    pred = meta["extra"]["predicted"]
    labels = {m["id"]: m["emotion"] for s in iter_tar_samples(open(shards[0], "rb")) for m in [json.loads(s["json"])]}
    assert meta["emotion"] == labels[meta["id"]]  # the label itself is untouched
    assert pred["emotion"] in EMOTIONS and 0 < pred["confidence"] <= 1 and pred["style"][0] in STYLES
    assert pred["valence"] == pytest.approx(3.0) and pred["model"] == "tiny-head"
    assert pred["segments"][0]["start"] == 0.0 and pred["segments"][-1]["end"] == pytest.approx(meta["duration"], 0.01)
    text = metadata_text(meta, MetadataSpec(source="predicted", fields=("emotion",), segments=True))
    assert text.startswith(f"[0.0-{pred['segments'][0]['end']:.1f} s: emotion: ")
    assert text.count("\n") == len(pred["segments"]) - 1


def test_a_model_without_an_emotion_head_is_refused(tmp_path):
    model = SpeechLLM(tiny_cfg())
    with pytest.raises(ValueError, match="no emotion classifier head"):
        LabelPredictor(model)
    with pytest.raises(ValueError, match="must differ"):
        build_tiny_corpus(tmp_path / "b")
        predict_shard_labels(LabelPredictor(SpeechLLM(tiny_cfg(classifier={"enabled": True}))), tmp_path / "b",
                             tmp_path / "b")
