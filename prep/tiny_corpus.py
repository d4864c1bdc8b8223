"""A handful of labelled clips made in code, for the ``tiny`` recipe and tests: no TTS, no download.

Each emotion is a tone of its own pitch and loudness plus noise, so a tiny encoder can learn it in a few steps.
The "teacher" replies are templated text (there is no real LLM in the tiny recipe); real ones come from
``paralign teacher``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from clips.members import TeacherReplies, TeacherReply, Variant
from clips.schema import empty_metadata
from clips.shard_writer import WriteSummary, write_shards

TINY_EMOTIONS = {"neutral": (160.0, 0.2), "happy": (260.0, 0.3), "sad": (110.0, 0.1), "angry": (200.0, 0.6)}
TINY_SENTENCES = ["hello there", "see you soon", "it is raining", "where is it", "all done now", "come in"]


def tiny_records(audio_dir: Path, clips: int = 24, seed: int = 0, sample_rate: int = 16000) -> list[dict]:
    """Write ``clips`` short wav files into ``audio_dir`` and return their records (2/3 train, 1/6 val, 1/6 test)."""
    rng = np.random.default_rng(seed)
    audio_dir.mkdir(parents=True, exist_ok=True)
    records = []
    emotions = list(TINY_EMOTIONS)
    for i in range(clips):
        emotion = emotions[i % len(emotions)]
        pitch, loudness = TINY_EMOTIONS[emotion]
        seconds = float(rng.uniform(0.6, 1.4))
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        wave = loudness * np.sin(2 * np.pi * pitch * t) + 0.01 * rng.standard_normal(t.size)
        path = audio_dir / f"tiny_{i:04d}.wav"
        sf.write(path, wave.astype(np.float32), sample_rate)
        sentence = TINY_SENTENCES[i % len(TINY_SENTENCES)]
        split = "train" if i % 6 < 4 else ("val" if i % 6 == 4 else "test")
        record = empty_metadata(id=f"tiny_{i:04d}", dataset="tiny", speaker=f"spk{i % 3}", transcript=sentence,
                                emotion=emotion, style=["default"], split=split,
                                valence=3.0, arousal=3.0, dominance=3.0)
        record["audio_path"] = str(path)
        record["teacher"] = TeacherReplies({"response": {
            v: TeacherReply(f"You said {sentence}" + (f", {emotion}." if v is Variant.CONDITIONED else "."),
                            model="template") for v in Variant}}).to_json()
        records.append(record)
    return records


def build_tiny_corpus(out_dir: str | Path, clips: int = 24, seed: int = 0) -> WriteSummary | None:
    """Shards of the tiny corpus in ``out_dir`` (nothing to do when they exist)."""
    out = Path(out_dir)
    if (out / "manifest.json").exists():
        return None
    return write_shards(tiny_records(out / "audio", clips, seed), out, max_count=8, progress=False)
