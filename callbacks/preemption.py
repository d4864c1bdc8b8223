"""Preemption-safe stops: on SIGUSR1 or SIGTERM, or when ``trainer.max_time`` runs out, checkpoint at the end of the
current training step; on SIGUSR1 under SLURM, also requeue the job.

Why not Lightning's own SLURM handler: it saves inside the signal handler, that is anywhere in a step (the loader
may already count a batch whose update the optimizer has not made yet, so the resumed run would skip that batch)
and, under DDP, at a different point on each rank, while the save is a collective. Here the handler only raises a
flag. At the end of each step the ranks agree (one flagged rank is enough), save ``<run>/hpc_ckpt_<n>.ckpt``
(paralign.train resumes from the newest of it and ``last.ckpt``), and stop at once (``Preempted``: no validation
pass, a non-zero exit); on SIGUSR1 rank 0 runs
``scontrol requeue`` once training has wound down and the signal handlers are restored (the SIGTERM with which SLURM
then ends the job finds nothing left to do), and the requeued job resumes from that checkpoint. SIGTERM (preemption,
scancel, the time limit) saves and stops without requeueing: SLURM requeues a preempted job itself, and a cancelled
job must stay cancelled.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class Preempted(Exception):
    """Training stopped by a signal once its checkpoint was saved: raised out of ``fit`` so that nothing else runs
    (no validation pass, no evaluation: SLURM gives ~30 s between SIGTERM and SIGKILL) and the process exits
    non-zero (``train && eval`` must not go on with a partly trained model)."""

    def __init__(self, signum: signal.Signals, step: int, path: Path, restore_handlers: Any = None) -> None:
        super().__init__(f"stopped by {signum.name} at step {step}: checkpoint saved to {path}; the same command "
                         "resumes there")
        self.signum, self.step, self.path = signum, step, path
        self.restore_handlers = restore_handlers or (lambda: None)


class PreemptionCheckpoint(pl.Callback):
    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._requeue = False
        self._saved_at: int | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Before Lightning installs its handlers (Trainer._run): it then leaves SIGUSR1 alone (a handler is already
        # there) and calls this SIGTERM handler after its own, which makes the loop stop after the step.
        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received != signal.SIGUSR1:  # a SIGTERM that follows our own requeue must not cancel it
            self.received = signal.Signals(signum)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._save_if_stopping(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning's Timer decides at the same batch end, a moment after this callback looked: when the time ran
        # out in between (or a signal came after the last step), training stops all the same, and the checkpoint
        # is written here, still right after that step.
        self._save_if_stopping(trainer)

    def _save_if_stopping(self, trainer: pl.Trainer) -> None:
        if self._saved_at == trainer.global_step:  # this stop is saved already (at the batch end)
            return
        time_up = any(isinstance(c, Timer) and _ran_out(c) for c in trainer.callbacks)
        # One small collective per step, so that every rank saves at the same step (the save is a collective too).
        if not trainer.strategy.reduce_boolean_decision(self.received is not None or time_up, all=False):
            return
        self._saved_at = trainer.global_step
        reason = self.received.name if self.received is not None else "max_time"
        path = _next_hpc_path(Path(trainer.default_root_dir))
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            _remove_older(path)
            log.info(f"{reason} at step {trainer.global_step}: saved {path}")
        self._requeue = self.received == signal.SIGUSR1 and bool(os.environ.get("SLURM_JOB_ID"))
        trainer.should_stop = True
        if self.received is not None:  # a signal: stop here (max_time ends the run normally, with its checkpoint)
            raise Preempted(self.received, trainer.global_step, path, self.restore_handlers)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.restore_handlers()
        self._requeue_once(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and self._saved_at != trainer.global_step:
            # SIGTERM during validation: Lightning stops there, before any batch end. The weights and the data
            # position are still those of the last finished step, so that is what is saved.
            self.received = self.received or signal.SIGTERM
            try:
                path = _next_hpc_path(Path(trainer.default_root_dir))
                trainer.save_checkpoint(path)
                self._saved_at = trainer.global_step
                if trainer.is_global_zero:
                    _remove_older(path)
                    log.info(f"SIGTERM at step {trainer.global_step}: saved {path}")
            except Exception as error:  # the stop goes on; the last last.ckpt is what a restart finds
                log.warning("SIGTERM: could not save a checkpoint (%s)", error)
        self._requeue_once(trainer)  # the checkpoint is saved: the job must come back even if the wind-down failed

    def restore_handlers(self) -> None:
        """The signal handlers from before ``fit``. Called at teardown; after a ``Preempted`` stop Lightning skips
        that and puts this callback's handlers back as it unwinds, so whoever catches ``Preempted`` calls this."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _requeue_once(self, trainer: pl.Trainer) -> None:
        if self._requeue and trainer.is_global_zero:
            log.info(_requeue())
        self._requeue = False


def _ran_out(timer: Timer) -> bool:
    remaining = timer.time_remaining("train")
    return remaining is not None and remaining <= 0


def _next_hpc_path(folder: Path) -> Path:
    names = (re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name) for p in folder.glob("hpc_ckpt_*.ckpt"))
    numbers = [int(match.group(1)) for match in names if match]
    return folder / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"


def _remove_older(kept: Path) -> None:
    """Earlier preemption checkpoints: the new one supersedes them (last.ckpt stays as ModelCheckpoint keeps it)."""
    for path in kept.parent.glob("hpc_ckpt_*.ckpt"):
        if path != kept:
            path.unlink(missing_ok=True)


def _requeue() -> str:
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"could not requeue job {job}: {error}"
    if done.returncode != 0:
        return f"scontrol requeue {job} failed ({done.returncode}): {done.stderr.strip()}"
    return f"requeued job {job}"
