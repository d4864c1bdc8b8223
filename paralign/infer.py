"""``paralign infer``: a user's own recordings in, the frozen LLM's replies out."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from datamodules.audio import audio_problem, load_audio
from datamodules.batching import pad_features
from datamodules.features import build_features
from datamodules.metadata import MetadataSpec, metadata_text, with_metadata
from datamodules.tasks import DEFAULT_INSTRUCTIONS
from lightning_modules.speech_llm import SpeechLLM
from paralign.evaluate import load_trained


class InferenceError(ValueError):
    """An input the model cannot be asked about (unreadable, empty or silent audio, a bad prompt)."""


def recipe_of_checkpoint(ckpt: str | Path) -> DictConfig:
    """The resolved recipe saved with the run (``config.yaml`` beside ``checkpoints/``), else in the checkpoint."""
    path = Path(ckpt)
    saved = path.resolve().parents[1] / "config.yaml"
    if saved.exists():
        from paralign.config import load_recipe

        return load_recipe(saved)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return OmegaConf.create(state["hyper_parameters"]["recipe"])


def user_template(task: str | None, prompt: str | None) -> str:
    if prompt:
        return prompt if "{speech}" in prompt else "{speech}\n" + prompt
    if task not in DEFAULT_INSTRUCTIONS or task == "qa":
        raise InferenceError(f"--task must be one of response, emotion, style, asr (got {task!r}); or give --prompt")
    return DEFAULT_INSTRUCTIONS[task][0]


MIN_SECONDS, MAX_SECONDS = 0.1, 60.0


def load_wave(path: str | Path, sample_rate: int):
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


def load_clip(path: str | Path, sample_rate: int, features: Callable) -> torch.Tensor:
    """A user's recording as the model's input, through the same features as its training data."""
    return features(load_wave(path, sample_rate))


def predicted_metadata(model: SpeechLLM, cfg: DictConfig, audio: list[str], spec: MetadataSpec) -> list[str]:
    """Method 2 (explicit) on a user's recording, which has no labels: the metadata the model's own emotion
    classifier head predicts (dimensional scores where the recipe's train shards give emotion centroids)."""
    from datamodules.shard_writer import shard_files
    from prep.label_prediction import LabelPredictor, emotion_centroids

    if "emotion" not in model.classifiers:
        raise InferenceError("this model was trained with metadata in its prompt but has no emotion classifier "
                             "head to predict it: give --metadata '[emotion: ...; valence ..., ...]'")
    shards = shard_files(cfg.data.dir, "train") if Path(cfg.data.dir).is_dir() else []
    predictor = LabelPredictor(model, emotion_centroids(shards) if shards else {}, model_id="own head")
    texts = []
    for path in audio:
        wave = torch.from_numpy(load_wave(path, cfg.data.sample_rate))
        texts.append(metadata_text({"extra": {"predicted": predictor.predict(wave)}},
                                   MetadataSpec("predicted", spec.fields)))
    return texts


def infer(model: SpeechLLM, cfg: DictConfig, audio: list[str], template: str, metadata: list[str] | None = None,
          **generation) -> list[str]:
    """One reply per audio file, generated in one batch; ``metadata``: one text per file shown next to the
    speech (method 2, explicit)."""
    templates = [with_metadata(template, m) for m in metadata] if metadata else [template] * len(audio)
    features = build_features(cfg)
    examples = []
    for i, (path, user_turn) in enumerate(zip(audio, templates)):
        parts = model.llm.prompter.prompt_parts(user_turn)
        examples.append({"key": str(i), "features": load_clip(path, cfg.data.sample_rate, features),
                         "prefix": parts.prefix, "suffix": parts.suffix})
    batch = pad_features(examples)
    return model.generate(batch, **generation)


def load_for_inference(ckpt: str | Path) -> tuple[SpeechLLM, DictConfig]:
    cfg = recipe_of_checkpoint(ckpt)
    return load_trained(cfg, ckpt), cfg
