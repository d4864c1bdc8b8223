"""Speech tokens remembered per clip while a trained model is only read (``SpeechLLM.remembering_speech``).

An evaluation asks about each clip several times: the probe pools its tokens, each task generates from them, and
``prompt.perceive`` asks the emotion question before a reply. The encoder is the dearest part of a short generation
(about a third of an emotion answer's time on a CPU), and its tokens for a clip are the same every time: they are
made once. Keyed by the clip's features themselves (and its speaker, for ``encoder.speaker_norm``), so a clip is
recognised whatever batch it comes in.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch

from clips.padding import pad_frames
from lightning_modules.speaker_norm import Speakers

Embed = Callable[[torch.Tensor, torch.Tensor, Speakers], tuple[torch.Tensor, torch.Tensor]]


class SpeechMemo:
    """``memo(features, lengths, speakers) -> (speech, speech_lens)`` as ``embed`` gives them, ``embed`` run only on
    the rows it has not seen (``made`` and ``reused`` count rows)."""

    def __init__(self, embed: Embed) -> None:
        self.embed = embed
        self.tokens: dict[bytes, torch.Tensor] = {}
        self.made = self.reused = 0

    @staticmethod
    def key(features: torch.Tensor, speaker: str | None = None) -> bytes:
        digest = hashlib.sha1(features.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        digest.update(repr(speaker).encode())
        return digest.digest()

    def __call__(self, features: torch.Tensor, lengths: torch.Tensor,
                 speakers: Speakers = None) -> tuple[torch.Tensor, torch.Tensor]:
        speakers = list(speakers) if speakers else [None] * len(lengths)
        keys = [self.key(features[i, :int(n)], speakers[i]) for i, n in enumerate(lengths)]
        todo = list({k: i for i, k in enumerate(keys) if k not in self.tokens}.values())
        if todo:
            rows = torch.tensor(todo, device=lengths.device)
            sub_lens = lengths[rows]
            speech, speech_lens = self.embed(features[rows, :int(sub_lens.max())], sub_lens,
                                             [speakers[i] for i in todo])
            for j, i in enumerate(todo):
                self.tokens[keys[i]] = speech[j, :int(speech_lens[j])]
        self.made += len(todo)
        self.reused += len(keys) - len(todo)
        speech, speech_lens = pad_frames([self.tokens[k] for k in keys])
        return speech, speech_lens.to(lengths.device)
