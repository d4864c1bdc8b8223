"""``data.features: hf``: a pretrained encoder gets its own feature extractor's input, through the real pipeline.

Tiny Whisper and wav2vec2 models are built here from configs (random weights, no download) and saved with their
feature extractors, as a local ``encoder.hf_name`` would be.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf
from transformers import (
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)

from datamodules.datamodule import ShardDataModule
from datamodules.features import HFFeatures, LogMel, build_features
from lightning_modules.encoders import HFAudioEncoder, build_encoder
from lightning_modules.whisper_encoder import WhisperSpeechEncoder
from paralign.recipe_loading import RecipeError, load_recipe

SR = 16000


def tiny_wav2vec2_config(norm: str = "group") -> Wav2Vec2Config:
    # conv strides multiply to 320 (50 frames/s) like the real models'
    return Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                          conv_dim=(16, 16, 16, 16), conv_kernel=(10, 4, 4, 4), conv_stride=(5, 4, 4, 4),
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm=norm,
                          do_stable_layer_norm=norm == "layer")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_models")
    torch.manual_seed(0)
    whisper = root / "whisper"
    WhisperModel(WhisperConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                               decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                               max_source_positions=1500, max_target_positions=32)).save_pretrained(whisper)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(whisper)
    wav2vec2 = root / "wav2vec2"
    Wav2Vec2Model(tiny_wav2vec2_config()).save_pretrained(wav2vec2)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(wav2vec2)
    return {"whisper": whisper, "wav2vec2": wav2vec2}


def tone(samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(samples)).astype(np.float32)


@pytest.mark.parametrize("samples", [16000, 16010, 16100, 8000])  # multiples of the hop and not
def test_whisper_features_are_the_extractors_own_without_the_30s_padding(models, samples):
    features = HFFeatures(str(models["whisper"]))
    wave = tone(samples)
    feats = features(wave)
    own = WhisperFeatureExtractor.from_pretrained(models["whisper"])(wave, sampling_rate=SR, return_tensors="np")
    frames = samples // 160
    assert feats.dtype == torch.float32 and feats.shape == (frames, 80) == (features.num_frames(samples), 80)
    np.testing.assert_allclose(feats.numpy(), own["input_features"][0, :, :frames].T, atol=1e-6)


def test_wav2vec2_features_are_the_normalised_waveform(models):
    features = HFFeatures(str(models["wav2vec2"]))
    wave = tone(12345)
    feats = features(wave)
    own = Wav2Vec2FeatureExtractor.from_pretrained(models["wav2vec2"])(wave, sampling_rate=SR, return_tensors="np")
    assert feats.dtype == torch.float32 and feats.shape == (12345,) and features.num_frames(12345) == 12345
    np.testing.assert_allclose(feats.numpy(), own["input_values"][0], atol=1e-6)
    assert abs(float(feats.mean())) < 1e-3 and abs(float(feats.std()) - 1) < 1e-2


def test_features_travel_to_worker_processes_and_refuse_another_rate(models):
    features = HFFeatures(str(models["whisper"]))
    wave = tone(4000)
    assert torch.equal(pickle.loads(pickle.dumps(features))(wave), features(wave))
    with pytest.raises(ValueError, match="data.sample_rate=16000"):
        HFFeatures(str(models["whisper"]), sample_rate=8000)


def test_the_recipe_picks_the_features(models):
    cfg = load_recipe("recipes/tiny.yaml", ["encoder.type=hf", f"encoder.hf_name={models['wav2vec2']}",
                                            "data.features=hf"])
    assert isinstance(build_features(cfg), HFFeatures)
    logmel = build_features(load_recipe("recipes/tiny.yaml", ["encoder.n_mels=40"]))
    assert isinstance(logmel, LogMel) and logmel.n_mels == 40


def test_a_pretrained_encoder_on_our_logmel_is_refused():
    with pytest.raises(RecipeError, match="encoder.type='hf' needs data.features: hf"):
        load_recipe("recipes/tiny.yaml", ["encoder.type=hf", "encoder.hf_name=some/model", "data.features=logmel"])
    with pytest.raises(RecipeError, match="data.features='mfcc' is not one of"):
        load_recipe("recipes/tiny.yaml", ["data.features=mfcc"])
    with pytest.raises(RecipeError, match="needs encoder.hf_name"):
        load_recipe("recipes/tiny.yaml", ["data.features=hf"])


def test_batches_through_the_datamodule(models, shard_dir):
    whisper = ShardDataModule(val=str(shard_dir), val_split="train", num_workers=2, max_batch_size=4,
                              bucket_window=0, features=HFFeatures(str(models["whisper"])))
    batch = next(iter(whisper.val_dataloader()))
    lens = [round(m["duration"] * 16000) // 160 for m in batch["meta"]]
    assert batch["features"].shape == (4, max(lens), 80) and batch["feature_lens"].tolist() == lens
    wav2vec2 = ShardDataModule(val=str(shard_dir), val_split="train", num_workers=0, max_batch_size=4,
                               bucket_window=0, features=HFFeatures(str(models["wav2vec2"])))
    batch = next(iter(wav2vec2.val_dataloader()))
    lens = [round(m["duration"] * 16000) for m in batch["meta"]]
    assert batch["features"].shape == (4, max(lens)) and batch["feature_lens"].tolist() == lens


def test_an_hf_whisper_runs_on_the_real_length_not_30_s(models):
    cfg = load_recipe("recipes/tiny.yaml", ["encoder.type=hf", f"encoder.hf_name={models['whisper']}"])
    encoder = build_encoder(cfg.encoder).eval()
    assert isinstance(encoder, WhisperSpeechEncoder) and encoder.layer == len(encoder.whisper.layers)
    feats = HFFeatures(str(models["whisper"]))(tone(16000))  # 1 s: 100 frames
    with torch.no_grad():
        out, lens = encoder(feats[None], torch.tensor([feats.shape[0]]))
    assert out.shape[1] == int(lens[0]) == 50  # not Whisper's 1500 frames of 30 s


@pytest.mark.parametrize("name", ["whisper", "wav2vec2"])
def test_a_clip_in_a_padded_batch_encodes_as_alone(models, name):
    features = HFFeatures(str(models[name]))
    if name == "whisper":
        encoder = build_encoder(load_recipe("recipes/tiny.yaml", ["encoder.type=hf",
                                                                  f"encoder.hf_name={models[name]}"]).encoder)
    else:  # layer-normed conv features: the variant that takes an attention mask, so padding must not matter
        torch.manual_seed(0)
        encoder = HFAudioEncoder("", model=Wav2Vec2Model(tiny_wav2vec2_config("layer")))
    encoder.eval()
    short, long = features(tone(8000, seed=1)), features(tone(16000, seed=2))
    with torch.no_grad():
        alone, alone_len = encoder(short[None], torch.tensor([short.shape[0]]))
        padded = torch.zeros((2, *long.shape))
        padded[0, : short.shape[0]], padded[1] = short, long
        both, both_lens = encoder(padded, torch.tensor([short.shape[0], long.shape[0]]))
    assert int(alone_len) == int(both_lens[0]) and both.shape[1] == int(both_lens[1]) > int(both_lens[0])
    assert abs(int(both_lens[0]) - 25) <= 1  # 0.5 s at 50 frames/s (less the conv edges)
    torch.testing.assert_close(both[0, : int(alone_len)], alone[0, : int(alone_len)], atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hf_e2e") / "data"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["whisper", "wav2vec2"])
def test_a_tiny_hf_encoder_trains_and_answers_end_to_end(models, tiny_data, tmp_path, name):
    from paralign.cli import main

    run = tmp_path / "run"
    assert main(["train", "--recipe", "recipes/tiny.yaml", "encoder.type=hf", f"encoder.hf_name={models[name]}",
                 "data.features=hf", f"data.dir={tiny_data}", f"run.dir={run}", "trainer.max_steps=2",
                 "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
                 "callbacks.last_checkpoint.every_n_train_steps=2",
                 "generation.max_new_tokens=2"]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.exists() and OmegaConf.load(run / "config.yaml").data.features == "hf"
    clip = tmp_path / "mine.wav"
    sf.write(clip, tone(12000), SR)  # a user's own recording goes through the same features
    assert main(["infer", "--ckpt", str(ckpt), "--audio", str(clip), "--task", "emotion", "--max-new-tokens", "2"]) == 0
