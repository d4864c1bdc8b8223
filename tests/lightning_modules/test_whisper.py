"""Whisper as the speech encoder: the CTranslate2 wheel conversion (whisper_loading) and the real-length encoder with
its layer mix (whisper_encoder).

The unit tests build a tiny random Whisper in code (no download, a fraction of a second each). The slow ones
convert the real wheels (whisper-tiny.en, whisper-base) into a temporary cache and check that they transcribe.
"""
from __future__ import annotations

import copy
import io
import math
import shutil
import struct
import subprocess
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from datamodules.features import HFFeatures, build_features
from lightning_modules.speech_llm import SpeechLLM
from lightning_modules.whisper_encoder import WHISPER_FRAME_RATE, WhisperSpeechEncoder, build_whisper_encoder
from lightning_modules.whisper_loading import read_ct2, whisper_path
from paralign.recipe_loading import RecipeError, load_recipe
from scoring.metrics import corpus_wer, word_errors
from tests.lightning_modules.conftest import batch_for, make_clip

REPO = Path(__file__).resolve().parents[2]
TINY_RECIPE = REPO / "recipes" / "tiny.yaml"
RAVDESS = REPO / ".." / "shared" / "ravdess_dev"


# ---- a tiny Whisper built in code -----------------------------------------------------------------------------------
def tiny_whisper(seed: int = 0):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    # the special-token ids must lie inside the tiny vocabulary (WhisperConfig's defaults are 50256/50257)
    config = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                           max_source_positions=1500, vocab_size=100, pad_token_id=0, bos_token_id=1,
                           eos_token_id=2, decoder_start_token_id=3)
    torch.manual_seed(seed)
    return WhisperForConditionalGeneration(config).eval()


def _feats(frames: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, 80, generator=torch.Generator().manual_seed(seed))


def _probe(out: torch.Tensor) -> torch.Tensor:
    """A loss whose gradient is not ~0 (``out.sum()`` of layer-normed states nearly is)."""
    weights = torch.randn(out.shape[-1], generator=torch.Generator().manual_seed(1))
    return (out * weights).sum()


# ---- 1. equal to transformers at 30 s -------------------------------------------------------------------------------
def test_hidden_states_match_transformers_at_3000_frames():
    model = tiny_whisper()
    enc = WhisperSpeechEncoder(model.get_encoder()).eval()
    feats = _feats(3000, batch=2)
    with torch.no_grad():
        ref = model.get_encoder()(feats.transpose(1, 2), output_hidden_states=True).hidden_states
        states, lens = enc.hidden_states(feats, torch.tensor([3000, 3000]))
    assert len(states) == len(ref) == 3
    assert lens.tolist() == [1500, 1500]
    for i, (a, b) in enumerate(zip(states, ref)):
        assert a.shape == b.shape == (2, 1500, 32), i
        assert torch.allclose(a, b, atol=1e-5), (i, float((a - b).abs().max()))


# ---- 2. a padded batch is each clip alone ---------------------------------------------------------------------------
@pytest.mark.parametrize("layer", [None, 1])
def test_padded_batch_equals_each_clip_alone(layer):
    enc = WhisperSpeechEncoder(tiny_whisper().get_encoder(), layer=layer).eval()
    lengths = [400, 257]  # an odd length: the stride-2 conv gives ceil(257 / 2) = 129 frames
    clips = [_feats(n, seed=i) for i, n in enumerate(lengths)]
    batch = torch.zeros(2, max(lengths), 80)  # the collate pads with zeros
    for i, clip in enumerate(clips):
        batch[i, : clip.shape[1]] = clip[0]
    with torch.no_grad():
        out, out_lens = enc(batch, torch.tensor(lengths))
        states, _ = enc.hidden_states(batch, torch.tensor(lengths))
        alone = [enc(c, torch.tensor([c.shape[1]])) for c in clips]
        alone_states = [enc.hidden_states(c, torch.tensor([c.shape[1]]))[0] for c in clips]
    assert out_lens.tolist() == [math.ceil(n / 2) for n in lengths] == [200, 129]
    assert out.shape == (2, 200, 32) and torch.isfinite(out).all()
    for i, n in enumerate(out_lens.tolist()):
        single, single_len = alone[i]
        assert single_len.tolist() == [n] and single.shape[1] == n
        assert torch.allclose(out[i, :n], single[0], atol=1e-4), (i, float((out[i, :n] - single[0]).abs().max()))
        for k, (s, a) in enumerate(zip(states, alone_states[i])):
            assert torch.allclose(s[i, :n], a[0], atol=1e-4), (i, k)


