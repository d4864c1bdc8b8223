"""Speaker normalisation (``encoder.speaker_norm``): each speaker's mean hidden state moved to the training corpus's.

A model trained on one corpus hears another corpus's speakers and recording chain as a shift of every hidden state:
the same for all of a speaker's clips, whatever they feel. Removing each speaker's mean leaves what changes between
their clips, which is where the emotion is. Measured with a linear probe on the frozen Whisper-base's layer-normed
hidden states, fitted on RAVDESS and scored on EmoDB (``paralign probe-layers --trim-db 40 --level-dbfs -20
--layer-norm``): best state 0.564 -> 0.654. The model trained with it on RAVDESS did not gain on EmoDB (README, Data).

The statistics are of the frozen encoder's layer-normed hidden states over all of a speaker's frames. They need no
label, only several clips of the speaker: computed before training (the training split's mean over all its frames is
the reference, saved in checkpoints) and before each evaluation, from the clips evaluated. A clip whose speaker has
no statistics (one clip at inference, a clip without a speaker) is heard as it is.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn
from tqdm import tqdm

Speakers = Sequence[str | None] | None


class SpeakerNorm(nn.Module):
    """``states`` (``n_states`` tensors ``[B, T, D]``) -> the same with each row's speaker offset added to every
    frame: ``reference - speaker mean``, per hidden state."""

    def __init__(self, n_states: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("reference", torch.zeros(n_states, dim))  # in checkpoints: the training corpus's mean
        self.offsets: dict[str, torch.Tensor] = {}  # not in checkpoints: remade from the clips at hand
        self.source: frozenset[str] = frozenset()  # what the offsets came from (``split:shards``), to re-use them

    def set_means(self, means: dict[str, torch.Tensor], source: Iterable[str],
                  reference: torch.Tensor | None = None) -> None:
        """Speaker means (``[n_states, D]`` each) to normalise by, computed from ``source``; ``reference``: a new
        training corpus mean."""
        if reference is not None:
            self.reference.copy_(reference)
        self.offsets = {name: (self.reference.cpu() - mean).float() for name, mean in means.items()}
        self.source = frozenset(source)

    def forward(self, states: list[torch.Tensor], speakers: Speakers) -> list[torch.Tensor]:
        if not speakers or not self.offsets:
            return states
        zero = torch.zeros_like(self.reference)
        shift = torch.stack([self.offsets[s].to(zero) if s in self.offsets else zero for s in speakers])
        return [s + shift[:, i, None, :].to(s.dtype) for i, s in enumerate(states)]


class SpeakerMeans:
    """Sums of hidden states per speaker over real frames, for ``SpeakerNorm.set_means``."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.frames: dict[str, int] = {}

    def add(self, states: list[torch.Tensor], lengths: torch.Tensor, speakers: Sequence[str | None]) -> None:
        for i, speaker in enumerate(speakers):
            if speaker is None:
                continue
            n = int(lengths[i])
            total = torch.stack([s[i, :n].double().sum(0) for s in states]).cpu()
            self.sums[speaker] = self.sums[speaker] + total if speaker in self.sums else total
            self.frames[speaker] = self.frames.get(speaker, 0) + n

    def means(self) -> dict[str, torch.Tensor]:
        return {s: (total / self.frames[s]).float() for s, total in self.sums.items()}

    def overall(self) -> torch.Tensor:
        """The mean over every frame of every speaker (the reference, on the training split)."""
        if not self.sums:
            raise ValueError("speaker normalisation: no clip with a speaker to compute the reference from")
        return (sum(self.sums.values()) / sum(self.frames.values())).float()


@torch.no_grad()
def speaker_means(encoder: nn.Module, batches: Iterable[dict], desc: str,
                  into: SpeakerMeans | None = None) -> SpeakerMeans:
    """Each speaker's sums of ``encoder.normed_states`` over ``batches`` (clip batches: ``features``,
    ``feature_lens``, ``meta``), added to ``into`` if given, with a progress bar."""
    acc = into if into is not None else SpeakerMeans()
    device = next(encoder.parameters()).device
    for batch in tqdm(batches, desc=desc, unit="batch"):
        states, lens = encoder.normed_states(batch["features"].to(device), batch["feature_lens"].to(device))
        acc.add(states, lens, speakers_of(batch["meta"]))
    return acc


def speakers_of(metas: Sequence[dict]) -> list[str | None]:
    return [str(m["speaker"]) if m.get("speaker") not in (None, "") else None for m in metas]
