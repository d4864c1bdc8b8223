"""Exact resume: a run interrupted after k batches and resumed from its checkpoint sees the same sample keys, in
the same order, as an uninterrupted run."""
import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from datamodules.datamodule import ShardDataModule


class KeyRecorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(80, 1)
        self.seen: list[list[str]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(list(batch["keys"]))
        return self.layer(batch["features"]).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(shard_dir, root, ckpt_path=None, max_steps=-1, callbacks=()):
    dm = ShardDataModule(train=str(shard_dir), num_workers=2, max_batch_size=3, shuffle_buffer=4,
                         bucket_window=6, seed=11)
    model = KeyRecorder()
    trainer = pl.Trainer(default_root_dir=root, max_epochs=2, max_steps=max_steps, accelerator="cpu",
                         logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=list(callbacks), enable_checkpointing=bool(callbacks))
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model.seen


@pytest.mark.slow
def test_interrupted_and_resumed_run_sees_the_same_keys(shard_dir, tmp_path):
    full = _fit(shard_dir, tmp_path / "full")
    assert sum(len(b) for b in full) == 48  # two epochs of 24 clips
    k = 5  # checkpoint after 5 batches; the interrupted run goes on 2 more (pre-fetched and trained, then lost)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=k, save_top_k=-1)
    interrupted = _fit(shard_dir, tmp_path / "cut", max_steps=k + 2, callbacks=[saver])
    assert interrupted == full[: k + 2]
    resumed = _fit(shard_dir, tmp_path / "resumed", ckpt_path=str(tmp_path / "ckpt" / f"epoch=0-step={k}.ckpt"))
    assert full[:k] + resumed == full


@pytest.mark.slow
def test_resume_across_an_epoch_boundary(shard_dir, tmp_path):
    full = _fit(shard_dir, tmp_path / "full")
    first_epoch = len(full) // 2 + 1  # somewhere in the second epoch
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1)
    _fit(shard_dir, tmp_path / "cut", max_steps=first_epoch + 1, callbacks=[saver])
    (ckpt,) = (tmp_path / "ckpt").glob(f"*step={first_epoch + 1}.ckpt")
    resumed = _fit(shard_dir, tmp_path / "resumed", ckpt_path=str(ckpt))
    assert full[: first_epoch + 1] + resumed == full
