"""Every shipped recipe loads; the paper's comparison recipes train on tiny stand-ins of their models and are
scored against the same references; the cascade references evaluate without a checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from paralign.cli import main
from paralign.dry_run import count, meta_modules
from paralign.recipe_loading import load_recipe

# Every file in recipes/, the shared base _base_demo.yaml included (it loads and builds alone)
RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))
# The demo models swapped for tiny ones, and the tiny corpus for the synthetic one: the recipe's tasks, teacher
# variants, classifier and eval settings are what is under test.
TINY = ["llm.name=tiny", "encoder.type=conformer", "llm.tiny.hidden_size=64", "llm.tiny.layers=2", "llm.tiny.heads=4",
        "encoder.d_model=32", "encoder.layers=1", "encoder.heads=2", "encoder.ffn_dim=64", "encoder.kernel_size=7",
        "data.source=tiny",
        "data.max_batch_seconds=8.0", "data.max_batch_size=4", "data.num_workers=0", "data.shuffle_buffer=8",
        "data.bucket_window=8", "trainer.max_steps=2", "classifier.pretrain_steps=0", "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1",
        "trainer.max_time=null", "generation.max_new_tokens=4", "callbacks.validation_generations.batches=1",
        "eval.max_clips=4",
        "eval.after_train=false", "eval.showcase_split=null",
        # the demo's prompt.content=transcript path with the corpus's words (no Whisper to load in a recipe test)
        "prompt.transcripts=corpus"]


# What a user gives on the command line for these recipes: their own copy of a corpus (no recipe points at one)
USER_PATHS = {"ravdess": ["data.corpus.root=/data/RAVDESS"]}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_builds_its_model(path):
    """Each recipe's model, built by its own constructor on the meta device (the dry run's path, no weights): a
    trainable adapter, and a frozen LLM none of whose parameters trains. A recipe load_recipe refuses, or whose
    model cannot be built (a model with no config here, a shape the modules refuse), fails here."""
    parts = meta_modules(load_recipe(path, USER_PATHS.get(path.stem, [])))
    assert count(parts["adapter"], trainable=True) > 0
    assert count(parts["llm"]) > 0 and count(parts["llm"], trainable=True) == 0


def test_a_recipe_that_needs_a_users_corpus_says_so():
    with pytest.raises(SystemExit, match="data.source=import needs data.corpus.root"):
        main(["train", "--recipe", "recipes/ravdess.yaml", "--dry-run"])


def test_comparison_recipes_differ_only_where_the_paper_says():
    ours, plain, only = (load_recipe(f"recipes/{n}.yaml") for n in ("ours", "baseline_plain", "response_only"))
    assert ours.tasks.response.teacher_variant == only.tasks.response.teacher_variant == "conditioned"
    assert plain.tasks.response.teacher_variant == "plain"
    assert "plain" in plain.teacher.variants and "conditioned" in plain.teacher.variants  # train on one, score on other
    for cfg in (plain, only):  # emotion/style asked at evaluation, never trained
        assert cfg.tasks.emotion.share == cfg.tasks.style.share == 0 and not cfg.classifier.enabled
    assert ours.tasks.emotion.share > 0 and ours.tasks.style.share > 0
    for cfg in (ours, plain, only):
        assert cfg.data == ours.data and cfg.encoder == ours.encoder and cfg.llm == ours.llm
        assert cfg.eval.reference_variant == "conditioned"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return tmp_path_factory.mktemp("recipes") / "data"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ours", "baseline_plain"])
def test_comparison_recipe_trains_and_is_scored_on_the_same_references(name, tiny_data, tmp_path):
    args = ["--recipe", f"recipes/{name}.yaml", *TINY, f"data.dir={tiny_data}", f"run.dir={tmp_path}"]
    assert main(["train", *args]) == 0
    assert main(["eval", "--ckpt", str(tmp_path / "checkpoints" / "last.ckpt"), *args]) == 0
    rows = [json.loads(line) for line in (tmp_path / "eval" / "generations.jsonl").read_text().splitlines()]
    assert {"response", "emotion", "style", "asr"} <= {r["task"] for r in rows}  # share-0 tasks are still asked
    responses = [r for r in rows if r["task"] == "response"]
    # the tiny corpus's conditioned replies name the emotion; the plain ones do not
    assert responses and all(r["reference"].rstrip(".").endswith(r["emotion"]) for r in responses)


@pytest.mark.slow
def test_cascade_references_evaluate_without_a_checkpoint(tiny_data, tmp_path, capsys):
    args = [*TINY, f"data.dir={tiny_data}", f"run.dir={tmp_path / 'labels'}"]
    assert main(["eval", "--recipe", "recipes/cascade_labels.yaml", *args]) == 0
    metrics = json.loads((tmp_path / "labels" / "eval" / "metrics.json").read_text())
    assert metrics["checkpoint"] == "none (cascade: transcript+labels)"
    assert metrics["probe"] == {"emotion": None, "style": None}  # no speech tokens to probe
    rows = (tmp_path / "labels" / "eval" / "generations.jsonl").read_text().splitlines()
    assert rows and {"emotion", "response"} <= {json.loads(r)["task"] for r in rows}
    with pytest.raises(SystemExit, match="cascade reference"):
        main(["eval", "--recipe", "recipes/cascade_transcript.yaml", "--ckpt", "x.ckpt", *args])
    with pytest.raises(SystemExit, match="nothing to train"):
        main(["train", "--recipe", "recipes/cascade_transcript.yaml", *args])
    with pytest.raises(SystemExit, match="--ckpt or --model is required"):
        main(["eval", "--recipe", "recipes/ours.yaml", *TINY, f"data.dir={tiny_data}"])


def test_cascade_words_go_where_the_speech_goes():
    """The cascade prompt is the teacher's prompt: the words, spliced into the speech slot, generate exactly what
    the whole text prompt generates."""
    import torch

    from lightning_modules.speech_llm import SpeechLLM
    from paralign.evaluation.run import cascade_replies
    from tests.lightning_modules.conftest import batch_for, make_clip, tiny_cfg

    torch.manual_seed(0)
    model = SpeechLLM(tiny_cfg({"emotion": {}}, generation={"max_new_tokens": 6}, prompt={"transcripts": "corpus"}))
    batch = batch_for(model, [make_clip(0, 100, "sad"), make_clip(1, 140, "happy")])
    replies = cascade_replies(model, batch, with_labels=True)
    from prep.teacher import generate_batch

    prompter = model.llm.prompter
    ids = [prompter.teacher_ids(t, m, "conditioned") for t, m in zip(batch.template, batch.meta)]
    expected = [prompter.tokenizer.decode(r, skip_special_tokens=True) for r in generate_batch(model.llm, ids, 6)]
    assert [r.strip() for r in replies] == [e.strip() for e in expected]