def test_features_past_the_window_are_cut_and_lengths_clamped():
    enc = WhisperSpeechEncoder(tiny_whisper().get_encoder()).eval()
    with torch.no_grad():
        out, lens = enc(_feats(3010), torch.tensor([3010]))
    assert out.shape[1] == 1500 and lens.tolist() == [1500]


def test_wrong_mel_bins_are_refused():
    enc = WhisperSpeechEncoder(tiny_whisper().get_encoder())
    with pytest.raises(ValueError, match="mel bins"):
        enc(torch.zeros(1, 100, 128), torch.tensor([100]))


# ---- 3. the layer mix -----------------------------------------------------------------------------------------------
def test_layer_mix_weights_and_output():
    enc = WhisperSpeechEncoder(tiny_whisper().get_encoder()).eval()
    assert enc.output_dim == 32 and enc.frame_rate == WHISPER_FRAME_RATE == 50.0
    weights = enc.mix_weights()
    assert len(weights) == 3 and math.isclose(sum(weights), 1.0, abs_tol=1e-6)
    with torch.no_grad():
        enc.layer_weights.copy_(torch.tensor([0.5, -1.0, 2.0]))
        feats, lens = _feats(300), torch.tensor([300])
        out, _ = enc(feats, lens)
        states, _ = enc.hidden_states(feats, lens)
    weights = enc.mix_weights()
    assert math.isclose(sum(weights), 1.0, abs_tol=1e-6)
    assert torch.allclose(torch.tensor(weights), torch.softmax(torch.tensor([0.5, -1.0, 2.0]), 0), atol=1e-6)
    expected = sum(w * torch.nn.functional.layer_norm(s, s.shape[-1:]) for w, s in zip(weights, states))
    assert torch.allclose(out, expected, atol=1e-5)


def test_concat_mix_puts_every_state_side_by_side():
    enc = WhisperSpeechEncoder(tiny_whisper().get_encoder(), mix="concat").eval()
    assert enc.output_dim == 3 * 32 and enc.layer_weights is None and enc.mix_weights() == []
    feats, lens = _feats(300), torch.tensor([300])
    with torch.no_grad():
        out, out_lens = enc(feats, lens)
        states, _ = enc.hidden_states(feats, lens)
    assert out.shape == (1, 150, 96) and out_lens.tolist() == [150]
    for i, state in enumerate(states):
        assert torch.allclose(out[..., 32 * i:32 * (i + 1)], torch.nn.functional.layer_norm(state, (32,)), atol=1e-6)
    with pytest.raises(ValueError, match="weighted or concat"):
        WhisperSpeechEncoder(tiny_whisper().get_encoder(), mix="sum")


@pytest.mark.parametrize("k", [0, 1, 2])
def test_one_layer_is_that_hidden_state(k):
    enc = WhisperSpeechEncoder(tiny_whisper().get_encoder(), layer=k).eval()
    assert enc.mix_weights() == [] and enc.layer_weights is None
    feats, lens = _feats(300), torch.tensor([300])
    with torch.no_grad():
        out, out_lens = enc(feats, lens)
        states, _ = enc.hidden_states(feats, lens)
    assert out_lens.tolist() == [150]
    assert torch.equal(out, states[k])


@pytest.mark.parametrize("k", [-1, 3])
def test_layer_out_of_range_is_refused(k):
    with pytest.raises(ValueError, match="hidden states 0..2"):
        WhisperSpeechEncoder(tiny_whisper().get_encoder(), layer=k)


