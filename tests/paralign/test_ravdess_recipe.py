"""recipes/ravdess.yaml on real speech (the development copy of RAVDESS beside the repository; skipped without it):
import with a speaker split, teacher replies, and fine-tuning from a checkpoint, on tiny stand-in models."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clips.shard_writer import iter_shard_metadata, shard_files
from paralign.cli import main
from tests.paralign.test_recipes import TINY

RAVDESS = Path(__file__).resolve().parents[2] / ".." / "shared" / "ravdess_dev"
pytestmark = pytest.mark.skipif(not (RAVDESS / "Actor_01").is_dir(), reason="no RAVDESS copy beside the repository")


@pytest.mark.slow
def test_real_actors_split_by_speaker_and_fine_tuned_from_a_checkpoint(tmp_path):
    corpus = tmp_path / "ravdess"
    corpus.mkdir()
    for actor in ("Actor_01", "Actor_02", "Actor_03"):  # three real actors, linked, never copied
        (corpus / actor).symlink_to((RAVDESS / actor).resolve(), target_is_directory=True)
    data = tmp_path / "data"
    common = ["--recipe", "recipes/ravdess.yaml", *TINY, "data.source=import", f"data.dir={data}",
              f"data.corpus.root={corpus}", "data.corpus.val_speakers=[Actor_02]",
              "data.corpus.test_speakers=[Actor_03]",
              "callbacks.last_checkpoint.every_n_train_steps=2", "teacher.max_new_tokens=4"]
    assert main(["train", *common, f"run.dir={tmp_path / 'first'}"]) == 0
    splits: dict[str, set] = {}
    for _, meta in iter_shard_metadata(shard_files(data)):
        splits.setdefault(meta["split"], set()).add(meta["speaker"])
    assert splits == {"train": {"Actor_01"}, "val": {"Actor_02"}, "test": {"Actor_03"}}
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["samples"] == 180 and manifest["split"]["method"] == "by speaker, named"
    first = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert main(["train", *common, f"run.dir={tmp_path / 'second'}", f"init_from={first}"]) == 0
    tuned = torch.load(tmp_path / "second" / "checkpoints" / "last.ckpt", weights_only=True)
    assert tuned["global_step"] == 2
    start = torch.load(first, weights_only=True)["state_dict"]
    assert any(not torch.equal(start[k], v) for k, v in tuned["state_dict"].items())  # it trained on from there
