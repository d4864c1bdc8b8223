"""Audio decoding and the checks every clip must pass, shared by the shard writer and the loader."""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf

# Peak amplitude below which a clip counts as silent (about -100 dBFS: digital silence or dither only).
SILENCE_PEAK = 1e-5


def load_audio(source: str | os.PathLike | bytes, target_sr: int | None = None) -> tuple[np.ndarray, int]:
    """Decode a file path or encoded bytes to mono float32, resampled to ``target_sr`` when given.

    Raises ``soundfile.LibsndfileError`` (a RuntimeError) or ``FileNotFoundError`` on unreadable input.
    """
    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    data, sr = sf.read(handle, dtype="float32", always_2d=True)
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if target_sr and target_sr != sr and wave.size:
        wave, sr = resample(wave, sr, target_sr), target_sr
    return np.ascontiguousarray(wave, dtype=np.float32), int(sr)


def resample(wave: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``, Kaiser-windowed FIR) from any rate to any other.

    torchaudio's sinc resampler builds its kernel from the rates' greatest common divisor: from an odd rate such
    as 24,414 Hz it took about 4 s per clip here, polyphase filtering about 0.04 s, with the same pass band.
    """
    from scipy.signal import resample_poly  # 0.7 s to import: only where a clip needs it

    g = math.gcd(int(sr), int(target_sr))
    return resample_poly(np.asarray(wave, dtype=np.float64), target_sr // g, sr // g).astype(np.float32)


def audio_problem(wave: np.ndarray, sr: int, min_s: float = 0.0, max_s: float | None = None) -> str | None:
    """The first reason ``wave`` is unusable as a training clip, as a short code, or None when it is fine."""
    if wave.size == 0:
        return "empty_audio"
    if not np.isfinite(wave).all():
        return "non_finite_audio"
    duration = wave.size / sr
    if duration < min_s:
        return "too_short"
    if max_s is not None and duration > max_s:
        return "too_long"
    if float(np.abs(wave).max()) <= SILENCE_PEAK:
        return "silent_audio"
    return None


def trim_silence(wave: np.ndarray, sr: int, top_db: float = 40.0, keep_s: float = 0.1) -> np.ndarray:
    """``wave`` without its leading and trailing silence: from the first to the last 20 ms frame whose energy is
    within ``top_db`` of the loudest frame, with ``keep_s`` of margin each side. Corpora differ in how much silence
    a clip carries (RAVDESS about a second at each end, EmoDB's copy almost none), and a model can learn that
    difference instead of the voice. A clip with no frame above the gate is returned whole."""
    frame, hop = int(0.02 * sr), int(0.01 * sr)
    if wave.size < frame:
        return wave
    starts = np.arange(0, wave.size - frame + 1, hop)
    energy = np.array([float(np.mean(wave[i:i + frame] ** 2)) for i in starts])
    loud = np.flatnonzero(10 * np.log10(np.maximum(energy, 1e-20) / max(energy.max(), 1e-20)) > -top_db)
    if loud.size == 0:
        return wave
    margin = int(keep_s * sr)
    return wave[max(0, starts[loud[0]] - margin):min(wave.size, starts[loud[-1]] + frame + margin)]


def set_level(wave: np.ndarray, dbfs: float) -> np.ndarray:
    """``wave`` scaled so that its RMS level is ``dbfs`` (dB relative to full scale, e.g. -20). Corpora are recorded
    20 dB and more apart (RAVDESS about -41 dBFS, EmoDB's copy -18), and Whisper's log-mel keeps the absolute level,
    so a model trained on one corpus hears every other as louder or quieter than any voice it knows. Not clipped:
    the features read floats, and clipping would add distortion no recording had. A silent wave is returned as is."""
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0
    if rms <= SILENCE_PEAK:
        return wave
    return (wave * (10 ** (dbfs / 20) / rms)).astype(np.float32)


@dataclass(frozen=True)
class WavePrep:
    """What is done to every wave before its features, the same in training, evaluation and inference (a recipe's
    ``data.trim_silence_db`` and ``data.level_dbfs``; None: not done). Training augments between the two steps
    (``trim`` first, ``level`` last), so that the level a model hears is the same whatever the augmentation did."""

    trim_db: float | None = None
    level_dbfs: float | None = None

    def trim(self, wave: np.ndarray, sr: int) -> np.ndarray:
        return wave if self.trim_db is None else trim_silence(wave, sr, self.trim_db)

    def level(self, wave: np.ndarray) -> np.ndarray:
        return wave if self.level_dbfs is None else set_level(wave, self.level_dbfs)

    def __call__(self, wave: np.ndarray, sr: int) -> np.ndarray:
        return self.level(self.trim(wave, sr))
