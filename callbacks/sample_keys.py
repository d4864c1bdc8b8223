"""Append the sample keys of every training batch to ``<run>/sample_keys/rank<R>.jsonl``
(``callbacks.sample_keys: {}``).

A debugging and testing aid, off by default: it shows which samples each optimizer step trained on, so that a
resumed run can be checked against an uninterrupted one (the kill -9 and SLURM requeue tests do). Each (re)start of
training writes ``{"start": global step}``, then each batch ``{"step": global step, "keys": [...]}``, written and
closed before the batch runs so that the line survives a kill -9. After a resume the steps from the start step on
are logged again; ``read_sample_keys`` keeps the later records.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl


class SampleKeyLog(pl.Callback):
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def _write(self, trainer: pl.Trainer, record: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"rank{trainer.global_rank}.jsonl", "a") as out:
            out.write(json.dumps(record) + "\n")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, {"start": trainer.global_step})

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        keys = batch.get("keys") if isinstance(batch, dict) else getattr(batch, "keys", None)
        if keys is None:
            raise TypeError("callbacks.sample_keys needs batches with a 'keys' list (the shard loader's collate)")
        self._write(trainer, {"step": trainer.global_step, "keys": list(keys)})


def read_sample_keys(folder: str | Path) -> dict[int, list[str]]:
    """The keys trained on at each optimizer step, ranks in order, as the final run history has them: a (re)start
    at step s discards what an earlier segment logged for steps >= s (trained, but lost with the process)."""
    files = sorted(Path(folder).glob("rank*.jsonl"), key=lambda p: int(p.stem.removeprefix("rank")))
    if not files:
        raise FileNotFoundError(f"no rank*.jsonl sample key logs in {folder}")
    steps: dict[int, list[str]] = {}
    for path in files:
        mine: list[tuple[int, list[str]]] = []
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if "start" in record:
                mine = [(step, keys) for step, keys in mine if step < record["start"]]
            else:
                mine.append((record["step"], record["keys"]))
        for step, keys in mine:
            steps.setdefault(step, []).extend(keys)
    return dict(sorted(steps.items()))
