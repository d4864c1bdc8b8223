"""PreemptionCheckpoint: a signal (or max_time) checkpoints at the end of the running step, then training stops;
SIGUSR1 under SLURM also requeues the job. A tiny Lightning model that signals itself in the middle of a step."""
from __future__ import annotations

import os
import signal
import time

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

from callbacks.preemption import Preempted, PreemptionCheckpoint
from paralign.train import resume_checkpoint


class SignalsItself(pl.LightningModule):
    def __init__(self, signum: int | None = None, at_step: int = 3, step_seconds: float = 0.0) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.signum, self.at_step, self.step_seconds = signum, at_step, step_seconds

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if self.signum is not None and self.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)  # arrives in the middle of the step
        time.sleep(self.step_seconds)
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.01)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.randn(64, 4), batch_size=2)


def fit(root, model: SignalsItself, callbacks: list[pl.Callback] | None = None, **trainer_args) -> pl.Trainer:
    trainer = pl.Trainer(default_root_dir=root, max_steps=20, accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=callbacks is not None,
                         callbacks=callbacks or [PreemptionCheckpoint()], **trainer_args)
    trainer.fit(model)
    return trainer


def saved_step(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def test_sigusr1_saves_at_the_end_of_the_step_and_stops(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    previous = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(Preempted, match="stopped by SIGUSR1 at step 4") as stop:
        fit(tmp_path, SignalsItself(signal.SIGUSR1, at_step=3))
    assert stop.value.step == 4  # the step that got the signal was finished, no other began
    assert [p.name for p in tmp_path.glob("hpc_ckpt_*.ckpt")] == ["hpc_ckpt_1.ckpt"]
    assert saved_step(tmp_path / "hpc_ckpt_1.ckpt") == 4
    stop.value.restore_handlers()  # what paralign.train does with the stop
    assert signal.getsignal(signal.SIGUSR1) == previous


def test_sigusr1_under_slurm_requeues_the_job(tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "scontrol"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"an older preemption checkpoint")
    with pytest.raises(Preempted):
        fit(tmp_path, SignalsItself(signal.SIGUSR1, at_step=2))
    assert calls.read_text() == "requeue 4242\n"
    assert [p.name for p in tmp_path.glob("hpc_ckpt_*.ckpt")] == ["hpc_ckpt_2.ckpt"]  # the older one is replaced
    assert saved_step(tmp_path / "hpc_ckpt_2.ckpt") == 3


class CountsValidation(SignalsItself):
    validations = 0

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        CountsValidation.validations += 1

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.randn(8, 4), batch_size=2)


def test_sigterm_saves_then_stops_at_once_without_a_validation_pass(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    CountsValidation.validations = 0
    with pytest.raises(Preempted, match="stopped by SIGTERM at step 2"):
        # validation due at every step: a stop that let the loop go on would run one after the save
        fit(tmp_path, CountsValidation(signal.SIGTERM, at_step=1), val_check_interval=1, num_sanity_val_steps=0,
            limit_val_batches=1)
    assert saved_step(tmp_path / "hpc_ckpt_1.ckpt") == 2
    assert CountsValidation.validations == 1  # after step 1 only, none after the signal's step


def test_max_time_saves_where_training_stops(tmp_path):
    trainer = fit(tmp_path, SignalsItself(step_seconds=0.2), max_time={"seconds": 1})
    assert 0 < trainer.global_step < 20
    assert saved_step(tmp_path / "hpc_ckpt_1.ckpt") == trainer.global_step


def test_max_time_seen_only_by_lightnings_timer_still_saves(tmp_path, monkeypatch):
    """The time runs out between this callback's look at a batch end and the Timer's, a moment later: the Timer
    stops training, and the checkpoint must still be written where it stopped (once)."""
    monkeypatch.setattr(PreemptionCheckpoint, "on_train_batch_end", lambda *args: None)  # always looks too early
    trainer = fit(tmp_path, SignalsItself(step_seconds=0.2), max_time={"seconds": 1})
    assert 0 < trainer.global_step < 20
    assert [p.name for p in tmp_path.glob("hpc_ckpt_*.ckpt")] == ["hpc_ckpt_1.ckpt"]
    assert saved_step(tmp_path / "hpc_ckpt_1.ckpt") == trainer.global_step


def test_a_preemption_save_on_a_last_ckpt_step_is_the_one_resumed(tmp_path, monkeypatch):
    """Lightning runs ModelCheckpoint after every other callback, so a preemption save on a step that is also a
    last.ckpt step is followed by a newer last.ckpt of the same step: the run must resume from the preemption
    checkpoint all the same (and never from an older last.ckpt)."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    last = ModelCheckpoint(dirpath=tmp_path / "checkpoints", filename="last", save_top_k=0, save_last=True,
                           every_n_train_steps=2)
    with pytest.raises(Preempted):
        fit(tmp_path, SignalsItself(signal.SIGUSR1, at_step=3), callbacks=[PreemptionCheckpoint(), last])
    hpc, last_ckpt = tmp_path / "hpc_ckpt_1.ckpt", tmp_path / "checkpoints" / "last.ckpt"
    assert saved_step(hpc) == 4 and saved_step(last_ckpt) <= 4
    cfg = OmegaConf.create({"run": {"resume": "auto"}})
    assert resume_checkpoint(cfg, tmp_path) == str(hpc)

    # training went on past the preemption: the furthest state wins
    torch.save({"global_step": 6, "state_dict": {}}, last_ckpt)
    os.utime(last_ckpt, ns=(0, 0))  # whatever the mtimes say (a copied run folder)
    assert resume_checkpoint(cfg, tmp_path) == str(last_ckpt)
    assert resume_checkpoint(OmegaConf.create({"run": {"resume": "never"}}), tmp_path) is None


def test_an_unreadable_checkpoint_is_passed_over_and_none_readable_stops_the_run(tmp_path):
    cfg = OmegaConf.create({"run": {"resume": "auto"}})
    assert resume_checkpoint(cfg, tmp_path) is None  # a fresh run folder
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"cut mid-wri")
    with pytest.raises(RuntimeError, match="no readable checkpoint to resume from.*run.resume=never"):
        resume_checkpoint(cfg, tmp_path)
    torch.save({"global_step": 3, "state_dict": {}}, tmp_path / "hpc_ckpt_1.ckpt")
    assert resume_checkpoint(cfg, tmp_path) == str(tmp_path / "hpc_ckpt_1.ckpt")
