"""An evaluation's cached replies belong to the model that wrote them: another checkpoint of the run, or the run
trained further, is evaluated afresh, never scored on another model's answers."""
from __future__ import annotations

import json
import logging
import shutil

import pytest

from clips.vocab import EMOTIONS
from paralign.cli import main


def _replies(folder) -> dict[tuple[str, str], str]:
    rows = [json.loads(line) for line in (folder / "generations.jsonl").read_text().splitlines()]
    return {(r["id"], r["task"]): r["reply"] for r in rows}


@pytest.mark.slow
def test_each_checkpoint_gets_its_own_answers(tmp_path, caplog):
    run = tmp_path / "run"
    args = ["--recipe", "recipes/tiny.yaml", f"run.dir={run}", f"data.dir={tmp_path / 'data'}",
            "trainer.val_check_interval=100", "callbacks.validation_generations=null", "eval.tasks=[emotion]"]
    assert main(["train", *args, "trainer.max_steps=3"]) == 0
    early = run / "checkpoints" / "early.ckpt"
    shutil.copy(run / "checkpoints" / "last.ckpt", early)
    assert main(["train", *args, "trainer.max_steps=30"]) == 0  # the run trained further: a new last.ckpt
    out = run / "eval"

    assert main(["eval", "--ckpt", str(early), *args]) == 0
    early_metrics = json.loads((out / "metrics.json").read_text())
    with caplog.at_level(logging.INFO):
        assert main(["eval", "--ckpt", str(run / "checkpoints" / "last.ckpt"), *args]) == 0
    assert "holds the replies of another model" in caplog.text and str(early) in caplog.text
    last_metrics, last_replies = json.loads((out / "metrics.json").read_text()), _replies(out)
    assert last_metrics["model_fingerprint"] != early_metrics["model_fingerprint"]
    # every emotion answer carries the likelihood of each emotion's answer: the closed-set figure
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert rows and all(set(r["answer_logp"]) == set(EMOTIONS) for r in rows if r["task"] == "emotion")
    assert last_metrics["tasks"]["emotion"]["metrics"]["accuracy_closed_set"]["n"] == len(rows)
    assert json.loads((out / "generations.model.json").read_text())["source"].endswith("last.ckpt")

    # The same replies as an evaluation of last.ckpt in a folder that never saw another model
    fresh = tmp_path / "fresh"
    (fresh / "checkpoints").mkdir(parents=True)
    shutil.copy(run / "checkpoints" / "last.ckpt", fresh / "checkpoints" / "last.ckpt")
    assert main(["eval", "--ckpt", str(fresh / "checkpoints" / "last.ckpt"), *args]) == 0
    assert _replies(fresh / "eval") == last_replies
    assert json.loads((fresh / "eval" / "metrics.json").read_text())["model_fingerprint"] == \
        last_metrics["model_fingerprint"]

    # The same model again: every reply reused, none regenerated
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(["eval", "--ckpt", str(run / "checkpoints" / "last.ckpt"), *args]) == 0
    assert f"{len(last_replies)} replies of this model are there already" in caplog.text
    assert _replies(out) == last_replies
