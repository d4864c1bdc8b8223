"""Fixtures shared by the data-pipeline tests: short tone / noise clips made here, and shards built from them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from clips.schema import empty_metadata
from clips.shard_writer import write_shards


def make_clip(path: Path, seconds: float, sr: int = 16000, seed: int = 0, channels: int = 1) -> Path:
    """A tone plus a little noise, written with soundfile."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * seed) * t) + 0.01 * rng.standard_normal(t.size)
    sf.write(path, np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave, sr)
    return path


def make_records(folder: Path, n: int, seed: int = 0, split: str | None = "train") -> list[dict]:
    """``n`` records (0.5-3 s clips) with schema metadata and audio paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        path = make_clip(folder / f"clip{seed}_{i}.wav", float(rng.uniform(0.5, 3.0)), seed=i % 7)
        records.append(empty_metadata(id=f"s{seed}.clip{i}", dataset="toy", speaker=f"spk{i % 3}",
                                      transcript=f"sentence {i}", emotion=["happy", "sad", "neutral"][i % 3],
                                      style=["fast"] if i % 2 else [], split=split, audio_path=str(path)))
    return records


@pytest.fixture(name="make_clip")
def make_clip_fixture():
    return make_clip


@pytest.fixture(name="make_records")
def make_records_fixture():
    return make_records


@pytest.fixture
def shard_dir(tmp_path: Path) -> Path:
    """A folder of 4 train shards (24 clips, 6 per shard)."""
    out = tmp_path / "shards"
    write_shards(make_records(tmp_path / "audio", 24), out, max_count=6, progress=False)
    return out
