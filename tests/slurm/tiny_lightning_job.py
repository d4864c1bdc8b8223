"""A stand-in for `paralign train` in the SLURM requeue test: same command line, a tiny Lightning model.

`python tiny_lightning_job.py train --recipe R key=value ...` reads the overrides that the sbatch template passes
(run.dir, trainer.num_nodes, trainer.devices, trainer.accelerator, trainer.max_steps), trains a Linear layer with
DDP, saves `<run.dir>/checkpoints/last.ckpt` every step and resumes from it when it exists, as a requeued
`paralign train` does. Rank 0 prints `PAYLOAD start step=N` and `PAYLOAD end step=N` for the test to read.
"""
import argparse
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import OmegaConf

# Slow enough steps that the test can signal the job in the middle of its run.
STEP_SECONDS = 0.1


class TinyModel(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        time.sleep(STEP_SECONDS)
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.randn(10_000, 8), batch_size=4)


class ReportSteps(Callback):
    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            print(f"PAYLOAD start step={trainer.global_step}", flush=True)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            print(f"PAYLOAD end step={trainer.global_step}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["train"])
    parser.add_argument("--recipe", required=True)
    parser.add_argument("overrides", nargs="*")
    config = OmegaConf.from_dotlist(parser.parse_intermixed_args().overrides)
    run_dir = Path(config.run.dir)
    trainer = L.Trainer(
        default_root_dir=run_dir,
        accelerator=config.trainer.accelerator,
        devices=config.trainer.devices,
        num_nodes=config.trainer.num_nodes,
        strategy="ddp",
        max_steps=config.trainer.max_steps,
        logger=False,
        enable_progress_bar=False,
        callbacks=[
            ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0, every_n_train_steps=1),
            ReportSteps(),
        ],
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    trainer.fit(TinyModel(), ckpt_path=last if last.exists() else None)


if __name__ == "__main__":
    main()
