"""Shared fakes for the evaluation tests: a deterministic embedder (no model load) and sample generations."""
from __future__ import annotations

import re
import zlib

import pytest
import torch

from scoring.embedder import Embedder


class BagOfWordsEmbedder(Embedder):
    """Hashed bag of words, L2-normalised: identical texts give cosine 1, disjoint ones 0. Counts encode calls."""

    def __init__(self, dim: int = 256):
        super().__init__()
        self.dim = dim
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        out = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[i, zlib.crc32(word.encode()) % self.dim] += 1.0
        return torch.nn.functional.normalize(out, dim=-1)


@pytest.fixture
def bow_embedder() -> BagOfWordsEmbedder:
    return BagOfWordsEmbedder()


def make_generations(n_clips: int = 8, id_prefix: str = "clip") -> list[dict]:
    """Records of every task for ``n_clips`` clips; emotion answers are right on even clips, wrong on odd ones."""
    emotions = ["happy", "sad", "angry", "neutral"]
    gens = []
    for i in range(n_clips):
        emo = emotions[i % len(emotions)]
        clip = {"id": f"{id_prefix}{i:03d}", "emotion": emo, "style": ["fast"] if i % 2 else ["slow", "loud"],
                "transcript": "i lost my keys again today", "speaker": f"spk{i % 2}"}
        wrong = emotions[(i + 1) % len(emotions)]
        gens += [
            {**clip, "task": "response", "prompt": "<speech>", "reference": f"oh no you sound {emo} about the keys",
             "reply": f"oh no you sound {emo} about the keys" if i % 2 == 0 else "that is nice"},
            {**clip, "task": "emotion", "prompt": "How does the speaker feel?", "reference": emo,
             "reply": f"The speaker sounds {emo if i % 2 == 0 else wrong}."},
            {**clip, "task": "style", "prompt": "Describe the speaking style.", "reference": ", ".join(clip["style"]),
             "reply": "They talk quickly." if i % 2 else "They speak loudly."},
            {**clip, "task": "asr", "prompt": "Repeat what was said.", "reference": clip["transcript"],
             "reply": "i lost my keys again today" if i % 2 == 0 else "i lost my keys"},
        ]
    return gens


@pytest.fixture
def generations() -> list[dict]:
    return make_generations()


@pytest.fixture
def generations_factory():
    return make_generations
