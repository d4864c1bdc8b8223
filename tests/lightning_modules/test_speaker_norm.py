"""Speaker normalisation (encoder.speaker_norm): each speaker's mean hidden state moved to the training corpus's,
a speaker without statistics heard as is, only on a frozen Whisper, and its reference kept in checkpoints."""
from __future__ import annotations

import pytest
import torch

from lightning_modules.speaker_norm import SpeakerMeans
from lightning_modules.speech_llm import SpeechLLM
from lightning_modules.whisper_encoder import WhisperSpeechEncoder
from paralign.recipe_loading import RecipeError, load_recipe
from tests.lightning_modules.test_whisper import TINY_RECIPE, _feats, tiny_whisper


def _speaker_clips(enc: WhisperSpeechEncoder, speaker_gain: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two clips of one 'speaker': the same random features, shifted the same way (their recording chain)."""
    feats = torch.cat([_feats(120, seed=seed), _feats(120, seed=seed + 1)]) + speaker_gain
    return feats, torch.tensor([120, 100])


def _means(enc: WhisperSpeechEncoder, clips: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> SpeakerMeans:
    acc = SpeakerMeans()
    with torch.no_grad():
        for name, (feats, lens) in clips.items():
            states, out_lens = enc.normed_states(feats, lens)
            acc.add(states, out_lens, [name] * len(lens))
    return acc


def test_each_speakers_mean_state_becomes_the_reference_and_an_unknown_speaker_is_heard_as_is():
    enc = WhisperSpeechEncoder(tiny_whisper().get_encoder(), speaker_norm=True).eval()
    clips = {"a": _speaker_clips(enc, 0.0, 0), "b": _speaker_clips(enc, 3.0, 10)}
    acc = _means(enc, clips)
    reference = acc.overall()
    enc.speaker_norm.set_means(acc.means(), {"test"}, reference=reference)
    feats, lens = clips["b"]
    with torch.no_grad():
        states, out_lens = enc.normed_states(feats, lens)
        shifted = enc.speaker_norm(states, ["b", "b"])
        frames = [torch.cat([s[i, :int(n)] for i, n in enumerate(out_lens)]) for s in shifted]
        for k, f in enumerate(frames):  # over all of b's frames, each state's mean is the reference's
            assert torch.allclose(f.mean(0), reference[k], atol=1e-4)
        assert not torch.allclose(acc.means()["b"], reference, atol=1e-2)  # and it was not before
        plain, _ = enc(feats, lens)
        unknown, _ = enc(feats, lens, ["nobody", None])
        assert torch.equal(plain, unknown)
        normed, _ = enc(feats, lens, ["b", "b"])
        assert not torch.allclose(normed, plain, atol=1e-3)


def test_speaker_norm_needs_a_frozen_whisper():
    from peft import LoraConfig

    with pytest.raises(ValueError, match="frozen Whisper"):
        WhisperSpeechEncoder(tiny_whisper().get_encoder(), trainable_layers=1, speaker_norm=True)
    with pytest.raises(ValueError, match="frozen Whisper"):
        WhisperSpeechEncoder(tiny_whisper().get_encoder(), lora=LoraConfig(r=2, target_modules=["q_proj"]),
                             speaker_norm=True)
    base = ["encoder.type=whisper", "encoder.name=whisper-base", "encoder.speaker_norm=true"]
    with pytest.raises(RecipeError, match="encoder.speaker_norm needs a frozen Whisper"):
        load_recipe(TINY_RECIPE, base + ["encoder.lora_rank=4"])
    with pytest.raises(RecipeError, match="encoder.speaker_norm needs a frozen Whisper"):
        load_recipe(TINY_RECIPE, ["encoder.speaker_norm=true"])  # the tiny recipe's conformer


def test_the_reference_is_in_checkpoints_and_init_from_an_older_run_does_without_it(tmp_path):
    folder = tmp_path / "tiny-whisper"
    tiny_whisper().save_pretrained(folder)
    cfg = load_recipe(TINY_RECIPE, ["encoder.type=whisper", f"encoder.name={folder}", "encoder.speaker_norm=true"])
    model = SpeechLLM(cfg)
    model.encoder.speaker_norm.reference.fill_(0.5)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    assert torch.equal(checkpoint["state_dict"]["encoder.speaker_norm.reference"], model.encoder.speaker_norm.reference)
    older = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("encoder.speaker_norm.")}
    assert model.check_checkpoint_keys(older, pretrained_may_miss=True) == []  # init_from: computed before training
    with pytest.raises(RuntimeError, match="lacks trainable weights"):  # a run's own checkpoint must hold it
        model.check_checkpoint_keys(older)
