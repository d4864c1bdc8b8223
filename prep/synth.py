"""A synthetic expressive-speech corpus made with espeak-ng: the data of the embedded demo.

Every clip is a sentence from the bank (prep/sentences.py) spoken by one of 20 espeak-ng voices in one
emotion, optionally in one speaking style. An emotion is a prosody profile (pitch level, pitch range, rate,
loudness, vocal effort, breathiness, tremor, clause intonation) scaled by a per-clip intensity and jittered, so
classes overlap as in real speech; a style is an offset on top of the emotion (a "fast" clip is faster than its
emotion's baseline). Validation and test use voices AND sentences that training never sees.

Rate goes to espeak-ng through SSML ``<prosody>``; pitch level and range (the voice's F0 floor and peak),
breathiness, tremor and whisper through a per-clip voice variant file in a private copy of espeak-ng's data folder
(its files are symlinked); loudness, spectral tilt (vocal effort), padding and a noise floor are applied in numpy.
Everything random is drawn from the seed while planning, so synthesis is a pure function of the plan and runs in a
process pool.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import tempfile
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
from scipy.signal import lfilter, resample_poly
from tqdm import tqdm

from clips.schema import empty_metadata
from clips.shard_writer import write_shards
from prep import sentences as sentences_module
from prep.sentences import Sentence, load_sentences

DATASET = "espeak-synth"
SPLITS = ("train", "val", "test")
SHOWCASE_SPLIT = "showcase"
SHOWCASE_SENTENCES = 3
CLIP_SHARES = {"train": 0.8, "val": 0.1, "test": 0.1}
SENTENCE_SHARES = {"val": 0.10, "test": 0.12}  # the rest (minus the showcase sentences) is for training
REFERENCE_RMS = 0.03  # a neutral, default-style clip at 0 dB gain (about -30 dBFS)


@dataclass(frozen=True)
class Voice:
    variant: str  # espeak-ng variant file in voices/!v
    base: str  # espeak-ng language voice (accent, intonation); "en" not "en-gb", which ignores the variant
    gender: str
    split: str
    level_db: float  # a voice's own loudness, so level is not identical across speakers
    pitch_hz: tuple[int, int]  # espeak-ng's "pitch base top" of the voice: its F0 floor and intonation peak

    @property
    def speaker(self) -> str:
        return f"espeak-{self.variant}-{self.base}"


VOICES: tuple[Voice, ...] = (
    Voice("f1", "en", "female", "train", 0.0, (140, 200)),
    Voice("f2", "en-us", "female", "train", 1.0, (142, 220)),
    Voice("f3", "en-gb-scotland", "female", "train", -1.0, (140, 240)),
    Voice("f4", "en-029", "female", "train", 0.5, (142, 200)),
    Voice("Annie", "en-us", "female", "train", -0.5, (120, 280)),
    Voice("belinda", "en-gb-x-rp", "female", "train", 1.5, (200, 247)),
    Voice("steph", "en-us-nyc", "female", "train", -1.5, (166, 200)),
    Voice("m1", "en-us", "male", "train", 0.5, (75, 109)),
    Voice("m2", "en", "male", "train", -1.0, (88, 115)),
    Voice("m3", "en-us", "male", "train", 0.0, (80, 122)),
    Voice("m4", "en-gb-scotland", "male", "train", 1.0, (70, 110)),
    Voice("m6", "en-029", "male", "train", -0.5, (82, 117)),
    Voice("m7", "en-gb-x-rp", "male", "train", 1.5, (75, 125)),
    Voice("Andy", "en-us-nyc", "male", "train", -1.5, (85, 110)),
    Voice("linda", "en", "female", "val", 0.5, (200, 247)),
    Voice("m8", "en-us", "male", "val", -0.5, (65, 102)),
    Voice("f5", "en-us", "female", "test", -1.0, (160, 228)),
    Voice("aunty", "en", "female", "test", 1.0, (175, 215)),
    Voice("travis", "en-us", "male", "test", 0.0, (75, 120)),
    Voice("m5", "en-gb-x-rp", "male", "test", 0.5, (82, 118)),
)


@dataclass(frozen=True)
class Profile:
    """How a full-intensity emotion (or a style) changes a voice. Factors multiply, dB and the rest add."""

    pitch: float = 1.0  # pitch level factor
    range: float = 1.0  # pitch range factor
    rate: float = 1.0  # speaking rate factor
    gain_db: float = 0.0
    effort: float = 0.0  # spectral tilt: > 0 brighter (tense, loud), < 0 darker (lax, soft)
    breath: float = 0.0  # 0..1 aspiration noise mixed into voicing
    tremor: float = 0.0  # 0..1 pitch flutter
    whisper: bool = False
    endings: dict[str, float] = field(default_factory=lambda: {".": 1.0})  # clause intonation: . ! ?
    vad: tuple[float, float, float] = (3.0, 3.0, 3.0)  # valence, arousal, dominance at full intensity


EMOTION_PROFILES: dict[str, Profile] = {
    "neutral": Profile(vad=(3.0, 2.5, 3.0)),
    "happy": Profile(pitch=1.25, range=2.2, rate=1.12, gain_db=4.0, effort=0.4,
                     endings={".": 0.4, "!": 0.6}, vad=(4.4, 3.8, 3.5)),
    "sad": Profile(pitch=0.85, range=0.4, rate=0.68, gain_db=-7.0, effort=-0.9, breath=0.6,
                   vad=(1.6, 1.7, 2.0)),
    "angry": Profile(pitch=1.05, range=1.1, rate=1.22, gain_db=10.0, effort=1.5,
                     endings={".": 0.2, "!": 0.8}, vad=(1.7, 4.5, 4.3)),
    "surprised": Profile(pitch=1.5, range=3.2, rate=0.82, gain_db=2.0, effort=0.1,
                         endings={"?": 0.8, "!": 0.2}, vad=(3.6, 4.2, 3.0)),
    "fearful": Profile(pitch=1.35, range=0.7, rate=1.35, gain_db=-3.0, effort=-0.2, breath=0.4, tremor=0.7,
                       endings={".": 0.6, "?": 0.4}, vad=(1.8, 4.0, 1.6)),
}

# Styles are offsets on top of the emotion; the label is true relative to that emotion's own baseline.
STYLE_PROFILES: dict[str, Profile] = {
    "whispered": Profile(whisper=True, gain_db=-2.0),
    "fast": Profile(rate=1.3),
    "slow": Profile(rate=0.75),
    "loud": Profile(gain_db=5.0, effort=0.3),
    "soft": Profile(gain_db=-6.0, effort=-0.3),
    "high-pitched": Profile(pitch=1.25),
    "low-pitched": Profile(pitch=0.8),
}
DEFAULT_STYLE_SHARE = 0.6
STYLE_WEIGHTS = {name: 0.5 if name == "whispered" else 1.0 for name in STYLE_PROFILES}  # whisper hides pitch: rarer
STYLE_AROUSAL = {"fast": 0.2, "slow": -0.2, "loud": 0.3, "soft": -0.3, "whispered": -0.3}
TAGGED_SENTENCE_SHARE = 0.1  # share of an emotion's clips spoken on a sentence whose words carry that emotion
INTENSITY = (0.7, 1.2)  # uniform range of how strongly a non-neutral clip shows its emotion


@dataclass(frozen=True)
class ClipPlan:
    """Everything needed to render one clip; drawn from the seed, so rendering is deterministic."""

    id: str
    split: str
    transcript: str
    voice: Voice
    emotion: str
    styles: tuple[str, ...]
    intensity: float
    pitch: float
    range: float
    rate: float
    gain_db: float
    effort: float
    breath: float
    tremor: float
    whisper: bool
    ending: str
    vad: tuple[float, float, float]
    pad_s: tuple[float, float]
    noise_db: float  # noise floor, dB below the reference level
    noise_seed: int


def _compose(emotion: str, styles: tuple[str, ...], intensity: float, rng: np.random.Generator) -> dict[str, Any]:
    """The acoustic parameters of a clip: the emotion scaled by intensity, jittered, then the styles on top."""
    prof = EMOTION_PROFILES[emotion]
    jitter = rng.normal(size=4)
    params = {
        "pitch": prof.pitch ** intensity * math.exp(0.06 * jitter[0]),
        "range": prof.range ** intensity * math.exp(0.18 * jitter[1]),
        "rate": prof.rate ** intensity * math.exp(0.05 * jitter[2]),
        "gain_db": prof.gain_db * intensity + 1.5 * jitter[3],
        "effort": prof.effort * intensity,
        "breath": prof.breath * intensity,
        "tremor": prof.tremor * intensity,
        "whisper": False,
    }
    for name in styles:
        style = STYLE_PROFILES[name]
        params["pitch"] *= style.pitch
        params["rate"] *= style.rate
        params["gain_db"] += style.gain_db
        params["effort"] += style.effort
        params["whisper"] |= style.whisper
    return params


def _vad(emotion: str, styles: tuple[str, ...], intensity: float, rng: np.random.Generator) -> tuple[float, ...]:
    """Valence/arousal/dominance: neutral moved towards the emotion by its intensity, plus rater-like noise."""
    neutral, target = np.array(EMOTION_PROFILES["neutral"].vad), np.array(EMOTION_PROFILES[emotion].vad)
    vad = neutral + intensity * (target - neutral) + rng.normal(0.0, 0.25, size=3)
    vad[1] += sum(STYLE_AROUSAL.get(s, 0.0) for s in styles)
    return tuple(round(float(v), 2) for v in np.clip(vad, 1.0, 5.0))


def plan_clip(clip_id: str, split: str, sentence: Sentence, voice: Voice, emotion: str,
              styles: tuple[str, ...], intensity: float, rng: np.random.Generator) -> ClipPlan:
    """One clip's plan: ``emotion`` at ``intensity`` (1.0: the full profile) with ``styles`` on top, jittered
    and given its clause intonation, padding and noise floor from ``rng``."""
    endings = EMOTION_PROFILES[emotion].endings
    ending = str(rng.choice(list(endings), p=list(endings.values())))
    return ClipPlan(
        id=clip_id, split=split, transcript=sentence.text, voice=voice, emotion=emotion, styles=styles,
        intensity=round(intensity, 3), **_compose(emotion, styles, intensity, rng), ending=ending,
        vad=_vad(emotion, styles, intensity, rng),
        pad_s=(float(rng.uniform(0.05, 0.3)), float(rng.uniform(0.05, 0.3))),
        noise_db=float(rng.uniform(35.0, 50.0)), noise_seed=int(rng.integers(2**31)),
    )


def split_sentences(seed: int) -> dict[str, list[Sentence]]:
    """Disjoint sentence sets per split (tagged and ambiguous spread proportionally) plus the showcase ones."""
    rng = np.random.default_rng([seed, 1])
    bank = load_sentences()
    ambiguous = [s for s in bank if s.emotion_hint is None]
    tagged = [s for s in bank if s.emotion_hint is not None]
    rng.shuffle(ambiguous)
    rng.shuffle(tagged)
    out: dict[str, list[Sentence]] = {SHOWCASE_SPLIT: ambiguous[:SHOWCASE_SENTENCES]}
    ambiguous = ambiguous[SHOWCASE_SENTENCES:]
    for pool in (ambiguous, tagged):
        start = 0
        for split in ("val", "test"):
            count = round(SENTENCE_SHARES[split] * len(pool))
            out.setdefault(split, []).extend(pool[start:start + count])
            start += count
        out.setdefault("train", []).extend(pool[start:])
    return out


def _split_sizes(clips: int) -> dict[str, int]:
    val = round(CLIP_SHARES["val"] * clips)
    test = round(CLIP_SHARES["test"] * clips)
    return {"train": clips - val - test, "val": val, "test": test}


def plan_corpus(clips: int = 2400, seed: int = 0) -> list[ClipPlan]:
    """The clip plans of the whole corpus: ``clips`` clips over train/val/test plus the showcase clips."""
    if clips < 10 * len(EMOTION_PROFILES):
        raise ValueError(f"clips={clips} is too small: need at least {10 * len(EMOTION_PROFILES)} for every split "
                         f"to hold every emotion")
    rng = np.random.default_rng([seed, 0])
    sentences = split_sentences(seed)
    emotions = list(EMOTION_PROFILES)
    styles = list(STYLE_PROFILES)
    style_p = np.array([STYLE_WEIGHTS[s] for s in styles]) / sum(STYLE_WEIGHTS.values())
    plans: list[ClipPlan] = []
    for split, size in _split_sizes(clips).items():
        voices = [v for v in VOICES if v.split == split]
        pool = sentences[split]
        by_hint = {e: [s for s in pool if s.emotion_hint == e] for e in emotions}
        order = rng.permutation(np.resize(np.arange(len(emotions)), size))  # balanced emotions
        next_general, next_tagged = 0, dict.fromkeys(emotions, 0)
        for i, e_index in enumerate(order):
            emotion = emotions[e_index]
            if by_hint[emotion] and rng.random() < TAGGED_SENTENCE_SHARE:
                sentence = by_hint[emotion][next_tagged[emotion] % len(by_hint[emotion])]
                next_tagged[emotion] += 1
            else:
                if next_general % len(pool) == 0:
                    rng.shuffle(pool)
                sentence = pool[next_general % len(pool)]
                next_general += 1
            voice = voices[int(rng.integers(len(voices)))]
            style = () if rng.random() < DEFAULT_STYLE_SHARE else (styles[rng.choice(len(styles), p=style_p)],)
            intensity = 1.0 if emotion == "neutral" else float(rng.uniform(*INTENSITY))
            plans.append(plan_clip(f"synth-{len(plans):05d}", split, sentence, voice, emotion, style,
                                   intensity, rng))
    showcase_voice = next(v for v in VOICES if v.split == "test")
    for k, sentence in enumerate(sentences[SHOWCASE_SPLIT]):
        for emotion in emotions:  # full intensity, no jitter beyond the usual: the demo's side-by-side
            plans.append(plan_clip(f"synth-showcase-{k}-{emotion}", SHOWCASE_SPLIT, sentence, showcase_voice,
                                   emotion, (), 1.0, rng))
    return plans


# ---------------------------------------------------------------- rendering (runs in the worker processes)

def espeak_data_dir() -> Path:
    """espeak-ng's data folder, as the installed binary reports it; a clear error when espeak-ng is missing."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install -y espeak-ng); the synthetic corpus needs it")
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/x86_64-linux-gnu/espeak-ng-data"
    return Path(out.split("Data at:")[1].strip())


