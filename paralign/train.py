"""``paralign train``: recipe -> data -> SpeechLLM -> Lightning Trainer, writing the run folder (README, "Run
folder")."""
from __future__ import annotations

import logging
import warnings
from datetime import datetime
from pathlib import Path

import lightning.pytorch as pl
from omegaconf import DictConfig

from callbacks.preemption import Preempted
from datamodules.datamodule import ShardDataModule
from lightning_modules.speech_llm import SpeechLLM
from paralign.checkpoint_io import CheckpointError, UnsafeCheckpoint, read_checkpoint
from paralign.data import prepare_data, shard_sources
from paralign.run_lock import run_lock
from paralign.speaker_statistics import prepare_training
from paralign.trainer import build_trainer

log = logging.getLogger(__name__)


def resolve_run_dir(cfg: DictConfig) -> Path:
    """``run.dir`` or a fresh ``<root>/<recipe>/<timestamp>``; written back into the config."""
    if not cfg.run.dir:
        cfg.run.dir = str(Path(cfg.run.root) / cfg.name / datetime.now().strftime("%Y%m%d-%H%M%S"))
    return Path(cfg.run.dir)


def build_datamodule(cfg: DictConfig, model: SpeechLLM) -> ShardDataModule:
    sources = shard_sources(cfg)
    # Sharded, every rank must run each validation forward pass (all-gathers pair up across ranks).
    sharded = cfg.trainer.strategy == "fsdp"
    return ShardDataModule.from_recipe(cfg, model.tasks, model.llm.prompter, even_eval_batches=sharded,
                                       train=sources["train"], val=sources["val"], test=sources["test"])


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> str | None:
    """The furthest readable checkpoint of the run folder: ``last.ckpt``, the preemption checkpoint
    ``hpc_ckpt_<n>.ckpt`` (callbacks/preemption.py) or a best-k one (they hold the whole training state too).

    Ordered by the step they hold, not by mtime: a preemption save on a step that is also a ``last.ckpt`` step is
    followed a moment later by ``last.ckpt`` (Lightning runs ModelCheckpoint last). At equal steps they hold the
    same state, and the preemption checkpoint, written for this stop, is the one taken, then ``last.ckpt``. An
    unreadable file (cut mid-write) is passed over with a warning; a file holding code, or none readable at all,
    stops the run rather than start afresh."""
    if cfg.run.resume != "auto":
        return None
    last = run_dir / "checkpoints" / "last.ckpt"
    found = [p for p in [*run_dir.glob("hpc_ckpt_*.ckpt"), *sorted((run_dir / "checkpoints").glob("*.ckpt"))]
             if p.is_file()]
    steps = {}
    for path in found:
        try:
            steps[path] = saved_step(path)
        except UnsafeCheckpoint as error:
            raise UnsafeCheckpoint(f"{error}; remove it, or set run.resume=never") from None
        except CheckpointError as error:
            log.warning("%s: not resuming from it", error)
    if found and not steps:
        raise RuntimeError(f"no readable checkpoint to resume from in {run_dir}: {', '.join(map(str, found))}; "
                           "move them away or set run.resume=never to start afresh")
    if not steps:
        return None
    chosen = max(steps, key=lambda p: (steps[p], p.name.startswith("hpc_ckpt_"), p == last))
    log.info("resuming from %s (step %d)", chosen, steps[chosen])
    return str(chosen)


def saved_step(path: Path) -> int:
    """``global_step`` of a Lightning checkpoint file, its tensors memory-mapped rather than read."""
    step = read_checkpoint(path, mmap=True).get("global_step")
    if not isinstance(step, int):
        raise CheckpointError(f"checkpoint {path} holds no training state (no global_step): weights only")
    return step


def init_weights(model: SpeechLLM, path: str | Path) -> None:
    """``init_from``: the trainable weights of another run's checkpoint (weights only: optimizer, scheduler and
    data position start afresh). A checkpoint of another model shape is a one-line error naming both."""
    state = read_checkpoint(path, what="init_from")["state_dict"]
    try:
        pretrained = model.check_checkpoint_keys(state, pretrained_may_miss=True)
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        detail = str(err).splitlines()[-1].strip() if "size mismatch" in str(err) else str(err)
        raise ValueError(f"init_from={path} does not fit this recipe's model: {detail}") from None
    log.info("initialised the trainable weights from %s", path)
    if pretrained:  # e.g. the demo's frozen Whisper fine-tuned here with encoder.lora_rank or trainable_layers
        log.info("%d trainable encoder weights are not in it and start from the pretrained encoder (LoRA from "
                 "zero), e.g. %s", len(pretrained), pretrained[0])


class _LitLoggerTip(logging.Filter):
    """Lightning's advertisement for its cloud logger, printed at every Trainer start (the logs are TensorBoard's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_library_notices() -> None:
    """Silence what Lightning prints on every run that is not the user's to act on."""
    # The frozen LLM stays in eval mode on purpose (FrozenLLM.train); Lightning would warn about it every run.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # Lightning 2.6's own pytree helper still uses torch's deprecated LeafSpec (its code, not ours)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):  # its info lines
        tips = logging.getLogger(name)
        if not any(isinstance(f, _LitLoggerTip) for f in tips.filters):
            tips.addFilter(_LitLoggerTip())


def train(cfg: DictConfig) -> Path:
    """Prepare data, train, and return the run folder."""
    if cfg.eval.cascade != "none":
        raise ValueError(f"{cfg.name} is a cascade reference (eval.cascade={cfg.eval.cascade}): nothing to train; "
                         "evaluate it with `paralign eval --recipe <recipe>` (no checkpoint)")
    quiet_library_notices()
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = resolve_run_dir(cfg)
    with run_lock(run_dir):
        trainer = build_trainer(cfg, run_dir)  # first: a callback or Trainer argument it refuses costs no data work
        prepare_data(cfg)
        model = SpeechLLM(cfg)
        resume = resume_checkpoint(cfg, run_dir)
        if resume is None and cfg.init_from:
            init_weights(model, cfg.init_from)
        prepare_training(cfg, model)  # encoder.speaker_norm: every split's speakers' statistics
        datamodule = build_datamodule(cfg, model)
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        except Preempted as stop:
            stop.restore_handlers()
            raise
    return run_dir
