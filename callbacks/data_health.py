"""Log how many samples the loader skipped (corrupt tar member, undecodable audio, bad json), by reason."""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn


class SkippedSamples(pl.Callback):
    def __init__(self, every_n_steps: int = 50) -> None:
        self.every = every_n_steps
        self.reported: dict[str, int] = {}

    def _log(self, trainer: pl.Trainer, stage: str) -> None:
        counts = trainer.datamodule.skip_counts(stage) if trainer.datamodule is not None else {}
        for reason, n in counts.items():
            if trainer.logger is not None:
                trainer.logger.log_metrics({f"data/{stage}_skipped/{reason}": n}, step=trainer.global_step)
            if n > self.reported.get(f"{stage}/{reason}", 0):
                rank_zero_warn(f"{stage} loader skipped {n} sample(s) so far: {reason}")
                self.reported[f"{stage}/{reason}"] = n

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step % self.every == 0:
            self._log(trainer, "train")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer, "val")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer, "train")
