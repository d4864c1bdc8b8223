"""A tiny SpeechLLM (random tiny Llama, tiny conformer) and batches built through the real example builder."""
from __future__ import annotations

import random

import pytest
import torch
from omegaconf import OmegaConf

from clips.clip import Clip
from clips.examples import Batch, ExampleBuilder, collate
from clips.members import TeacherReplies, TeacherReply, Variant
from lightning_modules.speech_llm import SpeechLLM
from paralign.config import Recipe


def tiny_cfg(tasks: dict | None = None, **sections):
    cfg = OmegaConf.structured(Recipe)
    base = {
        "llm": {"name": "tiny"},
        # make_clip's features are standard normal already, not log-mel near -7: no shift or scale for them
        "encoder": {"d_model": 32, "layers": 1, "heads": 2, "ffn_dim": 64, "kernel_size": 7, "dropout": 0.0,
                    "feature_mean": 0.0, "feature_std": 1.0},
        "optim": {"lr": 3e-3, "warmup_steps": 0, "scheduler": "constant"},
        "tasks": tasks if tasks is not None else {"emotion": {}, "asr": {}, "response": {}},
    }
    return OmegaConf.merge(cfg, base, sections)


def make_clip(i: int, frames: int, emotion: str = "sad", heard: str | None = None) -> Clip:
    """A decoded clip with labels, both teacher variants' replies and (``heard``) Whisper's words."""
    g = torch.Generator().manual_seed(i)
    teacher = TeacherReplies({"response": {Variant.CONDITIONED: TeacherReply(f"reply {i} sad"),
                                           Variant.PLAIN: TeacherReply(f"reply {i}")}})
    return Clip(f"clip{i}", {"transcript": f"words number {i}", "emotion": emotion, "style": ["fast"]}, frames / 100,
                teacher, heard=heard, features=torch.randn(frames, 80, generator=g))


def batch_for(model: SpeechLLM, clips: list[Clip], all_tasks: bool = True, seed: int = 0) -> Batch:
    builder = ExampleBuilder(model.tasks, model.llm.prompter, all_tasks=all_tasks)
    rng = random.Random(seed)
    return collate([e for c in clips for e in builder(c, rng)])


@pytest.fixture
def model() -> SpeechLLM:
    torch.manual_seed(0)
    return SpeechLLM(tiny_cfg())
