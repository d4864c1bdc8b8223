
import numpy as np
import pytest
import soundfile as sf
import torch

from datamodules.audio import audio_problem, load_audio
from datamodules.features import LogMel


def test_load_audio_mixes_down_and_resamples(tmp_path):
    sr = 16000
    left = np.full(sr, 0.5, dtype=np.float32)
    sf.write(tmp_path / "st.wav", np.stack([left, -0.5 * left], axis=1), sr, subtype="FLOAT")
    wave, got_sr = load_audio(tmp_path / "st.wav", None)
    assert got_sr == sr and wave.dtype == np.float32 and wave.ndim == 1
    assert np.allclose(wave, 0.125)
    wave8, sr8 = load_audio((tmp_path / "st.wav").read_bytes(), 8000)
    assert sr8 == 8000 and wave8.size == sr // 2


def test_load_audio_rejects_garbage():
    with pytest.raises(RuntimeError):
        load_audio(b"not audio at all", None)


@pytest.mark.parametrize("wave,expected", [
    (np.zeros(0, np.float32), "empty_audio"),
    (np.array([0.1, np.nan] * 8000, np.float32), "non_finite_audio"),
    (np.full(1600, 0.1, np.float32), "too_short"),
    (np.full(16000 * 5, 0.1, np.float32), "too_long"),
    (np.zeros(16000, np.float32), "silent_audio"),
    (np.full(16000, 0.1, np.float32), None),
])
def test_audio_problem(wave, expected):
    assert audio_problem(wave, 16000, min_s=0.2, max_s=4.0) == expected


def test_logmel_shape_and_rate():
    wave = np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.1
    feats = LogMel()(wave)
    assert feats.dtype == torch.float32 and feats.shape == (201, 80)  # 100 frames a second, centred
    assert LogMel().num_frames(32000) == 201 and torch.isfinite(feats).all()
    assert LogMel()(np.zeros(1600, np.float32)).min() == pytest.approx(np.log(1e-10))  # silence is clamped, finite
    with pytest.raises(ValueError, match="1-D"):
        LogMel()(np.zeros((2, 100), np.float32))


@pytest.mark.parametrize("sr", [24414, 44100, 48000, 8000, 22050])
def test_resampling_from_any_rate_matches_the_band_limited_signal(sr):
    from datamodules.audio import resample

    seconds, freqs = 1.0, (440.0, 3000.0)
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(0.3 * np.sin(2 * np.pi * f * t) for f in freqs).astype(np.float32)
    out = resample(wave, sr, 16000)
    assert out.dtype == np.float32 and abs(out.size - int(round(seconds * 16000))) <= 1
    ref = sum(0.3 * np.sin(2 * np.pi * f * np.arange(out.size) / 16000) for f in freqs)
    inner = slice(200, out.size - 200)  # away from the filter's edges
    assert np.max(np.abs(out[inner] - ref[inner])) < 0.01
    if sr > 16000:  # content above the new Nyquist frequency is filtered out, not folded back
        alias = resample((0.5 * np.sin(2 * np.pi * 10000 * t)).astype(np.float32), sr, 16000)
        assert np.sqrt(np.mean(alias[inner] ** 2)) < 0.01
