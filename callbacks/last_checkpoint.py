"""``last.ckpt``: every N training steps, and once more when training ends.

Lightning's ModelCheckpoint saves ``last`` on its step interval only (at the end of training only if it never saved),
so a run whose ``max_steps`` is not a multiple of N ended with an older ``last.ckpt`` (max_steps 10, every 4: step 8):
the evaluation then scored an older model and a rerun trained the missing steps again. A stop by a signal is not an
end of training: the preemption callback saves that one.
"""
from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):  # skipped when this step is saved already
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