# ---- 4. what trains -------------------------------------------------------------------------------------------------
def _grads(enc: WhisperSpeechEncoder) -> set[str]:
    return {n for n, p in enc.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_frozen_by_default():
    enc = WhisperSpeechEncoder(tiny_whisper().get_encoder())
    enc.train()
    assert enc.frozen and enc.training and not enc.whisper.training
    assert not any(m.training for m in enc.whisper.modules())
    assert not any(p.requires_grad for p in enc.whisper.parameters())
    out, _ = enc(_feats(200), torch.tensor([200]))
    _probe(out).backward()
    assert all(p.grad is None for p in enc.whisper.parameters())
    assert enc.layer_weights.grad is not None and enc.layer_weights.grad.abs().sum() > 0
    assert _grads(enc) == {"layer_weights"}


def test_top_layer_trainable():
    enc = WhisperSpeechEncoder(tiny_whisper().get_encoder(), trainable_layers=1)
    enc.train()
    assert not enc.frozen and enc.whisper.training
    top = {f"whisper.{n}" for n, _ in enc.whisper.named_parameters() if n.startswith("layers.1.")}
    assert top and {n for n, p in enc.named_parameters() if p.requires_grad} == top | {"layer_weights"}
    out, _ = enc(_feats(200), torch.tensor([200]))
    _probe(out).backward()
    assert _grads(enc) == top | {"layer_weights"}
    assert all(p.grad is None for n, p in enc.whisper.named_parameters() if not n.startswith("layers.1."))


def test_more_trainable_layers_than_exist_trains_all_layers():
    enc = WhisperSpeechEncoder(tiny_whisper().get_encoder(), trainable_layers=5)
    trainable = {n for n, p in enc.whisper.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in enc.whisper.named_parameters() if n.startswith("layers.")}


def test_lora_trains_only_the_adapters_and_the_mix():
    from peft import LoraConfig

    model = tiny_whisper()
    feats, lens = _feats(200), torch.tensor([200])
    with torch.no_grad():
        base, _ = WhisperSpeechEncoder(copy.deepcopy(model.get_encoder())).eval()(feats, lens)
    enc = WhisperSpeechEncoder(model.get_encoder(),
                               lora=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    names = [n for n, _ in enc.named_parameters()]
    lora = {n for n in names if "lora_" in n}
    assert any("q_proj.lora_A" in n for n in lora) and any("v_proj.lora_B" in n for n in lora)
    assert not any("k_proj.lora" in n for n in lora)
    assert {n for n, p in enc.named_parameters() if p.requires_grad} == lora | {"layer_weights"}
    enc.eval()
    with torch.no_grad():
        same, _ = enc(feats, lens)
    assert torch.allclose(same, base, atol=1e-6)  # lora_B starts at zero: the adapters add nothing yet
    with torch.no_grad():
        for n, p in enc.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
        changed, _ = enc(feats, lens)
    assert not torch.allclose(changed, base, atol=1e-3)
    enc.train()
    out, _ = enc(feats, lens)
    _probe(out).backward()
    assert _grads(enc) <= lora | {"layer_weights"} and "layer_weights" in _grads(enc)
    assert any("lora_A" in n for n in _grads(enc))  # lora_B is nonzero now, so lora_A learns


def test_lora_and_trainable_layers_exclude_each_other():
    from peft import LoraConfig

    with pytest.raises(ValueError, match="exclude each other"):
        WhisperSpeechEncoder(tiny_whisper().get_encoder(), trainable_layers=1,
                             lora=LoraConfig(r=4, target_modules=["q_proj"]))
    with pytest.raises(RecipeError, match="exclude each other"):
        load_recipe(TINY_RECIPE, ["encoder.type=whisper", "encoder.name=whisper-base", "encoder.lora_rank=4",
                                  "encoder.trainable_layers=1"])


def test_build_whisper_encoder_from_a_recipe():
    cfg = load_recipe(TINY_RECIPE, ["encoder.type=whisper", "encoder.name=whisper-base", "encoder.layer=2"])
    enc = build_whisper_encoder(cfg.encoder, model=tiny_whisper())
    assert enc.layer == 2 and enc.frozen and enc.mix_weights() == []
    cfg = load_recipe(TINY_RECIPE, ["encoder.type=whisper", "encoder.name=whisper-base", "encoder.lora_rank=4"])
    enc = build_whisper_encoder(cfg.encoder, model=tiny_whisper())
    assert enc.layer is None and not enc.frozen
    assert {n for n, p in enc.named_parameters() if p.requires_grad} == {
        n for n, _ in enc.named_parameters() if "lora_" in n} | {"layer_weights"}
    assert not hasattr(enc.whisper, "embed_tokens")  # the encoder only: no decoder inside


# ---- 5. inside the SpeechLLM ----------------------------------------------------------------------------------------
class _OneBatch(torch.utils.data.IterableDataset):
    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch


def test_speech_llm_with_whisper_trains_and_checkpoints_without_frozen_weights(tmp_path):
    folder = tmp_path / "tiny-whisper"
    tiny_whisper().save_pretrained(folder)
    cfg = load_recipe(TINY_RECIPE, ["encoder.type=whisper", f"encoder.name={folder}"])
    torch.manual_seed(0)
    model = SpeechLLM(cfg)
    assert isinstance(model.encoder, WhisperSpeechEncoder)
    whisper_before = {n: p.detach().clone() for n, p in model.encoder.whisper.named_parameters()}
    mix_before = model.encoder.layer_weights.detach().clone()
    adapter_before = {n: p.detach().clone() for n, p in model.adapter.named_parameters()}
    batch = batch_for(model, [make_clip(0, 120), make_clip(1, 150)])

    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0,
                         enable_checkpointing=False)
    trainer.fit(model, torch.utils.data.DataLoader(_OneBatch(batch), batch_size=None))
    assert trainer.global_step == 2
    for n, p in model.encoder.whisper.named_parameters():
        assert torch.equal(p, whisper_before[n]), n
    assert not torch.equal(model.encoder.layer_weights.detach(), mix_before)
    assert any(not torch.equal(p, adapter_before[n]) for n, p in model.adapter.named_parameters())

    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    keys = set(checkpoint["state_dict"])
    assert "encoder.layer_weights" in keys
    assert any(k.startswith("adapter.") for k in keys)
    assert not [k for k in keys if k.startswith("encoder.whisper.")]
    assert not [k for k in keys if k.startswith("llm.")]
    model.check_checkpoint_keys(checkpoint["state_dict"])
    with pytest.raises(RuntimeError, match="lacks trainable weights"):
        model.check_checkpoint_keys({k: v for k, v in checkpoint["state_dict"].items()
                                     if k != "encoder.layer_weights"})


def test_whisper_recipe_needs_a_name():
    with pytest.raises(RecipeError, match="encoder.name"):
        load_recipe(TINY_RECIPE, ["encoder.type=whisper"])


def test_build_features_for_whisper_is_its_log_mel_at_100_per_second():
    cfg = load_recipe(TINY_RECIPE, ["encoder.type=whisper", "encoder.name=whisper-base"])
    features = build_features(cfg)
    assert isinstance(features, HFFeatures) and features.is_whisper
    for seconds in (1, 2):
        t = np.arange(16000 * seconds) / 16000
        out = features((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
        assert out.dtype == torch.float32 and out.shape == (100 * seconds, 80) and torch.isfinite(out).all()
        assert features.num_frames(t.size) == 100 * seconds


# ---- read_ct2 on a hand-made model.bin ------------------------------------------------------------------------------
def _ct2_string(s: str) -> bytes:
    data = s.encode() + b"\0"
    return struct.pack("<H", len(data)) + data


def _ct2_blob(version: int = 6) -> bytes:
    out = struct.pack("<I", version) + _ct2_string("WhisperSpec") + struct.pack("<I", 3) + struct.pack("<I", 2)
    a = np.arange(6, dtype=np.float16).reshape(2, 3)
    out += _ct2_string("encoder/x") + struct.pack("<B", 2) + struct.pack("<II", 2, 3)
    out += struct.pack("<BI", 4, a.nbytes) + a.tobytes()
    b = np.array([7], dtype=np.int32)
    out += _ct2_string("encoder/num_heads") + struct.pack("<B", 0)  # a scalar: rank 0
    out += struct.pack("<BI", 3, b.nbytes) + b.tobytes()
    out += struct.pack("<I", 1) + _ct2_string("decoder/y") + _ct2_string("encoder/x")
    return out


def test_read_ct2_reads_variables_and_aliases():
    spec, variables = read_ct2(io.BytesIO(_ct2_blob()))
    assert spec == "WhisperSpec"
    assert set(variables) == {"encoder/x", "encoder/num_heads", "decoder/y"}
    assert variables["encoder/x"].dtype == np.float16 and variables["encoder/x"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert int(variables["encoder/num_heads"]) == 7
    assert variables["decoder/y"] is variables["encoder/x"]


def test_read_ct2_refuses_other_versions_and_cut_files():
    with pytest.raises(ValueError, match="version 5"):
        read_ct2(io.BytesIO(_ct2_blob(version=5)))
    with pytest.raises(ValueError, match="cut short"):
        read_ct2(io.BytesIO(_ct2_blob()[:60]))


def test_whisper_path_passes_other_names_through(tmp_path):
    assert whisper_path(str(tmp_path / "my-whisper"), tmp_path / "cache") == str(tmp_path / "my-whisper")
    assert whisper_path("openai/whisper-small", tmp_path / "cache") == "openai/whisper-small"
    assert not (tmp_path / "cache").exists()


# ---- 6. the real wheels (slow) --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def whisper_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("whisper_cache")


@pytest.fixture(scope="module")
def converted(whisper_cache):
    """name -> (folder, seconds the first conversion took); each wheel is converted once per module."""
    done: dict[str, tuple[Path, float]] = {}

    def get(name: str) -> tuple[Path, float]:
        if name not in done:
            start = time.perf_counter()
            folder = Path(whisper_path(name, whisper_cache))
            done[name] = (folder, time.perf_counter() - start)
        return done[name]

    return get


EXPECTED = {"whisper-tiny.en": {"d_model": 384, "encoder_layers": 4, "decoder_layers": 4, "vocab_size": 51864},
            "whisper-base": {"d_model": 512, "encoder_layers": 6, "decoder_layers": 6, "vocab_size": 51865}}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["whisper-tiny.en", "whisper-base"])
def test_wheel_converts_once_and_loads_strictly(name, converted, whisper_cache):
    from safetensors.torch import load_file
    from transformers import WhisperForConditionalGeneration

    folder, _ = converted(name)
    assert folder == whisper_cache / "models" / name
    for f in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
              "preprocessor_config.json"):
        assert (folder / f).exists(), f
    assert not (folder.parent / f"{name}.tmp").exists()

    model = WhisperForConditionalGeneration.from_pretrained(folder)
    for key, value in EXPECTED[name].items():
        assert getattr(model.config, key) == value, key
    saved = load_file(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(saved, strict=False)
    assert unexpected == [] and set(missing) <= {"proj_out.weight"}, (missing, unexpected)
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()  # tied
    state = model.state_dict()
    for k, v in saved.items():
        assert torch.equal(state[k], v), k
    assert torch.count_nonzero(state["model.encoder.layers.0.self_attn.q_proj.bias"]) > 0  # real weights

    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    again = whisper_path(name, whisper_cache)
    assert again == str(folder) and time.perf_counter() - start < 1.0
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


# ---- 7. transcription (slow) ----------------------------------------------------------------------------------------
def _wer(preds: list[str], refs: list[str]) -> float:
    return corpus_wer(word_errors(preds, refs))


def _load_16k(path: Path) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if rate != 16000:
        g = math.gcd(16000, rate)
        wave = resample_poly(wave, 16000 // g, rate // g).astype(np.float32)
    return wave


def _transcribe(folder: Path, waves: list[np.ndarray], multilingual: bool) -> list[str]:
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    tokenizer = WhisperTokenizerFast.from_pretrained(folder)
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    features = extractor(waves, sampling_rate=16000, return_tensors="pt").input_features
    kwargs = {"language": "en", "task": "transcribe"} if multilingual else {}
    with torch.no_grad():
        ids = model.generate(features, max_new_tokens=40, **kwargs)
    return tokenizer.batch_decode(ids, skip_special_tokens=True)


SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def spoken_sentence(tmp_path_factory) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("espeak") / "out.wav"
    subprocess.run(["espeak-ng", "-w", str(path), SENTENCE], check=True, capture_output=True)
    return _load_16k(path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["whisper-tiny.en", "whisper-base"])
def test_converted_wheel_transcribes_espeak(name, converted, spoken_sentence):
    folder, _ = converted(name)
    text = _transcribe(folder, [spoken_sentence], multilingual=name == "whisper-base")
    wer = _wer(text, [SENTENCE])
    assert wer <= 0.2, (name, text, wer)


@pytest.mark.slow
def test_whisper_base_transcribes_ravdess(converted):
    import json

    if not RAVDESS.is_dir():
        pytest.skip(f"{RAVDESS} is absent")
    transcripts = {}
    for line in (RAVDESS / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        transcripts[row["path"]] = row["transcript"]
    # the first four of each actor: both statements, two repetitions, neutral
    paths = [p for actor in ("Actor_01", "Actor_02") for p in sorted((RAVDESS / actor).glob("*.wav"))[:4]]
    refs = [transcripts[f"{p.parent.name}/{p.name}"] for p in paths]
    assert len(paths) == 8 and set(refs) == {"Kids are talking by the door", "Dogs are sitting by the door"}
    folder, _ = converted("whisper-base")
    preds = _transcribe(folder, [_load_16k(p) for p in paths], multilingual=True)
    wer = _wer(preds, refs)
    assert wer <= 0.15, (list(zip(preds, refs)), wer)


def test_a_transcript_that_starts_over_is_cut_there():
    from lightning_modules.whisper_transcriber import drop_restart

    assert drop_restart("Kids are talking by the door. Kids are talking") == "Kids are talking by the door."
    assert drop_restart("Yes. Yes it is.") == "Yes. Yes it is."  # a sentence may begin with the same word
    assert drop_restart("I know. I know you do.") == "I know. I know you do."  # a sentence of two words differs
    assert drop_restart("") == ""


@pytest.mark.slow
def test_transcriber_on_the_real_length_hears_espeak_and_ravdess(converted, spoken_sentence):
    """The transcripts the LLM reads (prompt.content: transcript) come from Whisper's decoder over the encoder run on
    the clip's real length plus a second of silence, not the 30 s window: as good here, and it ends (no loop),
    without transformers' notices that are not the user's to act on."""
    import json
    import logging

    from lightning_modules.whisper_transcriber import WhisperTranscriber

    notices: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = notices.append  # the records that pass the logger's filters
    generation_log = logging.getLogger("transformers.generation.utils")
    generation_log.addHandler(handler)
    try:
        folder, _ = converted("whisper-base")
        transcriber = WhisperTranscriber.load(str(folder), batch_size=4)
        assert _wer(transcriber([spoken_sentence]), [SENTENCE]) <= 0.2
        if RAVDESS.is_dir():
            rows = [json.loads(line) for line in (RAVDESS / "manifest.jsonl").read_text().splitlines()]
            rows = [r for r in rows if r["path"].startswith(("Actor_01/", "Actor_02/"))][:8]
            preds = transcriber([_load_16k(RAVDESS / r["path"]) for r in rows])  # one batch: padded with silence
            assert _wer(preds, [r["transcript"] for r in rows]) <= 0.15, preds
            assert all(len(p.split()) <= 12 for p in preds)  # five-word sentences: no runaway repetition
    finally:
        generation_log.removeHandler(handler)
    assert not notices, [n.getMessage() for n in notices]


def test_the_layer_mix_has_its_own_learning_rate_and_moves_further(tmp_path):
    folder = tmp_path / "tiny-whisper"
    tiny_whisper().save_pretrained(folder)
    moved = {}
    for scale in (1.0, 30.0):
        cfg = load_recipe(TINY_RECIPE, ["encoder.type=whisper", f"encoder.name={folder}", "optim.warmup_steps=0",
                                        f"optim.layer_mix_lr_scale={scale}"])
        torch.manual_seed(0)
        model = SpeechLLM(cfg)
        optimizer = model.configure_optimizers()["optimizer"]
        grouped = [p for g in optimizer.param_groups for p in g["params"]]
        assert len(grouped) == len({id(p) for p in grouped}) == len(model.trainable_parameters())
        mix_group = next(g for g in optimizer.param_groups if any(p is model.encoder.layer_weights
                                                                  for p in g["params"]))
        assert mix_group["lr"] == pytest.approx(cfg.optim.lr * scale) and mix_group["weight_decay"] == 0.0
        assert len(mix_group["params"]) == 1
        batch = batch_for(model, [make_clip(0, 120), make_clip(1, 150)])
        for _ in range(3):
            optimizer.zero_grad()
            model.losses(batch)[0].backward()
            optimizer.step()
        moved[scale] = float(model.encoder.layer_weights.detach().abs().max())
    # Adam moves each logit about lr per step: 30x the rate, about 30x as far in as many steps
    assert moved[30.0] > 10 * moved[1.0] > 0


def test_an_hf_whisper_saved_in_float16_trains_in_float32(tmp_path):
    # transformers 5 loads a checkpoint in its own dtype by default: a trainable encoder must not train in float16
    folder = tmp_path / "tiny-whisper-fp16"
    tiny_whisper().half().save_pretrained(folder)
    cfg = load_recipe(TINY_RECIPE, ["encoder.type=hf", f"encoder.hf_name={folder}"])
    model = SpeechLLM(cfg)
    assert {p.dtype for p in model.encoder.parameters()} == {torch.float32}


def test_init_from_a_frozen_whisper_run_into_lora_or_unfrozen_layers(tmp_path):
    """Fine-tuning the demo (frozen Whisper) with LoRA or top layers unfrozen: the new encoder weights start from
    the pretrained encoder; a missing adapter or mix weight is still a different model."""
    from paralign.train import init_weights

    folder = tmp_path / "tiny-whisper"
    tiny_whisper().save_pretrained(folder)
    base = ["encoder.type=whisper", f"encoder.name={folder}"]
    torch.manual_seed(0)
    frozen = SpeechLLM(load_recipe(TINY_RECIPE, base))
    checkpoint = {"state_dict": frozen.state_dict()}
    frozen.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "frozen.ckpt")
    pretrained = {k: v.clone() for k, v in frozen.encoder.whisper.state_dict().items()}
    for extra in (["encoder.lora_rank=4"], ["encoder.trainable_layers=1"]):
        torch.manual_seed(1)
        model = SpeechLLM(load_recipe(TINY_RECIPE, base + extra))
        init_weights(model, tmp_path / "frozen.ckpt")
        for k, v in checkpoint["state_dict"].items():
            assert torch.equal(model.state_dict()[k], v), k
        kept = model.check_checkpoint_keys(checkpoint["state_dict"], pretrained_may_miss=True)
        assert kept and all(k.startswith("encoder.whisper.") for k in kept)
        if extra == ["encoder.lora_rank=4"]:
            assert all("lora_" in k for k in kept)
        else:  # the unfrozen top layer is the pretrained one, not a random one
            top = {k.removeprefix("encoder.whisper."): v for k, v in model.state_dict().items() if k in kept}
            assert all(torch.equal(v, pretrained[k]) for k, v in top.items())
    without_adapter = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("adapter.")}
    torch.save({"state_dict": without_adapter}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="does not fit this recipe's model.*lacks trainable weights"):
        init_weights(SpeechLLM(load_recipe(TINY_RECIPE, base + ["encoder.lora_rank=4"])), tmp_path / "other.ckpt")
