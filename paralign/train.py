"""``paralign train``: recipe -> data -> SpeechLLM -> Lightning Trainer, writing the run folder of DESIGN.md."""
from __future__ import annotations

import logging
import pickle
import warnings
from datetime import datetime
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from callbacks.data_health import SkippedSamples
from callbacks.generations import ValidationGenerations
from callbacks.linear_probe import LinearProbe
from callbacks.preemption import Preempted, PreemptionCheckpoint
from callbacks.run_snapshot import RunSnapshot
from callbacks.sample_keys import SampleKeyLog
from callbacks.throughput import Throughput
from datamodules.augment import build_augment
from datamodules.datamodule import ShardDataModule
from datamodules.features import build_features
from lightning_modules.examples import ExampleBuilder, collate
from lightning_modules.sharding import ShardedStrategy
from lightning_modules.speech_llm import SpeechLLM
from paralign.checkpoint_io import AtomicCheckpointIO
from paralign.data import prepare_data, shard_sources
from paralign.run_lock import run_lock

log = logging.getLogger(__name__)


def resolve_run_dir(cfg: DictConfig) -> Path:
    """``run.dir`` or a fresh ``<root>/<recipe>/<timestamp>``; written back into the config."""
    if not cfg.run.dir:
        cfg.run.dir = str(Path(cfg.run.root) / cfg.name / datetime.now().strftime("%Y%m%d-%H%M%S"))
    return Path(cfg.run.dir)


def build_datamodule(cfg: DictConfig, model: SpeechLLM) -> ShardDataModule:
    d = cfg.data
    sources = shard_sources(cfg)
    prompter = model.llm.prompter
    return ShardDataModule(
        train=sources["train"], val=sources["val"], test=sources["test"], sample_rate=d.sample_rate,
        features=build_features(cfg), max_batch_seconds=d.max_batch_seconds, max_batch_size=d.max_batch_size,
        bucket_window=d.bucket_window, shuffle_buffer=d.shuffle_buffer, num_workers=d.num_workers, seed=d.seed,
        example_builder=ExampleBuilder(model.tasks, prompter, d.examples_per_clip),
        eval_example_builder=ExampleBuilder(model.tasks, prompter, all_tasks=True),
        collate=collate, augment=build_augment(cfg),
        # Sharded, every rank must run each validation forward pass (all-gathers pair up across ranks).
        even_eval_batches=cfg.trainer.strategy == "fsdp",
    )


def build_trainer(cfg: DictConfig, run_dir: Path) -> pl.Trainer:
    t = cfg.trainer
    checkpoints = run_dir / "checkpoints"
    callbacks = [
        RunSnapshot(run_dir, cfg),
        # Two concerns, two callbacks: last.ckpt every N steps whatever validation does (resume, preemption),
        # and the best-k by validation loss, written when validation has run.
        ModelCheckpoint(dirpath=checkpoints, filename="last", save_top_k=0, save_last=True,
                        every_n_train_steps=t.checkpoint_every_n_steps),
        ModelCheckpoint(dirpath=checkpoints, filename="step{step:06d}-val{val/loss:.3f}",
                        auto_insert_metric_name=False, monitor="val/loss", mode="min", save_top_k=t.save_top_k),
        LearningRateMonitor(logging_interval="step"),
        Throughput(window=max(1, t.log_every_n_steps)),
        SkippedSamples(every_n_steps=max(1, t.log_every_n_steps)),
        ValidationGenerations(batches=cfg.generation.val_batches, samples=cfg.generation.log_samples),
        LinearProbe(),
        TQDMProgressBar(refresh_rate=1),
        PreemptionCheckpoint(),  # SIGUSR1 / SIGTERM / max_time: checkpoint at the step's end (and requeue on SLURM)
    ]
    if cfg.run.log_sample_keys:
        callbacks.append(SampleKeyLog(run_dir / "sample_keys"))
    return pl.Trainer(
        default_root_dir=run_dir, max_steps=t.max_steps, max_time=t.max_time, accelerator=t.accelerator,
        devices=t.devices, num_nodes=t.num_nodes, strategy=build_strategy(t), precision=t.precision,
        accumulate_grad_batches=t.accumulate_grad_batches, gradient_clip_val=t.gradient_clip_val,
        val_check_interval=t.val_check_interval, check_val_every_n_epoch=None,
        limit_val_batches=t.limit_val_batches, log_every_n_steps=t.log_every_n_steps,
        logger=TensorBoardLogger(run_dir, name="tensorboard", version=""), callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        deterministic=t.deterministic, num_sanity_val_steps=0, use_distributed_sampler=False,
    )


