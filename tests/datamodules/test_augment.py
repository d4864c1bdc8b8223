"""Training-only waveform augmentation: each effect measured, determinism, the loader hook and recipe checks."""
import pickle
import random

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from datamodules.augment import Augmenter, build_augment, noise_segment
from datamodules.datamodule import ShardDataModule
from paralign.recipe_loading import RecipeError, load_recipe
from prep.tiny_corpus import build_tiny_corpus

SR = 16000


def _sine(freq=440.0, seconds=1.0, amplitude=0.1):
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _power(x):
    return float(np.mean(np.square(np.asarray(x, dtype=np.float64))))


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_duration_and_pitch_together(factor):
    wave = _sine(440.0)
    out = Augmenter(speed_prob=1.0, speeds=[factor])(wave, SR, random.Random(0))
    assert out.dtype == np.float32 and out.ndim == 1 and np.isfinite(out).all()
    assert abs(out.size - wave.size / factor) <= 1
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    peak_hz = np.argmax(spectrum) * SR / out.size
    assert abs(peak_hz - 440.0 * factor) < 1.5


@pytest.mark.parametrize("snr", [10.0, 17.5, 30.0])
def test_noise_is_added_at_exactly_the_drawn_snr(snr):
    wave = _sine(amplitude=0.1)
    augment = Augmenter(noise_prob=1.0, snr_min=snr, snr_max=snr)
    for seed in range(6):  # white and pink both come up
        out = augment(wave, SR, random.Random(seed))
        noise = out.astype(np.float64) - wave
        assert abs(10 * np.log10(_power(wave) / _power(noise)) - snr) < 0.1
        assert np.isfinite(out).all()


def test_noise_from_a_folder_of_recordings(tmp_path):
    recording = np.random.default_rng(0).uniform(-0.5, 0.5, 8000 * 3)
    sf.write(tmp_path / "hum.flac", recording, 8000)  # another sample rate, longer than the clip: a resampled stretch
    assert noise_segment(str(tmp_path / "hum.flac"), 12345, SR, np.random.default_rng(1)).shape == (12345,)
    wave = _sine(amplitude=0.1, seconds=4.0)  # longer than the recording: looped
    augment = Augmenter(noise_prob=1.0, snr_min=5.0, snr_max=5.0, noise_dir=str(tmp_path))
    for seed in range(6):
        noise = augment(wave, SR, random.Random(seed)).astype(np.float64) - wave
        assert abs(10 * np.log10(_power(wave) / _power(noise)) - 5.0) < 0.1
    with pytest.raises(FileNotFoundError, match="noise_dir"):
        Augmenter(noise_dir=str(tmp_path / "nothing"))


def test_gain_scales_and_never_clips():
    augment = Augmenter(gain_prob=1.0, gain_min_db=6.0, gain_max_db=6.0)
    quiet = _sine(amplitude=0.2)
    np.testing.assert_allclose(augment(quiet, SR, random.Random(0)), quiet * 2.0, rtol=0.01, atol=1e-6)
    loud = augment(_sine(amplitude=0.8), SR, random.Random(0))
    assert abs(float(np.abs(loud).max()) - 0.99) < 1e-4  # scaled to peak 0.99, not hard-clipped ...
    np.testing.assert_allclose(loud / np.abs(loud).max(), _sine(amplitude=1.0), atol=1e-4)  # ... so not distorted
    gains = [np.abs(Augmenter(gain_prob=1.0)(quiet, SR, random.Random(s))).max() / 0.2 for s in range(50)]
    assert 10 ** (-6 / 20) - 1e-3 <= min(gains) < 0.8 and 1.25 < max(gains) <= 10 ** (6 / 20) + 1e-3


def test_reverb_smears_a_click_into_a_decaying_tail_at_the_same_rms():
    click = np.zeros(SR, dtype=np.float32)
    at = SR // 5
    click[at] = 0.5
    out = Augmenter(reverb_prob=1.0, rt60_min=0.5, rt60_max=0.5)(click, SR, random.Random(0))
    assert out.shape == click.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(out[:at]).max() < 1e-9 and int(np.argmax(np.abs(out))) == at  # causal, direct path first
    window = SR // 20

    def energy(start_s):
        start = at + int(start_s * SR)
        return float(np.square(out[start:start + window]).sum())
    assert energy(0.01) > 10 * energy(0.2) > 100 * energy(0.45) > 0  # ~60 dB per 0.5 s
    assert abs(np.sqrt(_power(out)) / np.sqrt(_power(click)) - 1) < 1e-4


