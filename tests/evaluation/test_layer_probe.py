"""The cross-corpus layer probe on pooled features made in code: it finds the layer that carries the emotion, per
speaker normalisation removes a speaker offset, and only shared emotions are scored."""
from __future__ import annotations

import numpy as np
import pytest

from paralign.evaluation.layer_probe import corpus_clips, layer_probe, normalised


def _corpus(rng, emotions, speakers, offset, per=6):
    """[clips, 3 states, 8 features]: state 1 carries the emotion; every speaker adds its own offset everywhere."""
    x, records = [], []
    for s, speaker in enumerate(speakers):
        shift = offset * (s + 1) * rng.standard_normal(8)
        for e, emotion in enumerate(emotions):
            for _ in range(per):
                clip = rng.standard_normal((3, 8)) + shift
                clip[1, e] += 4.0
                x.append(clip)
                records.append({"emotion": emotion, "speaker": speaker})
    return np.stack(x), records


def test_the_probe_finds_the_layer_that_carries_emotion_across_corpora():
    rng = np.random.default_rng(0)
    fit = _corpus(rng, ["angry", "happy", "sad", "calm"], ["a1", "a2", "a3"], offset=0.0)
    score = _corpus(rng, ["angry", "happy", "sad", "disgusted"], ["b1", "b2"], offset=3.0)
    report = layer_probe(fit, score)
    assert report["emotions"] == ["angry", "happy", "sad"] and report["n_score"] == 2 * 3 * 6
    none, speaker = report["accuracy"]["none"], report["accuracy"]["speaker"]
    assert speaker[1] > 0.9 and max(speaker[0], speaker[2]) < 0.6  # the emotion is in state 1 only
    assert speaker[1] > none[1]  # the other corpus's speaker offsets hide it until each speaker is standardised


def test_speaker_normalisation_removes_a_speaker_offset():
    x = np.array([[1.0, 10.0], [3.0, 14.0], [101.0, -5.0], [103.0, -1.0]])
    out = normalised(x, ["a", "a", "b", "b"], "speaker")
    assert np.allclose(out[:2], out[2:])
    out = normalised(x, ["a", "a", "b", "b"], "speaker mean")  # the spread kept: what encoder.speaker_norm does
    assert np.allclose(out[:2], out[2:]) and np.allclose(out[1] - out[0], x[1] - x[0])


def test_a_corpus_entry_names_its_importer():
    with pytest.raises(ValueError, match="write <importer>=<folder>"):
        corpus_clips("/data/EmoDB")
    with pytest.raises(ValueError, match="write <importer>=<folder>"):
        corpus_clips("nosuch=/data/x")
