
import numpy as np
import pytest
import soundfile as sf
import torch

from clips.audio import audio_problem, load_audio, trim_silence
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
    from clips.audio import resample

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


def test_trim_silence_keeps_the_speech_and_a_margin():
    sr = 16000
    speech = 0.3 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr)
    quiet = 1e-4 * np.random.default_rng(0).standard_normal(sr)  # -70 dB: a room's hiss, not speech
    wave = np.concatenate([quiet, speech, quiet[: sr // 2]]).astype(np.float32)
    trimmed = trim_silence(wave, sr, top_db=40, keep_s=0.1)
    assert abs(trimmed.size / sr - 1.2) < 0.03  # the second of speech and 0.1 s each side
    edge = int(0.05 * sr)
    assert np.abs(trimmed[:edge]).max() < 1e-3 and np.abs(trimmed[-edge:]).max() < 1e-3  # the margin: quiet
    assert np.abs(trimmed[sr // 2 - edge:sr // 2 + edge]).max() > 0.29  # the speech: whole
    assert trim_silence(speech, sr).size == speech.size  # nothing to trim
    assert trim_silence(quiet, sr).size == quiet.size  # all one level: no frame stands out, nothing cut


def test_the_datamodule_trims_every_clip_the_same_in_every_stage(tmp_path):
    """data.trim_silence_db: a clip padded with a second of near-silence at each end reaches the model as its
    speech and a margin, in training and evaluation alike; without it, whole."""
    from clips.shard_writer import write_shards
    from datamodules.datamodule import ShardDataModule
    from tests.datamodules.conftest import make_records

    records = make_records(tmp_path / "audio", 4)
    for r in records:  # a second of -70 dB hiss before and after each clip's tone
        wave, sr = sf.read(r["audio_path"])
        hiss = 1e-4 * np.random.default_rng(0).standard_normal(sr)
        sf.write(r["audio_path"], np.concatenate([hiss, wave, hiss]), sr)
    write_shards(records, tmp_path / "shards", progress=False)

    def frames(**options) -> dict[str, dict[str, int]]:
        dm = ShardDataModule(train=str(tmp_path / "shards"), val=str(tmp_path / "shards"), val_split="train",
                             num_workers=0, max_batch_size=4, **options)
        return {stage: {k: int(n) for b in getattr(dm, f"{stage}_dataloader")() for k, n in
                        zip(b["keys"], b["feature_lens"])} for stage in ("train", "val")}

    whole, trimmed = frames(), frames(trim_silence_db=40.0)
    assert trimmed["train"] == trimmed["val"] and whole["train"] == whole["val"]
    for key, n in whole["train"].items():
        assert abs(n - trimmed["train"][key] - 2 * (1.0 - 0.1) * 100) <= 3  # 2 x (1 s - the 0.1 s margin) at 100 fps
