"""encoder.speaker_norm through the CLI: training computes every split's speakers and the reference (kept in the
checkpoint), an evaluation computes the speakers of the clips it reads, from those clips, and keeps the reference;
``paralign infer --same-speaker`` hears a user's files relative to their own mean."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clips.shard_writer import iter_shard_metadata, shard_files
from paralign.cli import main
from paralign.model_folder import load_trained
from paralign.recipe_loading import load_recipe
from paralign.speaker_statistics import prepare_evaluation
from tests.lightning_modules.test_whisper import tiny_whisper
from tests.paralign.conftest import tone


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("speaker_norm")  # the first test trains the run the second asks


def test_training_and_evaluation_normalise_each_speaker_from_their_own_clips(root):
    folder = root / "tiny-whisper"
    tiny_whisper().save_pretrained(folder)
    data, other = root / "data", root / "other"
    args = ["--recipe", "recipes/tiny.yaml", f"run.dir={root / 'run'}", f"data.dir={data}",
            "encoder.type=whisper", f"encoder.name={folder}", "encoder.speaker_norm=true", "trainer.max_steps=2",
            "trainer.val_check_interval=2"]
    assert main(["train", *args]) == 0
    ckpt = root / "run" / "checkpoints" / "last.ckpt"
    reference = torch.load(ckpt, weights_only=True)["state_dict"]["encoder.speaker_norm.reference"]
    assert reference.shape == (3, 32) and reference.abs().sum() > 0  # the stem and two layers of the tiny Whisper

    # another corpus (the tiny data again, another seed): its speakers come from its own clips
    assert main(["data", *args, f"data.dir={other}", "data.seed=7"]) == 0
    cfg = load_recipe("recipes/tiny.yaml", args[2:])
    model = load_trained(cfg, ckpt)
    norm = model.encoder.speaker_norm
    assert torch.equal(norm.reference, reference) and not norm.offsets  # nothing but the reference is saved
    prepare_evaluation(cfg, model, [([str(other)], "test")])
    speakers = {meta["speaker"] for _, meta in iter_shard_metadata(shard_files(other)) if meta["split"] == "test"}
    assert set(norm.offsets) == speakers
    assert torch.equal(norm.reference, reference)
    for offset in norm.offsets.values():
        assert offset.shape == reference.shape and offset.abs().sum() > 0
    # the same clips again: nothing to compute
    before = dict(norm.offsets)
    prepare_evaluation(cfg, model, [([str(other)], "test")])
    assert all(norm.offsets[s] is before[s] for s in speakers)


def test_infer_same_speaker_hears_a_users_files_relative_to_their_own_mean(root, capsys):
    from paralign.infer import ENROLLED, Answerer, InferenceError, Question, load_for_inference

    ckpt = root / "run" / "checkpoints" / "last.ckpt"
    files = [str(tone(root / f"mine{i}.wav", seconds=1.0 + i / 2, hz=150 + 60 * i)) for i in range(3)]
    assert main(["infer", "--ckpt", str(ckpt), "--audio", *files, "--same-speaker", "--max-new-tokens", "2"]) == 0
    assert "one speaker's statistics from 3 of 3 files" in capsys.readouterr().err

    model, cfg = load_for_inference(ckpt)
    answerer = Answerer(model, cfg, max_new_tokens=2)
    waves = [np.asarray(0.3 * np.sin(np.arange(16000) * k / 50), dtype=np.float32) for k in (1, 2)]
    with pytest.raises(InferenceError, match="at least two"):
        answerer.enrol(waves[:1])
    plain = answerer._example(waves[0], Question("{speech}"), None)
    assert answerer.enrol(waves) == 2
    enrolled = answerer._example(waves[0], Question("{speech}"), None)
    assert plain.meta == {} and enrolled.meta == {"speaker": ENROLLED}
    assert set(model.encoder.speaker_norm.offsets) == {ENROLLED}
    speech = [model.speech_embeddings(e.features[None], torch.tensor([e.features.shape[0]]), [e.meta.get("speaker")])[0]
              for e in (plain, enrolled)]
    assert not torch.allclose(speech[0], speech[1])  # the same clip, heard relative to its speaker

    cfg_plain = load_recipe("recipes/tiny.yaml", [])
    from lightning_modules.speech_llm import SpeechLLM

    with pytest.raises(InferenceError, match="without encoder.speaker_norm"):
        Answerer(SpeechLLM(cfg_plain).eval(), cfg_plain).enrol(waves)
