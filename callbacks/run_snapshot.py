"""Write what is needed to understand and reproduce a run into its folder: the resolved recipe and the environment."""
from __future__ import annotations

import importlib.metadata
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

PACKAGES = ("paralign", "torch", "torchaudio", "lightning", "transformers", "torchmetrics", "omegaconf", "webdataset",
            "tensorboard", "soundfile", "numpy")


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def environment_text() -> str:
    lines = [
        f"date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"host: {socket.gethostname()}",
        f"platform: {platform.platform()}",
        f"python: {sys.version.split()[0]}",
        f"command: {' '.join(sys.argv)}",
        f"git_commit: {_git('rev-parse', 'HEAD') or 'unknown'}",
        f"git_dirty: {bool(_git('status', '--porcelain', '--untracked-files=no'))}",
    ]
    for name in PACKAGES:
        try:
            lines.append(f"{name}: {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{name}: not installed")
    try:
        import torch

        lines.append(f"cuda: {torch.version.cuda} available={torch.cuda.is_available()} "
                     f"devices={torch.cuda.device_count()}")
    except ImportError:
        pass
    return "\n".join(lines) + "\n"


@rank_zero_only
def write_snapshot(run_dir: Path, cfg: DictConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    (run_dir / "env.txt").write_text(environment_text())


class RunSnapshot(pl.Callback):
    """On fit start (rank 0): ``config.yaml`` (the fully resolved recipe) and ``env.txt`` in the run folder."""

    def __init__(self, run_dir: str | Path, cfg: DictConfig) -> None:
        self.run_dir = Path(run_dir)
        self.cfg = cfg

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        write_snapshot(self.run_dir, self.cfg)
