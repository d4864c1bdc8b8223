"""``paralign infer``: a user's own recordings in, the frozen LLM's replies out."""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from datamodules.audio import audio_problem, load_audio
from datamodules.batching import pad_features
from datamodules.features import LogMel
from lightning_modules.speech_llm import SpeechLLM
from lightning_modules.tasks import DEFAULT_INSTRUCTIONS
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


def load_clip(path: str | Path, sample_rate: int) -> torch.Tensor:
    try:
        wave, sr = load_audio(str(path), sample_rate)
    except Exception as err:  # soundfile raises several types for unreadable files
        raise InferenceError(f"{path}: cannot read audio ({err})") from None
    problem = audio_problem(wave, sr, min_s=0.1, max_s=60.0)
    if problem:
        raise InferenceError(f"{path}: {problem.replace('_', ' ')}")
    return LogMel(sample_rate=sample_rate)(wave)


def infer(model: SpeechLLM, cfg: DictConfig, audio: list[str], template: str, **generation) -> list[str]:
    """One reply per audio file, generated in one batch."""
    parts = model.llm.prompter.prompt_parts(template)
    examples = [{"key": str(i), "features": load_clip(a, cfg.data.sample_rate), "prefix": parts.prefix,
                 "suffix": parts.suffix} for i, a in enumerate(audio)]
    batch = pad_features(examples)
    return model.generate(batch, **generation)


def load_for_inference(ckpt: str | Path) -> tuple[SpeechLLM, DictConfig]:
    cfg = recipe_of_checkpoint(ckpt)
    return load_trained(cfg, ckpt), cfg
