"""``paralign train`` (paralign/train.py): what a training run prints."""
from __future__ import annotations

import logging
import warnings

import pytest

from paralign.cli import main


@pytest.mark.slow
def test_a_training_run_prints_no_library_notice_the_user_cannot_act_on(tmp_path, caplog):
    """Lightning's advertisement for its cloud logger and its own use of torch's deprecated ``LeafSpec`` are
    printed by every run; neither is the user's to act on, so neither reaches them."""
    args = ["--recipe", "recipes/tiny.yaml", f"run.dir={tmp_path / 'run'}", f"data.dir={tmp_path / 'data'}",
            "trainer.max_steps=2", "trainer.val_check_interval=2", "callbacks.validation_generations=null"]
    with warnings.catch_warnings(record=True) as seen, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        assert main(["train", *args]) == 0
    assert not [w for w in seen if "LeafSpec" in str(w.message) or "in eval mode" in str(w.message)]
    assert "litlogger" not in caplog.text
    assert "GPU available" in caplog.text  # Lightning's other lines still reach the user
