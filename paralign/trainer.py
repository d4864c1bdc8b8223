"""The ``lightning.Trainer`` a recipe describes: its ``trainer:`` keys passed as they are, its ``callbacks:`` by name.

``trainer:`` holds keyword arguments of ``lightning.Trainer`` (any of them; an unknown one is a recipe error that
names it). A few are paralign's own to set (``RESERVED``): the run folder, the logger, the callbacks, the
checkpoint plugin, the loaders' sampling. ``strategy: fsdp`` means FSDP2 through ``ModelParallelStrategy``
(lightning_modules/sharding.py), not Lightning's FSDP1 strategy of that name.

``callbacks:`` maps a name of ``CALLBACKS`` to the keyword arguments of that callback (``null`` switches it off);
the arguments paralign fills in itself (the run folder, the recipe) are not set there.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from callbacks.data_health import SkippedSamples
from callbacks.generations import ValidationGenerations
from callbacks.last_checkpoint import LastCheckpoint
from callbacks.linear_probe import LinearProbe
from callbacks.preemption import PreemptionCheckpoint
from callbacks.run_snapshot import RunSnapshot
from callbacks.sample_keys import SampleKeyLog
from callbacks.throughput import Throughput
from lightning_modules.sharding import ShardedStrategy
from paralign.checkpoint_io import AtomicCheckpointIO

# Trainer arguments paralign sets itself, and why.
RESERVED = {
    "default_root_dir": "the run folder is run.dir",
    "logger": "TensorBoard logs go to <run.dir>/tensorboard",
    "callbacks": "callbacks are listed by name under callbacks:",
    "plugins": "checkpoints are written atomically by paralign's checkpoint plugin",
    "enable_checkpointing": "checkpoints are the callbacks last_checkpoint and best_checkpoints",
    "use_distributed_sampler": "the shard loader splits shards by rank and worker itself",
    "check_val_every_n_epoch": "validation runs every trainer.val_check_interval steps (streams have no epochs)",
    "num_sanity_val_steps": "no sanity validation: a validation pass generates replies, which is slow",
}


@dataclass(frozen=True)
class CallbackSpec:
    """A callback of the recipe: its class, and the arguments paralign fills in (from the run folder and recipe)."""

    cls: type[pl.Callback]
    given: Callable[[Path, DictConfig], dict[str, Any]] = field(default=lambda run_dir, cfg: {})

    def build(self, run_dir: Path, cfg: DictConfig, args: dict[str, Any]) -> pl.Callback:
        return self.cls(**self.given(run_dir, cfg), **args)

    def arguments(self) -> set[str]:
        """The keyword arguments a recipe may set."""
        params = inspect.signature(self.cls.__init__).parameters
        return {n for n in params if n != "self"} - set(self.given(Path("."), OmegaConf.create()))


CALLBACKS: dict[str, CallbackSpec] = {
    "run_snapshot": CallbackSpec(RunSnapshot, lambda run_dir, cfg: {"run_dir": run_dir, "cfg": cfg}),
    # Two concerns, two callbacks: last.ckpt every N steps and at the end, whatever validation does (resume,
    # preemption, evaluation), and the best-k by validation loss, written when validation has run.
    "last_checkpoint": CallbackSpec(LastCheckpoint, lambda run_dir, cfg: {
        "dirpath": run_dir / "checkpoints", "filename": "last", "save_top_k": 0, "save_last": True}),
    "best_checkpoints": CallbackSpec(ModelCheckpoint, lambda run_dir, cfg: {"dirpath": run_dir / "checkpoints"}),
    "lr_monitor": CallbackSpec(LearningRateMonitor),
    "throughput": CallbackSpec(Throughput),
    "skipped_samples": CallbackSpec(SkippedSamples),
    "validation_generations": CallbackSpec(ValidationGenerations),
    "linear_probe": CallbackSpec(LinearProbe),
    "progress_bar": CallbackSpec(TQDMProgressBar),
    # SIGUSR1 / SIGTERM / max_time: checkpoint at the step's end (and requeue on SLURM)
    "preemption": CallbackSpec(PreemptionCheckpoint),
    "sample_keys": CallbackSpec(SampleKeyLog, lambda run_dir, cfg: {"folder": run_dir / "sample_keys"}),
}


def recipe_problems(cfg: DictConfig) -> list[str]:
    """What in ``trainer:`` and ``callbacks:`` cannot be built, one line per key (empty: all can)."""
    problems = []
    trainer_args = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    for key in cfg.trainer:
        if key in RESERVED:
            problems.append(f"trainer.{key} is set by paralign ({RESERVED[key]})")
        elif key not in trainer_args:
            problems.append(f"trainer.{key} is not an argument of lightning.Trainer")
    for name, args in cfg.callbacks.items():
        if name not in CALLBACKS:
            problems.append(f"callbacks.{name}: no such callback (known: {', '.join(CALLBACKS)})")
        elif args is not None and not isinstance(args, DictConfig):
            problems.append(f"callbacks.{name} must be a mapping of its arguments, or null to switch it off")
        elif args is not None:
            allowed = CALLBACKS[name].arguments()
            problems += [f"callbacks.{name}.{key} is not an argument of {CALLBACKS[name].cls.__name__} "
                         f"(it takes {', '.join(sorted(allowed)) or 'none'})" for key in args if key not in allowed]
    return problems


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[pl.Callback]:
    return [CALLBACKS[name].build(run_dir, cfg, OmegaConf.to_container(args, resolve=True))
            for name, args in cfg.callbacks.items() if args is not None]


def build_strategy(strategy: str) -> str | ShardedStrategy:
    """``trainer.strategy``: Lightning's own (``auto``, ``ddp``, ...), or ``fsdp`` = FSDP2 (ModelParallelStrategy)."""
    return ShardedStrategy() if strategy == "fsdp" else strategy


def build_trainer(cfg: DictConfig, run_dir: Path) -> pl.Trainer:
    args = OmegaConf.to_container(cfg.trainer, resolve=True)
    args["strategy"] = build_strategy(args.get("strategy", "auto"))
    return pl.Trainer(
        **args, default_root_dir=run_dir, logger=TensorBoardLogger(run_dir, name="tensorboard", version=""),
        callbacks=build_callbacks(cfg, run_dir), plugins=[AtomicCheckpointIO()], check_val_every_n_epoch=None,
        num_sanity_val_steps=0, use_distributed_sampler=False,
    )
