"""Checkpoint files written whole or not at all.

Lightning's own writer goes through an fsspec transaction whose temporary file may sit on another file system; its
final move is then a copy, and a full disk leaves a cut file under the checkpoint's real name (one that, by its
name, may be the best checkpoint). Here the bytes go to ``<name>.tmp`` in the same folder, are synced, and are
renamed over the final name only when complete; out of space is one line naming the folder, and the earlier
checkpoints stay as they were.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        if "://" in str(path):  # remote storage: its own (object-store) semantics
            return super().save_checkpoint(checkpoint, path)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(err.errno, f"no space left in {path.parent}: checkpoint {path.name} not written "
                                         "(the earlier checkpoints are intact)") from None
            raise
