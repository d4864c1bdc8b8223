"""The recipe builds the Trainer: ``trainer:`` keys go to lightning.Trainer as they are, callbacks by name."""
from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from callbacks.linear_probe import LinearProbe
from callbacks.sample_keys import SampleKeyLog
from callbacks.throughput import Throughput
from paralign.recipe_loading import RecipeError, load_recipe
from paralign.trainer import build_trainer

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"


def test_any_trainer_argument_passes_through(tmp_path):
    cfg = load_recipe(TINY, ["trainer.reload_dataloaders_every_n_epochs=2", "trainer.max_epochs=3",
                             "trainer.max_steps=5"])
    trainer = build_trainer(cfg, tmp_path)
    assert trainer.max_steps == 5 and trainer.max_epochs == 3
    assert trainer.reload_dataloaders_every_n_epochs == 2  # not declared in the schema: passed on as it is


def test_unknown_or_reserved_trainer_key_is_an_error_naming_it():
    with pytest.raises(RecipeError, match=r"trainer\.max_stepz is not an argument of lightning.Trainer"):
        load_recipe(TINY, ["trainer.max_stepz=5"])
    with pytest.raises(RecipeError, match=r"trainer\.logger is set by paralign"):
        load_recipe(TINY, ["trainer.logger=false"])


def test_declared_trainer_keys_keep_their_types():
    with pytest.raises(RecipeError, match=r"trainer\.max_steps"):
        load_recipe(TINY, ["trainer.max_steps=many"])


def test_callbacks_come_from_the_recipe_with_their_arguments(tmp_path):
    cfg = load_recipe(TINY, ["callbacks.linear_probe=null", "callbacks.sample_keys={}",
                             "callbacks.throughput.window=7", "callbacks.best_checkpoints.save_top_k=5"])
    callbacks = build_trainer(cfg, tmp_path).callbacks
    assert not any(isinstance(c, LinearProbe) for c in callbacks)  # null switches it off
    (keys,) = [c for c in callbacks if isinstance(c, SampleKeyLog)]
    assert keys.folder == tmp_path / "sample_keys"  # paralign fills in the run folder
    assert [c.window for c in callbacks if isinstance(c, Throughput)] == [7]
    checkpoints = {c.filename: c for c in callbacks if isinstance(c, ModelCheckpoint)}
    assert checkpoints["last"].save_last and checkpoints["last"].dirpath == str(tmp_path / "checkpoints")
    assert checkpoints["last"]._every_n_train_steps == 4  # tiny.yaml's callbacks.last_checkpoint
    best = checkpoints["step{step:06d}-val{val/loss:.3f}"]
    assert best.save_top_k == 5 and best.monitor == "val/loss"


def test_default_callback_arguments_follow_the_trainer(tmp_path):
    cfg = load_recipe(TINY, ["trainer.log_every_n_steps=3"])
    assert [c.window for c in build_trainer(cfg, tmp_path).callbacks if isinstance(c, Throughput)] == [3]


def test_unknown_callback_or_argument_is_an_error_naming_it():
    with pytest.raises(RecipeError, match=r"callbacks\.throughputz: no such callback"):
        load_recipe(TINY, ["callbacks.throughputz={}"])
    with pytest.raises(RecipeError, match=r"callbacks\.throughput\.windows is not an argument of Throughput"):
        load_recipe(TINY, ["callbacks.throughput.windows=3"])
    with pytest.raises(RecipeError, match=r"callbacks\.last_checkpoint\.dirpath is not an argument"):
        load_recipe(TINY, ["callbacks.last_checkpoint.dirpath=/elsewhere"])  # the run folder is paralign's
    with pytest.raises(RecipeError, match=r"callbacks\.linear_probe must be a mapping"):
        load_recipe(TINY, ["callbacks.linear_probe=3"])


@pytest.mark.parametrize("strategy, even", [("fsdp", True), ("auto", False)])
def test_sharded_training_makes_every_rank_run_the_same_validation_batches(tmp_path, strategy, even):
    """Under FSDP the ranks' all-gathers pair up, so validation must stop at the shortest rank's batch count: the
    training run tells the DataModule so from its strategy (the DataModule reads no trainer settings)."""
    from lightning_modules.speech_llm import SpeechLLM
    from paralign.train import build_datamodule
    from prep.tiny_corpus import build_tiny_corpus
    from tests.lightning_modules.conftest import tiny_cfg

    build_tiny_corpus(tmp_path, clips=8)
    cfg = tiny_cfg({"emotion": {}}, data={"dir": str(tmp_path)}, trainer={"strategy": strategy})
    dm = build_datamodule(cfg, SpeechLLM(cfg))
    assert dm.even_eval_batches is even and dm.val_dataloader().even_batches is even
