"""Hostile and careless input: a checkpoint that would run code, a run with no readable sample, recipe values
out of range, and errors a user causes shown as one line."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
from omegaconf import OmegaConf

from paralign.checkpoint_io import UnsafeCheckpoint
from paralign.cli import main
from paralign.recipe_loading import RecipeError, load_recipe
from paralign.train import resume_checkpoint


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PAYLOAD_MARK']}",))


def test_a_checkpoint_that_would_run_code_is_refused_and_never_runs(tmp_path, monkeypatch):
    mark = tmp_path / "payload_ran"
    monkeypatch.setenv("PAYLOAD_MARK", str(mark))
    (tmp_path / "checkpoints").mkdir()
    with open(tmp_path / "checkpoints" / "last.ckpt", "wb") as f:
        pickle.dump({"global_step": 5, "x": _Payload()}, f)
    torch.save({"global_step": 5, "x": _Payload()}, tmp_path / "hpc_ckpt_1.ckpt")
    with pytest.raises(UnsafeCheckpoint, match="not a plain checkpoint") as err:
        resume_checkpoint(OmegaConf.create({"run": {"resume": "auto"}}), tmp_path)
    assert "weights_only=False" not in str(err.value)
    assert not mark.exists()


@pytest.mark.parametrize("override, key", [
    ("data.max_batch_size=0", "data.max_batch_size=0 must be > 0"),
    ("data.max_batch_size=-2", "data.max_batch_size=-2 must be > 0"),
    ("trainer.max_steps=-3", "trainer.max_steps=-3 must be > 0"),
    ("optim.lr=-1", "optim.lr=-1.0 must be > 0"),
    ("data.num_workers=-1", "data.num_workers=-1 must be >= 0"),
    ("tasks.asr.weight=-1", "tasks.asr.weight=-1.0 must be >= 0"),
])
def test_values_out_of_range_are_refused_naming_the_key(override, key):
    with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
        load_recipe("recipes/tiny.yaml", [override])


def test_a_recipe_without_tasks_is_refused_before_any_data_is_built(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text(f"data: {{dir: {tmp_path / 'data'}}}\n")
    with pytest.raises(SystemExit, match="enables no task"):
        main(["train", "--recipe", str(empty)])
    assert not (tmp_path / "data").exists()  # no 2,000-clip corpus built first


@pytest.mark.slow
def test_a_run_with_no_readable_sample_stops_instead_of_spinning(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train-000000.tar").write_bytes(b"not a tar at all")
    (data / "val-000000.tar").write_bytes(b"not a tar at all")
    args = ["train", "--recipe", "recipes/tiny.yaml", "data.source=shards", f"data.dir={data}",
            f"run.dir={tmp_path / 'run'}", "trainer.max_time=00:00:02:00"]
    with pytest.raises(SystemExit, match="no readable sample in an epoch of .*train-000000.tar"):
        main(args)


@pytest.mark.slow
def test_init_from_starts_from_a_trained_checkpoint_with_a_fresh_optimizer(tmp_path):
    data = tmp_path / "data"
    base = ["--recipe", "recipes/tiny.yaml", f"data.dir={data}", "trainer.max_steps=2", "trainer.val_check_interval=2",
            "callbacks.last_checkpoint.every_n_train_steps=2"]
    assert main(["train", *base, f"run.dir={tmp_path / 'a'}"]) == 0
    first = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)
    from lightning_modules.speech_llm import SpeechLLM
    from paralign.train import init_weights

    model = SpeechLLM(load_recipe("recipes/tiny.yaml", [f"data.dir={data}"]))
    init_weights(model, tmp_path / "a" / "checkpoints" / "last.ckpt")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in first["state_dict"].items())
    assert main(["train", *base, f"run.dir={tmp_path / 'b'}",
                 f"init_from={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}"]) == 0
    second = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    assert second["global_step"] == 2  # counted afresh, not 2 + 2
    other = ["train", "--recipe", "recipes/tiny.yaml", f"data.dir={data}", f"run.dir={tmp_path / 'c'}",
             "encoder.d_model=48", f"init_from={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}"]
    with pytest.raises(SystemExit, match="does not fit this recipe's model"):
        main(other)


def _lock(run_dir, **holder):
    import json as _json

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.lock").write_text(_json.dumps(holder))


@pytest.mark.slow
def test_a_second_run_on_a_folder_stops_at_once_and_a_stale_lock_is_taken_over(tmp_path, caplog):
    import socket

    run = tmp_path / "run"
    args = ["train", "--recipe", "recipes/tiny.yaml", f"data.dir={tmp_path / 'data'}", f"run.dir={run}",
            "trainer.max_steps=2", "trainer.val_check_interval=2"]
    _lock(run, host=socket.gethostname(), pid=os.getpid(), since="now")  # a live holder: this very process
    with pytest.raises(SystemExit, match="is in use by PID"):
        main(args)
    assert not (tmp_path / "data").exists()  # nothing built, nothing trained
    assert not (run / "checkpoints").exists()
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    _lock(run, host=socket.gethostname(), pid=dead, since="earlier")  # its holder is gone (kill -9)
    assert main(args) == 0
    assert "taking over the stale lock" in caplog.text
    assert (run / "checkpoints" / "last.ckpt").exists() and not (run / "run.lock").exists()


def test_a_full_disk_leaves_no_cut_checkpoint_under_its_name(tmp_path, monkeypatch):
    import errno

    from paralign.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    good = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, good)
    assert torch.load(good, weights_only=True)["global_step"] == 1

    def full_disk(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    best = tmp_path / "checkpoints" / "step000020-val15.748.ckpt"
    with pytest.raises(OSError, match=f"no space left in {tmp_path / 'checkpoints'}"):
        io.save_checkpoint({"global_step": 20}, best)
    assert not best.exists() and not list(best.parent.glob("*.tmp"))
    with pytest.raises(OSError, match="no space left"):
        io.save_checkpoint({"global_step": 2}, good)
    monkeypatch.undo()
    assert torch.load(good, weights_only=True)["global_step"] == 1  # the earlier one is intact


def test_a_run_dir_that_cannot_be_written_is_one_line_before_any_data(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root ignores the mode bits
        locked = tmp_path / "a_file"
        locked.write_text("not a folder")
    with pytest.raises(SystemExit, match="is not a writable folder"):
        main(["train", "--recipe", "recipes/tiny.yaml", f"data.dir={tmp_path / 'data'}", f"run.dir={locked / 'run'}"])
    assert not (tmp_path / "data").exists()
