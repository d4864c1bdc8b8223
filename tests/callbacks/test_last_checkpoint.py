"""last.ckpt holds the last step of a run, whatever the save interval."""
from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from callbacks.last_checkpoint import LastCheckpoint


@pytest.mark.parametrize("max_steps, every", [(10, 4), (13, 4), (12, 5), (8, 4), (3, 100)])
def test_last_checkpoint_holds_max_steps_for_any_interval(tmp_path, max_steps, every):
    saver = LastCheckpoint(dirpath=tmp_path, filename="last", save_top_k=0, save_last=True,
                           every_n_train_steps=every)
    trainer = pl.Trainer(max_steps=max_steps, callbacks=[saver], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(BoringModel())
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == max_steps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # one file, rewritten, no last-v1
