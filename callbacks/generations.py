"""At each validation: the frozen LLM's answers from speech, scored and shown.

For label tasks (emotion, style) the generated answer is mapped to a label (keywords, then nearest MiniLM label
embedding) and compared with the truth: the accuracy of the LLM's *own words*, which is what the method is
about. A confusion matrix image for emotion and a table of sample generations go to TensorBoard.
"""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist

from clips.vocab import EMOTIONS, LABEL_SETS
from scoring.answers import label_truth, score_answers
from scoring.metrics import accuracy, confusion_matrix, plot_confusion


def gather_from_ranks(trainer: pl.Trainer, items: list) -> list:
    """Every rank's ``items``, concatenated in rank order, on every rank (a collective: all ranks must call it).

    Validation metrics computed from per-rank lists would differ by rank, and a rank whose list is empty would
    skip a ``log(sync_dist=True)`` the others make: a deadlock. Computed from the gathered list, every rank logs
    the same keys and values."""
    if trainer.world_size == 1 or not dist.is_initialized():
        return list(items)
    parts: list = [None] * trainer.world_size
    dist.all_gather_object(parts, list(items))
    return [item for part in parts for item in part]


class ValidationGenerations(pl.Callback):
    """Generate for the first ``batches`` validation batches; log answer accuracy, a confusion matrix, samples."""

    def __init__(self, batches: int = 4, samples: int = 4) -> None:
        self.batches = batches
        self.samples = samples
        self.records: list[dict[str, Any]] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.records = []

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx >= self.batches or trainer.sanity_checking:
            return
        replies = pl_module.generate(batch)
        for i, reply in enumerate(replies):
            self.records.append({"key": batch.keys[i], "task": batch.task[i], "reply": reply,
                                 "target": batch.target_text[i], "meta": batch.meta[i],
                                 "prompt": batch.template[i]})

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.records = gather_from_ranks(trainer, self.records)
        if not self.records:
            return
        for task in LABEL_SETS:
            items = [r for r in self.records if r["task"] == task and label_truth(task, r["meta"]) is not None]
            if not items:
                continue
            scored = score_answers(task, [r["reply"] for r in items], [r["meta"] for r in items])
            pl_module.log(f"val/{task}/answer_acc", float(np.mean(scored.correct)), sync_dist=True)
            if task == "emotion":
                self._log_confusion(trainer, scored.predicted, scored.reference,
                                    accuracy(scored.predicted, scored.reference))
        self._log_samples(trainer)

    def _log_confusion(self, trainer: pl.Trainer, predicted: list, truth: list, acc: float) -> None:
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image") or trainer.global_rank != 0:
            return
        import tempfile

        import matplotlib.image

        with tempfile.TemporaryDirectory() as tmp:
            cm = confusion_matrix(predicted, truth, EMOTIONS)
            path = plot_confusion(cm, f"{tmp}/cm.png",
                                  title=f"emotion from speech (acc {acc:.2f}, step {trainer.global_step})")
            image = matplotlib.image.imread(path)
        experiment.add_image("val/emotion/confusion", torch.from_numpy(image[..., :3]).permute(2, 0, 1),
                             trainer.global_step)

    def _log_samples(self, trainer: pl.Trainer) -> None:
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_text") or trainer.global_rank != 0:
            return
        rows = ["| task | clip | truth | target | reply |", "|---|---|---|---|---|"]
        seen: set[str] = set()
        for r in self.records:
            if r["task"] in seen and len(rows) >= 2 + self.samples:
                continue
            seen.add(r["task"])
            truth = f"{r['meta'].get('emotion')} / {','.join(r['meta'].get('style') or [])}"
            rows.append(f"| {r['task']} | {r['key']} | {truth} | {_cell(r['target'])} | {_cell(r['reply'])} |")
        experiment.add_text("val/generations", "\n".join(rows), trainer.global_step)


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")[:300]
