"""Checkpoint files: written whole or not at all (a real full disk: /dev/full), read by one reader that refuses
every unusable file in one line, and a resume that takes the furthest readable one."""
from __future__ import annotations

import builtins
import errno

import pytest
import torch
from omegaconf import OmegaConf

import paralign.checkpoint_io as checkpoint_io
from paralign.checkpoint_io import AtomicCheckpointIO, CheckpointError, UnsafeCheckpoint, read_checkpoint
from paralign.cli import main
from paralign.train import resume_checkpoint


class _Object:
    """Any class of ours: unpickling it means running code of the file's choosing."""


def _ckpt(step: int) -> dict:
    return {"global_step": step, "state_dict": {"adapter.w": torch.full((4,), float(step))}}


def test_a_real_full_disk_names_the_folder_and_leaves_no_tmp(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    good = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint(_ckpt(1), good)

    def full_disk(name, mode="r", *args, **kwargs):  # the temporary file is created, its bytes go to /dev/full
        if str(name).endswith(".tmp"):
            builtins.open(name, "wb").close()
            return builtins.open("/dev/full", mode, *args, **kwargs)
        return builtins.open(name, mode, *args, **kwargs)

    monkeypatch.setattr(checkpoint_io, "open", full_disk, raising=False)
    big = {"global_step": 2, "state_dict": {"w": torch.ones(100_000)}}  # torch raises RuntimeError for this
    with pytest.raises(OSError, match=f"no space left in {tmp_path / 'checkpoints'}: checkpoint last.ckpt"):
        io.save_checkpoint(big, good)
    assert not list(good.parent.glob("*.tmp"))
    monkeypatch.undo()
    assert read_checkpoint(good)["global_step"] == 1  # the earlier one is intact


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"PK\x03\x04 cut here", "is not a readable checkpoint"),
    (b"hello, a text file\n", "is not a readable checkpoint"),
])
def test_unusable_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_a_cut_real_checkpoint_a_folder_a_foreign_file_and_code(tmp_path):
    whole = tmp_path / "whole.ckpt"
    torch.save(_ckpt(3), whole)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.ckpt is not a readable checkpoint"):
        read_checkpoint(cut)
    with pytest.raises(CheckpointError, match="is a folder"):
        read_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "nowhere.ckpt")
    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a paralign training checkpoint"):
        read_checkpoint(tmp_path / "foreign.pt")
    torch.save({"global_step": 1, "state_dict": {}, "x": _Object()}, tmp_path / "code.ckpt")
    with pytest.raises(UnsafeCheckpoint, match="not a plain checkpoint"):
        read_checkpoint(tmp_path / "code.ckpt")


@pytest.mark.parametrize("command", ["eval", "infer", "init_from"])
def test_every_command_refuses_a_bad_checkpoint_in_one_line(tmp_path, command):
    bad = tmp_path / "checkpoints" / "last.ckpt"
    bad.parent.mkdir()
    bad.write_bytes(b"")
    args = {"eval": ["eval", "--recipe", "recipes/tiny.yaml", "--ckpt", str(bad)],
            "infer": ["infer", "--ckpt", str(bad), "--audio", str(bad)],
            "init_from": ["train", "--recipe", "recipes/tiny.yaml", f"init_from={bad}", f"run.dir={tmp_path / 'r'}",
                          f"data.dir={tmp_path / 'data'}", "trainer.max_steps=1"]}[command]
    with pytest.raises(SystemExit, match=f"^error: .*{bad}.* is empty"):
        main(args)


def test_resume_takes_the_furthest_readable_checkpoint_when_last_is_cut(tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save(_ckpt(300), folder / "step000300-val1.234.ckpt")
    torch.save(_ckpt(200), folder / "step000200-val1.500.ckpt")
    whole = tmp_path / "whole.ckpt"
    torch.save(_ckpt(400), whole)
    (folder / "last.ckpt").write_bytes(whole.read_bytes()[:100])  # cut mid-write
    cfg = OmegaConf.create({"run": {"resume": "auto"}})
    assert resume_checkpoint(cfg, tmp_path) == str(folder / "step000300-val1.234.ckpt")
    assert "last.ckpt is not a readable checkpoint" in caplog.text
    torch.save(_ckpt(300), folder / "last.ckpt")  # equal steps: last.ckpt, then a preemption save, win
    assert resume_checkpoint(cfg, tmp_path) == str(folder / "last.ckpt")
    torch.save(_ckpt(300), tmp_path / "hpc_ckpt_2.ckpt")
    assert resume_checkpoint(cfg, tmp_path) == str(tmp_path / "hpc_ckpt_2.ckpt")


def test_enospc_from_the_os_is_the_same_line(tmp_path, monkeypatch):
    def refuse(obj, f):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(torch, "save", refuse)
    with pytest.raises(OSError, match="no space left in"):
        AtomicCheckpointIO().save_checkpoint(_ckpt(1), tmp_path / "last.ckpt")
    assert not list(tmp_path.glob("*.tmp"))