def espeak_version() -> str:
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("Data at:")[0].strip()


def _private_data_dir(root: Path) -> Path:
    """A copy of espeak-ng's data folder (symlinks) whose voices/!v accepts our per-clip variant files."""
    system = espeak_data_dir()
    data = root / "espeak-ng-data"
    (data / "voices" / "!v").mkdir(parents=True)
    for entry in system.iterdir():
        if entry.name != "voices":
            (data / entry.name).symlink_to(entry)
    for entry in (system / "voices").iterdir():
        if entry.name != "!v":
            (data / "voices" / entry.name).symlink_to(entry)
    for entry in (system / "voices" / "!v").iterdir():
        (data / "voices" / "!v" / entry.name).symlink_to(entry)
    return data


def _variant_text(plan: ClipPlan, variants: Path) -> str:
    """The voice's own variant file with this clip's voice quality appended (later lines override)."""
    lines = [(variants / plan.voice.variant).read_text(encoding="utf-8", errors="replace")]
    # Level and range through the voice's own F0 floor and peak: SSML <prosody range> saturates at 200 %.
    base, top = plan.voice.pitch_hz
    floor = base * plan.pitch
    lines.append(f"pitch {round(floor)} {round(floor + (top - base) * plan.pitch * plan.range)}")
    if plan.breath > 0:
        b = plan.breath
        lines.append("breath " + " ".join(str(round(v * b)) for v in (30, 30, 25, 20, 15, 10, 5, 5)))
    if plan.tremor > 0:
        lines.append(f"flutter {round(10 + 30 * plan.tremor)}")
    if plan.whisper:
        lines += ["voicing 17", "breath 75 75 50 40 15 10", "breathw 150 150 200 200 400 400"]
    return "\n".join(lines) + "\n"


