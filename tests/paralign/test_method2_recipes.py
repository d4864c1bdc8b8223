"""Method 2's recipes run a few steps on tiny stand-ins: explicit (labels, then a trained predictor's labels),
implicit and explicit+implicit on generated QA pairs, and the QA benchmark scored by question type."""
from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from paralign.cli import main
from paralign.recipe_loading import load_recipe
from prep.qa_generate import generate_qa
from prep.tiny_corpus import build_tiny_corpus
from tests.prep.test_qa_generate import FakeGenerator

# The demo's SmolLM2 and conformer swapped for tiny ones, the synthetic corpus for the tiny one.
TINY = ["llm.name=tiny", "encoder.type=conformer", "encoder.d_model=32", "encoder.layers=1", "encoder.heads=2",
        "encoder.ffn_dim=64", "encoder.kernel_size=7", "data.source=tiny", "data.max_batch_seconds=8.0",
        "data.max_batch_size=4",
        "data.num_workers=0", "data.shuffle_buffer=8", "data.bucket_window=8", "trainer.max_steps=2",
        "classifier.pretrain_steps=0",
        "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "trainer.max_time=null",
        "trainer.log_every_n_steps=1",
        "generation.max_new_tokens=4", "callbacks.validation_generations.batches=1", "eval.max_clips=4"]


def scalar_tags(run_dir):
    return set(EventAccumulator(str(run_dir / "tensorboard")).Reload().Tags()["scalars"])


@pytest.fixture(scope="module")
def qa_data(tmp_path_factory):
    """The tiny corpus and its shards with crafted QA pairs (the tiny LLM's own pairs are all rejected)."""
    root = tmp_path_factory.mktemp("m2")
    build_tiny_corpus(root / "base")
    # Made with the implicit recipe's own settings, so that its `paralign data` finds them current.
    settings = load_recipe("recipes/implicit.yaml", [f"qa_generation.from_dir={root / 'base'}"]).qa_generation
    generate_qa(settings, root / "base", root / "qa", generator=FakeGenerator())
    return root


@pytest.mark.slow
def test_explicit_with_labels_then_with_a_trained_predictor(qa_data, tmp_path):
    base = ["--recipe", "recipes/explicit.yaml", *TINY, f"data.dir={qa_data / 'base'}"]
    assert main(["train", *base, f"run.dir={tmp_path / 'labels'}"]) == 0
    assert "train/response/loss" in scalar_tags(tmp_path / "labels")
    predictor = ["--recipe", "recipes/emotion_predictor.yaml", *TINY, f"data.dir={qa_data / 'base'}"]
    assert main(["train", *predictor, f"run.dir={tmp_path / 'predictor'}"]) == 0
    assert "train/classifier/emotion/loss" in scalar_tags(tmp_path / "predictor")
    assert main(["predict-labels", "--ckpt", str(tmp_path / "predictor" / "checkpoints" / "last.ckpt"),
                 "--shards", str(qa_data / "base"), "--out", str(tmp_path / "pred")]) == 0
    predicted = [*base, "data.source=shards", f"data.dir={tmp_path / 'pred'}", f"run.dir={tmp_path / 'pred_run'}",
                 *(f"tasks.{t}.metadata.source=predicted" for t in ("response", "emotion", "style"))]
    assert main(["train", *predicted]) == 0
    assert main(["eval", "--ckpt", str(tmp_path / "pred_run" / "checkpoints" / "last.ckpt"), *predicted]) == 0
    rows = [json.loads(x) for x in (tmp_path / "pred_run" / "eval" / "generations.jsonl").read_text().splitlines()]
    shown = {r["task"]: "[emotion: " in r["prompt"] for r in rows}
    assert shown == {"response": True, "emotion": True, "style": True, "asr": False}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["implicit", "explicit_implicit"])
def test_implicit_recipes_train_on_qa_pairs(name, qa_data, tmp_path):
    args = ["--recipe", f"recipes/{name}.yaml", *TINY, f"data.dir={qa_data / 'qa'}",
            f"qa_generation.from_dir={qa_data / 'base'}", f"run.dir={tmp_path}", "tasks.qa.share=5.0"]
    assert main(["train", *args]) == 0
    assert "train/qa/loss" in scalar_tags(tmp_path)
    assert main(["eval", "--ckpt", str(tmp_path / "checkpoints" / "last.ckpt"), *args, "eval.tasks=[qa]"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "eval" / "generations.jsonl").read_text().splitlines()]
    assert rows and {r["question_type"] for r in rows} <= {"content", "content+emotion"}
    assert all(("[emotion: " in r["prompt"]) == (name == "explicit_implicit") for r in rows)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["tasks"]["qa"]["per_question_type"]["rougeL"]) <= {"content", "content+emotion"}
