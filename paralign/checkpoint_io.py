"""Checkpoint files: written whole or not at all, and read as data, never code.

Lightning's own writer goes through an fsspec transaction whose temporary file may sit on another file system; its
final move is then a copy, and a full disk leaves a cut file under the checkpoint's real name (one that, by its
name, may be the best checkpoint). Here the bytes go to ``<name>.tmp`` in the same folder, are synced, and are
renamed over the final name only when complete; out of space is one line naming the folder, and the earlier
checkpoints stay as they were.

Reading: ``read_checkpoint`` is the one reader (resume, ``init_from``, ``paralign eval`` / ``infer``), with one
refusal line for each way a file can be unusable.
"""
from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

if TYPE_CHECKING:
    from omegaconf import DictConfig


class AtomicCheckpointIO(TorchCheckpointIO):
    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
                        ) -> dict[str, Any]:
        """Every read the trainer makes (resume, the sharded strategy's key check) goes through ``read_checkpoint``:
        data only, memory-mapped, one refusal line per unusable file."""
        if "://" in str(path):  # remote storage: Lightning's own reader, still data only
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return read_checkpoint(path, mmap=True)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        if "://" in str(path):  # remote storage: its own (object-store) semantics
            return super().save_checkpoint(checkpoint, path)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        sink = _WriteErrors()
        try:
            with open(tmp, "wb") as f:
                sink.f = f
                torch.save(checkpoint, sink)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as err:  # whatever stops the write (a full disk, a signal): no cut .tmp stays
            tmp.unlink(missing_ok=True)
            # torch reports a failed write as RuntimeError ("[enforce fail at inline_container.cc ...]"); the OSError
            # underneath it says what happened
            cause = err if isinstance(err, OSError) else sink.error
            if cause is not None and cause.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(cause.errno, f"no space left in {path.parent}: checkpoint {path.name} not written "
                                           "(the earlier checkpoints are intact)") from None
            if cause is not None and cause is not err:
                raise OSError(cause.errno, f"cannot write checkpoint {path} ({cause.strerror})") from None
            raise


class _WriteErrors:
    """The file torch writes to, keeping the OSError of a failed write (torch replaces it by a RuntimeError)."""

    def __init__(self) -> None:
        self.f: Any = None
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.f.flush()


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: missing, empty, cut, not a torch file, holding code, or not one of
    paralign's. The message is one line naming the file."""


class UnsafeCheckpoint(CheckpointError):
    """A file that holds pickled objects (code to run), not only tensors and plain data: never loaded."""


def read_checkpoint(path: str | Path, *, mmap: bool = False, what: str = "checkpoint") -> dict[str, Any]:
    """Every read of a checkpoint goes through here: tensors and plain data only (``weights_only``; a checkpoint
    from elsewhere is data, never code), and one refusal line per way a file can be unusable. ``what`` names the
    file the way the user gave it (e.g. ``init_from``). Raises ``UnsafeCheckpoint`` for a file holding code, and
    ``CheckpointError`` for any other unusable file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{what} {path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes: a write that never finished)")
    try:
        state = torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except Exception as err:  # a cut zip, a text file, ...: torch raises RuntimeError, EOFError, ValueError ...
        if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in str(err):
            raise UnsafeCheckpoint(f"{what} {path} is not a plain checkpoint (it holds pickled objects, not only "
                                   "tensors and plain data): refusing to load it") from None
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{what} {path} is not a readable checkpoint (cut, or not a torch file: "
                              f"{reason})") from None
    if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict):
        raise CheckpointError(f"{what} {path} is not a paralign training checkpoint (no state_dict)")
    return state


def recipe_of_checkpoint(ckpt: str | Path) -> DictConfig:
    """The resolved recipe saved with the run (``config.yaml`` beside ``checkpoints/``), else in the checkpoint."""
    path = Path(ckpt)
    saved = path.resolve().parents[1] / "config.yaml"
    from paralign.recipe_loading import load_recipe, recipe_from_data

    if saved.exists():
        return load_recipe(saved)
    recipe = read_checkpoint(path).get("hyper_parameters", {}).get("recipe")
    if recipe is None:
        raise CheckpointError(f"{path}: no config.yaml beside its checkpoints/ folder and no recipe inside it")
    return recipe_from_data(recipe, f"{path} (its recipe)")
