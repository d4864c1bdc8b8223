"""Training throughput in TensorBoard and the progress bar: samples/s, audio-seconds/s, tokens/s, padding."""
from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl


class Throughput(pl.Callback):
    """Rates over the last ``window`` steps (per process; multiply by world size for the job's rate)."""

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self._reset(time.perf_counter())

    def _reset(self, now: float) -> None:
        self.start, self.samples, self.seconds, self.tokens, self.frames, self.padded, self.steps = now, 0, 0.0, 0, 0, 0, 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        feats = batch["features"]
        self.samples += len(batch["task"])
        self.seconds += batch["audio_seconds"]
        self.frames += int(batch["feature_lens"].sum())
        self.padded += feats.shape[0] * feats.shape[1]
        self.tokens += sum(len(p) + len(s) + len(t) for p, s, t in zip(batch["prefix"], batch["suffix"],
                                                                      batch["target"]))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.steps += 1
        if self.steps < self.window:
            return
        now = time.perf_counter()
        elapsed = max(now - self.start, 1e-9)
        pl_module.log_dict({
            "perf/samples_per_s": self.samples / elapsed,
            "perf/audio_s_per_s": self.seconds / elapsed,
            "perf/text_tokens_per_s": self.tokens / elapsed,
            "perf/padding_ratio": 1 - self.frames / max(self.padded, 1),
            "perf/step_s": elapsed / self.steps,
        }, prog_bar=False)
        pl_module.log("samples/s", self.samples / elapsed, prog_bar=True)
        self._reset(now)
