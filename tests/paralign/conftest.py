"""A tiny trained run shared by the tests of this folder (train once per session: the CLI end to end, the model
folder, the server), and tone clips."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from paralign.cli import main


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(root, run folder, the train arguments) of ``recipes/tiny.yaml`` trained for 4 steps through the CLI."""
    root = tmp_path_factory.mktemp("e2e")
    run_dir = root / "run"
    args = ["--recipe", "recipes/tiny.yaml", f"run.dir={run_dir}", f"data.dir={root / 'data'}",
            "trainer.max_steps=4", "trainer.val_check_interval=4"]
    assert main(["train", *args]) == 0
    return root, run_dir, args


def tone(path, seconds=1.0, sr=16000, hz=200):
    sf.write(path, 0.3 * np.sin(np.arange(int(seconds * sr)) * 2 * np.pi * hz / sr), sr)
    return path


SPEECH = Path(__file__).resolve().parents[3] / "shared" / "ravdess_dev"  # real recordings, beside this checkout


@pytest.fixture
def recording(tmp_path) -> Path:
    """A real speech recording where one is at hand, else a tone. Either is fine for the tests that take it: they
    check the plumbing (file -> request -> model -> reply), and the tiny model's reply is gibberish whatever it
    hears."""
    recordings = sorted(SPEECH.rglob("*.wav")) if SPEECH.is_dir() else []
    return recordings[0] if recordings else tone(tmp_path / "tone.wav", seconds=2.0)
