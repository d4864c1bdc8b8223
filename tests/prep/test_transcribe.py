"""Whisper transcripts cached in the shards (prep/transcribe.py): every clip gets ``<key>.asr.json``, a second run
transcribes nothing, a cut run resumes from its cache, and the manifest records the model and the WER.

The transcriber here is a stand-in that reads the words off the corpus (one piece under test: the caching and
the shard members); the real Whisper is tested in tests/lightning_modules/test_whisper.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clips.shard_writer import shard_files
from clips.tar_samples import iter_tar_samples
from prep.transcribe import CACHE_NAME, transcribe_shards


class _Extractor:
    sampling_rate = 16000


class LengthTranscriber:
    """'words <n>' for a clip of n samples; counts the clips it was asked about."""

    extractor = _Extractor()

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, waves: list[np.ndarray]) -> list[str]:
        if self.fail_after is not None and self.calls + len(waves) > self.fail_after:
            raise KeyboardInterrupt
        self.calls += len(waves)
        return [f"words {len(w)}" for w in waves]


def _asr(folder: Path) -> dict[str, dict]:
    out = {}
    for shard in shard_files(folder):
        with open(shard, "rb") as f:
            for s in iter_tar_samples(f):
                out[s["__key__"]] = json.loads(s["asr.json"]) if "asr.json" in s else None
    return out


def test_every_clip_gets_its_transcript_and_a_rerun_transcribes_nothing(shard_dir):
    first = LengthTranscriber()
    summary = transcribe_shards(shard_dir, "whisper-x", transcriber=first, batch_size=4)
    assert (summary.clips, summary.transcribed, summary.from_cache) == (24, 24, 0) and first.calls == 24
    asr = _asr(shard_dir)
    assert len(asr) == 24 and all(a is not None and a["model"] == "whisper-x" and a["text"].startswith("words ")
                                  for a in asr.values())
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    # "words 12345" against "sentence 7": one substitution, one deletion per clip's two words
    assert manifest["asr"]["model"] == "whisper-x" and manifest["asr"]["compared_clips"] == 24
    assert manifest["asr"]["wer"] == pytest.approx(summary.wer) and summary.wer > 0
    again = LengthTranscriber()
    summary = transcribe_shards(shard_dir, "whisper-x", transcriber=again)
    assert (summary.transcribed, summary.from_cache, again.calls) == (0, 24, 0)
    assert _asr(shard_dir) == asr


def test_a_cut_run_resumes_from_its_cache(shard_dir):
    with pytest.raises(KeyboardInterrupt):
        transcribe_shards(shard_dir, "whisper-x", transcriber=LengthTranscriber(fail_after=10), batch_size=2)
    cached = len((shard_dir / CACHE_NAME).read_text().splitlines())
    assert 0 < cached < 24
    rest = LengthTranscriber()
    summary = transcribe_shards(shard_dir, "whisper-x", transcriber=rest, batch_size=2)
    assert rest.calls == 24 - cached and summary.from_cache == cached
    assert all(a is not None for a in _asr(shard_dir).values())


def test_another_model_transcribes_afresh(shard_dir):
    transcribe_shards(shard_dir, "whisper-x", transcriber=LengthTranscriber())
    other = LengthTranscriber()
    transcribe_shards(shard_dir, "whisper-y", transcriber=other)
    assert other.calls == 24 and {a["model"] for a in _asr(shard_dir).values()} == {"whisper-y"}
