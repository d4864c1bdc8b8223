"""The synthetic espeak-ng corpus: sentence bank, plans, splits, labels, and that the profiles are real in the audio."""
from __future__ import annotations

import argparse
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from clips.schema import metadata_problems
from prep import synth
from prep.sentences import load_sentences, parse_bank

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


# ---------------------------------------------------------------- a small F0 tracker (YIN) and per-clip measures

def yin_f0(x: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 500.0) -> tuple[np.ndarray, float]:
    """F0 in Hz of the voiced frames, and the voiced share of the active frames (YIN, 10 ms hop)."""
    win = max_lag = int(sr / fmin)
    min_lag = int(sr / fmax)
    n = win + max_lag
    starts = np.arange(0, len(x) - n, sr // 100)
    frames = x[starts[:, None] + np.arange(n)[None, :]]
    energy = np.sqrt(np.mean(frames[:, :win] ** 2, axis=1))
    frames = frames[energy > 0.1 * energy.max()]
    size = 1 << int(np.ceil(np.log2(2 * n)))
    cross = np.fft.irfft(np.conj(np.fft.rfft(frames[:, :win], size)) * np.fft.rfft(frames, size), size)
    cum = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    lags = np.arange(1, max_lag + 1)
    diff = cum[:, win:win + 1] + (cum[:, lags + win] - cum[:, lags]) - 2 * cross[:, 1:max_lag + 1]
    cmndf = diff * lags / np.maximum(np.cumsum(diff, axis=1), 1e-12)  # index i is lag i + 1
    cmndf[:, :min_lag - 1] = 1.0
    below = cmndf < 0.15
    lag = np.where(below.any(axis=1), below.argmax(axis=1), cmndf.argmin(axis=1))
    rows = np.arange(len(lag))
    for _ in range(max_lag):  # from the first dip under the threshold down to its local minimum
        step = (lag + 1 < max_lag) & (cmndf[rows, np.minimum(lag + 1, max_lag - 1)] < cmndf[rows, lag])
        if not step.any():
            break
        lag = lag + step
    voiced = cmndf[rows, lag] < 0.3
    return sr / (lag[voiced] + 1), float(voiced.mean())


def measure(path: str) -> dict[str, float]:
    x, sr = sf.read(path, dtype="float64")
    f0, voiced = yin_f0(x, sr)
    log_f0 = np.log2(f0) if f0.size >= 5 else np.full(5, np.nan)
    return {"log_f0": float(np.median(log_f0)), "range": float(np.subtract(*np.percentile(log_f0, [90, 10]))),
            "rms_db": 20 * float(np.log10(np.sqrt(np.mean(x**2)))), "voiced": voiced, "seconds": x.size / sr}


def test_yin_tracks_a_known_pitch():
    sr = 16000
    t = np.arange(sr) / sr
    tone = sum(np.sin(2 * np.pi * k * 150.0 * t) / k for k in range(1, 6))  # harmonic-rich 150 Hz
    f0, voiced = yin_f0(tone, sr)
    assert voiced > 0.95 and abs(np.median(f0) - 150.0) < 3.0
    _, noise_voiced = yin_f0(np.random.default_rng(0).standard_normal(sr), sr)
    assert noise_voiced < 0.2


# ---------------------------------------------------------------- sentence bank

def test_sentence_bank_is_large_unique_and_mostly_ambiguous():
    bank = load_sentences()
    texts = [s.text for s in bank]
    assert len(bank) >= 400
    assert len(set(t.lower() for t in texts)) == len(texts)
    assert all(5 <= len(t.split()) <= 14 for t in texts)
    hints = Counter(s.emotion_hint for s in bank)
    assert hints[None] > 0.75 * len(bank)  # most words leave the emotion to the voice
    assert {"happy", "sad", "angry", "surprised", "fearful"} <= set(hints)


def test_bank_parser_names_bad_lines():
    with pytest.raises(ValueError, match=":2: duplicate of line 1"):
        parse_bank(["We sold the old car last month.", "we sold the old car, last month"])
    with pytest.raises(ValueError, match="unknown emotion label 'glum'"):
        parse_bank(["[glum] We sold the old car last month."])
    with pytest.raises(ValueError, match="3 words"):
        parse_bank(["Far too short."])


# ---------------------------------------------------------------- plans: determinism, balance, splits, labels

@pytest.fixture(scope="module")
def plans() -> list[synth.ClipPlan]:
    return synth.plan_corpus(clips=600, seed=0)


def test_plans_are_deterministic_from_the_seed(plans):
    assert synth.plan_corpus(clips=600, seed=0) == plans
    other = synth.plan_corpus(clips=600, seed=1)
    assert [(p.transcript, p.emotion) for p in other] != [(p.transcript, p.emotion) for p in plans]


def test_emotions_balanced_and_styles_mixed(plans):
    for split in synth.SPLITS:
        counts = Counter(p.emotion for p in plans if p.split == split)
        assert set(counts) == set(synth.EMOTION_PROFILES) and max(counts.values()) - min(counts.values()) <= 1
    styles = Counter(p.styles[0] if p.styles else "default" for p in plans if p.split == "train")
    assert set(styles) == set(synth.STYLE_PROFILES) | {"default"}
    assert 0.5 < styles["default"] / sum(styles.values()) < 0.7


def test_splits_hold_out_voices_and_sentences(plans):
    by_split = {s: [p for p in plans if p.split == s] for s in (*synth.SPLITS, synth.SHOWCASE_SPLIT)}
    assert [len(by_split[s]) for s in synth.SPLITS] == [480, 60, 60]
    train_voices = {p.voice for p in by_split["train"]}
    train_texts = {p.transcript for p in by_split["train"]}
    for split in ("val", "test", synth.SHOWCASE_SPLIT):
        assert not {p.voice for p in by_split[split]} & train_voices, split
        assert not {p.transcript for p in by_split[split]} & train_texts, split
    assert not {p.transcript for p in by_split["val"]} & {p.transcript for p in by_split["test"]}
    showcase = by_split[synth.SHOWCASE_SPLIT]
    assert len({p.transcript for p in showcase}) == synth.SHOWCASE_SENTENCES
    assert len({p.voice for p in showcase}) == 1
    for text in {p.transcript for p in showcase}:
        assert sorted(p.emotion for p in showcase if p.transcript == text) == sorted(synth.EMOTION_PROFILES)
    genders = Counter(v.gender for v in synth.VOICES)
    assert len(synth.VOICES) >= 12 and genders["female"] >= 6 and genders["male"] >= 6
    assert {v.gender for v in synth.VOICES if v.split == "test"} == {"female", "male"}


def test_vad_labels_follow_the_emotion(plans):
    def mean(emotion: str, dim: int) -> float:
        return float(np.mean([p.vad[dim] for p in plans if p.emotion == emotion]))

    assert all(1.0 <= v <= 5.0 for p in plans for v in p.vad)
    assert mean("happy", 0) > mean("neutral", 0) + 0.8 > mean("sad", 0) + 1.2
    assert mean("angry", 1) > mean("neutral", 1) + 1.0 and mean("sad", 1) < mean("neutral", 1)
    assert mean("angry", 2) > mean("fearful", 2) + 1.5
    assert len({p.vad for p in plans if p.emotion == "happy"}) > 50  # noisy, not one value per class


def test_too_few_clips_is_refused():
    with pytest.raises(ValueError, match="too small"):
        synth.plan_corpus(clips=20)


# ---------------------------------------------------------------- audio: the profiles are real

SENTENCES = ("We need to talk about the results.", "The train leaves in about ten minutes.",
             "I read your message this morning.")


def _probe_plans() -> list[synth.ClipPlan]:
    """Every emotion on 3 sentences x 1 female + 1 male voice, and style pairs on the neutral male voice."""
    rng = np.random.default_rng(7)
    bank = {s.text: s for s in load_sentences()}
    female, male = (next(v for v in synth.VOICES if v.variant == name) for name in ("f2", "m3"))
    plans = []
    for k, text in enumerate(SENTENCES):
        for voice in (female, male):
            for emotion in synth.EMOTION_PROFILES:
                plans.append(synth.plan_clip(f"emo-{k}-{voice.variant}-{emotion}", "test", bank[text], voice,
                                             emotion, (), 1.0, rng))
        for style in synth.STYLE_PROFILES:
            plans.append(synth.plan_clip(f"style-{k}-{style}", "test", bank[text], male, "neutral", (style,), 1.0,
                                         rng))
    return plans


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> list[dict]:
    """The records of the probe clips, each with its acoustic measures under "m"."""
    records = synth.synthesize_plans(_probe_plans(), tmp_path_factory.mktemp("probe"), workers=2)
    for record in records:
        record["m"] = measure(record["audio_path"])
    return records


def _mean(probe: list[dict], measure_name: str, **where) -> float:
    values = [r["m"][measure_name] for r in probe
              if all((r["style"] == [v] if k == "style" else r[k] == v) for k, v in where.items())]
    assert values, where
    return float(np.mean(values))


@needs_espeak
@pytest.mark.slow
def test_records_are_valid_and_clips_have_a_sane_length(probe):
    assert len(probe) == 3 * (2 * len(synth.EMOTION_PROFILES) + len(synth.STYLE_PROFILES))
    for record in probe:
        assert metadata_problems({k: v for k, v in record.items() if k != "m"}) == [], record["id"]
        assert record["dataset"] == "espeak-synth" and record["sample_rate"] == 16000
        assert 1.0 < record["duration"] < 6.0 and Path(record["audio_path"]).is_file()


@needs_espeak
@pytest.mark.slow
def test_emotion_profiles_are_real_in_f0_rms_and_duration(probe):
    f0 = {e: _mean(probe, "log_f0", emotion=e, style="default") for e in synth.EMOTION_PROFILES}
    assert f0["sad"] < f0["neutral"] < f0["happy"] < f0["surprised"]
    assert f0["fearful"] > f0["neutral"] + 0.2  # octaves
    spread = {e: _mean(probe, "range", emotion=e, style="default") for e in synth.EMOTION_PROFILES}
    assert spread["surprised"] > spread["neutral"] > spread["sad"]
    assert spread["happy"] > spread["neutral"]
    rms = {e: _mean(probe, "rms_db", emotion=e, style="default") for e in synth.EMOTION_PROFILES}
    assert rms["angry"] > rms["happy"] > rms["neutral"] > rms["fearful"] > rms["sad"]
    seconds = {e: _mean(probe, "seconds", emotion=e, style="default") for e in synth.EMOTION_PROFILES}
    assert seconds["sad"] > seconds["neutral"] > seconds["angry"] > seconds["fearful"]
    assert (_mean(probe, "log_f0", gender="female", style="default")
            > _mean(probe, "log_f0", gender="male", style="default") + 0.5)


@needs_espeak
@pytest.mark.slow
def test_styles_are_real_relative_to_the_same_emotion(probe):
    neutral = {"emotion": "neutral"}
    assert _mean(probe, "voiced", style="whispered", **neutral) < 0.3 < _mean(probe, "voiced", **neutral)
    assert _mean(probe, "rms_db", style="loud") > _mean(probe, "rms_db", style="soft") + 8
    assert _mean(probe, "log_f0", style="high-pitched") > _mean(probe, "log_f0", style="low-pitched") + 0.4
    for k in range(len(SENTENCES)):  # the same sentence and voice: fast is shorter than slow
        fast, slow = (next(r for r in probe if r["id"] == f"style-{k}-{s}") for s in ("fast", "slow"))
        assert fast["m"]["seconds"] < 0.75 * slow["m"]["seconds"]


@needs_espeak
@pytest.mark.slow
def test_synthesis_is_deterministic(tmp_path):
    plans = synth.plan_corpus(clips=60, seed=3)[:4]
    first = synth.synthesize_plans(plans, tmp_path / "a", workers=2)
    second = synth.synthesize_plans(plans, tmp_path / "b", workers=1)
    for a, b in zip(first, second):
        assert Path(a["audio_path"]).read_bytes() == Path(b["audio_path"]).read_bytes()
        assert {k: v for k, v in a.items() if k != "audio_path"} == {k: v for k, v in b.items() if k != "audio_path"}


# ---------------------------------------------------------------- the command and its cache

@needs_espeak
@pytest.mark.slow
def test_synth_command_writes_shards_and_is_cached(tmp_path, capsys):
    from paralign.commands import synth as command

    args = argparse.Namespace(out=tmp_path / "corpus", clips=60, seed=0, workers=2)
    assert command.run(args) == 0
    manifest = (tmp_path / "corpus" / "manifest.json").read_text()
    assert '"samples": 78' in manifest  # 60 clips + 3 showcase sentences x 6 emotions
    assert sorted(p.name for p in (tmp_path / "corpus").glob("*.tar")) == [
        "showcase-000000.tar", "test-000000.tar", "train-000000.tar", "val-000000.tar"]
    capsys.readouterr()
    assert command.run(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="other settings"):
        command.run(argparse.Namespace(out=tmp_path / "corpus", clips=66, seed=0, workers=2))


# ---------------------------------------------------------------- separability with hand features (de-risks the demo)

def hand_features(path: str, words: int) -> np.ndarray:
    """F0 level / spread / jitter proxy, voicing, loudness level and spread, time per word, brightness."""
    x, sr = sf.read(path, dtype="float64")
    f0, voiced = yin_f0(x, sr)
    log_f0 = np.log2(f0) if f0.size >= 5 else np.full(5, 7.0)
    n, hop = int(0.025 * sr), int(0.01 * sr)
    frames = x[np.arange(0, x.size - n, hop)[:, None] + np.arange(n)[None, :]]
    rms = np.sqrt(np.mean(frames**2, axis=1))
    active = rms > 0.1 * rms.max()
    db = 20 * np.log10(rms[active] + 1e-9)
    power = np.abs(np.fft.rfft(frames[active] * np.hanning(n), axis=1)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / sr)
    centroid = (power * freqs).sum(axis=1) / (power.sum(axis=1) + 1e-12)
    tilt = np.log((power[:, freqs > 2000].sum() + 1e-9) / (power[:, freqs < 1000].sum() + 1e-9))
    q10, q25, q75, q90 = np.percentile(log_f0, [10, 25, 75, 90])
    return np.array([np.median(log_f0), q90 - q10, q75 - q25, np.std(np.diff(log_f0)), voiced, np.median(db),
                     np.percentile(db, 95), np.std(db), active.sum() * hop / sr / words, x.size / sr / words,
                     np.log(centroid.mean()), tilt])


def held_out_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                      steps: int = 3000) -> float:
    """Multinomial logistic regression (numpy, full-batch gradient descent) on standardised features."""
    mu, sd = train_x.mean(axis=0), train_x.std(axis=0) + 1e-9
    z, zt = (train_x - mu) / sd, (test_x - mu) / sd
    classes = int(train_y.max()) + 1
    w, b = np.zeros((z.shape[1], classes)), np.zeros(classes)
    onehot = np.eye(classes)[train_y]
    for _ in range(steps):
        logits = z @ w + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        grad = (p / p.sum(axis=1, keepdims=True) - onehot) / len(z)
        w -= 0.5 * (z.T @ grad + 1e-3 * w)
        b -= 0.5 * grad.sum(axis=0)
    return float(((zt @ w + b).argmax(axis=1) == test_y).mean())


def corpus_separability(records: list[dict]) -> float:
    """Train on the train split, score on the test split (unseen voices and sentences)."""
    emotions = sorted(synth.EMOTION_PROFILES)
    data = {}
    for split in ("train", "test"):
        rows = [r for r in records if r["split"] == split]
        data[split] = (np.array([hand_features(r["audio_path"], len(r["transcript"].split())) for r in rows]),
                       np.array([emotions.index(r["emotion"]) for r in rows]))
    return held_out_accuracy(*data["train"], *data["test"])


@needs_espeak
@pytest.mark.slow
def test_emotions_separate_on_unseen_voices_and_sentences(tmp_path):
    records = synth.synthesize_corpus(tmp_path, clips=600, seed=0)  # 480 train, 60 test clips
    chance = 1 / len(synth.EMOTION_PROFILES)
    assert corpus_separability(records) > max(0.7, 4 * chance)
