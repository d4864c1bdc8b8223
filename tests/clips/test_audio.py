
import numpy as np
import pytest
import soundfile as sf
import torch

from clips.audio import WavePrep, audio_problem, load_audio, set_level, trim_silence
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


def test_set_level_brings_any_recording_to_the_same_rms_without_clipping():
    sr = 16000
    tone = np.sin(2 * np.pi * 220 * np.arange(sr) / sr).astype(np.float32)
    for gain in (0.003, 0.1, 0.9):  # about -53, -23 and -4 dBFS
        out = set_level(gain * tone, -20.0)
        assert out.dtype == np.float32
        assert abs(20 * np.log10(np.sqrt(np.mean(out.astype(np.float64) ** 2))) + 20.0) < 0.01
        assert np.allclose(out, set_level(tone, -20.0), atol=1e-6)  # the recording's gain is gone
    loud = set_level(0.01 * tone, -1.0)  # a peak above full scale stays a float: the features read it whole
    assert np.abs(loud).max() > 1.0
    silent = np.zeros(sr, dtype=np.float32)
    assert set_level(silent, -20.0) is silent and set_level(silent[:0], -20.0).size == 0
    assert np.array_equal(WavePrep()(0.1 * tone, sr), 0.1 * tone)  # nothing asked, nothing done


def test_the_datamodule_trims_and_levels_every_clip_the_same_in_every_stage(tmp_path):
    """data.trim_silence_db: a clip padded with a second of near-silence at each end reaches the model as its
    speech and a margin, in training and evaluation alike; without it, whole. data.level_dbfs: the same clip
    recorded 26 dB quieter reaches the model as the same features."""
    from clips.shard_writer import safe_key, write_shards
    from datamodules.datamodule import ShardDataModule
    from tests.datamodules.conftest import make_records

    records = make_records(tmp_path / "audio", 4)
    for i, r in enumerate(records):  # a second of -70 dB hiss before and after each clip's tone
        wave, sr = sf.read(r["audio_path"])
        hiss = 1e-4 * np.random.default_rng(0).standard_normal(sr)
        sf.write(r["audio_path"], np.concatenate([hiss, wave, hiss]), sr, subtype="FLOAT")
    quiet = dict(records[0], id="quiet", audio_path=str(tmp_path / "audio" / "quiet.wav"))
    wave, sr = sf.read(records[0]["audio_path"])
    sf.write(quiet["audio_path"], 0.05 * wave, sr, subtype="FLOAT")  # the first clip, 26 dB quieter
    write_shards(records + [quiet], tmp_path / "shards", progress=False)

    def batches(prep: WavePrep) -> dict[str, dict[str, torch.Tensor]]:
        dm = ShardDataModule(train=str(tmp_path / "shards"), val=str(tmp_path / "shards"), val_split="train",
                             num_workers=0, max_batch_size=8, prep=prep)
        return {stage: {k: f[:int(n)] for b in getattr(dm, f"{stage}_dataloader")() for k, f, n in
                        zip(b["keys"], b["features"], b["feature_lens"])} for stage in ("train", "val")}

    whole, trimmed = batches(WavePrep()), batches(WavePrep(trim_db=40.0))
    for key, f in whole["train"].items():
        assert torch.equal(f, whole["val"][key]) and torch.equal(trimmed["train"][key], trimmed["val"][key])
        n = len(trimmed["train"][key])
        assert abs(len(f) - n - 2 * (1.0 - 0.1) * 100) <= 3  # 2 x (1 s - the 0.1 s margin) at 100 fps
    first = safe_key(records[0]["id"])

    def shift(features: dict[str, torch.Tensor]) -> float:
        """How much lower the quiet copy's log-mel is over the speech (its 16-bit hiss rounds to zero)."""
        a, b = features[first], features["quiet"]
        assert a.shape == b.shape
        return float((a - b)[20:-20].mean())

    assert abs(shift(trimmed["train"]) - 2 * np.log(20)) < 0.5  # 26 dB quieter: 6 lower (natural log of power)
    levelled = batches(WavePrep(trim_db=40.0, level_dbfs=-20.0))
    assert abs(shift(levelled["train"])) < 0.1 and abs(shift(levelled["val"])) < 0.1
