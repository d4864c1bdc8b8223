"""Method 2 (explicit): metadata rendered into the user turn, from labels or predictions, through real prompts."""
from __future__ import annotations

import random

import pytest

from clips.metadata import MetadataSpec, MissingMetadata, metadata_text, with_metadata
from clips.tasks import build_tasks
from lightning_modules.speech_llm import SpeechLLM
from paralign.recipe_loading import RecipeError, load_recipe
from tests.lightning_modules.conftest import batch_for, make_clip, tiny_cfg

META = {"id": "c1", "transcript": "it is raining", "emotion": "sad", "valence": 1.84, "arousal": 2.1,
        "dominance": 2.4, "style": ["slow", "default"], "gender": "female"}


def test_labels_render_like_the_paper():
    assert metadata_text(META, MetadataSpec()) == "[emotion: sad; valence 1.8, arousal 2.1, dominance 2.4]"
    every = MetadataSpec(fields=("emotion", "arousal", "style", "gender"))
    assert metadata_text(META, every) == "[emotion: sad; arousal 2.1; style: slow; gender: female]"
    # Unknown values are left out, not guessed; nothing known at all gives no bracket.
    assert metadata_text({**META, "valence": None, "dominance": None}, MetadataSpec()) == "[emotion: sad; arousal 2.1]"
    assert metadata_text({"id": "x", "emotion": None}, MetadataSpec()) == ""


def test_predicted_source_and_time_stamped_segments():
    predicted = {"emotion": "angry", "valence": 2.0, "arousal": 4.25, "dominance": 3.9, "segments": [
        {"start": 0.0, "end": 4.0, "emotion": "neutral", "valence": 3.0},
        {"start": 4.0, "end": 6.3, "emotion": "angry", "valence": 1.9}]}
    meta = {**META, "extra": {"predicted": predicted}}
    whole = MetadataSpec(source="predicted")
    assert metadata_text(meta, whole) == "[emotion: angry; valence 2.0, arousal 4.2, dominance 3.9]"
    seg = MetadataSpec(source="predicted", fields=("emotion", "valence"), segments=True)
    assert metadata_text(meta, seg) == ("[0.0-4.0 s: emotion: neutral; valence 3.0]\n"
                                        "[4.0-6.3 s: emotion: angry; valence 1.9]")
    with pytest.raises(MissingMetadata, match="c1.*predict-labels"):
        metadata_text(META, whole)


def test_placement_in_templates():
    assert with_metadata("{speech}\nHow?", "[emotion: sad]") == "{speech}\n[emotion: sad]\nHow?"
    assert with_metadata("Listen: {speech} {metadata}\nQ?", "[x]") == "Listen: {speech} [x]\nQ?"
    assert with_metadata("{speech}\n{metadata}\nQ?", "") == "{speech}\nQ?"
    assert with_metadata("{speech}", "") == "{speech}"


def test_example_prompts_carry_metadata_only_for_enabled_tasks():
    model = SpeechLLM(tiny_cfg({"emotion": {"metadata": {"enabled": True}}, "asr": {}}))
    clip = make_clip(0, 120)
    clip.meta.update(valence=1.8, arousal=2.1, dominance=2.4)
    batch = batch_for(model, [clip])
    prompts = dict(zip(batch.task, batch.template))
    assert "[emotion: sad; valence 1.8, arousal 2.1, dominance 2.4]" in prompts["emotion"]
    assert "emotion:" not in prompts["asr"]
    i = batch.task.index("emotion")
    suffix = model.llm.prompter.tokenizer.decode(batch.suffix[i])
    assert suffix.startswith("\n[emotion: sad; valence 1.8")  # right after the speech span, tokenised for real
    loss, _, _, _ = model.losses(batch)
    assert loss.isfinite()


def test_metadata_slot_without_metadata_is_an_error_and_bad_keys_are_named():
    cfg = tiny_cfg({"emotion": {"instructions": ["{speech} {metadata}\nHow?"]}})
    with pytest.raises(ValueError, match="tasks.emotion.instructions use {metadata}"):
        build_tasks(cfg.tasks)
    with pytest.raises(RecipeError, match="tasks.emotion.metadata.source='guess'"):
        load_recipe("recipes/explicit.yaml", ["tasks.emotion.metadata.source=guess"])
    with pytest.raises(RecipeError, match=r"metadata.fields\[1\]='pitch'"):
        load_recipe("recipes/explicit.yaml", ["tasks.emotion.metadata.fields=[emotion,pitch]"])


def test_missing_predictions_fail_loudly_in_the_example_builder():
    model = SpeechLLM(tiny_cfg({"emotion": {"metadata": {"enabled": True, "source": "predicted"}}}))
    with pytest.raises(MissingMetadata):
        batch_for(model, [make_clip(1, 100)])
    clip = make_clip(2, 100)
    clip.meta["extra"] = {"predicted": {"emotion": "happy"}}
    from clips.examples import ExampleBuilder
    (example,) = ExampleBuilder(model.tasks, model.llm.prompter, all_tasks=True)(clip, random.Random(0))
    assert "[emotion: happy]" in example.template