def test_off_is_identity_and_seeds_decide():
    wave = _sine()
    assert np.array_equal(Augmenter()(wave, SR, random.Random(0)), wave)
    every = Augmenter(speed_prob=1.0, noise_prob=1.0, gain_prob=1.0, reverb_prob=1.0, speeds=[0.9, 1.1])
    first = every(wave, SR, random.Random("augment:0:0:clip"))
    assert np.array_equal(first, every(wave, SR, random.Random("augment:0:0:clip")))
    assert np.array_equal(first, pickle.loads(pickle.dumps(every))(wave, SR, random.Random("augment:0:0:clip")))
    other = every(wave, SR, random.Random("augment:0:1:clip"))
    assert other.shape != first.shape or not np.allclose(first, other)


def test_build_augment_follows_the_recipe():
    assert build_augment(load_recipe("recipes/tiny.yaml")) is None  # off by default
    assert build_augment(OmegaConf.create({"data": {"seed": 0}})) is None  # a run folder from before the key
    on = build_augment(load_recipe("recipes/tiny.yaml", ["data.augment.enabled=true", "data.augment.gain_prob=0.5"]))
    assert isinstance(on, Augmenter) and on.gain_prob == 0.5 and on.speeds == [0.9, 1.0, 1.1]


@pytest.mark.parametrize("override, message", [
    ("data.augment.noise_prob=1.5", "data.augment.noise_prob=1.5 must be in [0, 1]"),
    ("data.augment.snr_min=40", "data.augment.snr_min=40.0 is above data.augment.snr_max=30.0"),
    ("data.augment.speeds=[1.0,0]", "data.augment.speeds=[1.0, 0.0] must be"),
])
def test_recipe_rejects_bad_augment_settings(override, message):
    with pytest.raises(RecipeError) as error:
        load_recipe("recipes/tiny.yaml", [override])
    # the key, the rule, and where the value came from
    assert message in str(error.value) and str(error.value).startswith(f"command-line override {override}: ")


def _by_key(loader):
    """Each clip's features (the waveform does not travel in batches)."""
    return {key: features[:length] for batch in loader
            for key, features, length in zip(batch["keys"], batch["features"], batch["feature_lens"])}


def test_datamodule_augments_training_only(tmp_path):
    build_tiny_corpus(tmp_path, seed=0)
    options = dict(train=str(tmp_path), val=str(tmp_path), test=str(tmp_path), num_workers=0, max_batch_size=4)
    plain = ShardDataModule(**options)
    louder = ShardDataModule(**options, augment=Augmenter(gain_prob=1.0, gain_min_db=-6.0, gain_max_db=-6.0))
    for stage in ("val_dataloader", "test_dataloader"):
        expected, got = _by_key(getattr(plain, stage)()), _by_key(getattr(louder, stage)())
        assert expected and expected.keys() == got.keys()
        assert all(got[key].equal(features) for key, features in expected.items())
    expected, got = _by_key(plain.train_dataloader()), _by_key(louder.train_dataloader())
    assert len(expected) == 16 and expected.keys() == got.keys()
    # the waveform stays in the loader worker: only its features cross to the training process
    assert not {"audio", "sample_rate"} & set(next(iter(plain.train_dataloader())))
    for key, features in expected.items():
        # a gain g scales the power by g^2: every log-mel energy above the floor moves by 2 ln g
        above = features > -18
        shift = got[key][above] - features[above]
        np.testing.assert_allclose(shift.numpy(), 2 * np.log(10 ** (-6 / 20)), atol=1e-3)
    # the draws are per clip and epoch: a fresh module (a resumed run) augments its first epoch the same way
    noisy = dict(options, augment=Augmenter(noise_prob=1.0))
    first, again = (_by_key(ShardDataModule(**noisy).train_dataloader()) for _ in range(2))
    assert all(first[k].equal(again[k]) and not first[k].equal(expected[k]) for k in first)
