"""Waveform augmentation for training, run in the loader's workers: speed, noise, reverberation and gain.

Each effect fires with its own probability. Every random draw comes from the ``random.Random`` the caller passes,
which the loader seeds from (seed, epoch, clip key): a clip is augmented the same way whenever its batch is
decoded again, so exact resume stays exact. ``build_augment`` turns a recipe's ``data.augment`` into an
``Augmenter`` (or None: off, the default). Evaluation never augments.
"""
from __future__ import annotations

import glob
import math
import os
import random
from collections.abc import Mapping
from fractions import Fraction

import numpy as np
import soundfile as sf
from omegaconf import DictConfig, OmegaConf
from scipy.signal import fftconvolve, resample_poly

NOISE_EXTS = ("wav", "flac")
PEAK = 0.99  # the peak a too-loud result is scaled down to (rather than hard-clipped)


class Augmenter:
    """``augment(wave, sample_rate, rng) -> wave``: float32 1-D numpy in and out. Plain attributes only, so it
    pickles into DataLoader workers. ``noise_dir`` (optional) holds wav/flac noise recordings; without it, noise is
    white or pink, made here."""

    def __init__(self, *, speed_prob: float = 0.0, speeds: list[float] | tuple[float, ...] = (0.9, 1.0, 1.1),
                 noise_prob: float = 0.0, snr_min: float = 10.0, snr_max: float = 30.0, noise_dir: str | None = None,
                 gain_prob: float = 0.0, gain_min_db: float = -6.0, gain_max_db: float = 6.0,
                 reverb_prob: float = 0.0, rt60_min: float = 0.2, rt60_max: float = 0.8):
        self.speed_prob, self.speeds = float(speed_prob), [float(s) for s in speeds]
        self.noise_prob, self.snr_min, self.snr_max = float(noise_prob), float(snr_min), float(snr_max)
        self.gain_prob, self.gain_min_db, self.gain_max_db = float(gain_prob), float(gain_min_db), float(gain_max_db)
        self.reverb_prob, self.rt60_min, self.rt60_max = float(reverb_prob), float(rt60_min), float(rt60_max)
        self.noise_files = noise_files(noise_dir) if noise_dir else []

    @classmethod
    def from_config(cls, section: Mapping | DictConfig) -> Augmenter:
        """From a recipe's ``data.augment`` (``enabled`` is ``build_augment``'s business, not the augmenter's)."""
        options = OmegaConf.to_container(section) if isinstance(section, DictConfig) else dict(section)
        options.pop("enabled", None)
        return cls(**options)

    def __call__(self, wave: np.ndarray, sample_rate: int, rng: random.Random) -> np.ndarray:
        fire = [rng.random() < p for p in (self.speed_prob, self.reverb_prob, self.noise_prob, self.gain_prob)]
        if not any(fire):
            return wave
        # Noise generation draws many numbers: a numpy generator seeded from the clip's rng is far faster.
        np_rng = np.random.default_rng(rng.getrandbits(64))
        out = np.asarray(wave, dtype=np.float64)
        # Order: speed (a different talker / rate), the room, the noise in the room, then the recording level.
        if fire[0]:
            out = speed_perturb(out, rng.choice(self.speeds))
        if fire[1]:
            out = reverberate(out, sample_rate, rng.uniform(self.rt60_min, self.rt60_max), np_rng)
        if fire[2]:
            noise = self._noise(out.size, sample_rate, rng, np_rng)
            out = add_noise(out, noise, rng.uniform(self.snr_min, self.snr_max))
        if fire[3]:
            out = out * 10.0 ** (rng.uniform(self.gain_min_db, self.gain_max_db) / 20.0)
        return np.ascontiguousarray(peak_safe(out), dtype=np.float32)

    def _noise(self, n: int, sample_rate: int, rng: random.Random, np_rng: np.random.Generator) -> np.ndarray:
        kind = rng.choice(("white", "pink", "file") if self.noise_files else ("white", "pink"))
        if kind == "file":
            noise = noise_segment(rng.choice(self.noise_files), n, sample_rate, np_rng)
            if float(np.square(noise).sum()) > 0:
                return noise
            kind = "white"  # a silent stretch of the recording cannot be scaled to any SNR
        return pink_noise(n, np_rng) if kind == "pink" else np_rng.standard_normal(n)