def build_strategy(t: DictConfig) -> str | ShardedStrategy:
    """``trainer.strategy``: Lightning's own ``auto`` / ``ddp``, or ``fsdp`` = FSDP2 through ModelParallelStrategy."""
    return ShardedStrategy() if t.strategy == "fsdp" else t.strategy


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> str | None:
    """The furthest of ``last.ckpt`` and the preemption checkpoint ``hpc_ckpt_<n>.ckpt`` (callbacks/preemption.py).

    Ordered by the step they hold, not by mtime: a preemption save on a step that is also a ``last.ckpt`` step is
    followed a moment later by ``last.ckpt`` (Lightning runs ModelCheckpoint last). At equal steps they hold the
    same state, and the preemption checkpoint, written for this stop, is the one taken. An unreadable file (cut
    mid-write) is passed over with a warning; when no file is readable the run stops rather than start afresh."""
    if cfg.run.resume != "auto":
        return None
    last = run_dir / "checkpoints" / "last.ckpt"
    found = [p for p in [last, *run_dir.glob("hpc_ckpt_*.ckpt")] if p.exists()]
    steps = {}
    for path in found:
        try:
            steps[path] = saved_step(path)
        except pickle.UnpicklingError as error:
            if "Weights only load failed" not in str(error):  # not a pickle refused for its content: a cut file
                log.warning("cannot read the checkpoint %s (%s): not resuming from it", path, error)
                continue
            # weights_only refused it: it holds objects other than tensors and plain data, i.e. code to run
            raise RuntimeError(f"{path} is not a plain checkpoint (it holds pickled objects, not only tensors and "
                               "plain data): refusing to load it; remove it, or set run.resume=never") from None
        except Exception as error:
            log.warning("cannot read the checkpoint %s (%s): not resuming from it", path, error)
    if found and not steps:
        raise RuntimeError(f"no readable checkpoint to resume from in {run_dir}: {', '.join(map(str, found))}; "
                           "move them away or set run.resume=never to start afresh")
    if not steps:
        return None
    chosen = max(steps, key=lambda p: (steps[p], p != last))
    log.info("resuming from %s (step %d)", chosen, steps[chosen])
    return str(chosen)


def saved_step(path: Path) -> int:
    """``global_step`` of a Lightning checkpoint file, read without loading its tensors (mmap). A checkpoint is
    data, never code: only tensors and plain containers are unpickled (``weights_only``)."""
    return int(torch.load(path, map_location="cpu", mmap=True, weights_only=True)["global_step"])


def init_weights(model: SpeechLLM, path: str | Path) -> None:
    """``init_from``: the trainable weights of another run's checkpoint (weights only: optimizer, scheduler and
    data position start afresh). A checkpoint of another model shape is a one-line error naming both."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"init_from={path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    except pickle.UnpicklingError:
        raise RuntimeError(f"init_from={path} is not a plain checkpoint (it holds pickled objects): refusing to "
                           "load it") from None
    except KeyError:
        raise ValueError(f"init_from={path}: not a paralign training checkpoint (no state_dict)") from None
    try:
        model.check_checkpoint_keys(state)
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        detail = str(err).splitlines()[-1].strip() if "size mismatch" in str(err) else str(err)
        raise ValueError(f"init_from={path} does not fit this recipe's model: {detail}") from None
    log.info("initialised the trainable weights from %s", path)


def train(cfg: DictConfig) -> Path:
    """Prepare data, train, and return the run folder."""
    if cfg.eval.cascade != "none":
        raise ValueError(f"{cfg.name} is a cascade reference (eval.cascade={cfg.eval.cascade}): nothing to train; "
                         "evaluate it with `paralign eval --recipe <recipe>` (no checkpoint)")
    # The frozen LLM stays in eval mode on purpose (FrozenLLM.train); Lightning would warn about it every run.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = resolve_run_dir(cfg)
    with run_lock(run_dir):
        prepare_data(cfg)
        model = SpeechLLM(cfg)
        resume = resume_checkpoint(cfg, run_dir)
        if resume is None and cfg.init_from:
            init_weights(model, cfg.init_from)
        datamodule = build_datamodule(cfg, model)
        trainer = build_trainer(cfg, run_dir)
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        except Preempted as stop:
            stop.restore_handlers()
            raise
    return run_dir
