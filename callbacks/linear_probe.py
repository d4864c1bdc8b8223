"""The paper's measure of how much paralinguistic information the speech tokens carry: a linear probe.

At each validation, mean-pooled speech tokens (one vector per clip) are split by clip key into a fitting half and
a scoring half; a logistic-regression probe fitted on the first predicts the label of the second
(``scoring/probe.py``, the same probe as `paralign eval`'s).
"""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from callbacks.generations import gather_from_ranks
from scoring.probe import probe_accuracy


class LinearProbe(pl.Callback):
    def __init__(self, kinds: tuple[str, ...] = ("emotion", "style"), min_clips: int = 8) -> None:
        self.kinds = kinds
        self.min_clips = min_clips
        self.pooled: dict[str, tuple[torch.Tensor, dict]] = {}

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.pooled = {}

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        for key, vec, meta in zip(batch.keys, outputs["pooled"], batch.meta):
            self.pooled.setdefault(key, (vec, meta))  # a clip appears once per task: keep one vector

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.pooled = dict(gather_from_ranks(trainer, list(self.pooled.items())))  # clips from every rank
        for kind in self.kinds:
            acc = probe_accuracy(kind, self.pooled, min_clips=self.min_clips)
            if acc is not None:
                pl_module.log(f"val/probe/{kind}_acc", acc, sync_dist=True)