def build_augment(cfg: DictConfig) -> Augmenter | None:
    """The training augmentation of a recipe, or None when ``data.augment.enabled`` is false (or, in run folders
    from before the key existed, absent)."""
    section = OmegaConf.select(cfg, "data.augment", default=None)
    if section is None or not section.get("enabled", False):
        return None
    return Augmenter.from_config(section)


def noise_files(folder: str) -> list[str]:
    files = sorted(f for ext in NOISE_EXTS for f in glob.glob(os.path.join(folder, "**", f"*.{ext}"), recursive=True))
    if not files:
        raise FileNotFoundError(f"data.augment.noise_dir {folder}: no {' / '.join(NOISE_EXTS)} files")
    return files


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Kaldi-style speed perturbation: play the clip ``factor`` times faster, tempo and pitch together, by reading
    it as if sampled at ``factor * sr`` and resampling back to ``sr``. Polyphase resampling (``resample_poly``)
    stays fast for ratios such as 11/10, which sinc resamplers with a gcd-based kernel are not."""
    if factor == 1.0:
        return wave
    ratio = Fraction(factor).limit_denominator(100)
    return resample_poly(wave, ratio.denominator, ratio.numerator)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f-power noise: white noise shaped in the frequency domain (amplitude 1/sqrt(f), no DC)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = np.inf  # removes DC, which 1/f would blow up
    return np.fft.irfft(spectrum / np.sqrt(freqs), n)


def noise_segment(path: str, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n``-sample stretch of a noise recording (looped when shorter), mono, at ``sample_rate``.
    Only the stretch is read, so long recordings cost little."""
    info = sf.info(path)
    need = math.ceil(n * info.samplerate / sample_rate)
    start = int(rng.integers(0, info.frames - need + 1)) if info.frames > need else 0
    data, sr = sf.read(path, start=start, frames=need, dtype="float64", always_2d=True)
    noise = data.mean(axis=1)
    if sr != sample_rate:
        ratio = Fraction(sample_rate, sr).limit_denominator(1000)
        noise = resample_poly(noise, ratio.numerator, ratio.denominator)
    if noise.size == 0:
        return np.zeros(n)
    return np.resize(noise, n)  # np.resize repeats a short recording


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``wave`` plus ``noise`` scaled so that 10*log10(P_wave / P_noise) is exactly ``snr_db``."""
    scale = math.sqrt(np.mean(np.square(wave)) / (np.mean(np.square(noise)) * 10.0 ** (snr_db / 10.0)))
    return wave + scale * noise


def room_impulse(sample_rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: the direct path (1 at t=0) followed by noise decaying 60 dB in ``rt60``
    seconds. The tail is scaled to the direct path's energy (a direct-to-reverberant ratio of 0 dB): unscaled, a
    thousand-sample tail would drown the speech."""
    t = np.arange(1, max(2, int(rt60 * sample_rate))) / sample_rate
    tail = rng.standard_normal(t.size) * np.exp(-math.log(1000.0) * t / rt60)
    return np.concatenate([[1.0], tail / np.sqrt(np.square(tail).sum())])


def reverberate(wave: np.ndarray, sample_rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """``wave`` in a synthetic room, trimmed to its own length and brought back to its own RMS (reverberation
    should change the sound, not the level)."""
    wet = fftconvolve(wave, room_impulse(sample_rate, rt60, rng))[: wave.size]
    rms_in, rms_out = np.sqrt(np.mean(np.square(wave))), np.sqrt(np.mean(np.square(wet)))
    return wet * (rms_in / rms_out) if rms_out > 0 else wet


def peak_safe(wave: np.ndarray) -> np.ndarray:
    """Scale down to a peak of ``PEAK`` when louder than full scale: hard clipping would add distortion."""
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    return wave * (PEAK / peak) if peak > 1.0 else wave
