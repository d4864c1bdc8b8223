"""Checkpoints hold trainable weights only and resume them exactly; the tiny model can overfit one batch."""
from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from lightning_modules.speech_llm import SpeechLLM
from tests.lightning_modules.conftest import batch_for, make_clip, tiny_cfg


class OneBatch(torch.utils.data.IterableDataset):
    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch


def _fit(model, batch, root, steps, ckpt=None):
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=root, limit_val_batches=0,
                         enable_checkpointing=False)
    loader = torch.utils.data.DataLoader(OneBatch(batch), batch_size=None)
    trainer.fit(model, loader, ckpt_path=ckpt)
    return trainer


def test_checkpoint_has_no_frozen_llm_tensor_and_resumes(tmp_path):
    torch.manual_seed(0)
    model = SpeechLLM(tiny_cfg())
    batch = batch_for(model, [make_clip(0, 120), make_clip(1, 150)])
    trainer = _fit(model, batch, tmp_path, steps=3)
    path = tmp_path / "a.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["state_dict"], "no weights saved"
    assert not [k for k in ckpt["state_dict"] if k.startswith("llm.")]
    assert set(ckpt["state_dict"]) == {n for n, _ in model.named_parameters() if not n.startswith("llm.")} | {
        n for n, _ in model.named_buffers() if not n.startswith("llm.")}

    torch.manual_seed(1)  # a different init: everything trainable must come from the checkpoint
    restored = SpeechLLM(tiny_cfg())
    restored_trainer = _fit(restored, batch, tmp_path, steps=3, ckpt=str(path))  # max_steps reached: restore only
    assert restored_trainer.global_step == 3
    for (name, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), name
    opt_a = trainer.optimizers[0].state_dict()["state"]
    opt_b = restored_trainer.optimizers[0].state_dict()["state"]
    assert opt_a.keys() == opt_b.keys() and all(torch.equal(opt_a[k]["exp_avg"], opt_b[k]["exp_avg"]) for k in opt_a)


@pytest.mark.slow
def test_tiny_model_overfits_one_batch(tmp_path):
    torch.manual_seed(0)
    model = SpeechLLM(tiny_cfg(tasks={"asr": {}}, optim={"lr": 3e-3, "warmup_steps": 0, "scheduler": "constant"}))
    batch = batch_for(model, [make_clip(0, 120), make_clip(1, 150)])
    model.eval()
    with torch.no_grad():
        start = float(model.losses(batch)[0])
    model.train()
    _fit(model, batch, tmp_path, steps=60)
    model.eval()
    with torch.no_grad():
        end = float(model.losses(batch)[0])
    assert end < start / 3, (start, end)
