"""``paralign infer``: a user's own recordings in, the frozen LLM's replies out."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from datamodules.audio import audio_problem, load_audio
from datamodules.batching import pad_features
from datamodules.features import build_features
from datamodules.metadata import MetadataSpec, metadata_text, with_metadata
from datamodules.tasks import DEFAULT_INSTRUCTIONS
from lightning_modules.speech_llm import SpeechLLM
from paralign.checkpoint_io import CheckpointError, read_checkpoint
from paralign.evaluate import load_trained
from paralign.perceive import perceived_emotions


class InferenceError(ValueError):
    """An input the model cannot be asked about (unreadable, empty or silent audio, a bad prompt)."""


def recipe_of_checkpoint(ckpt: str | Path) -> DictConfig:
    """The resolved recipe saved with the run (``config.yaml`` beside ``checkpoints/``), else in the checkpoint."""
    path = Path(ckpt)
    saved = path.resolve().parents[1] / "config.yaml"
    if saved.exists():
        from paralign.config import load_recipe

        return load_recipe(saved)
    recipe = read_checkpoint(path).get("hyper_parameters", {}).get("recipe")
    if recipe is None:
        raise CheckpointError(f"{path}: no config.yaml beside its checkpoints/ folder and no recipe inside it")
    return OmegaConf.create(recipe)


def user_template(task: str | None, prompt: str | None) -> str:
    if prompt:
        return prompt if "{speech}" in prompt else "{speech}\n" + prompt
    if task not in DEFAULT_INSTRUCTIONS or task == "qa":
        raise InferenceError(f"--task must be one of response, emotion, style, asr (got {task!r}); or give --prompt")
    return DEFAULT_INSTRUCTIONS[task][0]


MIN_SECONDS, MAX_SECONDS = 0.1, 60.0
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")  # what a folder given as --audio contributes


def audio_inputs(paths: list[str]) -> list[str]:
    """The files to answer: each path as given, a folder as its own audio files (not its subfolders'), in name
    order. An empty folder stays in the list, to be answered with its own error."""
    files = []
    for path in paths:
        found = sorted(str(p) for p in Path(path).iterdir()
                       if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES) if Path(path).is_dir() else []
        files += found or [path]
    return files


def load_wave(path: str | Path, sample_rate: int) -> np.ndarray:
    if Path(path).is_dir():
        raise InferenceError(f"{path}: a folder with no .wav, .flac or .ogg file")
    if not Path(path).is_file():
        raise InferenceError(f"{path}: no such file")
    try:
        wave, sr = load_audio(str(path), sample_rate)
    except Exception as err:  # soundfile raises several types for unreadable files
        raise InferenceError(f"{path}: cannot read audio ({err})") from None
    problem = audio_problem(wave, sr, min_s=MIN_SECONDS, max_s=MAX_SECONDS)
    if problem:
        limit = {"too_long": f" ({wave.size / sr:.1f} s; at most {MAX_SECONDS:g} s: cut it into shorter clips)",
                 "too_short": f" ({wave.size / sr:.2f} s; at least {MIN_SECONDS:g} s)"}.get(problem, "")
        raise InferenceError(f"{path}: {problem.replace('_', ' ')}{limit}")
    return wave


MetadataFor = Callable[[np.ndarray], str]  # a clip's waveform -> the metadata text shown next to its speech


def predicted_metadata(model: SpeechLLM, cfg: DictConfig, spec: MetadataSpec) -> MetadataFor:
    """Method 2 (explicit) on a user's recording, which has no labels: the metadata the model's own emotion
    classifier head predicts (dimensional scores where the recipe's train shards give emotion centroids)."""
    from datamodules.shard_writer import shard_files
    from prep.label_prediction import LabelPredictor, emotion_centroids

    if "emotion" not in model.classifiers:
        raise InferenceError("this model was trained with metadata in its prompt but has no emotion classifier "
                             "head to predict it: give --metadata '[emotion: ...; valence ..., ...]'")
    shards = shard_files(cfg.data.dir, "train") if Path(cfg.data.dir).is_dir() else []
    predictor = LabelPredictor(model, emotion_centroids(shards) if shards else {}, model_id="own head")
    fields = MetadataSpec("predicted", spec.fields)
    return lambda wave: metadata_text({"extra": {"predicted": predictor.predict(torch.from_numpy(wave))}}, fields)


@dataclass
class Answer:
    path: str
    reply: str | None = None
    error: str | None = None  # why the file got no reply (one line naming it)
    heard: str | None = None  # Whisper's transcript, where the model reads the words (prompt.content: transcript)
    perceived: str | None = None  # the emotion the model named before replying (prompt.perceive)


def answer_batches(model: SpeechLLM, cfg: DictConfig, audio: list[str], template: str,
                   metadata: MetadataFor | None = None, batch_size: int = 8, **generation) -> Iterator[list[Answer]]:
    """The answers to ``audio``, in order, one batch of ``batch_size`` files at a time: memory stays bounded and
    replies come as they are ready. A file that cannot be asked about gets its error; the rest are answered.
    ``metadata``: the text shown next to each clip's speech (method 2, explicit). A model that reads the words
    (``prompt.content: transcript``) gets Whisper's transcript of each file, made here as in training."""
    features = build_features(cfg)
    transcriber = None
    if model.llm.prompter.framing.content == "transcript":
        from lightning_modules.whisper_transcriber import WhisperTranscriber
        from paralign.data import asr_model

        transcriber = WhisperTranscriber.load(asr_model(cfg), cfg.encoder.cache_dir, batch_size=batch_size)
    for start in range(0, len(audio), batch_size):
        yield _answer_batch(model, cfg, audio[start:start + batch_size], template, metadata, features, generation,
                            transcriber)


def _answer_batch(model: SpeechLLM, cfg: DictConfig, paths: list[str], template: str,
                  metadata: MetadataFor | None, features: Callable, generation: dict,
                  transcriber: Callable[[list[np.ndarray]], list[str]] | None = None) -> list[Answer]:
    answers, waves = [Answer(path) for path in paths], []
    for answer in answers:
        try:
            waves.append(load_wave(answer.path, cfg.data.sample_rate))
        except InferenceError as err:
            answer.error = str(err)
    readable = [a for a in answers if a.error is None]
    if transcriber is not None and waves:
        for answer, words in zip(readable, transcriber(waves)):
            answer.heard = words
    examples = []
    framing = model.llm.prompter.framing
    for answer, wave in zip(readable, waves):
        user = with_metadata(template, metadata(wave)) if metadata else template
        if answer.heard is not None:
            user = framing.student_template(user, answer.heard)
        parts = model.llm.prompter.prompt_parts(user)
        examples.append({"key": str(len(examples)), "features": features(wave), "prefix": parts.prefix,
                         "suffix": parts.suffix, "template": user, "words": answer.heard})
    if not examples:
        return answers
    batch = pad_features(examples)
    cues = None
    if framing.perceive and template == DEFAULT_INSTRUCTIONS["response"][0]:  # a reply: the feeling named first
        cues = perceived_emotions(model, batch, rows=list(range(len(examples))))
    replies, perceived = iter(model.generate(batch, cues=cues, **generation)), iter(cues or [None] * len(examples))
    for answer in answers:
        if answer.error is None:
            answer.reply, answer.perceived = next(replies), next(perceived)
    return answers


def load_for_inference(ckpt: str | Path) -> tuple[SpeechLLM, DictConfig]:
    cfg = recipe_of_checkpoint(ckpt)
    return load_trained(cfg, ckpt), cfg