def _ssml(plan: ClipPlan) -> str:
    text = plan.transcript.rstrip(".!?") + plan.ending
    return f'<speak><prosody rate="{round(100 * plan.rate)}%">{escape(text)}</prosody></speak>'


def _tilt(x: np.ndarray, effort: float) -> np.ndarray:
    """Vocal effort as spectral tilt, at unchanged RMS: high-frequency boost (> 0) or a one-pole low-pass (< 0)."""
    if effort > 0:
        y = x + 1.2 * effort * np.diff(x, prepend=x[:1])
    elif effort < 0:
        pole = min(0.85, -0.8 * effort)
        y = lfilter([1.0 - pole], [1.0, -pole], x)
    else:
        return x
    return y * (np.sqrt(np.mean(x**2)) / (np.sqrt(np.mean(y**2)) + 1e-12))


def render_clip(plan: ClipPlan, data_dir: Path, sample_rate: int = 16000) -> np.ndarray:
    """Synthesize one clip as float32 mono at ``sample_rate``."""
    variants = data_dir / "voices" / "!v"
    variant_name = f"c{zlib.crc32(plan.id.encode()):08x}"  # espeak-ng truncates long voice names
    (variants / variant_name).write_text(_variant_text(plan, variants), encoding="utf-8")
    wav_path = data_dir.parent / f"{plan.id}.wav"
    subprocess.run(
        ["espeak-ng", f"--path={data_dir.parent}", "-v", f"{plan.voice.base}+{variant_name}", "-m",
         "-w", str(wav_path), _ssml(plan)],
        check=True, capture_output=True)
    audio, native_rate = sf.read(wav_path, dtype="float64")
    wav_path.unlink()
    (variants / variant_name).unlink()
    if audio.size == 0 or not np.any(audio):
        raise RuntimeError(f"espeak-ng produced no audio for {plan.id} ({plan.transcript!r})")
    gcd = math.gcd(sample_rate, native_rate)
    audio = resample_poly(audio, sample_rate // gcd, native_rate // gcd)
    audio = _tilt(audio, plan.effort)
    level_db = plan.gain_db + plan.voice.level_db
    audio *= REFERENCE_RMS * 10 ** (level_db / 20) / (np.sqrt(np.mean(audio**2)) + 1e-12)
    pads = [np.zeros(int(p * sample_rate)) for p in plan.pad_s]
    audio = np.concatenate([pads[0], audio, pads[1]])
    rng = np.random.default_rng(plan.noise_seed)
    audio += rng.normal(0.0, REFERENCE_RMS * 10 ** (-plan.noise_db / 20), size=audio.size)
    return np.tanh(audio).astype(np.float32)  # soft saturation: the loudest clips clip like a real recorder


def _render_to_file(job: tuple[ClipPlan, str, str, int]) -> float:
    plan, data_dir, out_path, sample_rate = job
    audio = render_clip(plan, Path(data_dir), sample_rate)
    sf.write(out_path, audio, sample_rate, subtype="PCM_16")
    return audio.size / sample_rate


def _record(plan: ClipPlan, audio_path: Path, duration: float, sample_rate: int) -> dict[str, Any]:
    valence, arousal, dominance = plan.vad
    extra = {k: v for k, v in asdict(plan).items()
             if k in ("intensity", "pitch", "range", "rate", "gain_db", "effort", "breath", "tremor", "ending")}
    extra["voice"] = f"{plan.voice.base}+{plan.voice.variant}"
    return empty_metadata(
        id=plan.id, dataset=DATASET, speaker=plan.voice.speaker, gender=plan.voice.gender,
        duration=round(duration, 4), sample_rate=sample_rate, transcript=plan.transcript, emotion=plan.emotion,
        emotion_original=plan.emotion, valence=valence, arousal=arousal, dominance=dominance,
        style=list(plan.styles) or ["default"], split=plan.split, audio_path=str(audio_path.resolve()),
        extra=extra,
    )


def synthesize_plans(plans: list[ClipPlan], out_dir: str | Path, *, sample_rate: int = 16000,
                     workers: int = 2) -> list[dict[str, Any]]:
    """Render ``plans`` into ``out_dir/<id>.wav`` in a process pool; return their records in plan order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="paralign-espeak-") as tmp:
        data_dir = _private_data_dir(Path(tmp))
        jobs = [(p, str(data_dir), str(out_dir / f"{p.id}.wav"), sample_rate) for p in plans]
        with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
            durations = list(tqdm(pool.map(_render_to_file, jobs, chunksize=8), total=len(jobs),
                                  desc="synthesizing clips", unit="clip"))
    return [_record(p, out_dir / f"{p.id}.wav", d, sample_rate) for p, d in zip(plans, durations)]


def synthesize_corpus(out_dir: str | Path, *, clips: int = 2400, seed: int = 0, sample_rate: int = 16000,
                      workers: int = 2) -> list[dict[str, Any]]:
    """Synthesize the corpus into ``out_dir`` (one wav per clip); return the records (schema metadata +
    ``audio_path``), train/val/test plus the showcase split. Same seed, same files and labels."""
    return synthesize_plans(plan_corpus(clips, seed), out_dir, sample_rate=sample_rate, workers=workers)


# ---------------------------------------------------------------- the cached corpus on disk (wav files + shards)

STAMP = "synth.json"


def code_version() -> str:
    """A digest of everything that shapes the audio and labels: this module, the sentence bank, espeak-ng."""
    digest = hashlib.sha256()
    for path in (Path(__file__), Path(sentences_module.__file__), sentences_module.BANK_PATH):
        digest.update(path.read_bytes())
    digest.update(espeak_version().encode())
    return digest.hexdigest()[:16]


def corpus_state(out_dir: str | Path, clips: int, seed: int) -> str:
    """"complete" (DIR holds this very corpus), "partial" (an interrupted build of it), "absent" (nothing), or
    "other" (DIR holds a corpus made with other settings or code)."""
    stamp_path = Path(out_dir) / STAMP
    if not stamp_path.is_file():
        return "absent"
    stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
    if (stamp.get("clips"), stamp.get("seed"), stamp.get("code_version")) != (clips, seed, code_version()):
        return "other"
    return "complete" if stamp.get("complete") and (Path(out_dir) / "manifest.json").is_file() else "partial"


def build_synth_shards(out_dir: str | Path, *, clips: int = 2400, seed: int = 0, workers: int = 2) -> dict[str, Any]:
    """Synthesize the corpus into ``out_dir/audio`` and write its shards into ``out_dir``, unless ``out_dir``
    already holds it (then nothing is done). Returns the stamp (settings, clip count, hours, synthesis seconds).
    Raises FileExistsError when ``out_dir`` holds a corpus made with other settings or code."""
    out = Path(out_dir)
    state = corpus_state(out, clips, seed)
    if state == "other":
        raise FileExistsError(f"{out} holds a synthetic corpus made with other settings or code (see {out / STAMP});"
                              " use another folder or delete it")
    if state == "complete":
        return json.loads((out / STAMP).read_text(encoding="utf-8"))
    stamp = {"clips": clips, "seed": seed, "code_version": code_version(), "complete": False}
    out.mkdir(parents=True, exist_ok=True)
    (out / STAMP).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
    start = time.perf_counter()
    records = synthesize_corpus(out / "audio", clips=clips, seed=seed, workers=workers)
    stamp["synthesis_seconds"] = round(time.perf_counter() - start, 1)
    summary = write_shards(records, out)  # resumes by id after an interrupted build of this same corpus
    if summary.rejected:
        raise RuntimeError(f"the shard writer rejected synthetic clips ({dict(summary.rejected)}); "
                           f"see {out / 'rejects.jsonl'}")
    stamp.update(complete=True, records=len(records),
                 hours=round(sum(r["duration"] for r in records) / 3600, 3))
    (out / STAMP).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
    return stamp
