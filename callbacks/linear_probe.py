"""The paper's measure of how much paralinguistic information the speech tokens carry: a linear probe.

At each validation, mean-pooled speech tokens (one vector per clip) are split by clip key into a fitting half and
a scoring half; a logistic-regression probe fitted on the first predicts the label of the second. The probe is
fitted here in torch (L-BFGS, L2), so no scikit-learn is needed.
"""
from __future__ import annotations

import zlib
from typing import Any

import lightning.pytorch as pl
import torch

from callbacks.generations import gather_from_ranks
from datamodules.vocab import EMOTIONS, STYLES


def fit_probe_accuracy(x_fit: torch.Tensor, y_fit: torch.Tensor, x_eval: torch.Tensor, y_eval: torch.Tensor,
                       classes: int, l2: float = 1e-3, steps: int = 100) -> float:
    """Accuracy on (x_eval, y_eval) of a multinomial logistic regression fitted on (x_fit, y_fit)."""
    mean, std = x_fit.mean(0), x_fit.std(0).clamp(min=1e-6)
    x_fit, x_eval = (x_fit - mean) / std, (x_eval - mean) / std
    layer = torch.nn.Linear(x_fit.shape[1], classes)
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(x_fit), y_fit) + l2 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float((layer(x_eval).argmax(-1) == y_eval).float().mean())


def probe_label(kind: str, meta: dict) -> int | None:
    if kind == "emotion":
        return EMOTIONS.index(meta["emotion"]) if meta.get("emotion") in EMOTIONS else None
    styles = [s for s in meta.get("style") or [] if s in STYLES]
    return STYLES.index(styles[0]) if styles else None


class LinearProbe(pl.Callback):
    def __init__(self, kinds: tuple[str, ...] = ("emotion", "style"), min_clips: int = 8) -> None:
        self.kinds = kinds
        self.min_clips = min_clips
        self.pooled: dict[str, tuple[torch.Tensor, dict]] = {}

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.pooled = {}

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        for key, vec, meta in zip(batch["keys"], outputs["pooled"], batch["meta"]):
            self.pooled.setdefault(key, (vec, meta))  # a clip appears once per task: keep one vector

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.pooled = dict(gather_from_ranks(trainer, list(self.pooled.items())))  # clips from every rank
        for kind, classes in (("emotion", EMOTIONS), ("style", STYLES)):
            if kind not in self.kinds:
                continue
            acc = self.probe(kind, len(classes))
            if acc is not None:
                pl_module.log(f"val/probe/{kind}_acc", acc, sync_dist=True)

    def probe(self, kind: str, classes: int) -> float | None:
        fit, score = ([], []), ([], [])
        for key, (vec, meta) in self.pooled.items():
            label = probe_label(kind, meta)
            if label is None:
                continue
            part = fit if zlib.crc32(key.encode()) % 2 == 0 else score
            part[0].append(vec)
            part[1].append(label)
        if min(len(fit[1]), len(score[1])) < self.min_clips // 2 or len(set(fit[1])) < 2:
            return None
        return fit_probe_accuracy(torch.stack(fit[0]), torch.tensor(fit[1]), torch.stack(score[0]),
                                  torch.tensor(score[1]), classes)
